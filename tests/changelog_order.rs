//! A checkpoint whose changelog records are not acknowledged in time is
//! retried by the next one, which sends the same keys again, newer. A
//! record of the first that librdkafka retries must never land after the
//! newer one of its key: compaction keeps the last, and recovery would
//! restore the older value. A checkpoint therefore sends changelog records
//! only once every earlier one was answered. On librdkafka's mock cluster,
//! whose answer to one produce request is a late error.
#![allow(unsafe_code)]

mod common;

use std::ffi::{c_int, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::mock::{count, feed_to, input_name, output_topic, pairs};
use common::{app_at, unique};
use kstreams::{State, Until};
use rdkafka::bindings as rdsys;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use serde_json::Value;

/// A mock cluster of one broker, owned by a client of the test's (for
/// librdkafka's calls that rust-rdkafka's `MockCluster` does not offer).
struct Cluster {
    owner: BaseProducer,
    servers: String,
}

impl Cluster {
    fn new() -> Self {
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .unwrap();
        // SAFETY: the owner lives as long as the cluster.
        let servers = unsafe {
            let bootstraps = rdsys::rd_kafka_mock_cluster_bootstraps(Self::mock(&owner));
            CStr::from_ptr(bootstraps).to_str().unwrap().to_string()
        };
        Cluster { owner, servers }
    }

    fn mock(owner: &BaseProducer) -> *mut rdsys::rd_kafka_mock_cluster_t {
        // SAFETY: the client is live; it was created with a mock cluster.
        unsafe { rdsys::rd_kafka_handle_mock_cluster(owner.client().native_ptr()) }
    }

    fn create_topic(&self, name: &str) {
        let name = CString::new(name).unwrap();
        // SAFETY: the mock cluster is live (`self.owner`).
        let created = unsafe {
            rdsys::rd_kafka_mock_topic_create(Self::mock(&self.owner), name.as_ptr(), 1, 1)
        };
        assert_eq!(created, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
    }

    /// The next produce request gets `error`, answered after `delay`.
    fn answer_next_produce_late(&self, error: RDKafkaRespErr, delay: Duration) {
        let delay_ms = c_int::try_from(delay.as_millis()).unwrap();
        // SAFETY: the mock cluster is live; the variadic arguments are one
        // (error, rtt) pair of C ints, as librdkafka reads them.
        let pushed = unsafe {
            rdsys::rd_kafka_mock_broker_push_request_error_rtts(
                Self::mock(&self.owner),
                1,
                RDKafkaApiKey::Produce as i16,
                1,
                error as c_int,
                delay_ms,
            )
        };
        assert_eq!(pushed, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
    }
}

#[test]
fn a_deferred_checkpoint_retried_by_the_next_one_never_leaves_an_older_value_last() {
    let group = unique("deferred");
    let cluster = Cluster::new();
    let input = input_name(&group);
    let changelog = format!("changelog__{group}--{input}--default");
    for topic in [
        input.as_str(),
        changelog.as_str(),
        output_topic(&group).name(),
    ] {
        cluster.create_topic(topic);
    }
    let records = |keys: usize| vec![("k", "{}"); keys];
    feed_to(&cluster.servers, &input, 0, &records(3));

    // The first checkpoint's changelog request (k = 3) is answered with a
    // retriable error 12 s later: its flush gives up after 10 s, and the
    // next checkpoint sends k = 6 while the first is still in flight.
    cluster.answer_next_produce_late(
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        Duration::from_secs(12),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(&cluster.servers, &group)
        .state_dir(dir.path())
        .commit_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let counted_three = Arc::new(AtomicBool::new(false));
    app.dataframe(&app.topic::<Value>(&input)).update_stateful({
        let counted_three = counted_three.clone();
        move |value: &mut Value, state: &mut State| {
            if count(value.clone(), state)?["count"] == 3 {
                counted_three.store(true, Ordering::SeqCst);
            }
            Ok(())
        }
    });
    std::thread::scope(|scope| {
        let run =
            scope.spawn(|| app.run_until(Until::messages(6).or_timeout(Duration::from_secs(90))));
        // Once the first checkpoint's request is on its way (the interval
        // passed while the group formed), "k" counts on.
        while !counted_three.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_secs(1));
        feed_to(&cluster.servers, &input, 0, &records(3));
        assert_eq!(run.join().unwrap().unwrap().processed(), 6);
    });
    drop(app);

    // Rebuilt from the changelog, "k" counts on from 6.
    feed_to(&cluster.servers, &input, 0, &records(1));
    let fresh = tempfile::tempdir().unwrap();
    let (app, input, output) = app_with_servers(&cluster.servers, &group, fresh.path());
    app.dataframe(&input)
        .apply_stateful(count)
        .to_topic(&output);
    let counted = app
        .run_until(Until::messages(1).or_timeout(Duration::from_secs(60)))
        .unwrap()
        .values(&output)
        .unwrap();
    assert_eq!(counted.len(), 1);
    assert_eq!(
        vec![("k".to_string(), counted[0]["count"].as_u64().unwrap())],
        pairs(&[("k", 7)])
    );
}

/// An app of `group` at `servers` with its state in `state_dir`, and its
/// input and output topics.
fn app_with_servers(
    servers: &str,
    group: &str,
    state_dir: &std::path::Path,
) -> (
    kstreams::Application,
    kstreams::Topic<Value>,
    kstreams::Topic<Value>,
) {
    let app = app_at(servers, group).state_dir(state_dir).build().unwrap();
    let input = app.topic::<Value>(input_name(group));
    (app, input, output_topic(group))
}
