//! Window stores rebuilt from their changelogs: every window type (hopping
//! with collected items and per-partition closing, sliding, count and
//! session windows with collected items, tumbling with every update
//! emitted) processes its input in runs that stop cleanly, the
//! state directory deleted before every other run, and emits exactly what
//! one uninterrupted run emits. On librdkafka's mock cluster.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::mock::{app_with, feed_records, Mock};
use common::unique;
use kstreams::windows::{Aggregations, Closing, Collect, Count, Sum, WindowDefinition};
use kstreams::{Application, StreamingDataFrame, Topic, Until};
use rdkafka::mocking::MockCluster;
use serde_json::{json, Value};

const MESSAGES: u64 = 300;
const RUNS: u64 = 5;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Count, sum and (with `collect`) items of `amount` in each window of
/// `window`, emitted by `emit`, with the key beside them.
fn totals(
    window: WindowDefinition<Value>,
    collect: bool,
    emit: fn(
        kstreams::windows::Windowed<Value, Aggregations<Value>, Value>,
    ) -> StreamingDataFrame<Value>,
) -> StreamingDataFrame<Value> {
    let mut aggregations = Aggregations::new()
        .with("count", Count)
        .with("sum", Sum::column("amount"));
    if collect {
        aggregations = aggregations.with("items", Collect::column("amount"));
    }
    emit(window.agg(aggregations)).apply_with_metadata(|mut row, meta| {
        row["key"] = json!(meta.key_str());
        Ok(row)
    })
}

/// A window pipeline of the cases below, on the input frame.
type Pipeline = fn(StreamingDataFrame<Value>) -> StreamingDataFrame<Value>;

const CASES: [(&str, Pipeline); 5] = [
    ("hopping", |sdf| {
        let window = sdf.hopping_window(ms(40), ms(10)).grace(ms(15)).name("w");
        totals(window.closing(Closing::PerPartition), true, |windowed| {
            windowed.closed()
        })
    }),
    ("sliding", |sdf| {
        let window = sdf.sliding_window(ms(30)).grace(ms(10)).name("w");
        totals(window, false, |windowed| windowed.closed())
    }),
    ("count", |sdf| {
        let window = sdf.hopping_count_window(5, 2).name("w");
        totals(window, true, |windowed| windowed.closed())
    }),
    ("session", |sdf| {
        let window = sdf.session_window(ms(20)).grace(ms(10)).name("w");
        totals(window, true, |windowed| windowed.closed())
    }),
    ("tumbling", |sdf| {
        let window = sdf.tumbling_window(ms(50)).grace(ms(5)).name("w");
        totals(window, false, |windowed| windowed.current())
    }),
];

/// 300 purchases of four keys on two partitions, event time 7 ms apart,
/// one in five up to 24 ms early, one in 23 far too late.
fn feed(mock: &Mock, input: &str) {
    let records: Vec<(String, i32, String)> = (0..MESSAGES as i64)
        .map(|i| {
            let mut ts = 1_000_000 + i * 7;
            if i % 5 == 2 {
                ts -= i % 25;
            }
            if i % 23 == 11 {
                ts -= 500;
            }
            let payload = json!({"amount": i % 13, "ts": ts}).to_string();
            (format!("k{}", i % 4), (i % 2) as i32, payload)
        })
        .collect();
    for partition in 0..2 {
        let own: Vec<(&str, &str)> = records
            .iter()
            .filter(|(_, p, _)| *p == partition)
            .map(|(key, _, payload)| (key.as_str(), payload.as_str()))
            .collect();
        feed_records(mock, input, partition, &own);
    }
}

/// An app of `group` running `pipeline` over `input` into its output.
fn app(
    mock: &Mock,
    group: &str,
    input: &str,
    state_dir: &Path,
    pipeline: Pipeline,
) -> (Application, Topic<Value>) {
    let (app, _, output) = app_with(mock, group, state_dir, |builder| builder.commit_every(17));
    let input = purchases(input);
    pipeline(app.dataframe(&input)).to_topic(&output);
    (app, output)
}

/// The input topic `name`, its event time read from `ts`.
fn purchases(name: &str) -> Topic<Value> {
    Topic::<Value>::new(name)
        .timestamp(|row, _| row["ts"].as_i64().ok_or_else(|| anyhow::anyhow!("no ts")))
}

/// A fresh group named from `prefix`, with its input, output and window
/// store changelog (store `w`) of one partition on `mock`; the group and
/// the input's name.
fn one_partition_topics(mock: &Mock, prefix: &str) -> (String, String) {
    let group = unique(prefix);
    let input = format!("{group}-in");
    let changelog = format!("changelog__{group}--{input}--w");
    for topic in [&input, &format!("{group}-out"), &changelog] {
        mock.create_topic(topic, 1, 1).unwrap();
    }
    (group, input)
}

/// Runs until `messages` more were processed; what went to `output`.
fn run(app: &Application, output: &Topic<Value>, messages: u64) -> Vec<Value> {
    app.run_until(Until::messages(messages).or_timeout(Duration::from_secs(30)))
        .unwrap()
        .values(output)
        .unwrap()
}

/// Rows sorted by key and window, then by what they say.
fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|row| {
        (
            row["key"].to_string(),
            row["start"].as_i64(),
            row.to_string(),
        )
    });
    rows
}

#[test]
fn every_window_type_rebuilt_from_its_changelog_emits_what_an_uninterrupted_run_emits() {
    for (case, pipeline) in CASES {
        let mock: Mock = MockCluster::new(1).unwrap();
        let input = unique(&format!("wrecovery-{case}"));
        let (whole, interrupted) = (format!("{input}-whole"), format!("{input}-runs"));
        mock.create_topic(&input, 2, 1).unwrap();
        for group in [&whole, &interrupted] {
            mock.create_topic(&format!("{group}-out"), 2, 1).unwrap();
            let changelog = format!("changelog__{group}--{input}--w");
            mock.create_topic(&changelog, 2, 1).unwrap();
        }
        feed(&mock, &input);

        let truth_dir = tempfile::tempdir().unwrap();
        let (app_whole, output) = app(&mock, &whole, &input, truth_dir.path(), pipeline);
        let truth = sorted(run(&app_whole, &output, MESSAGES));
        drop(app_whole);
        assert!(truth.len() > 40, "{case}: only {} windows", truth.len());

        // The same input in five runs; before the second and the fourth
        // the state directory is lost, and the stores come back from the
        // changelog.
        let runs_dir = tempfile::tempdir().unwrap();
        let state_dir = runs_dir.path().join("state");
        let mut emitted = Vec::new();
        for index in 0..RUNS {
            if index % 2 == 1 {
                std::fs::remove_dir_all(&state_dir).unwrap();
            }
            let (app, output) = app(&mock, &interrupted, &input, &state_dir, pipeline);
            emitted.extend(run(&app, &output, MESSAGES / RUNS));
        }
        let emitted = sorted(emitted);
        if case == "tumbling" {
            // Every update, once each: the counts and sums went on from
            // the recovered state.
            assert_eq!(emitted, truth, "{case}");
            continue;
        }
        let mut by_window = BTreeMap::new();
        for row in emitted {
            let window = (
                row["key"].to_string(),
                row["start"].as_i64(),
                row["end"].as_i64(),
            );
            if let Some(earlier) = by_window.insert(window, row.clone()) {
                assert_eq!(earlier, row, "{case}: one window, two values");
            }
        }
        assert_eq!(sorted(by_window.into_values().collect()), truth, "{case}");
    }
}

/// Runs a one-partition app of `group` whose 10 ms windows close after
/// 2 s idle, for `seconds`; what it emitted.
fn run_idle_closing(
    mock: &Mock,
    group: &str,
    input: &str,
    state_dir: &Path,
    seconds: u64,
) -> Vec<Value> {
    let (app, _, output) = app_with(mock, group, state_dir, |builder| builder);
    let input = purchases(input);
    app.dataframe(&input)
        .tumbling_window(ms(10))
        .name("w")
        .close_when_idle(Duration::from_secs(2))
        .count()
        .closed()
        .apply(|window| json!({"start": window.start, "value": window.value}))
        .to_topic(&output);
    app.run_until(Until::timeout(Duration::from_secs(seconds)))
        .unwrap()
        .values(&output)
        .unwrap()
}

#[test]
fn a_window_closed_on_an_idle_stream_stays_closed_after_a_lost_state_dir() {
    let mock: Mock = MockCluster::new(1).unwrap();
    let (group, input) = one_partition_topics(&mock, "idle-recovery");
    let runs = tempfile::tempdir().unwrap();
    let state_dir = runs.path().join("state");
    feed_records(&mock, &input, 0, &[("a", r#"{"ts": 3}"#)]);
    let first = run_idle_closing(&mock, &group, &input, &state_dir, 10);
    assert_eq!(first, [json!({"start": 0, "value": 1})]);

    // A message for [0, 10) after idleness closed it is late, also for an
    // instance that rebuilds the state from the changelog.
    feed_records(&mock, &input, 0, &[("a", r#"{"ts": 5}"#)]);
    std::fs::remove_dir_all(&state_dir).unwrap();
    let second = run_idle_closing(&mock, &group, &input, &state_dir, 8);
    assert!(second.is_empty(), "{second:?}");
}

#[test]
fn a_window_store_refuses_windows_of_another_grace() {
    let mock: Mock = MockCluster::new(1).unwrap();
    let (group, input) = one_partition_topics(&mock, "redefined");
    let state_dir = tempfile::tempdir().unwrap();
    let run = |grace: u64, messages: u64| {
        let (app, _, output) = app_with(&mock, &group, state_dir.path(), |builder| builder);
        let input = purchases(&input);
        app.dataframe(&input)
            .tumbling_window(ms(10))
            .grace(ms(grace))
            .name("w")
            .count()
            .closed()
            .apply(|window| json!({"start": window.start, "value": window.value}))
            .to_topic(&output);
        app.run_until(Until::messages(messages).or_timeout(Duration::from_secs(30)))
    };
    feed_records(&mock, &input, 0, &[("a", r#"{"ts": 3}"#)]);
    run(5, 1).unwrap();
    // A longer grace would reopen windows that closed: refused, naming the
    // store and both definitions.
    feed_records(&mock, &input, 0, &[("a", r#"{"ts": 30}"#)]);
    let error = run(50, 1).unwrap_err().to_string();
    assert!(
        error.contains("window store w holds windows of another definition")
            && error.contains("grace 5")
            && error.contains("grace 50"),
        "{error}"
    );
}
