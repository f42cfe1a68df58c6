//! Helpers shared by the integration tests: broker address, unique names,
//! app builders, and reading topics and committed offsets straight from the
//! broker.
#![allow(dead_code)]

pub mod count_per_key;
pub mod mock;
pub mod tansu;
pub mod window_totals;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kstreams::{Application, ApplicationBuilder, OffsetReset};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The broker of the Kafka tests: `KSTREAMS_BROKER`, default 127.0.0.1:9092.
pub fn kafka_broker() -> String {
    std::env::var("KSTREAMS_BROKER")
        .ok()
        .filter(|broker| !broker.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:9092".to_string())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() % 1_000_000_000_000);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn quick(builder: ApplicationBuilder, group: &str) -> ApplicationBuilder {
    builder
        .consumer_group(group)
        .auto_offset_reset(OffsetReset::Earliest)
        .commit_interval(Duration::from_millis(500))
        .handle_signals(false)
        // tansu holds a new member for half the session timeout before its
        // first assignment: keep it short for single-instance tests.
        .consumer_config("session.timeout.ms", "6000")
        .consumer_config("heartbeat.interval.ms", "1000")
}

/// An app on the test broker with settings for fast single-instance tests.
pub fn kafka_app(group: &str) -> ApplicationBuilder {
    quick(Application::builder().broker_address(kafka_broker()), group)
}

/// The same on the embedded broker.
pub fn embedded_app(group: &str) -> ApplicationBuilder {
    quick(Application::builder().use_embedded_broker(), group)
}

/// The same on any broker address (a mock cluster of the test's own).
pub fn app_at(address: &str, group: &str) -> ApplicationBuilder {
    quick(Application::builder().broker_address(address), group)
}

/// The committed offset of `group` for `topic`/`partition`, `None` if none.
pub fn committed_offset(bootstrap: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(30))
        .expect("committed offsets");
    let offset = committed
        .find_partition(topic, partition)
        .expect("partition")
        .offset();
    match offset {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// Reads every partition of `topic` from the beginning until `count`
/// messages arrived or `timeout` passed; returns (key, value) pairs.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&list).expect("assign");
    let started = Instant::now();
    let mut messages = Vec::new();
    while messages.len() < count && started.elapsed() < timeout {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            messages.push((
                message.key().map(<[u8]>::to_vec),
                message.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    messages
}

/// A stateful step for tests of deletes: the message sets (`{"set": v}`)
/// or deletes (`{"delete": true}`) state key "v" of its key, and the step
/// emits `{"key", "v"}` after it.
pub fn set_or_delete(
    op: serde_json::Value,
    state: &mut kstreams::State,
) -> anyhow::Result<serde_json::Value> {
    if let Some(value) = op.get("set") {
        state.set("v", value)?;
    }
    if op.get("delete").is_some() {
        state.delete("v");
    }
    let key = String::from_utf8_lossy(state.message_key()).into_owned();
    Ok(serde_json::json!({"key": key, "v": state.get::<serde_json::Value>("v")?}))
}

/// An example binary, built by `cargo test` beside the test binaries.
pub fn example_binary(example: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    profile.join("examples").join(example)
}
