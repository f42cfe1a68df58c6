//! Failures the test broker cannot stage, injected with librdkafka's mock
//! cluster: a produce error fails the checkpoint, and nothing is committed.

mod common;

use std::time::Duration;

use common::{app_at, committed_offset, unique};
use kstreams::{Error, ErrorAction, Topic, Until};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A mock cluster with both topics (it has no CreateTopics API), the input
/// holding three numbers.
fn cluster_with_input(group: &str, input: &Topic<i64>, output: &Topic<i64>) -> Mock {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(input.name(), 1, 1).unwrap();
    mock.create_topic(output.name(), 1, 1).unwrap();
    let feeder = app_at(&mock.bootstrap_servers(), group).build().unwrap();
    let producer = feeder.producer().unwrap();
    for n in 0..3 {
        producer.send(input, None, &n).unwrap();
    }
    producer.flush().unwrap();
    mock
}

/// Every produce request from now on fails with an error librdkafka does not retry.
fn refuse_produce_requests(mock: &Mock) {
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 64],
    );
}

#[test]
fn refused_output_fails_the_checkpoint_and_commits_nothing() {
    let group = unique("refused");
    let input = Topic::<i64>::new(unique("refused-in"));
    let output = Topic::<i64>::new(unique("refused-out"));
    let mock = cluster_with_input(&group, &input, &output);

    let app = app_at(&mock.bootstrap_servers(), &group).build().unwrap();
    app.dataframe(&input).to_topic(&output);
    refuse_produce_requests(&mock);

    let error = app
        .run_until(Until::messages(3).or_timeout(Duration::from_secs(60)))
        .unwrap_err();
    match &error {
        Error::Produce {
            output_topic,
            topic,
            partition,
            ..
        } => {
            assert_eq!(output_topic, output.name());
            assert_eq!((topic.as_str(), *partition), (input.name(), 0));
        }
        other => panic!("expected a produce error, got {other}"),
    }
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        None
    );
}

#[test]
fn skipped_refused_output_lets_the_checkpoint_commit() {
    let group = unique("refused-skip");
    let input = Topic::<i64>::new(unique("refused-skip-in"));
    let output = Topic::<i64>::new(unique("refused-skip-out"));
    let mock = cluster_with_input(&group, &input, &output);

    let app = app_at(&mock.bootstrap_servers(), &group)
        .on_producer_error(|_| ErrorAction::Skip)
        .build()
        .unwrap();
    app.dataframe(&input).to_topic(&output);
    refuse_produce_requests(&mock);

    let outputs = app
        .run_until(Until::messages(3).or_timeout(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(outputs.processed(), 3);
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        Some(3)
    );
}

#[test]
fn commit_during_coordinator_loss_is_retried_until_it_succeeds() {
    let group = unique("coordinator");
    let input = Topic::<i64>::new(unique("coordinator-in"));
    let output = Topic::<i64>::new(unique("coordinator-out"));
    let mock = cluster_with_input(&group, &input, &output);

    let app = app_at(&mock.bootstrap_servers(), &group).build().unwrap();
    app.dataframe(&input).to_topic(&output);
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 3],
    );
    let bootstrap = mock.bootstrap_servers();
    let outputs = std::thread::scope(|scope| {
        let run = scope.spawn(|| app.run_until(Until::timeout(Duration::from_secs(60))));
        let started = std::time::Instant::now();
        while committed_offset(&bootstrap, &group, input.name(), 0) != Some(3) {
            assert!(
                started.elapsed() < Duration::from_secs(50),
                "offset 3 never committed"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        app.stop_handle().stop();
        run.join().unwrap().unwrap()
    });
    // A lost coordinator may make the group re-read uncommitted messages:
    // at least once, every message has its output.
    let mut values = outputs.values(&output).unwrap();
    values.sort();
    values.dedup();
    assert_eq!(values, [0, 1, 2]);
}

#[test]
fn a_refused_changelog_record_stops_the_app_even_when_outputs_may_be_skipped() {
    let group = unique("refused-changelog");
    let input = Topic::<i64>::new(unique("refused-changelog-in"));
    let output = Topic::<i64>::new(unique("refused-changelog-out"));
    let mock = cluster_with_input(&group, &input, &output);
    let changelog = format!("changelog__{group}--{}--default", input.name());
    mock.create_topic(&changelog, 1, 1).unwrap();

    let app = app_at(&mock.bootstrap_servers(), &group)
        .on_producer_error(|_| ErrorAction::Skip)
        .build()
        .unwrap();
    app.dataframe(&input)
        .apply_stateful(|n, state| {
            let total = state.get::<i64>("total")?.unwrap_or(0) + n;
            state.set("total", &total)?;
            Ok(total)
        })
        .to_topic(&output);
    refuse_produce_requests(&mock);

    let error = app
        .run_until(Until::messages(3).or_timeout(Duration::from_secs(60)))
        .unwrap_err();
    match &error {
        Error::ChangelogProduce {
            changelog: topic,
            partition,
            store,
            ..
        } => {
            assert_eq!((topic.as_str(), *partition), (changelog.as_str(), 0));
            assert_eq!(store, "default");
        }
        other => panic!("expected a changelog produce error, got {other}"),
    }
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        None
    );
}

/// A repartition record is not an output the callback may skip: the
/// steps after the `group_by` would never see it, and the source offset
/// would be committed past it.
#[test]
fn a_refused_repartition_record_stops_the_app_whatever_the_callback_says() {
    let group = unique("refused-grouped");
    let input = Topic::<i64>::new(unique("refused-grouped-in"));
    let output = Topic::<i64>::new(unique("refused-grouped-out"));
    let mock = cluster_with_input(&group, &input, &output);
    let repartition = format!("repartition__{group}--{}--parity", input.name());
    mock.create_topic(&repartition, 1, 1).unwrap();

    let app = app_at(&mock.bootstrap_servers(), &group)
        .on_producer_error(|_| ErrorAction::Skip)
        .build()
        .unwrap();
    app.dataframe(&input)
        .group_by("parity", |n: &i64, _| Ok(n % 2))
        .to_topic(&output);
    refuse_produce_requests(&mock);

    let error = app
        .run_until(Until::messages(3).or_timeout(Duration::from_secs(60)))
        .unwrap_err();
    assert!(
        matches!(&error, Error::Produce { output_topic, .. } if *output_topic == repartition),
        "{error}"
    );
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        None
    );
}
