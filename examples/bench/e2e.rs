//! Workloads 1 and 2 end to end against a broker, beside Quix Streams on
//! the same input (their plain rdkafka ceilings are in `ceiling.rs`).

use std::process::Command;
use std::time::{Duration, Instant};

use kstreams::{Application, OffsetReset, Topic};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::brokers::Broker;
use crate::driver::{is_big, summary};
use crate::measure::{run_child, sibling_example, FirstMessageClock, Measure};
use crate::{fresh, progress, purchase, Flags};

/// Input records a partition of the dev broker holds at most: librdkafka's
/// mock cluster keeps only the newest 5 MB of a partition and drops older
/// record batches without a word, which would leave every workload waiting
/// for purchases that are gone. A purchase takes about 90 bytes, a
/// `group_by`'s repartition record (same partitions) about 115, so 20 000
/// of either stay under half the 5 MB.
const MOCK_RECORDS_PER_PARTITION: u64 = 20_000;

/// The input's partitions on `broker`: two, or on the dev broker as many as
/// keep `messages` purchases under its per-partition limit.
pub fn input_partitions(broker: &Broker, messages: u64) -> i32 {
    match broker {
        Broker::Dev => {
            let needed = messages.div_ceil(MOCK_RECORDS_PER_PARTITION);
            2.max(i32::try_from(needed).unwrap_or(i32::MAX))
        }
        _ => 2,
    }
}

/// Produces the purchases into a fresh topic with `partitions` partitions.
pub fn produce_input(broker: &str, partitions: i32, flags: &Flags) -> anyhow::Result<String> {
    let name = fresh("purchases");
    // The first purchase goes through kstreams, which creates the topic;
    // the rest through a plain rdkafka producer.
    // Explicit configs: tansu reports only configs set at creation, and
    // Quix Streams needs `retention.ms` (as in produce_purchases.py).
    let topic = Topic::<Value>::new(&name)
        .partitions(partitions)
        .config("retention.ms", "-1")
        .config("retention.bytes", "-1")
        .config("cleanup.policy", "delete");
    create_with_first_purchase(broker, &topic, flags.keys)?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let started = Instant::now();
    for i in 1..flags.messages {
        let (key, value) = purchase(i, flags.keys);
        send(&producer, BaseRecord::to(&name).key(&key).payload(&value))?;
        progress("produce", i + 1, started);
    }
    producer.flush(Duration::from_secs(300))?;
    eprintln!(
        "produced {} purchases to {name} in {:.1} s",
        flags.messages,
        started.elapsed().as_secs_f64()
    );
    Ok(name)
}

/// Creates `topic` through kstreams (with its partitions and configs) by
/// producing purchase 0 of `keys` keys to it.
pub fn create_with_first_purchase(
    broker: &str,
    topic: &Topic<Value>,
    keys: u64,
) -> anyhow::Result<()> {
    let (key, value) = purchase(0, keys);
    create_with_record(
        broker,
        topic,
        Some(&key.into_bytes()),
        &serde_json::from_slice(&value)?,
    )
}

/// Creates `topic` through kstreams (with its partitions and configs) by
/// producing one record to it; nothing of kstreams stays alive afterwards.
pub fn create_with_record(
    broker: &str,
    topic: &Topic<Value>,
    key: Option<&Vec<u8>>,
    value: &Value,
) -> anyhow::Result<()> {
    let app = Application::builder().broker_address(broker).build()?;
    let producer = app.producer()?;
    producer.send(topic, key, value)?;
    producer.flush()?;
    Ok(())
}

/// Sends `record`, waiting while the producer's queue is full.
pub fn send<K, P>(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, K, P>,
) -> anyhow::Result<()>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), again)) => {
                record = again;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(error.into()),
        }
    }
}

/// kstreams, stateless: JSON filter + apply + to_topic, end to end (its
/// baseline: `ceiling::filter`, the same closures in a plain loop).
pub fn e2e_stateless(broker: &str, input: &str, flags: &Flags) -> anyhow::Result<Measure> {
    let app = Application::builder()
        .broker_address(broker)
        .consumer_group(fresh("stateless"))
        .auto_offset_reset(OffsetReset::Earliest)
        .handle_signals(false)
        // A lone member: tansu holds it for half the session timeout.
        .consumer_config("session.timeout.ms", "6000")
        .build()?;
    let purchases = app.topic::<Value>(input);
    let big = app.topic::<Value>(fresh("stateless-out"));
    let clock = FirstMessageClock::default();
    let (ticks, stop, limit) = (clock.clone(), app.stop_handle(), flags.messages);
    app.dataframe(&purchases)
        .update(move |_: &mut Value| {
            if ticks.tick() == limit {
                stop.stop();
            }
        })
        .filter(is_big)
        .apply(summary)
        .to_topic(&big);
    app.run()?;
    clock.measure()
}

/// kstreams, stateful: the `count_per_key` example as a child process; CPU
/// is the whole process's, start-up included.
pub fn e2e_stateful(broker: &str, input: &str, flags: &Flags) -> anyhow::Result<Measure> {
    example_child("count_per_key", "counts", broker, input, &[], flags)
}

/// kstreams, re-keyed: `count_per_key --group-by user` as a child
/// process (through its repartition topic, then counting per user).
pub fn e2e_group_by(broker: &str, input: &str, flags: &Flags) -> anyhow::Result<Measure> {
    let args = ["--group-by", "user"];
    example_child("count_per_key", "grouped", broker, input, &args, flags)
}

/// kstreams, windows: the `window_totals` example (5 s tumbling windows,
/// 1 s grace, count and sum, closed windows only) as a child process.
pub fn e2e_window(broker: &str, input: &str, flags: &Flags) -> anyhow::Result<Measure> {
    example_child("window_totals", "windows", broker, input, &[], flags)
}

/// Runs `example` (with `args` besides the shared flags) on `input` until
/// `--messages`, into a fresh output and group named after `output`.
fn example_child(
    example: &str,
    output: &str,
    broker: &str,
    input: &str,
    args: &[&str],
    flags: &Flags,
) -> anyhow::Result<Measure> {
    let state_dir = tempfile::tempdir()?;
    let mut command = Command::new(sibling_example(example)?);
    command
        .args(["--broker", broker, "--input", input])
        .args(["--output", &fresh(output), "--group", &fresh(output)])
        .arg("--state-dir")
        .arg(state_dir.path())
        .args(["--count", &flags.messages.to_string()])
        .args(["--session-timeout-ms", "6000"])
        .args(args)
        .env("RUST_LOG", "warn");
    run_child(command, &format!("{example}:"), child_timeout(flags))
}

/// How long a processing child may take: start-up and group join, then at
/// least 1 000 msg/s (Quix Streams does about 2 000 here).
fn child_timeout(flags: &Flags) -> Duration {
    Duration::from_secs(120 + flags.messages / 1_000)
}

/// Quix Streams' window twin, `quix_window.py`, on the same input. Its
/// `--count` counts outputs (Quix Streams' `app.run(count=..)`): it is
/// given the number of windows that close, which it reaches at the last
/// input message, and its CPU is spread over the input messages.
pub fn quix_window(
    python: &str,
    broker: &str,
    input: &str,
    flags: &Flags,
) -> anyhow::Result<Measure> {
    let closed = closed_windows(flags.messages, flags.keys);
    anyhow::ensure!(
        closed > 0,
        "{} purchases of {} keys close no window: the Quix Streams window twin would never \
         end (give more --messages)",
        flags.messages,
        flags.keys
    );
    let twin = Flags {
        messages: closed,
        ..flags.clone()
    };
    let mut measure = quix(python, "quix_window.py", broker, input, &[], &twin)?;
    measure.messages = flags.messages;
    Ok(measure)
}

/// How many windows of `window_totals` (5 s tumbling, 1 s grace, closing
/// per key) the first `messages` purchases close.
fn closed_windows(messages: u64, keys: u64) -> u64 {
    const WINDOW: u64 = 5_000;
    const GRACE: u64 = 1_000;
    // Per key: its latest event time and its open windows' starts.
    let mut open: std::collections::HashMap<String, (u64, Vec<u64>)> = Default::default();
    let mut closed = 0;
    for i in 0..messages {
        let (key, value) = crate::purchase(i, keys);
        let ts: u64 = serde_json::from_slice::<Value>(&value)
            .ok()
            .and_then(|purchase| purchase["ts"].as_u64())
            .unwrap_or_default();
        let (time, starts) = open.entry(key).or_default();
        *time = (*time).max(ts);
        let start = ts - ts % WINDOW;
        if start + WINDOW + GRACE > *time && !starts.contains(&start) {
            starts.push(start);
        }
        let before = starts.len();
        starts.retain(|start| start + WINDOW + GRACE > *time);
        closed += (before - starts.len()) as u64;
    }
    closed
}

/// Quix Streams on the same input: `script` of `../shared/bench`
/// (`quix_count_per_key.py`, `quix_window.py`).
pub fn quix(
    python: &str,
    script: &str,
    broker: &str,
    input: &str,
    args: &[&str],
    flags: &Flags,
) -> anyhow::Result<Measure> {
    let state_dir = tempfile::tempdir()?;
    // Checked before the runs (`quix::python`), which skips Quix Streams
    // when the script is missing.
    let script = crate::quix::shared_script(script);
    anyhow::ensure!(
        script.exists(),
        "{} is missing: the Quix Streams twins of the workloads live in ../shared/bench",
        script.display()
    );
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--broker", broker, "--input", input])
        .args(["--output", &fresh("quix-out"), "--group", &fresh("quix")])
        .arg("--state-dir")
        .arg(state_dir.path())
        .args(["--count", &flags.messages.to_string()])
        .args(args);
    run_child(command, "quix:", child_timeout(flags))
}
