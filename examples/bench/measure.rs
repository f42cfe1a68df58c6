//! What a workload run measured, and how: wall clock, CPU time of this
//! process or of a child process, and the child's own summary line.

use std::path::PathBuf;
use std::process::Command;

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

/// Runs a processing child to its end; reads its summary line
/// (`<prefix> N messages in S s = R msg/s`) and its CPU time.
pub fn run_child(mut command: Command, prefix: &str) -> anyhow::Result<Measure> {
    let cpu = cpu_seconds(Who::Children);
    let output = command.output()?;
    let cpu = cpu_seconds(Who::Children) - cpu;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
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
