//! An instance that lost its assignment writes nothing: when its loop was
//! blocked past `max.poll.interval.ms` and the group gave its partition to
//! another instance, its checkpoint produces no changelog record, writes no
//! store and commits no offset, so the new owner's state is the one that
//! survives. Exactly once, its open transaction (the outputs of the
//! messages it processed) is aborted. On librdkafka's mock cluster, whose
//! group coordinator expires members as Kafka does (tansu is late to; see
//! design.md).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::mock::{app_with, count, create_topics, feed, pairs, run, Mock};
use common::unique;
use kstreams::{ProcessingGuarantee, State, Until};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::Value;

/// Polls `done` until it holds, for at most a minute.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_instance_blocked_past_max_poll_interval_writes_nothing_after_its_partition_moved() {
    blocked_instance_writes_nothing(ProcessingGuarantee::AtLeastOnce);
}

/// The blocked instance's transaction holds its outputs when it loses the
/// partition: it is aborted, and no changelog record joins it (the mock
/// cluster would hand an aborted one to recovery, after the new owner's).
#[test]
fn an_instance_blocked_past_max_poll_interval_aborts_its_transaction() {
    blocked_instance_writes_nothing(ProcessingGuarantee::ExactlyOnce);
}

fn blocked_instance_writes_nothing(guarantee: ProcessingGuarantee) {
    let group = unique("lost");
    let mock: Mock = MockCluster::new(1).unwrap();
    create_topics(&mock, &group, 1);
    let input = common::mock::input_name(&group);
    let (zombie_dir, owner_dir, fresh_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    feed(&mock, &input, 0, &["k", "k", "k"]);

    // The zombie counts "k" to 3 and then blocks in its closure (a slow
    // call, a stopped process) for longer than max.poll.interval.ms.
    let (blocked, release) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (zombie, input_topic, _) = app_with(&mock, &group, zombie_dir.path(), |builder| {
        builder
            .processing_guarantee(guarantee)
            .commit_interval(Duration::from_secs(3600))
            // As short as the mock cluster allows: it holds a first join
            // for 3 s, which a session must outlast.
            .consumer_config("session.timeout.ms", "6000")
            .consumer_config("max.poll.interval.ms", "6000")
    });
    // Its outputs are in its open transaction, exactly once.
    zombie
        .dataframe(&input_topic)
        .apply_stateful({
            let (blocked, release) = (blocked.clone(), release.clone());
            move |value: Value, state: &mut State| {
                let counted = count(value, state)?;
                if counted["count"] == 3 {
                    blocked.store(true, Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(20));
                    }
                }
                Ok(counted)
            }
        })
        .to_topic(&common::mock::output_topic(&group));
    thread::scope(|scope| {
        let zombie_run = scope
            .spawn(|| zombie.run_until(Until::messages(3).or_timeout(Duration::from_secs(90))));
        wait_for("the zombie to block", || blocked.load(Ordering::SeqCst));

        // Meanwhile the group gives the partition to a new owner, which
        // counts "k" to 5 and commits.
        thread::sleep(Duration::from_secs(8));
        feed(&mock, &input, 0, &["k", "k"]);
        let (owner, output) = counting_app(&mock, &group, owner_dir.path(), guarantee);
        let counts = run(&owner, &output, 5);
        assert_eq!(counts.last(), Some(&("k".to_string(), 5)));
        drop(owner);

        // The zombie wakes up: its checkpoint must write nothing. Exactly
        // once, its transaction must be aborted, not committed: the mock
        // cluster keeps aborted records, so a commit's first step, adding
        // the offsets to the transaction, is made to fail the run.
        let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED; 8];
        mock.request_errors(RDKafkaApiKey::AddOffsetsToTxn, &refused);
        release.store(true, Ordering::SeqCst);
        zombie_run.join().unwrap().unwrap();
    });
    drop(zombie);
    mock.clear_request_errors(RDKafkaApiKey::AddOffsetsToTxn);

    // A third instance on an empty state directory recovers the new
    // owner's count, not the zombie's 3.
    feed(&mock, &input, 0, &["k"]);
    let (fresh, output) = counting_app(&mock, &group, fresh_dir.path(), guarantee);
    assert_eq!(run(&fresh, &output, 1), pairs(&[("k", 6)]));
}

/// An app of `group` under `guarantee` that counts per key.
fn counting_app(
    mock: &Mock,
    group: &str,
    state_dir: &std::path::Path,
    guarantee: ProcessingGuarantee,
) -> (kstreams::Application, kstreams::Topic<Value>) {
    let (app, input, output) = app_with(mock, group, state_dir, |builder| {
        builder.processing_guarantee(guarantee)
    });
    app.dataframe(&input)
        .apply_stateful(count)
        .to_topic(&output);
    (app, output)
}
