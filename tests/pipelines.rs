//! End-to-end pipelines (filter, apply, expand, branches, typed and JSON rows)
//! on the test broker, on the embedded broker and through the test driver:
//! the same declarations, the same results.

mod common;

use std::time::Duration;

use common::{embedded_app, kafka_app, kafka_broker, read_topic, unique};
use kstreams::{Application, TestDriver, TestMessage, Topic, Until};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Purchase {
    user: String,
    amount: u32,
    items: Vec<String>,
}

struct Topics {
    purchases: Topic<Purchase>,
    big: Topic<Value>,
    items: Topic<String>,
    small_users: Topic<String>,
}

fn purchases() -> Vec<Purchase> {
    (0..12)
        .map(|i| Purchase {
            user: format!("u{}", i % 4),
            amount: i * 20,
            items: (0..i % 3).map(|n| format!("item{n}")).collect(),
        })
        .collect()
}

/// Declares the pipeline under test: one input, three outputs, a branch.
fn declare(app: &Application) -> Topics {
    let topics = Topics {
        purchases: Topic::new(unique("purchases")),
        big: Topic::new(unique("big")),
        items: Topic::new(unique("items")),
        small_users: Topic::new(unique("small-users")),
    };
    let sdf = app.dataframe(&topics.purchases);
    sdf.clone()
        .filter(|p| p.amount > 100)
        .apply(|p| json!({"user": p.user, "amount": p.amount}))
        .to_topic(&topics.big);
    sdf.clone().expand(|p| p.items).to_topic(&topics.items);
    sdf.filter(|p| p.amount <= 100)
        .apply(|p| p.user)
        .to_topic(&topics.small_users);
    topics
}

fn expected_big() -> Vec<Value> {
    purchases()
        .into_iter()
        .filter(|p| p.amount > 100)
        .map(|p| json!({"user": p.user, "amount": p.amount}))
        .collect()
}

fn expected_items() -> Vec<String> {
    purchases().into_iter().flat_map(|p| p.items).collect()
}

fn expected_small_users() -> Vec<String> {
    purchases()
        .into_iter()
        .filter(|p| p.amount <= 100)
        .map(|p| p.user)
        .collect()
}

fn produce_purchases(app: &Application, topics: &Topics) {
    let producer = app.producer().expect("producer");
    for purchase in purchases() {
        let key = purchase.user.clone().into_bytes();
        producer
            .send(&topics.purchases, Some(&key), &purchase)
            .expect("send");
    }
    producer.flush().expect("flush");
}

fn run_and_check(app: &Application, topics: &Topics) {
    produce_purchases(app, topics);
    let outputs = app
        .run_until(Until::messages(12).or_timeout(Duration::from_secs(90)))
        .expect("run");
    assert_eq!(outputs.processed(), 12);
    assert_eq!(outputs.values(&topics.big).unwrap(), expected_big());
    assert_eq!(outputs.values(&topics.items).unwrap(), expected_items());
    assert_eq!(
        outputs.values(&topics.small_users).unwrap(),
        expected_small_users()
    );
    // Outputs keep the input key.
    let keys: Vec<Option<Vec<u8>>> = outputs
        .keys_and_values(&topics.small_users)
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let expected_keys: Vec<Option<Vec<u8>>> = expected_small_users()
        .into_iter()
        .map(|user| Some(user.into_bytes()))
        .collect();
    assert_eq!(keys, expected_keys);
}

#[test]
fn branches_filter_apply_expand_on_kafka_reach_the_broker() {
    let app = kafka_app(&unique("pipelines")).build().unwrap();
    let topics = declare(&app);
    run_and_check(&app, &topics);

    // What the run reports is what the broker holds.
    let count = expected_big().len();
    let big = read_topic(
        &kafka_broker(),
        topics.big.name(),
        count,
        Duration::from_secs(30),
    );
    let values: Vec<Value> = big
        .iter()
        .map(|(_, value)| serde_json::from_slice(value).unwrap())
        .collect();
    assert_eq!(values, expected_big());
}

#[test]
fn branches_filter_apply_expand_on_the_embedded_broker() {
    let app = embedded_app(&unique("pipelines")).build().unwrap();
    let topics = declare(&app);
    run_and_check(&app, &topics);
}

#[test]
fn branches_filter_apply_expand_through_the_test_driver() {
    let app = embedded_app("driver").build().unwrap();
    let topics = declare(&app);
    let mut driver = TestDriver::new(&app).unwrap();
    for purchase in purchases() {
        let key = purchase.user.clone().into_bytes();
        driver
            .push(&topics.purchases, TestMessage::new(purchase).key(key))
            .unwrap();
    }
    assert_eq!(driver.values(&topics.big).unwrap(), expected_big());
    assert_eq!(driver.values(&topics.items).unwrap(), expected_items());
    assert_eq!(
        driver.values(&topics.small_users).unwrap(),
        expected_small_users()
    );
}

#[test]
fn topics_are_created_with_the_requested_partitions() {
    let app = kafka_app(&unique("create")).build().unwrap();
    let input = Topic::<i64>::new(unique("four-partitions")).partitions(4);
    let output = Topic::<i64>::new(unique("copied"));
    app.dataframe(&input).to_topic(&output);
    let producer = app.producer().unwrap();
    for n in 0..8i64 {
        let key = format!("k{n}").into_bytes();
        producer.send(&input, Some(&key), &n).unwrap();
    }
    producer.flush().unwrap();
    let outputs = app
        .run_until(Until::messages(8).or_timeout(Duration::from_secs(90)))
        .unwrap();
    let mut values = outputs.values(&output).unwrap();
    values.sort();
    assert_eq!(values, (0..8).collect::<Vec<_>>());

    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_broker())
        .create()
        .unwrap();
    use rdkafka::consumer::Consumer;
    let metadata = consumer
        .fetch_metadata(Some(input.name()), Duration::from_secs(30))
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 4);
}
