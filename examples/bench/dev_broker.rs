//! The dev broker (`examples/dev_broker`: librdkafka's mock cluster, the
//! embedded broker of kstreams, on a TCP port) as a child process of the
//! bench, killed when dropped. A broker that keeps everything in memory
//! and answers at once, so that the end-to-end figures measure the
//! clients and not the broker; and, in a process of its own, its CPU is
//! in neither kstreams' figure nor its baseline's.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::measure::{read_back, sibling_example};

/// A running dev broker.
pub struct DevBroker {
    child: Child,
    /// Its bootstrap address, `127.0.0.1:PORT`.
    pub address: String,
}

impl DevBroker {
    /// Starts `dev_broker --port 0` (a free port) from beside the bench
    /// binary; topics created without a partition count get `partitions`.
    pub fn start(partitions: i32) -> anyhow::Result<Self> {
        let mut stderr = tempfile::tempfile()?;
        let mut child = Command::new(sibling_example("dev_broker")?)
            .args(["--port", "0", "--partitions", &partitions.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr.try_clone()?))
            .spawn()?;
        // Its first line: `dev broker listening on ADDR (...)`.
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let address = line
            .strip_prefix("dev broker listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        // Killed on drop from here on, whatever happens next.
        let broker = DevBroker { child, address };
        anyhow::ensure!(
            !broker.address.is_empty(),
            "the dev broker did not start: {line:?}\n{}",
            read_back(&mut stderr)?
        );
        Ok(broker)
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
