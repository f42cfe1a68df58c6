//! Recovery runs beside processing: a partition whose stores are rebuilt
//! from the changelog waits for them, while partitions that need no
//! recovery are processed at once. On librdkafka's mock cluster, whose
//! brokers can be slowed down one at a time.

mod common;

use std::path::Path;
use std::time::Duration;

use common::mock::{
    app_on, counting_app, create_topics, feed, feed_records, pairs, rows, run, Mock,
};
use common::unique;
use kstreams::{Application, Error, Topic, Until};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

/// The broker that leads the changelog of input partition 0 (and nothing
/// else), so that its recovery alone can be slowed down.
const SLOW_BROKER: i32 = 2;

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

/// A counting app of `group` on `mock` that checkpoints every two messages.
fn counting_every_two(
    mock: &Mock,
    group: &str,
    state_dir: &Path,
    reset: kstreams::OffsetReset,
) -> (Application, Topic<Value>) {
    let (app, input, output) = common::mock::app_with(mock, group, state_dir, |builder| {
        builder.commit_every(2).auto_offset_reset(reset)
    });
    app.dataframe(&input)
        .apply_stateful(common::mock::count)
        .to_topic(&output);
    (app, output)
}

/// Copies the first `count` records of partition 0 of `topic` on `from` to
/// the same topic on `to`, in order (so they keep their offsets).
fn copy_topic(from: &Mock, to: &Mock, topic: &str, count: usize) {
    let records = common::read_topic(
        &from.bootstrap_servers(),
        topic,
        count,
        Duration::from_secs(30),
    );
    assert_eq!(records.len(), count, "records of {topic}");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", to.bootstrap_servers())
        .create()
        .unwrap();
    for (key, value) in &records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(0)
            .payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        producer.send(record).map_err(|(error, _)| error).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Commits `offset` of `topic`/0 for `group`, as an operator's tool would
/// (as a member of the group: the mock cluster refuses commits of others).
fn commit_offset(servers: &str, group: &str, topic: &str, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while consumer.assignment().unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "never assigned");
        consumer.poll(Duration::from_millis(100));
    }
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(topic, 0, rdkafka::Offset::Offset(offset))
        .unwrap();
    consumer.commit(&list, CommitMode::Sync).unwrap();
}

#[test]
fn a_group_whose_offsets_expired_restores_its_state_from_the_changelog() {
    let group = unique("expired-offsets");
    let before: Mock = MockCluster::new(1).unwrap();
    let [input, _, changelog] = create_topics(&before, &group, 1);
    let state_dir = tempfile::tempdir().unwrap();

    // Two checkpoints: "a", "a" (offset 2 committed), then "b", "a"
    // (offset 4 committed); the changelog holds three records.
    feed(&before, &input, 0, &["a", "a", "b", "a"]);
    let latest = kstreams::OffsetReset::Latest;
    let earliest = kstreams::OffsetReset::Earliest;
    let (app, out) = counting_every_two(&before, &group, state_dir.path(), earliest);
    assert_eq!(run(&app, &out, 4).last(), Some(&("a".to_string(), 3)));
    drop(app);

    // The group's offsets expire (a cluster with the same input and
    // changelog, and no offsets), and the state directory is gone (a
    // container without a volume).
    let after: Mock = MockCluster::new(1).unwrap();
    create_topics(&after, &group, 1);
    copy_topic(&before, &after, &input, 4);
    copy_topic(&before, &after, &changelog, 3);
    feed(&after, &input, 0, &["a"]);
    let fresh_dir = tempfile::tempdir().unwrap();

    // With offset reset "latest", nothing would be processed again and
    // every count would start over: instead the state is restored up to
    // offset 2, the last commit the changelog names, and processing
    // resumes there, with exact counts.
    let (app, out) = counting_every_two(&after, &group, fresh_dir.path(), latest);
    assert_eq!(run(&app, &out, 3), pairs(&[("b", 1), ("a", 3), ("a", 4)]));
}

#[test]
fn offsets_an_operator_rewound_are_honoured_and_the_state_rebuilt_to_match() {
    let group = unique("rewound");
    let mock: Mock = MockCluster::new(1).unwrap();
    let [input, ..] = create_topics(&mock, &group, 1);
    let state_dir = tempfile::tempdir().unwrap();
    let earliest = kstreams::OffsetReset::Earliest;
    feed(&mock, &input, 0, &["a", "a", "b", "a"]);
    let (app, out) = counting_every_two(&mock, &group, state_dir.path(), earliest);
    assert_eq!(run(&app, &out, 4).len(), 4);
    drop(app);

    // The operator moves the group back to offset 2, to reprocess "b", "a":
    // the local state (which absorbed all four) is rebuilt up to offset 2.
    commit_offset(&mock.bootstrap_servers(), &group, &input, 2);
    let (app, out) = counting_every_two(&mock, &group, state_dir.path(), earliest);
    assert_eq!(run(&app, &out, 2), pairs(&[("b", 1), ("a", 3)]));
}

#[test]
fn local_state_whose_offset_commit_failed_resumes_where_it_ends() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let group = unique("commit-failed");
    let mock: Mock = MockCluster::new(1).unwrap();
    let [input, ..] = create_topics(&mock, &group, 1);
    let state_dir = tempfile::tempdir().unwrap();
    let earliest = kstreams::OffsetReset::Earliest;
    feed(&mock, &input, 0, &["a", "a"]);
    let (app, out) = counting_every_two(&mock, &group, state_dir.path(), earliest);
    assert_eq!(run(&app, &out, 2).len(), 2);
    drop(app);

    // The next checkpoint writes its state, then its offset commit fails.
    feed(&mock, &input, 0, &["b", "a"]);
    let error = RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE;
    mock.request_errors(RDKafkaApiKey::OffsetCommit, &[error; 8]);
    let (app, _) = counting_every_two(&mock, &group, state_dir.path(), earliest);
    let failed = app.run_until(Until::messages(2).or_timeout(Duration::from_secs(60)));
    assert!(matches!(failed, Err(Error::Commit { .. })), "{failed:?}");
    drop(app);
    mock.clear_request_errors(RDKafkaApiKey::OffsetCommit);

    // Its outputs were acknowledged and its state is exact: processing
    // resumes after it, without processing "b", "a" twice.
    feed(&mock, &input, 0, &["a"]);
    let (app, out) = counting_every_two(&mock, &group, state_dir.path(), earliest);
    assert_eq!(run(&app, &out, 1), pairs(&[("a", 4)]));
}
