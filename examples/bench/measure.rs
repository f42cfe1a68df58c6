//! What a workload run measured, and how: wall clock, CPU time of this
//! process or of a child process, and the child's own summary line.

use std::collections::BTreeMap;
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

/// Measures an in-process run from its first message: clone it into the
/// pipeline, call [`tick`](Self::tick) for each message, then
/// [`measure`](Self::measure) after the run.
#[derive(Clone, Default)]
pub struct FirstMessageClock {
    /// When the first message came, and the process's CPU seconds then.
    first: std::sync::Arc<std::sync::OnceLock<(Instant, f64)>>,
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FirstMessageClock {
    /// Counts a message; returns how many were seen, this one included.
    pub fn tick(&self) -> u64 {
        self.first
            .get_or_init(|| (Instant::now(), cpu_seconds(Who::Process)));
        self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// The messages seen, the time and the process's CPU since the first.
    pub fn measure(&self) -> anyhow::Result<Measure> {
        let (started, cpu) = *self
            .first
            .get()
            .ok_or_else(|| anyhow::anyhow!("nothing consumed"))?;
        Ok(Measure {
            messages: self.seen.load(std::sync::atomic::Ordering::Relaxed),
            seconds: started.elapsed().as_secs_f64(),
            cpu: Some(cpu_seconds(Who::Process) - cpu),
        })
    }
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
    // The child's threads, as last seen alive (every 100 ms).
    let mut threads = ThreadCpu::new();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        // Threads that end before the child keep their last reading.
        threads.extend(child_thread_cpu(child.id()));
        if started.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let cpu = cpu_seconds(Who::Children) - cpu;
    let (stdout, stderr) = (read_back(&mut stdout_file)?, read_back(&mut stderr_file)?);
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
    print_thread_cpu(prefix, (&ThreadCpu::new(), &threads), messages);
    Ok(Measure {
        messages,
        seconds,
        cpu: Some(cpu),
    })
}

/// What a child wrote to `file` (its stdout or stderr, a temporary
/// file), read from the start.
pub fn read_back(file: &mut File) -> anyhow::Result<String> {
    let mut text = String::new();
    file.rewind()?;
    file.read_to_string(&mut text)?;
    Ok(text)
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

/// Per thread of this process (by thread id): its name and the user +
/// system CPU seconds it has used, from `/proc/self/task/*/stat`.
pub type ThreadCpu = BTreeMap<u64, (String, f64)>;

/// A snapshot of every live thread's CPU time in this process (empty off
/// Linux).
pub fn thread_cpu() -> ThreadCpu {
    threads_of("/proc/self/task")
}

/// The same for the process `pid`.
pub fn child_thread_cpu(pid: u32) -> ThreadCpu {
    threads_of(&format!("/proc/{pid}/task"))
}

fn threads_of(tasks: &str) -> ThreadCpu {
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut threads = ThreadCpu::new();
    let Ok(tasks) = std::fs::read_dir(tasks) else {
        return threads;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `tid (name) state ppid ...`: the name may hold spaces and parens.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime: fields 14 and 15 of stat(5), 12th and 13th here.
        let ticks_of = |index: usize| fields.get(index).and_then(|t| t.parse::<f64>().ok());
        let (Some(user), Some(system)) = (ticks_of(11), ticks_of(12)) else {
            continue;
        };
        if let Ok(tid) = task.file_name().to_string_lossy().parse() {
            let name = stat[open + 1..close].to_string();
            threads.insert(tid, (name, (user + system) / ticks));
        }
    }
    threads
}

/// CPU seconds used between two snapshots, summed per thread name (threads
/// that ended in between are missing), most first.
pub fn cpu_by_thread_name(before: &ThreadCpu, after: &ThreadCpu) -> Vec<(String, f64)> {
    let mut by_name: BTreeMap<&str, f64> = BTreeMap::new();
    for (tid, (name, cpu)) in after {
        let earlier = before.get(tid).map_or(0.0, |(_, cpu)| *cpu);
        *by_name.entry(name).or_default() += cpu - earlier;
    }
    let mut sorted: Vec<(String, f64)> = by_name
        .into_iter()
        .map(|(name, cpu)| (name.to_string(), cpu))
        .collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    sorted
}

/// Prints the CPU each thread used between two snapshots, per message
/// (the six busiest): where a workload's CPU goes.
pub fn print_thread_cpu(who: &str, (before, after): (&ThreadCpu, &ThreadCpu), messages: u64) {
    let threads: Vec<String> = cpu_by_thread_name(before, after)
        .iter()
        .take(6)
        .map(|(name, cpu)| format!("{name} {:.2}", cpu * 1e6 / messages as f64))
        .collect();
    eprintln!("{who} CPU µs/message by thread: {}", threads.join(", "));
}
