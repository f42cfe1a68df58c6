//! Key-scoped state: get/set/delete/exists, key isolation, read-your-writes
//! and typed errors through the test driver; restart, lost state directory
//! and clear_state on the test broker.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{kafka_app, unique};
use kstreams::{Application, Error, State, TestDriver, TestMessage, Topic, Until};
use serde_json::{json, Value};

/// An app for the test driver, with its state under `dir`.
fn driver_app(dir: &Path) -> Application {
    Application::builder()
        .use_embedded_broker()
        .state_dir(dir)
        .build()
        .unwrap()
}

#[test]
fn state_is_scoped_to_the_message_key_and_reads_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let app = driver_app(dir.path());
    let input = Topic::<Value>::new("ops");
    let output = Topic::<Value>::new("seen");
    app.dataframe(&input)
        .apply_stateful(|op, state: &mut State| {
            let name = op["key"].as_str().unwrap_or_default().to_string();
            match op["op"].as_str() {
                Some("set") => state.set(&name, &op["value"])?,
                Some("delete") => state.delete(&name),
                _ => {}
            }
            Ok(json!({
                "exists": state.exists(&name)?,
                "value": state.get::<Value>(&name)?,
            }))
        })
        .to_topic(&output);
    let mut driver = TestDriver::new(&app).unwrap();
    let mut push = |key: &str, op: Value| {
        driver
            .push(&input, TestMessage::new(op).key(key.as_bytes().to_vec()))
            .unwrap();
    };
    // Message key "a" + state key "bc" must not collide with "ab" + "c".
    push("a", json!({"op": "set", "key": "bc", "value": 1}));
    push("ab", json!({"op": "get", "key": "c"}));
    push("a", json!({"op": "get", "key": "bc"}));
    push("a", json!({"op": "delete", "key": "bc"}));
    push("a", json!({"op": "get", "key": "bc"}));
    let seen = driver.values(&output).unwrap();
    assert_eq!(
        seen,
        [
            json!({"exists": true, "value": 1}),
            json!({"exists": false, "value": null}),
            json!({"exists": true, "value": 1}),
            json!({"exists": false, "value": null}),
            json!({"exists": false, "value": null}),
        ]
    );
}

#[test]
fn stored_value_of_another_type_is_an_error_naming_store_key_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let app = driver_app(dir.path());
    let input = Topic::<i64>::new("numbers");
    app.dataframe(&input)
        .update_stateful_in("typed", |n, state| {
            if *n == 0 {
                state.set("x", &"text")?;
            } else {
                state.get::<u64>("x")?;
            }
            Ok(())
        });
    let mut driver = TestDriver::new(&app).unwrap();
    driver.push(&input, TestMessage::new(0)).unwrap();
    let error = driver.push(&input, TestMessage::new(1)).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::Process { offset: 1, .. }), "{text}");
    assert!(
        text.contains("\"x\"") && text.contains("typed") && text.contains("u64"),
        "{text}"
    );
}

/// The count-per-key pipeline.
fn counting_app(
    group: &str,
    state_dir: &Path,
    changelog: bool,
) -> (Application, Topic<Value>, Topic<Value>) {
    let app = kafka_app(group)
        .state_dir(state_dir)
        .use_changelog_topics(changelog)
        .build()
        .unwrap();
    let input = Topic::<Value>::new(format!("{group}-in"));
    let output = Topic::<Value>::new(format!("{group}-out"));
    app.dataframe(&input)
        .apply_stateful(|row, state: &mut State| {
            let count = state.get::<u64>("count")?.unwrap_or(0) + 1;
            let total =
                state.get::<f64>("total")?.unwrap_or(0.0) + row["amount"].as_f64().unwrap_or(0.0);
            state.set("count", &count)?;
            state.set("total", &total)?;
            Ok(json!({"count": count, "total": total}))
        })
        .to_topic(&output);
    (app, input, output)
}

/// Produces `n` messages over keys k0..k2 with amount 1.5, runs until they
/// are processed, and returns each key's last (count, total).
fn feed_and_run(
    app: &Application,
    input: &Topic<Value>,
    output: &Topic<Value>,
    n: u64,
) -> BTreeMap<String, (u64, f64)> {
    let producer = app.producer().unwrap();
    for i in 0..n {
        let key = format!("k{}", i % 3).into_bytes();
        producer
            .send(input, Some(&key), &json!({"amount": 1.5}))
            .unwrap();
    }
    producer.flush().unwrap();
    let outputs = app
        .run_until(Until::messages(n).or_timeout(Duration::from_secs(90)))
        .unwrap();
    let mut last = BTreeMap::new();
    for (key, value) in outputs.keys_and_values(output).unwrap() {
        let key = String::from_utf8(key.unwrap()).unwrap();
        last.insert(
            key,
            (
                value["count"].as_u64().unwrap(),
                value["total"].as_f64().unwrap(),
            ),
        );
    }
    last
}

fn expected(count: u64) -> BTreeMap<String, (u64, f64)> {
    (0..3)
        .map(|k| (format!("k{k}"), (count, count as f64 * 1.5)))
        .collect()
}

#[test]
fn restart_keeps_state_and_a_lost_state_dir_is_rebuilt_from_the_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let group = unique("counts");
    {
        let (app, input, output) = counting_app(&group, dir.path(), true);
        assert_eq!(feed_and_run(&app, &input, &output, 30), expected(10));
    }
    {
        // Same state directory: the counts go on.
        let (app, input, output) = counting_app(&group, dir.path(), true);
        assert_eq!(feed_and_run(&app, &input, &output, 30), expected(20));
    }
    // The disk is lost: the changelog brings the state back.
    std::fs::remove_dir_all(dir.path()).unwrap();
    let (app, input, output) = counting_app(&group, dir.path(), true);
    assert_eq!(feed_and_run(&app, &input, &output, 30), expected(30));
}

/// Runs `common::set_or_delete` over `ops` (message key, op) on the test
/// broker and returns the `{"key", "v"}` emitted after each.
fn run_set_or_delete(group: &str, state_dir: &Path, ops: &[(&str, Value)]) -> Vec<Value> {
    let app = kafka_app(group).state_dir(state_dir).build().unwrap();
    let input = Topic::<Value>::new(format!("{group}-in"));
    let output = Topic::<Value>::new(format!("{group}-out"));
    app.dataframe(&input)
        .apply_stateful(common::set_or_delete)
        .to_topic(&output);
    let producer = app.producer().unwrap();
    for (key, op) in ops {
        producer
            .send(&input, Some(&key.as_bytes().to_vec()), op)
            .unwrap();
    }
    producer.flush().unwrap();
    app.run_until(Until::messages(ops.len() as u64).or_timeout(Duration::from_secs(90)))
        .unwrap()
        .values(&output)
        .unwrap()
}

#[test]
fn a_delete_survives_a_rebuild_from_the_changelog_on_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let group = unique("deletes");
    let first = run_set_or_delete(
        &group,
        dir.path(),
        &[
            ("a", json!({"set": 1})),
            ("b", json!({"set": 2})),
            ("a", json!({"delete": true})),
        ],
    );
    assert_eq!(first.last(), Some(&json!({"key": "a", "v": null})));
    // The disk is lost: the changelog (a tombstone for "a") brings it back.
    std::fs::remove_dir_all(dir.path()).unwrap();
    let rebuilt = run_set_or_delete(&group, dir.path(), &[("a", json!({})), ("b", json!({}))]);
    assert_eq!(
        rebuilt,
        [json!({"key": "a", "v": null}), json!({"key": "b", "v": 2})]
    );
}

#[test]
fn clear_state_without_changelog_starts_from_empty() {
    let dir = tempfile::tempdir().unwrap();
    let group = unique("cleared");
    let (app, input, output) = counting_app(&group, dir.path(), false);
    assert_eq!(feed_and_run(&app, &input, &output, 9), expected(3));
    app.clear_state().unwrap();
    assert_eq!(feed_and_run(&app, &input, &output, 6), expected(2));
}

/// Runs three keyed messages through a stateful step on `broker` (else the
/// embedded broker), with checkpoints due only by `commit_state_bytes`;
/// returns the group's committed offset as the third message saw it.
fn committed_before_third_message(broker: Option<&str>, commit_state_bytes: usize) -> Option<i64> {
    let dir = tempfile::tempdir().unwrap();
    let group = unique("state-bytes");
    let builder = match broker {
        Some(broker) => common::app_at(broker, &group),
        None => common::embedded_app(&group),
    };
    let app = builder
        .state_dir(dir.path())
        .commit_interval(Duration::from_secs(3600))
        .commit_state_bytes(commit_state_bytes)
        .build()
        .unwrap();
    let input = app.topic::<u64>(unique("state-bytes-in"));
    let output = app.topic::<Value>(unique("state-bytes-out"));
    let (bootstrap, topic) = (
        app.bootstrap_servers().to_string(),
        input.name().to_string(),
    );
    app.dataframe(&input)
        .apply_stateful(move |n, state: &mut State| {
            state.set("last", &n)?;
            let committed =
                (n == 2).then(|| common::committed_offset(&bootstrap, &group, &topic, 0));
            Ok(json!({"n": n, "committed": committed.flatten()}))
        })
        .filter(|seen| seen["n"] == 2)
        .to_topic(&output);
    let producer = app.producer().unwrap();
    for n in 0..3u64 {
        producer.send(&input, Some(&b"k".to_vec()), &n).unwrap();
    }
    producer.flush().unwrap();
    let outputs = app
        .run_until(Until::messages(3).or_timeout(Duration::from_secs(60)))
        .unwrap();
    outputs.values(&output).unwrap()[0]["committed"].as_i64()
}

#[test]
fn state_updates_beyond_commit_state_bytes_trigger_a_checkpoint() {
    // Every message's update exceeds one byte: each is checkpointed before
    // the next message is polled.
    assert_eq!(committed_before_third_message(None, 1), Some(2));
    // With a budget of the default size, nothing is committed before the interval.
    assert_eq!(committed_before_third_message(None, 32 << 20), None);
}

#[test]
fn state_updates_beyond_commit_state_bytes_trigger_a_checkpoint_on_the_broker() {
    let broker = common::kafka_broker();
    assert_eq!(committed_before_third_message(Some(&broker), 1), Some(2));
    assert_eq!(
        committed_before_third_message(Some(&broker), 32 << 20),
        None
    );
}

#[test]
fn a_group_name_that_is_no_safe_path_keeps_its_state_inside_the_state_dir() {
    let root = tempfile::tempdir().unwrap();
    let state_dir = root.path().join("state");
    let outside = root.path().join("x");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep"), "not kstreams' own").unwrap();

    // A stateful run of group "../x" keeps its stores under state_dir.
    let app = common::embedded_app("../x")
        .state_dir(&state_dir)
        .build()
        .unwrap();
    let input = Topic::<Value>::new("safe-path-in");
    let output = Topic::<Value>::new("safe-path-out");
    app.dataframe(&input)
        .apply_stateful(|_, state: &mut State| {
            state.set("seen", &true)?;
            Ok(json!({}))
        })
        .to_topic(&output);
    let producer = app.producer().unwrap();
    producer
        .send(&input, Some(&b"k".to_vec()), &json!({}))
        .unwrap();
    producer.flush().unwrap();
    let outputs = app
        .run_until(Until::messages(1).or_timeout(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(outputs.processed(), 1);
    assert!(state_dir
        .join("..%2Fx")
        .join("safe-path-in")
        .join("0")
        .is_dir());
    assert!(!outside.join("safe-path-in").exists());

    // Clearing the state of such groups deletes nothing outside state_dir.
    app.clear_state().unwrap();
    for group in ["/data", "..", "."] {
        let app = Application::builder()
            .use_embedded_broker()
            .state_dir(&state_dir)
            .consumer_group(group)
            .build()
            .unwrap();
        app.clear_state().unwrap();
    }
    assert!(
        outside.join("keep").exists(),
        "clear_state deleted outside state_dir"
    );
    assert!(state_dir.is_dir());
}

#[test]
fn a_changelog_with_another_partition_count_than_its_input_is_a_clear_error() {
    let group = unique("repartitioned");
    let dir = tempfile::tempdir().unwrap();
    let (app, input, output) = counting_app(&group, dir.path(), true);
    // The input has two partitions, its changelog one (created before
    // partitions were added to the input).
    let changelog = format!("changelog__{group}--{}--default", input.name());
    let producer = app.producer().unwrap();
    producer.ensure_topic(&input.clone().partitions(2)).unwrap();
    let old_changelog = Topic::<Value>::new(&changelog)
        .partitions(1)
        .config("cleanup.policy", "compact");
    producer.ensure_topic(&old_changelog).unwrap();
    let error = app
        .run_until(Until::messages(1).or_timeout(Duration::from_secs(60)))
        .unwrap_err();
    match &error {
        Error::ChangelogPartitions {
            changelog: name,
            changelog_partitions: 1,
            topic,
            partitions: 2,
        } => assert_eq!((name, topic.as_str()), (&changelog, input.name())),
        other => panic!("expected ChangelogPartitions, got {other}"),
    }
    let _ = output;
}
