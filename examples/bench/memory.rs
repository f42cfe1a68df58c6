//! Memory with many keys of state: the count pipeline through the test
//! driver, every message a new key, in a child process of its own so that
//! its peak RSS is its alone. State lives on disk; what stays in memory is
//! bounded by `commit_state_bytes` and RocksDB's caches.

use std::process::Command;
use std::time::Instant;

use kstreams::TestDriver;

use crate::driver::stateful_count_app;
use crate::{progress, purchase};

/// Flag that makes the bench binary run [`child`] instead of the suite.
pub const CHILD_FLAG: &str = "--memory-child";

/// What the child measured.
pub struct Memory {
    pub keys: u64,
    pub seconds: f64,
    pub peak_rss_mb: f64,
}

/// Runs the child on `keys` keys and reads its summary line.
pub fn run(keys: u64) -> anyhow::Result<Memory> {
    let output = Command::new(std::env::current_exe()?)
        .args([CHILD_FLAG, &keys.to_string()])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "the memory child failed with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("memory:"))
        .ok_or_else(|| anyhow::anyhow!("no summary line in:\n{stdout}"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(Memory {
        keys: words.get(1).unwrap_or(&"").parse()?,
        seconds: words.get(4).unwrap_or(&"").parse()?,
        peak_rss_mb: words.get(8).unwrap_or(&"").parse()?,
    })
}

/// The child: pushes one message for each of `keys` keys, then prints
/// `memory: KEYS keys in S s, peak RSS MB MB`.
pub fn child(keys: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (app, purchases) = stateful_count_app(dir.path())?;
    let mut driver = TestDriver::new(&app)?;
    let started = Instant::now();
    for i in 0..keys {
        let (key, value) = purchase(i, keys);
        driver.push_bytes(&purchases, Some(key.as_bytes()), Some(&value))?;
        if i.is_multiple_of(10_000) {
            driver.take_outputs();
        }
        progress("memory", i + 1, started);
    }
    drop(driver);
    println!(
        "memory: {keys} keys in {:.1} s, peak RSS {:.1} MB",
        started.elapsed().as_secs_f64(),
        peak_rss_mb()?
    );
    Ok(())
}

/// This process's peak resident set size, in MB: the high-water mark of
/// its own memory (`VmHWM` in /proc/self/status). Not `getrusage`: Linux
/// carries the parent's peak over into the `ru_maxrss` of a spawned child,
/// so after the in-process workloads the child reported the bench's own
/// 176 MB.
fn peak_rss_mb() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kilobytes = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no VmHWM line in /proc/self/status"))?;
    Ok(kilobytes / 1024.0)
}
