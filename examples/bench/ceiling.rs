//! The end-to-end ceilings: plain rdkafka loops that consume the input and
//! produce to an output topic, with no state and no framework. Two, so
//! that each kstreams workload is compared with a loop that produces as
//! many messages as it does:
//!
//! - [`copy_all`] (`e2e rdkafka ceiling`) produces every payload as it
//!   came, as `count_per_key` produces one output per input;
//! - [`filter`] (`e2e rdkafka ceiling stateless`) does the stateless
//!   pipeline's work: decodes each purchase into a `serde_json::Value`,
//!   keeps those that pass the same filter (half of them), and produces the
//!   same output payload for those only, as `e2e kstreams stateless` does.

use std::time::{Duration, Instant};

use kstreams::{Application, Topic};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::driver::{is_big, summary};
use crate::e2e::send;
use crate::measure::{cpu_seconds, Measure, Who};
use crate::{fresh, Flags};

/// What a ceiling does with a message's payload.
#[derive(Clone, Copy)]
enum Work {
    /// Produces it as it came.
    CopyAll,
    /// The stateless pipeline's decode, filter, apply and encode.
    Filter,
}

/// The ceiling of the workloads that produce one output per input.
pub fn copy_all(broker: &str, input: &str, flags: &Flags) -> anyhow::Result<Measure> {
    run(broker, input, flags, Work::CopyAll)
}

/// The ceiling of the stateless workload: its closures, in a plain loop.
pub fn filter(broker: &str, input: &str, flags: &Flags) -> anyhow::Result<Measure> {
    run(broker, input, flags, Work::Filter)
}

/// Consumes `--messages` of `input` and produces what `work` makes of
/// them, timed from the first message to the last output's delivery.
fn run(broker: &str, input: &str, flags: &Flags, work: Work) -> anyhow::Result<Measure> {
    // Assigned, not subscribed: no group join to wait for.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", fresh("ceiling"))
        .set("enable.auto.commit", "false")
        .create()?;
    let partitions = partition_count(&consumer, input)?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(input, partition, Offset::Beginning)?;
    }
    let output = fresh("ceiling-out");
    // The output topic exists before the clock starts (librdkafka would
    // wait for it to appear otherwise): created with a marker record.
    let marker = Topic::<Value>::new(&output).partitions(partitions);
    let app = Application::builder().broker_address(broker).build()?;
    let kstreams_producer = app.producer()?;
    kstreams_producer.send(&marker, None, &json!({"marker": true}))?;
    kstreams_producer.flush()?;
    consumer.assign(&assignment)?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "5")
        .create()?;
    let mut done = 0;
    let mut first = None;
    let mut cpu = 0.0;
    let mut last_message = Instant::now();
    // The encoded output of `Work::Filter`, reused from message to message.
    let mut encoded = Vec::new();
    while done < flags.messages {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            anyhow::ensure!(
                last_message.elapsed() < Duration::from_secs(60),
                "ceiling: no message for 60 s after {done}"
            );
            continue;
        };
        last_message = Instant::now();
        let message = message?;
        if first.is_none() {
            first = Some(Instant::now());
            cpu = cpu_seconds(Who::Process);
        }
        done += 1;
        let payload = message.payload().unwrap_or_default();
        let payload = match work {
            Work::CopyAll => payload,
            Work::Filter => {
                let purchase: Value = serde_json::from_slice(payload)?;
                if !is_big(&purchase) {
                    continue;
                }
                encoded.clear();
                serde_json::to_writer(&mut encoded, &summary(purchase))?;
                encoded.as_slice()
            }
        };
        let mut record = BaseRecord::to(&output).payload(payload);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        send(&producer, record)?;
    }
    producer.flush(Duration::from_secs(60))?;
    let first = first.unwrap_or_else(Instant::now);
    Ok(Measure {
        messages: done,
        seconds: first.elapsed().as_secs_f64(),
        cpu: Some(cpu_seconds(Who::Process) - cpu),
    })
}

/// How many partitions `topic` has, from the broker's metadata.
fn partition_count(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i32> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |topic| topic.partitions().len());
    anyhow::ensure!(
        partitions > 0,
        "ceiling: input topic {topic} has no partitions"
    );
    Ok(i32::try_from(partitions)?)
}
