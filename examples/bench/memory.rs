//! Memory of a real application with many keys of state: the
//! `count_per_key` example as a child process (one RocksDB per partition,
//! librdkafka's consumer and producer), consuming one purchase for each of
//! `--memory-keys` keys from an input topic of `--memory-partitions`
//! partitions until the last one, final checkpoint included. The broker
//! is the embedded broker on a TCP port (the `dev_broker` example), in a
//! child process of its own, so that the messages it holds are not
//! counted. What is measured is the kernel's high-water mark of the
//! `count_per_key` process's resident memory (`VmHWM`), read every 20 ms
//! until it exits.
//!
//! librdkafka's mock cluster keeps only the last 5 MiB of each partition
//! (older batches are dropped, and a consumer that had not read them skips
//! them), far less than 10 million purchases. So the input is produced
//! while `count_per_key` runs, LZ4-compressed (the mock keeps batches as
//! they come), at most [`AHEAD_PER_PARTITION`] messages a partition ahead
//! of what it has processed (the messages in its output topic): a backlog
//! larger than librdkafka's consumer prefetches (`queued.min.messages`,
//! 100 000 messages), so that its queue fills as on a real broker.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kstreams::Topic;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::dev_broker::DevBroker;
use crate::e2e::{create_with_first_purchase, send};
use crate::measure::{cpu_seconds, read_back, sibling_example, Who};
use crate::{fresh, purchase};

/// How many messages a partition of the input may be ahead of what
/// `count_per_key` processed: 32 000 purchases of about 90 bytes are 2.9
/// MB (less once compressed), within the 5 MiB a partition of the mock
/// cluster keeps, with room to spare: a consumer does not read its
/// partitions evenly.
const AHEAD_PER_PARTITION: u64 = 32_000;

/// What a run measured of the `count_per_key` child.
pub struct Memory {
    pub keys: u64,
    pub partitions: i32,
    /// Messages it processed, and in how long from the first one (its own
    /// summary line).
    pub messages: u64,
    pub seconds: f64,
    /// User + system CPU seconds of its whole life.
    pub cpu: f64,
    /// Its peak resident set size, MB.
    pub peak_rss_mb: f64,
}

impl Memory {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

/// Starts a dev broker and `count_per_key` on a fresh input topic of
/// `partitions` partitions, and feeds it one purchase for each of `keys`
/// keys.
pub fn run(keys: u64, partitions: i32) -> anyhow::Result<Memory> {
    anyhow::ensure!(
        keys > 0 && partitions > 0,
        "--memory-keys and --memory-partitions must be > 0"
    );
    let broker = DevBroker::start(partitions)?;
    let input = create_input(&broker.address, partitions, keys)?;
    let output = fresh("memory-out");
    let state_dir = tempfile::tempdir()?;
    let mut command = Command::new(sibling_example("count_per_key")?);
    command
        .args(["--broker", &broker.address, "--input", &input])
        .args(["--output", &output, "--group", &fresh("memory")])
        .arg("--state-dir")
        .arg(state_dir.path())
        .args(["--count", &keys.to_string()])
        .args(["--session-timeout-ms", "6000"])
        .env("RUST_LOG", "warn");
    let (mut stdout_file, mut stderr_file) = (tempfile::tempfile()?, tempfile::tempfile()?);
    command
        .stdout(Stdio::from(stdout_file.try_clone()?))
        .stderr(Stdio::from(stderr_file.try_clone()?));
    let mut feeder = Feeder::new(&broker.address, &input, &output, keys, partitions)?;
    let cpu = cpu_seconds(Who::Children);
    let mut child = command.spawn()?;
    let watched = watch(&mut child, &mut feeder);
    if watched.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let cpu = cpu_seconds(Who::Children) - cpu;
    let (stdout, stderr) = (read_back(&mut stdout_file)?, read_back(&mut stderr_file)?);
    let (status, peak_kb) = match watched {
        Ok(watched) => watched,
        Err(error) => anyhow::bail!("{command:?}: {error:#}\n{stdout}\n{stderr}"),
    };
    anyhow::ensure!(
        status.success(),
        "{command:?} failed with {status}:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("count_per_key:"))
        .ok_or_else(|| anyhow::anyhow!("no summary line in:\n{stdout}"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(Memory {
        keys,
        partitions,
        messages: words.get(1).unwrap_or(&"").parse()?,
        seconds: words.get(4).unwrap_or(&"").parse()?,
        cpu,
        peak_rss_mb: peak_kb as f64 / 1024.0,
    })
}

/// Feeds the input while `child` runs, and reads its peak RSS every 20 ms
/// until it exits; returns its exit status and peak RSS (kB). Fails when
/// it makes no progress for a minute (or does not start in two).
///
/// Not `ru_maxrss` (`wait4`, `getrusage`): Linux carries the parent's
/// peak into a spawned child's (the `vfork` before `exec` shares the
/// parent's memory), so a child smaller than the bench would report the
/// bench's.
fn watch(child: &mut Child, feeder: &mut Feeder) -> anyhow::Result<(ExitStatus, u64)> {
    let status_path = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let (mut peak_kb, mut reported) = (0_u64, Duration::ZERO);
    let (mut processed, mut progressed) = (0, Instant::now());
    loop {
        // Read before `try_wait`: once reaped, its status is gone.
        if let Some((rss_kb, hwm_kb)) = rss_of(Path::new(&status_path)) {
            peak_kb = peak_kb.max(hwm_kb);
            if started.elapsed() >= reported + Duration::from_secs(10) {
                reported = started.elapsed();
                eprintln!(
                    "  memory: count_per_key at {:.0} s: RSS {:.0} MB, peak {:.0} MB, \
                     {processed} of {} processed",
                    reported.as_secs_f64(),
                    rss_kb as f64 / 1024.0,
                    peak_kb as f64 / 1024.0,
                    feeder.keys
                );
            }
        }
        if let Some(status) = child.try_wait()? {
            return Ok((status, peak_kb));
        }
        let now = feeder.feed()?;
        if now > processed {
            (processed, progressed) = (now, Instant::now());
        }
        let patience = match processed {
            0 => Duration::from_secs(120),
            _ => Duration::from_secs(60),
        };
        if progressed.elapsed() > patience {
            anyhow::bail!(
                "count_per_key processed nothing for {patience:?} ({processed} of {} \
                 messages; the mock cluster drops the oldest messages of a partition beyond \
                 5 MiB: were some dropped before it read them?)",
                feeder.keys
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Produces the input, keeping ahead of what `count_per_key` processed by
/// at most [`AHEAD_PER_PARTITION`] messages a partition.
struct Feeder {
    producer: ThreadedProducer<DefaultProducerContext>,
    /// Reads the output topic's watermarks.
    watcher: BaseConsumer,
    input: String,
    output: String,
    /// The output topic's partitions, once it exists.
    output_partitions: Option<i32>,
    keys: u64,
    partitions: i32,
    produced: u64,
}

impl Feeder {
    fn new(
        broker: &str,
        input: &str,
        output: &str,
        keys: u64,
        partitions: i32,
    ) -> anyhow::Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            // Kept compressed by the mock cluster: a partition's 5 MiB
            // then hold several times more purchases.
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .create()?;
        let watcher = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("group.id", fresh("memory-watcher"))
            .create()?;
        Ok(Feeder {
            producer,
            watcher,
            input: input.to_string(),
            output: output.to_string(),
            output_partitions: None,
            keys,
            partitions,
            // Purchase 0 created the topic.
            produced: 1,
        })
    }

    /// Produces what may be produced now (purchase `i`, keyed `user-i`,
    /// to partition `i % partitions`); returns how many messages
    /// `count_per_key` has processed.
    fn feed(&mut self) -> anyhow::Result<u64> {
        let processed = self.processed()?;
        let ahead = AHEAD_PER_PARTITION * self.partitions as u64;
        let until = self.keys.min(processed + ahead);
        while self.produced < until {
            let i = self.produced;
            let (key, value) = purchase(i, self.keys);
            let partition = (i % self.partitions as u64) as i32;
            let record = BaseRecord::to(&self.input)
                .partition(partition)
                .key(&key)
                .payload(&value);
            send(&self.producer, record)?;
            self.produced += 1;
        }
        if self.produced == self.keys {
            self.producer.flush(Duration::from_secs(60))?;
        }
        Ok(processed)
    }

    /// The messages in the output topic (`count_per_key` produces one for
    /// each message it processes); 0 before it exists.
    fn processed(&mut self) -> anyhow::Result<u64> {
        const PATIENCE: Duration = Duration::from_secs(10);
        let partitions = match self.output_partitions {
            Some(partitions) => partitions,
            None => {
                let metadata = self.watcher.fetch_metadata(Some(&self.output), PATIENCE)?;
                let found = metadata
                    .topics()
                    .first()
                    .filter(|topic| topic.error().is_none())
                    .map_or(0, |topic| topic.partitions().len() as i32);
                if found == 0 {
                    return Ok(0);
                }
                *self.output_partitions.insert(found)
            }
        };
        let mut processed = 0;
        for partition in 0..partitions {
            let (_, high) = self
                .watcher
                .fetch_watermarks(&self.output, partition, PATIENCE)?;
            processed += high.max(0) as u64;
        }
        Ok(processed)
    }
}

/// Creates a fresh input topic of `partitions` partitions with purchase 0
/// in it; returns its name.
fn create_input(broker: &str, partitions: i32, keys: u64) -> anyhow::Result<String> {
    let name = fresh("memory-purchases");
    let topic = Topic::<Value>::new(&name).partitions(partitions);
    create_with_first_purchase(broker, &topic, keys)?;
    Ok(name)
}

/// `VmRSS` and `VmHWM` (kB) of a process, from its `/proc/<pid>/status`;
/// `None` once it has exited.
fn rss_of(status: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(status).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
