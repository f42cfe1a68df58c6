//! A tansu broker of a test's own, on a free port, in a directory of the
//! test's: for tests that stop the broker, and for tests that need a broker
//! that is not slowed down by the rest of the suite (tansu's sqlite engine
//! serves fetches more slowly the more it holds).

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running tansu broker; killed when dropped.
pub struct Tansu {
    child: Child,
    pub address: String,
}

impl Tansu {
    /// Starts tansu on `port`, storing its data (and `tansu.log`) in `dir`.
    pub fn start(dir: &Path, port: u16) -> Tansu {
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("tansu.log"))
            .unwrap();
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--cluster-id",
                "kstreams-test",
            ])
            .args([
                "--storage-engine",
                "sqlite://tansu.db?maintenance_interval=1000h",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tansu must be on PATH (.ci/run installs it)");
        let started = Instant::now();
        while TcpStream::connect(&address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not start"
            );
            thread::sleep(Duration::from_millis(100));
        }
        Tansu { child, address }
    }

    /// Stops the broker with SIGTERM (SIGKILL after 10 s).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the `tansu` binary is on PATH.
pub fn installed() -> bool {
    Command::new("tansu")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
