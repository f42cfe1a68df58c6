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

use kstreams::Topic;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::driver::{is_big, summary};
use crate::e2e::create_with_record;
use crate::measure::{cpu_seconds, Measure, Who};
use crate::plain_consume::{BatchReader, FETCH_QUEUE_BACKOFF_MS};
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
///
/// The fastest plain loop rdkafka offers, as kstreams' own poll loop is
/// built: librdkafka's batch consume (`plain_consume::BatchReader`) with
/// kstreams' `fetch.queue.backoff.ms`, a `BaseProducer` whose delivery
/// reports are served in the loop (no polling thread), and an end that
/// waits for the last delivery and no longer (rust-rdkafka's `flush`
/// polls in windows of 100 ms).
fn run(broker: &str, input: &str, flags: &Flags, work: Work) -> anyhow::Result<Measure> {
    // Assigned, not subscribed: no group join to wait for.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", fresh("ceiling"))
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
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
    create_with_record(broker, &marker, None, &json!({"marker": true}))?;
    let reader = BatchReader::new(consumer)?;
    reader.consumer.assign(&assignment)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "5")
        .create()?;
    let (mut done, mut first, mut cpu) = (0, None, 0.0);
    let mut last_message = Instant::now();
    // The encoded output of `Work::Filter`, reused from message to message.
    let mut encoded = Vec::new();
    let mut failed = None;
    while done < flags.messages && failed.is_none() {
        let taken = reader.read(Duration::from_millis(100), |message| {
            if done >= flags.messages || failed.is_some() {
                return;
            }
            if first.is_none() {
                first = Some(Instant::now());
                cpu = cpu_seconds(Who::Process);
            }
            done += 1;
            if let Err(error) = copy(&producer, &output, message, work, &mut encoded) {
                failed = Some(error);
            }
        });
        if taken > 0 {
            last_message = Instant::now();
        }
        anyhow::ensure!(
            last_message.elapsed() < Duration::from_secs(60),
            "ceiling: no message for 60 s after {done}"
        );
    }
    if let Some(error) = failed {
        return Err(error);
    }
    // Sends what lingers at once, then serves deliveries until none is due.
    let _ = producer.flush(Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(60);
    while producer.in_flight_count() > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "ceiling: outputs undelivered for 60 s"
        );
        wait_for_deliveries(&producer);
    }
    let first = first.unwrap_or_else(Instant::now);
    Ok(Measure {
        messages: done,
        seconds: first.elapsed().as_secs_f64(),
        cpu: Some(cpu_seconds(Who::Process) - cpu),
    })
}

/// Does `work` on `message` and produces the result to `output`, serving
/// a delivery report if one is waiting.
fn copy(
    producer: &BaseProducer,
    output: &str,
    message: &RDKafkaMessage,
    work: Work,
    encoded: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let payload = bytes(message.payload.cast(), message.len);
    let payload = match work {
        Work::CopyAll => payload,
        Work::Filter => {
            let purchase: Value = serde_json::from_slice(payload)?;
            if !is_big(&purchase) {
                return Ok(());
            }
            encoded.clear();
            serde_json::to_writer(&mut *encoded, &summary(purchase))?;
            encoded.as_slice()
        }
    };
    let mut record = BaseRecord::<[u8], [u8]>::to(output).payload(payload);
    if !message.key.is_null() {
        record = record.key(bytes(message.key.cast(), message.key_len));
    }
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), again)) => {
                record = again;
                wait_for_deliveries(producer);
            }
            Err((error, _)) => return Err(error.into()),
        }
    }
    producer.poll(Duration::ZERO);
    Ok(())
}

/// Serves the delivery reports that came, then sleeps a millisecond.
/// Not `poll` with a timeout: rust-rdkafka cuts a poll's wait to whole
/// milliseconds, so its last millisecond is a busy loop (on tansu, whose
/// acknowledgements take a quarter of a second and more, that spin was
/// most of the ceiling's CPU).
fn wait_for_deliveries(producer: &BaseProducer) {
    for _ in 0..64 {
        producer.poll(Duration::ZERO);
    }
    std::thread::sleep(Duration::from_millis(1));
}

/// The `len` bytes at `data` (none when it is null).
fn bytes<'a>(data: *const u8, len: usize) -> &'a [u8] {
    if data.is_null() {
        return &[];
    }
    // SAFETY: librdkafka's message holds `len` bytes at `data` for as long
    // as the message, which outlives the borrow (the caller's callback).
    unsafe { std::slice::from_raw_parts(data, len) }
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
