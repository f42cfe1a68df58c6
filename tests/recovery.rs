//! Recovery runs beside processing: a partition whose stores are rebuilt
//! from the changelog waits for them, while partitions that need no
//! recovery are processed at once. On librdkafka's mock cluster, whose
//! brokers can be slowed down one at a time.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{app_at, unique};
use kstreams::{Application, Error, State, Topic, Until};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

type Mock = MockCluster<'static, DefaultProducerContext>;

/// The broker that leads the changelog of input partition 0 (and nothing
/// else), so that its recovery alone can be slowed down.
const SLOW_BROKER: i32 = 2;

/// Produces one message per key, in order, to `partition` of `topic`.
fn feed(mock: &Mock, topic: &str, partition: i32, keys: &[&str]) {
    let records: Vec<(&str, &str)> = keys.iter().map(|key| (*key, "{}")).collect();
    feed_records(mock, topic, partition, &records);
}

/// Produces `(key, payload)` records, in order, to `partition` of `topic`.
fn feed_records(mock: &Mock, topic: &str, partition: i32, records: &[(&str, &str)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
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
fn app_on(mock: &Mock, group: &str, state_dir: &Path) -> (Application, Topic<Value>, Topic<Value>) {
    // kstreams' log lines (plans, recoveries, rebalances) go to the test's
    // captured output: a failing test shows them.
    let _ = env_logger::builder()
        .is_test(true)
        .filter_level(log::LevelFilter::Info)
        .try_init();
    let app = app_at(&mock.bootstrap_servers(), group)
        .state_dir(state_dir)
        .build()
        .unwrap();
    let (input, output) = (app.topic::<Value>(input_name(group)), output_topic(group));
    (app, input, output)
}

/// The input, output and changelog topics of `group`'s app, created on
/// `mock` with `partitions` partitions.
fn create_topics(mock: &Mock, group: &str, partitions: i32) -> [String; 3] {
    let (input, output) = (input_name(group), output_topic(group).name().to_string());
    let changelog = format!("changelog__{group}--{input}--default");
    let topics = [input, output, changelog];
    for topic in &topics {
        mock.create_topic(topic, partitions, 1).unwrap();
    }
    topics
}

/// An app that counts the messages of each key in state and emits
/// `{"key", "count"}` for each.
fn counting_app(mock: &Mock, group: &str, state_dir: &Path) -> (Application, Topic<Value>) {
    let (app, input, output) = app_on(mock, group, state_dir);
    app.dataframe(&input)
        .apply_stateful(|_, state: &mut State| {
            let count = state.get::<u64>("count")?.unwrap_or(0) + 1;
            state.set("count", &count)?;
            let key = String::from_utf8_lossy(state.message_key()).into_owned();
            Ok(json!({"key": key, "count": count}))
        })
        .to_topic(&output);
    (app, output)
}

fn input_name(group: &str) -> String {
    format!("{group}-in")
}

fn output_topic(group: &str) -> Topic<Value> {
    Topic::new(format!("{group}-out"))
}

/// Runs `app` until it processed `messages`; returns what it produced to
/// `output`.
fn rows(app: &Application, output: &Topic<Value>, messages: u64) -> Vec<Value> {
    app.run_until(Until::messages(messages).or_timeout(Duration::from_secs(60)))
        .unwrap()
        .values(output)
        .unwrap()
}

/// Runs `app` until it processed `messages`; returns `(key, count)` pairs.
fn run(app: &Application, output: &Topic<Value>, messages: u64) -> Vec<(String, u64)> {
    rows(app, output, messages)
        .into_iter()
        .map(|row| {
            let key = row["key"].as_str().unwrap().to_string();
            (key, row["count"].as_u64().unwrap())
        })
        .collect()
}

fn pairs(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected
        .iter()
        .map(|(key, count)| (key.to_string(), *count))
        .collect()
}

#[test]
fn partitions_needing_no_recovery_are_processed_while_others_recover() {
    let group = unique("concurrent-recovery");
    let mock: Mock = MockCluster::new(2).unwrap();
    let [input, output, changelog] = create_topics(&mock, &group, 2);
    for topic in [&input, &output, &changelog] {
        for partition in 0..2 {
            mock.partition_leader(topic, partition, Some(1)).unwrap();
        }
    }
    mock.partition_leader(&changelog, 0, Some(SLOW_BROKER))
        .unwrap();
    mock.coordinator(MockCoordinator::Group(group.clone()), 1)
        .unwrap();
    let state_dir = tempfile::tempdir().unwrap();

    // Run 1 counts keys a, b (partition 0) and c, d (partition 1); its last
    // checkpoint writes the counts to the changelog.
    feed(&mock, &input, 0, &["a", "b", "a"]);
    feed(&mock, &input, 1, &["c", "d", "c"]);
    let (app, out) = counting_app(&mock, &group, state_dir.path());
    let mut first = run(&app, &out, 6);
    first.sort();
    assert_eq!(
        first,
        pairs(&[("a", 1), ("a", 2), ("b", 1), ("c", 1), ("c", 2), ("d", 1)])
    );
    drop(app);

    // Partition 0 loses its local state, partition 1 keeps it, and the
    // broker that serves partition 0's changelog answers after 3 s.
    std::fs::remove_dir_all(state_dir.path().join(&group).join(&input).join("0")).unwrap();
    feed(&mock, &input, 0, &["a", "b"]);
    feed(&mock, &input, 1, &["c", "d"]);
    mock.broker_round_trip_time(SLOW_BROKER, Duration::from_secs(3))
        .unwrap();
    let (app, out) = counting_app(&mock, &group, state_dir.path());
    // Partition 1 is processed while partition 0 still waits for its changelog.
    assert_eq!(run(&app, &out, 2), pairs(&[("c", 3), ("d", 2)]));
    drop(app);

    // Once its changelog is served, partition 0 resumes with exact counts.
    mock.broker_round_trip_time(SLOW_BROKER, Duration::ZERO)
        .unwrap();
    let (app, out) = counting_app(&mock, &group, state_dir.path());
    assert_eq!(run(&app, &out, 2), pairs(&[("a", 3), ("b", 2)]));
}

/// An app that sets (`{"set": v}`) or deletes (`{"delete": true}`) state
/// key "v" of the message key, and emits `{"key", "v"}` after each message.
fn set_or_delete_app(mock: &Mock, group: &str, state_dir: &Path) -> (Application, Topic<Value>) {
    let (app, input, output) = app_on(mock, group, state_dir);
    app.dataframe(&input)
        .apply_stateful(common::set_or_delete)
        .to_topic(&output);
    (app, output)
}

#[test]
fn a_delete_survives_a_rebuild_and_a_foreign_changelog_record_is_an_error() {
    let group = unique("rebuild-deletes");
    let mock: Mock = MockCluster::new(1).unwrap();
    let [input, _, changelog] = create_topics(&mock, &group, 1);
    let state_dir = tempfile::tempdir().unwrap();

    // "a" is set then deleted, "b" is set: the changelog ends with a
    // tombstone for "a".
    feed_records(
        &mock,
        &input,
        0,
        &[
            ("a", r#"{"set": 1}"#),
            ("b", r#"{"set": 2}"#),
            ("a", r#"{"delete": true}"#),
        ],
    );
    let (app, out) = set_or_delete_app(&mock, &group, state_dir.path());
    assert_eq!(
        rows(&app, &out, 3).last(),
        Some(&json!({"key": "a", "v": null}))
    );
    drop(app);

    // Rebuilt from the changelog, "a" stays deleted and "b" is back.
    std::fs::remove_dir_all(state_dir.path()).unwrap();
    feed_records(&mock, &input, 0, &[("a", "{}"), ("b", "{}")]);
    let (app, out) = set_or_delete_app(&mock, &group, state_dir.path());
    assert_eq!(
        rows(&app, &out, 2),
        [json!({"key": "a", "v": null}), json!({"key": "b", "v": 2})]
    );
    drop(app);

    // A record that kstreams did not write (its value cannot start with an
    // input offset) stops recovery with an error that names it.
    feed_records(&mock, &input, 0, &[("foreign", "x")]);
    feed_records(&mock, &changelog, 0, &[("a", "{}")]);
    std::fs::remove_dir_all(state_dir.path()).unwrap();
    let (app, _) = set_or_delete_app(&mock, &group, state_dir.path());
    let error = app
        .run_until(Until::messages(1).or_timeout(Duration::from_secs(60)))
        .unwrap_err();
    match error {
        Error::ChangelogRecord {
            topic, partition, ..
        } => assert_eq!((topic.as_str(), partition), (changelog.as_str(), 0)),
        other => panic!("expected a ChangelogRecord error, got {other}"),
    }
}

#[test]
fn a_tombstone_of_a_checkpoint_that_never_committed_is_not_applied() {
    let group = unique("uncommitted-tombstone");
    let mock: Mock = MockCluster::new(1).unwrap();
    let [input, _, changelog] = create_topics(&mock, &group, 1);
    let state_dir = tempfile::tempdir().unwrap();

    // "a" is set at input offset 0, and offset 1 is committed.
    feed_records(&mock, &input, 0, &[("a", r#"{"set": 1}"#)]);
    let (app, out) = set_or_delete_app(&mock, &group, state_dir.path());
    assert_eq!(rows(&app, &out, 1), [json!({"key": "a", "v": 1})]);
    drop(app);

    // A checkpoint that wrote the changelog and crashed before committing:
    // the tombstone of "a" is stamped with input offset 1, not committed.
    let servers = mock.bootstrap_servers();
    let written = common::read_topic(&servers, &changelog, 1, Duration::from_secs(30));
    let key = written[0].0.clone().expect("changelog records have keys");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    let stamp = 1_i64.to_be_bytes();
    let headers = OwnedHeaders::new().insert(Header {
        key: "__kstreams_input_offset",
        value: Some(&stamp[..]),
    });
    let tombstone = BaseRecord::<[u8], [u8]>::to(&changelog)
        .partition(0)
        .key(&key[..])
        .headers(headers);
    producer
        .send(tombstone)
        .map_err(|(error, _)| error)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    // Rebuilt from the changelog, "a" keeps the committed value.
    std::fs::remove_dir_all(state_dir.path()).unwrap();
    feed_records(&mock, &input, 0, &[("a", "{}")]);
    let (app, out) = set_or_delete_app(&mock, &group, state_dir.path());
    assert_eq!(rows(&app, &out, 1), [json!({"key": "a", "v": 1})]);
}
