//! Helpers for tests on librdkafka's mock cluster: feeding partitions and
//! apps that count per key, with their topics created up front (the mock
//! cluster has no CreateTopics API).

use std::path::Path;
use std::time::Duration;

use kstreams::{Application, State, Topic, Until};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use super::app_at;

pub type Mock = MockCluster<'static, DefaultProducerContext>;

/// Produces one message per key, in order, to `partition` of `topic`.
pub fn feed(mock: &Mock, topic: &str, partition: i32, keys: &[&str]) {
    let records: Vec<(&str, &str)> = keys.iter().map(|key| (*key, "{}")).collect();
    feed_records(mock, topic, partition, &records);
}

/// Produces `(key, payload)` records, in order, to `partition` of `topic`.
pub fn feed_records(mock: &Mock, topic: &str, partition: i32, records: &[(&str, &str)]) {
    feed_to(&mock.bootstrap_servers(), topic, partition, records);
}

/// Produces `(key, payload)` records, in order, to `partition` of `topic`
/// on the broker at `servers`.
pub fn feed_to(servers: &str, topic: &str, partition: i32, records: &[(&str, &str)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .unwrap();
    for (key, payload) in records {
        let record = BaseRecord::to(topic)
            .partition(partition)
            .key(*key)
            .payload(*payload);
        producer.send(record).map_err(|(error, _)| error).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// An app of `group` on `mock` with its state in `state_dir`, and its
/// input and output topics.
pub fn app_on(
    mock: &Mock,
    group: &str,
    state_dir: &Path,
) -> (Application, Topic<Value>, Topic<Value>) {
    app_with(mock, group, state_dir, |builder| builder)
}

/// The same, with settings of the test's own.
pub fn app_with(
    mock: &Mock,
    group: &str,
    state_dir: &Path,
    settings: impl FnOnce(kstreams::ApplicationBuilder) -> kstreams::ApplicationBuilder,
) -> (Application, Topic<Value>, Topic<Value>) {
    // kstreams' log lines (plans, recoveries, rebalances) go to the test's
    // captured output: a failing test shows them.
    let _ = env_logger::builder()
        .is_test(true)
        .filter_level(log::LevelFilter::Info)
        .try_init();
    let builder = app_at(&mock.bootstrap_servers(), group).state_dir(state_dir);
    let app = settings(builder).build().unwrap();
    let (input, output) = (app.topic::<Value>(input_name(group)), output_topic(group));
    (app, input, output)
}

/// The input, output and changelog topics of `group`'s app, created on
/// `mock` with `partitions` partitions.
pub fn create_topics(mock: &Mock, group: &str, partitions: i32) -> [String; 3] {
    let (input, output) = (input_name(group), output_topic(group).name().to_string());
    let changelog = changelog_name(group);
    let topics = [input, output, changelog];
    for topic in &topics {
        mock.create_topic(topic, partitions, 1).unwrap();
    }
    topics
}

/// The changelog of the default store of `group`'s app.
pub fn changelog_name(group: &str) -> String {
    format!("changelog__{group}--{}--default", input_name(group))
}

/// Counts the messages of each key in state and emits `{"key", "count"}`.
pub fn count(_: Value, state: &mut State) -> anyhow::Result<Value> {
    let count = state.get::<u64>("count")?.unwrap_or(0) + 1;
    state.set("count", &count)?;
    let key = String::from_utf8_lossy(state.message_key()).into_owned();
    Ok(json!({"key": key, "count": count}))
}

/// An app that counts the messages of each key in state and emits
/// `{"key", "count"}` for each.
pub fn counting_app(mock: &Mock, group: &str, state_dir: &Path) -> (Application, Topic<Value>) {
    let (app, input, output) = app_on(mock, group, state_dir);
    app.dataframe(&input)
        .apply_stateful(count)
        .to_topic(&output);
    (app, output)
}

pub fn input_name(group: &str) -> String {
    format!("{group}-in")
}

pub fn output_topic(group: &str) -> Topic<Value> {
    Topic::new(format!("{group}-out"))
}

/// Runs `app` until it processed `messages`; returns what it produced to
/// `output`.
pub fn rows(app: &Application, output: &Topic<Value>, messages: u64) -> Vec<Value> {
    app.run_until(Until::messages(messages).or_timeout(Duration::from_secs(60)))
        .unwrap()
        .values(output)
        .unwrap()
}

/// Runs `app` until it processed `messages`; returns `(key, count)` pairs.
pub fn run(app: &Application, output: &Topic<Value>, messages: u64) -> Vec<(String, u64)> {
    rows(app, output, messages)
        .into_iter()
        .map(|row| {
            let key = row["key"].as_str().unwrap().to_string();
            (key, row["count"].as_u64().unwrap())
        })
        .collect()
}

pub fn pairs(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected
        .iter()
        .map(|(key, count)| (key.to_string(), *count))
        .collect()
}
