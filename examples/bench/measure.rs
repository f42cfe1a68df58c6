//! What a workload run measured, and how: wall clock, CPU time of this
//! process or of a child process, and the child's own summary line.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// One measured run of a workload.
#[derive(Clone, Copy)]
pub struct Measure {
    pub messages: u64,
    pub seconds: f64,
    /// User + system CPU seconds of the processing process.
    pub cpu: Option<f64>,
}

impl Measure {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    pub fn cpu_per_message_us(&self) -> Option<f64> {
        self.cpu.map(|cpu| cpu * 1e6 / self.messages as f64)
    }
}

/// Runs a processing child to its end, or kills it after `timeout` (a
/// stalled broker must not hang the suite); reads its summary line
/// (`<prefix> N messages in S s = R msg/s`) and its CPU time.
pub fn run_child(mut command: Command, prefix: &str, timeout: Duration) -> anyhow::Result<Measure> {
    // Files, not pipes: nobody has to drain them while the child runs.
    let (mut stdout_file, mut stderr_file) = (tempfile::tempfile()?, tempfile::tempfile()?);
    command
        .stdout(Stdio::from(stdout_file.try_clone()?))
        .stderr(Stdio::from(stderr_file.try_clone()?));
    let cpu = cpu_seconds(Who::Children);
    let mut child = command.spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let cpu = cpu_seconds(Who::Children) - cpu;
    let read = |file: &mut File| -> anyhow::Result<String> {
        let mut text = String::new();
        file.rewind()?;
        file.read_to_string(&mut text)?;
        Ok(text)
    };
    let (stdout, stderr) = (read(&mut stdout_file)?, read(&mut stderr_file)?);
    let Some(status) = status else {
        anyhow::bail!("{command:?} did not finish within {timeout:?}:\n{stdout}\n{stderr}");
    };
    anyhow::ensure!(
        status.success(),
        "{command:?} failed with {status}:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .ok_or_else(|| anyhow::anyhow!("no summary line in:\n{stdout}"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let messages: u64 = words.get(1).unwrap_or(&"").parse()?;
    let seconds: f64 = words.get(4).unwrap_or(&"").parse()?;
    // A child stopped before its first message reports no time at all.
    anyhow::ensure!(seconds > 0.0, "{command:?} processed nothing: {line}");
    Ok(Measure {
        messages,
        seconds,
        cpu: Some(cpu),
    })
}

/// An example built beside this one (same profile).
pub fn sibling_example(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{path:?} is missing: build it with `cargo build --release --example {name}`"
    );
    Ok(path)
}

pub enum Who {
    Process,
    Children,
}

/// User + system CPU seconds of this process, or of its reaped children.
pub fn cpu_seconds(who: Who) -> f64 {
    let who = match who {
        Who::Process => libc::RUSAGE_SELF,
        Who::Children => libc::RUSAGE_CHILDREN,
    };
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
