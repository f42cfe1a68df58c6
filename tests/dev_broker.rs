//! The dev broker (`examples/dev_broker`): librdkafka's mock cluster on a
//! TCP port, with the CreateTopics and DescribeConfigs it lacks answered in
//! front of it. Any Kafka client uses it: rdkafka's admin client creates
//! and describes topics, a producer auto-creates one with `--partitions`
//! partitions, and a kstreams application (which creates its changelog
//! through CreateTopics) counts, and recovers its count on an empty state
//! directory.

mod common;
// rdkafka's admin futures, completed by librdkafka's thread.
#[path = "../src/broker/block_on.rs"]
#[allow(unreachable_pub)]
mod block_on;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use block_on::block_on;
use common::{app_at, example_binary, unique};
use kstreams::{State, Topic, Until};
use rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

/// A running dev broker; stopped when dropped.
struct DevBroker {
    child: Child,
    address: String,
}

impl DevBroker {
    /// Starts one on a free port, giving new topics `partitions`.
    fn start(partitions: u32) -> DevBroker {
        let mut child = Command::new(example_binary("dev_broker"))
            .args(["--port", "0", "--partitions", &partitions.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the dev_broker example (built by `cargo test`)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let address = line
            .split_whitespace()
            .nth(4)
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        DevBroker { child, address }
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.address);
        config
    }

    fn partitions(&self, topic: &str) -> usize {
        let consumer: BaseConsumer = self.client().create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        metadata.topics()[0].partitions().len()
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_kafka_admin_client_creates_and_describes_topics_and_a_producer_auto_creates_one() {
    let broker = DevBroker::start(3);
    let admin: AdminClient<DefaultClientContext> = broker.client().create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let (compacted, plain) = (unique("dev-compacted"), unique("dev-plain"));
    let topics = [
        NewTopic::new(&compacted, 2, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
        NewTopic::new(&plain, -1, TopicReplication::Fixed(1)),
    ];
    for result in block_on(admin.create_topics(&topics, &options)).unwrap() {
        result.unwrap();
    }
    assert_eq!(broker.partitions(&compacted), 2);
    assert_eq!(broker.partitions(&plain), 3, "--partitions, for no count");

    let again = block_on(admin.create_topics(&topics[..1], &options)).unwrap();
    assert_eq!(
        again[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::TopicAlreadyExists
    );

    let described =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(&compacted)], &options))
            .unwrap();
    let config = described[0].as_ref().unwrap();
    assert_eq!(
        config.specifier,
        OwnedResourceSpecifier::Topic(compacted.clone())
    );
    let policy = config.get("cleanup.policy").unwrap();
    assert_eq!(policy.value.as_deref(), Some("compact"));
    assert!(!policy.is_default);
    let missing = unique("dev-missing");
    let described =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(&missing)], &options)).unwrap();
    // The broker answers UNKNOWN_TOPIC_OR_PARTITION; rust-rdkafka 0.39
    // drops a resource's error, leaving it without configs.
    let nothing = described[0]
        .as_ref()
        .map_or(true, |config| config.entries.is_empty());
    assert!(nothing, "a topic that does not exist: {described:?}");

    let auto = unique("dev-auto");
    let producer: ThreadedProducer<DefaultProducerContext> = broker.client().create().unwrap();
    producer
        .send(BaseRecord::to(&auto).key("k").payload("v"))
        .map_err(|(error, _)| error)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(broker.partitions(&auto), 3, "--partitions, auto-created");
}

#[test]
fn a_kstreams_application_counts_on_it_and_recovers_its_state_from_the_changelog() {
    let broker = DevBroker::start(2);
    let group = unique("dev-count");
    let input = Topic::<i64>::new(unique("dev-count-in"));
    let output = Topic::<i64>::new(unique("dev-count-out"));
    let counting = |dir: &tempfile::TempDir| {
        let app = app_at(&broker.address, &group)
            .state_dir(dir.path())
            .build()
            .unwrap();
        app.dataframe(&input)
            .apply_stateful(|_: i64, state: &mut State| {
                let count = state.get::<i64>("count")?.unwrap_or(0) + 1;
                state.set("count", &count)?;
                Ok(count)
            })
            .to_topic(&output);
        app
    };
    // Sends `numbers` and counts them in an app on `dir`; returns its counts.
    let count = |dir: &tempfile::TempDir, numbers: &[i64]| -> Vec<i64> {
        let app = counting(dir);
        let producer = app.producer().unwrap();
        for n in numbers {
            producer.send(&input, Some(&b"k".to_vec()), n).unwrap();
        }
        producer.flush().unwrap();
        let messages = Until::messages(numbers.len() as u64);
        app.run_until(messages.or_timeout(Duration::from_secs(60)))
            .unwrap()
            .values(&output)
            .unwrap()
    };
    let (first, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(count(&first, &[0, 1, 2]), [1, 2, 3]);
    let counts = count(&fresh, &[3]);
    assert_eq!(counts, [4], "recovered 3 from the changelog");
    let changelog = format!("changelog__{group}--{}--default", input.name());
    assert_eq!(
        broker.partitions(&changelog),
        broker.partitions(input.name()),
        "as many as its input"
    );
}
