//! A fresh tansu (`tansu broker`, from PATH, with its sqlite engine in a
//! temporary directory) as a child process of the bench, killed when
//! dropped. tansu 0.6 does not recover from a Quix Streams run: it stays
//! busy afterwards, and whatever runs next on it stalls (sessions time
//! out, requests go unanswered). So the bench gives every workload a
//! fresh one, and every figure on tansu comes from a broker that held
//! only that workload's topics.

use std::fs::File;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long tansu may take to listen.
const START: Duration = Duration::from_secs(30);

/// A running tansu.
pub struct Tansu {
    child: Child,
    /// Where its database and log are; removed when dropped, after it.
    _dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts tansu listening on (and advertising) `address`, `HOST:PORT`,
    /// which must be free; returns once it accepts connections.
    pub fn start(address: &str) -> anyhow::Result<Self> {
        let target = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{address} names no address"))?;
        anyhow::ensure!(
            TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_err(),
            "something already listens on {address}: --tansu needs a free address"
        );
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join("tansu.log");
        let log = File::create(&log_path)?;
        let url = format!("tcp://{address}");
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            // No maintenance pass of the database within a run.
            .args([
                "--storage-engine",
                "sqlite://tansu.db?maintenance_interval=1000h",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|error| anyhow::anyhow!("cannot run `tansu broker` (on PATH?): {error}"))?;
        // Killed on drop from here on, whatever happens next.
        let mut tansu = Tansu { child, _dir: dir };
        let started = Instant::now();
        loop {
            if let Some(status) = tansu.child.try_wait()? {
                anyhow::bail!("tansu ended with {status}:\n{}", read(&log_path));
            }
            if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
                return Ok(tansu);
            }
            anyhow::ensure!(
                started.elapsed() < START,
                "tansu did not listen on {address} within {START:?}:\n{}",
                read(&log_path)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &std::path::Path) -> String {
    let mut text = String::new();
    let _ = File::open(path).and_then(|mut file| file.read_to_string(&mut text));
    text
}
