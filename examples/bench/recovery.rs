//! Workload 3, recovery: the state of `keys` message keys (two state keys
//! each, `count` and `total`, as the count pipeline keeps them) is written
//! straight into a changelog topic, and a fresh instance with an empty
//! `state_dir` rebuilds it before it processes one new message per
//! partition. Baselines: a plain consume of the same changelog (the
//! fastest rdkafka offers: batch consume with the reader's settings, see
//! `plain_consume.rs`), and Quix Streams recovering the same state from
//! its own changelog (`benches/quix_seed_changelog.py` writes it as Quix
//! would).
//!
//! Per input partition p the input holds a "history" message at offset 0,
//! already counted in the seeded state, and a new one at offset 1; the
//! group's committed offset is 1. So every seeded record belongs to
//! committed input and is applied, and the new message must come out with
//! count 2: the bench checks it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kstreams::{Application, OffsetReset, Topic, Until};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::brokers::Broker;
use crate::count::{count_and_sum, Purchase, Totals};
use crate::e2e::send;
use crate::measure::{
    cpu_seconds, print_thread_cpu, read_back, thread_cpu, Measure, ThreadCpu, Who,
};
use crate::{fresh, plain_consume, quix};

/// Partitions of input and changelog on a broker, as in the other
/// workloads; on the embedded broker more, because librdkafka's mock
/// cluster keeps only the last 5 MB of a partition (and drops older
/// record batches without a word).
const BROKER_PARTITIONS: i32 = 2;
const EMBEDDED_PARTITIONS: i32 = 16;
/// Changelog records a partition of the dev broker (the same mock
/// cluster) holds at most in this workload: Quix Streams' records carry
/// two headers and take about 136 bytes each (measured: 38 500 of them
/// fill the 5 MB), so 25 000 leave a third to spare. kstreams' own
/// records are smaller (about 55 bytes); both get the same partitions.
const MOCK_RECORDS_PER_PARTITION: u64 = 25_000;

/// The partitions of input and changelog for `keys` keys on `broker`.
pub fn partitions(broker: &Broker, keys: u64) -> i32 {
    match broker {
        Broker::Embedded => EMBEDDED_PARTITIONS,
        Broker::Dev => {
            let needed = (keys * 2).div_ceil(MOCK_RECORDS_PER_PARTITION);
            BROKER_PARTITIONS.max(i32::try_from(needed).unwrap_or(i32::MAX))
        }
        Broker::Tansu { .. } | Broker::Given { .. } => BROKER_PARTITIONS,
    }
}

/// A kstreams changelog value (src/state/changelog.rs): the format
/// version (1), the stamp (the input offset the update belongs to and the
/// committed offset when its checkpoint began), then the state value.
fn changelog_value(input_offset: i64, committed_offset: i64, value: &str) -> Vec<u8> {
    let mut bytes = vec![1];
    bytes.extend_from_slice(&input_offset.to_be_bytes());
    bytes.extend_from_slice(&committed_offset.to_be_bytes());
    bytes.extend_from_slice(value.as_bytes());
    bytes
}

/// The message key of key number `i`, and its input partition.
fn key(i: u64, partitions: i32) -> (String, i32) {
    (format!("user-{i}"), (i % partitions as u64) as i32)
}

/// The seeded total of key number `i`.
fn total(i: u64) -> u64 {
    i % 100 + 1
}

/// A kstreams store key: the message key, length-delimited, then the state
/// key (src/state/key.rs).
fn store_key(message_key: &str, state_key: &str) -> Vec<u8> {
    let mut key = (message_key.len() as u32).to_be_bytes().to_vec();
    key.extend_from_slice(message_key.as_bytes());
    key.extend_from_slice(state_key.as_bytes());
    key
}

/// Creates the input with a history and a new message per partition, and
/// commits the history for the app's group.
fn seed_input(app: &Application, input: &str, partitions: i32) -> anyhow::Result<()> {
    let topic = Topic::<Value>::new(input)
        .partitions(partitions)
        .config("retention.ms", "-1")
        .config("retention.bytes", "-1")
        .config("cleanup.policy", "delete");
    app.producer()?.ensure_topic(&topic)?;
    let plain = plain_producer(app.bootstrap_servers())?;
    for partition in 0..partitions {
        let (key, _) = key(partition as u64, partitions);
        for _ in 0..2 {
            let record = BaseRecord::to(input)
                .partition(partition)
                .key(&key)
                .payload(r#"{"amount": 1}"#);
            send(&plain, record)?;
        }
    }
    plain.flush(Duration::from_secs(60))?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", app.bootstrap_servers())
        .set("group.id", app.consumer_group())
        .set("enable.auto.commit", "false")
        .create()?;
    let mut offsets = TopicPartitionList::new();
    for partition in 0..partitions {
        offsets.add_partition_offset(input, partition, Offset::Offset(1))?;
    }
    consumer.commit(&offsets, CommitMode::Sync)?;
    Ok(())
}

fn plain_producer(broker: &str) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

/// Writes the changelog of the default store of the app's group on `input`.
fn seed_changelog(
    app: &Application,
    input: &str,
    keys: u64,
    partitions: i32,
) -> anyhow::Result<String> {
    let name = format!("changelog__{}--{input}--default", app.consumer_group());
    let changelog = Topic::<Value>::new(&name)
        .partitions(partitions)
        .config("cleanup.policy", "compact");
    app.producer()?.ensure_topic(&changelog)?;
    let producer = plain_producer(app.bootstrap_servers())?;
    let started = Instant::now();
    for i in 0..keys {
        let (message_key, partition) = key(i, partitions);
        for (state_key, value) in [("count", 1), ("total", total(i))] {
            let key = store_key(&message_key, state_key);
            let value = changelog_value(0, 0, &value.to_string());
            let record = BaseRecord::to(&name)
                .partition(partition)
                .key(&key)
                .payload(&value);
            send(&producer, record)?;
        }
    }
    producer.flush(Duration::from_secs(300))?;
    eprintln!(
        "seeded {} changelog records in {:.1} s",
        keys * 2,
        started.elapsed().as_secs_f64()
    );
    Ok(name)
}

/// Timestamps of kstreams' recovery log lines, caught by [`RecoveryLog`].
#[derive(Default)]
struct RecoveryTimes {
    /// When the first recovery started, and the process's CPU seconds then.
    first_start: Option<(Instant, f64)>,
    last_end: Option<(Instant, f64)>,
    ended: usize,
    /// Each thread's CPU time at the first start and at the last end.
    threads: (ThreadCpu, ThreadCpu),
}

/// A logger that notes when recoveries start and end, and prints warnings.
struct RecoveryLog;

fn recovery_times() -> &'static Mutex<RecoveryTimes> {
    static TIMES: OnceLock<Mutex<RecoveryTimes>> = OnceLock::new();
    TIMES.get_or_init(Mutex::default)
}

impl log::Log for RecoveryLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() <= log::Level::Warn {
            eprintln!("{} {}: {}", record.level(), record.target(), record.args());
        }
        if !record.target().starts_with("kstreams") {
            return;
        }
        let line = record.args().to_string();
        let mut times = recovery_times().lock().unwrap_or_else(|e| e.into_inner());
        let now = || (Instant::now(), cpu_seconds(Who::Process));
        if line.contains("needs recovery") && times.first_start.is_none() {
            times.first_start = Some(now());
            times.threads.0 = thread_cpu();
        } else if line.contains("is up to date") {
            times.last_end = Some(now());
            times.ended += 1;
            times.threads.1 = thread_cpu();
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once per process).
pub fn install_logger() {
    static LOGGER: RecoveryLog = RecoveryLog;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// An app of a fresh group, on `broker` or else the embedded broker, with
/// an empty `state_dir`.
fn recovering_app(broker: Option<&str>, state_dir: &Path) -> anyhow::Result<Application> {
    let builder = Application::builder()
        .consumer_group(fresh("recovery"))
        .auto_offset_reset(OffsetReset::Earliest)
        .state_dir(state_dir)
        .handle_signals(false)
        // tansu stalls for seconds under a big fetch: a long session rides
        // it out (and holds the first join for half of it, before the clock).
        .consumer_config("session.timeout.ms", "15000")
        .consumer_config("heartbeat.interval.ms", "1000");
    let builder = match broker {
        Some(broker) => builder.broker_address(broker),
        None => builder.use_embedded_broker(),
    };
    Ok(builder.build()?)
}

/// kstreams rebuilds the state into an empty `state_dir`, then processes
/// the new messages; checks that they count on top of the seeded state.
fn kstreams_recovers(
    app: &Application,
    input: &str,
    records: u64,
    partitions: i32,
) -> anyhow::Result<Measure> {
    *recovery_times().lock().unwrap_or_else(|e| e.into_inner()) = RecoveryTimes::default();
    let purchases = app.topic::<Purchase>(input);
    let totals = app.topic::<Totals>(fresh("recovery-out"));
    app.dataframe(&purchases)
        .apply_stateful(count_and_sum)
        .to_topic(&totals);
    let outputs =
        app.run_until(Until::messages(partitions as u64).or_timeout(Duration::from_secs(600)))?;
    for row in outputs.values(&totals)? {
        let i: u64 = row.key.trim_start_matches("user-").parse()?;
        let expected = json!({"count": 2, "total": total(i) as f64 + 1.0});
        let got = json!({"count": row.count, "total": row.total});
        anyhow::ensure!(
            got == expected,
            "{}: got {got}, expected {expected}",
            row.key
        );
    }
    let times = recovery_times().lock().unwrap_or_else(|e| e.into_inner());
    let (Some(start), Some(end)) = (times.first_start, times.last_end) else {
        anyhow::bail!("kstreams did not log its recovery");
    };
    anyhow::ensure!(
        times.ended == partitions as usize,
        "{} of {partitions} partitions recovered",
        times.ended
    );
    print_thread_cpu("kstreams:", (&times.threads.0, &times.threads.1), records);
    Ok(Measure {
        messages: records,
        seconds: end.0.duration_since(start.0).as_secs_f64(),
        // The process's CPU, also the embedded broker's and the input
        // consumer's: as in the plain consume.
        cpu: Some(end.1 - start.1),
    })
}

/// The three measures of one recovery run: plain consume, kstreams, and
/// (given a Python with quixstreams) Quix Streams.
pub struct Recovery {
    pub plain: Measure,
    pub kstreams: Measure,
    pub quix: Option<Measure>,
}

/// Seeds `keys` message keys in `partitions` partitions on `broker` (else
/// the embedded broker) and measures their recovery. The plain consume
/// goes first in odd runs and second in even ones: whichever reads the
/// changelog second may find it in the broker's caches. Quix Streams
/// recovers last, from a changelog of its own (its records differ).
pub fn run(
    broker: Option<&str>,
    partitions: i32,
    keys: u64,
    quix: Option<&str>,
    run: usize,
) -> anyhow::Result<Recovery> {
    let records = keys * 2;
    let state_dir = tempfile::tempdir()?;
    let app = recovering_app(broker, state_dir.path())?;
    let input = fresh("recovery-in");
    seed_input(&app, &input, partitions)?;
    let changelog = seed_changelog(&app, &input, keys, partitions)?;
    let plain = || plain_consume::run(app.bootstrap_servers(), &changelog, records, partitions);
    let (plain, kstreams) = if run % 2 == 1 {
        let plain = plain()?;
        (plain, kstreams_recovers(&app, &input, records, partitions)?)
    } else {
        let kstreams = kstreams_recovers(&app, &input, records, partitions)?;
        (plain()?, kstreams)
    };
    let quix = match (quix, broker) {
        (Some(python), Some(broker)) => Some(quix_recovers(python, broker, keys, partitions)?),
        _ => None,
    };
    Ok(Recovery {
        plain,
        kstreams,
        quix,
    })
}

/// Quix Streams recovers the same state from a changelog written by
/// `benches/quix_seed_changelog.py`; timed from its "Beginning recovery
/// check" log line to "Recovery process complete".
fn quix_recovers(
    python: &str,
    broker: &str,
    keys: u64,
    partitions: i32,
) -> anyhow::Result<Measure> {
    let (group, input) = (fresh("quix-recovery"), fresh("quix-recovery-in"));
    let seeded = Command::new(python)
        .arg(quix::seed_script())
        .args(["--broker", broker, "--group", &group, "--input", &input])
        .args(["--partitions", &partitions.to_string()])
        .args(["--keys", &keys.to_string()])
        // Its summary line goes with the progress lines, not the tables.
        .stdout(Stdio::from(std::io::stderr()))
        .status()?;
    anyhow::ensure!(seeded.success(), "seeding the Quix changelog failed");
    let changelog = format!("changelog__{group}--{input}--default");
    ensure_whole(broker, &changelog, partitions)?;
    let state_dir = tempfile::tempdir()?;
    let mut command = Command::new(python);
    command
        .arg(quix::shared_script("quix_count_per_key.py"))
        .args(["--broker", broker, "--group", &group, "--input", &input])
        .args(["--output", &fresh("quix-recovery-out")])
        .arg("--state-dir")
        .arg(state_dir.path())
        .args(["--count", &partitions.to_string()])
        .env("QUIXSTREAMS_STATE_LOG_LEVEL", "INFO");
    // At least 2 000 records/s (Quix Streams recovers a few tens of
    // thousands a second), after start-up and group join.
    let timeout = Duration::from_secs(300 + keys * 2 / 2_000);
    let (cpu, started) = (cpu_seconds(Who::Children), Instant::now());
    let stderr = stderr_within(command, timeout)?;
    let (cpu, lived) = (cpu_seconds(Who::Children) - cpu, started.elapsed());
    let at = |needle: &str| {
        stderr
            .lines()
            .find(|line| line.contains(needle))
            .and_then(quix_timestamp)
            .ok_or_else(|| anyhow::anyhow!("no {needle:?} line in Quix's log:\n{stderr}"))
    };
    let seconds = at("Recovery process complete")? - at("Beginning recovery check")?;
    // Its whole life's CPU (start-up and group join included): whether
    // Quix Streams waited for the broker or for its own CPU.
    eprintln!(
        "quix: recovery {seconds:.2} s; the process lived {:.1} s on {cpu:.1} s of CPU",
        lived.as_secs_f64()
    );
    Ok(Measure {
        messages: keys * 2,
        seconds,
        cpu: None,
    })
}

/// Checks that every partition of `topic` still holds its first record:
/// librdkafka's mock cluster drops a partition's oldest records beyond
/// 5 MB, and a recovery of less than was seeded would be no measure.
fn ensure_whole(broker: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", fresh("watermarks"))
        .create()?;
    for partition in 0..partitions {
        let (low, _) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(30))?;
        anyhow::ensure!(
            low == 0,
            "{topic} [{partition}] starts at offset {low}: the broker dropped records \
             (librdkafka's mock cluster keeps 5 MB a partition)"
        );
    }
    Ok(())
}

/// Runs `command` to its end, or kills it after `timeout`; its stderr.
fn stderr_within(mut command: Command, timeout: Duration) -> anyhow::Result<String> {
    // A file, not a pipe: nobody has to drain it while the child runs.
    let mut stderr_file = tempfile::tempfile()?;
    command
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr_file.try_clone()?));
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
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = read_back(&mut stderr_file)?;
    match status {
        None => anyhow::bail!("{command:?} did not finish within {timeout:?}:\n{stderr}"),
        Some(status) if !status.success() => {
            anyhow::bail!("Quix failed with {status}:\n{stderr}")
        }
        Some(_) => Ok(stderr),
    }
}

/// Seconds since midnight of a Quix log line `[YYYY-mm-dd HH:MM:SS,mmm] ...`.
fn quix_timestamp(line: &str) -> Option<f64> {
    let time = line.get(12..24)?;
    let (hms, millis) = time.split_once(',')?;
    let mut parts = hms.split(':').map(str::parse::<f64>);
    let (h, m, s) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s + millis.parse::<f64>().ok()? / 1000.0)
}
