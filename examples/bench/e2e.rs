//! Workloads 1 and 2 end to end against a broker, beside the plain rdkafka
//! ceiling and Quix Streams on the same input.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kstreams::{Application, OffsetReset, Topic};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::measure::{cpu_seconds, run_child, sibling_example, FirstMessageClock, Measure, Who};
use crate::{fresh, progress, purchase, Flags};

/// Produces the purchases into a fresh topic with two partitions.
pub fn produce_input(broker: &str, flags: &Flags) -> anyhow::Result<String> {
    let name = fresh("purchases");
    // The first purchase goes through kstreams, which creates the topic
    // with two partitions; the rest through a plain rdkafka producer.
    let app = Application::builder().broker_address(broker).build()?;
    // Explicit configs: tansu reports only configs set at creation, and
    // Quix Streams needs `retention.ms` (as in produce_purchases.py).
    let topic = Topic::<Value>::new(&name)
        .partitions(2)
        .config("retention.ms", "-1")
        .config("retention.bytes", "-1")
        .config("cleanup.policy", "delete");
    let (key, value) = purchase(0, flags.keys);
    let kstreams_producer = app.producer()?;
    kstreams_producer.send(
        &topic,
        Some(&key.into_bytes()),
        &serde_json::from_slice(&value)?,
    )?;
    kstreams_producer.flush()?;
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

/// The ceiling: a plain rdkafka loop that consumes the input and produces
/// every payload to an output topic, with no state and no framework.
pub fn ceiling(broker: &str, input: &str, flags: &Flags) -> anyhow::Result<Measure> {
    let output = fresh("ceiling-out");
    // The output topic exists before the clock starts (librdkafka would
    // wait for it to appear otherwise): created with a marker record.
    let marker = Topic::<Value>::new(&output).partitions(2);
    let app = Application::builder().broker_address(broker).build()?;
    let kstreams_producer = app.producer()?;
    kstreams_producer.send(&marker, None, &json!({"marker": true}))?;
    kstreams_producer.flush()?;
    // Assigned, not subscribed: no group join to wait for.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", fresh("ceiling"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..2 {
        assignment.add_partition_offset(input, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "5")
        .create()?;
    let mut done = 0;
    let mut first = None;
    let mut cpu = 0.0;
    let mut last_message = Instant::now();
    while done < flags.messages {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            anyhow::ensure!(
                last_message.elapsed() < Duration::from_secs(60),
                "ceiling: no message for 60 s after {done}"
            );
            continue;
        };
        last_message = Instant::now();
        let message = message?;
        if first.is_none() {
            first = Some(Instant::now());
            cpu = cpu_seconds(Who::Process);
        }
        let mut record = BaseRecord::to(&output).payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        send(&producer, record)?;
        done += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    let first = first.unwrap_or_else(Instant::now);
    Ok(Measure {
        messages: done,
        seconds: first.elapsed().as_secs_f64(),
        cpu: Some(cpu_seconds(Who::Process) - cpu),
    })
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

/// kstreams, stateless: JSON filter + apply + to_topic, end to end.
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
        .filter(|p: &Value| p["amount"].as_u64().unwrap_or(0) >= 50)
        .apply(|p: Value| json!({"user": p["user"], "amount": p["amount"], "big": true}))
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
    let twin = Flags {
        messages: closed_windows(flags.messages, flags.keys),
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
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/bench")
        .join(script);
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
