//! Recovery's baseline: the fastest plain consume of the same changelog
//! that rdkafka offers, with nothing done to the records.
//!
//! Fair to kstreams' changelog reader (src/state/recovery/worker.rs, its
//! consumer made by `create_changelog_reader` in src/runner.rs) in every
//! respect but the work: the same batch consume (librdkafka's
//! `rd_kafka_consume_batch_queue`, up to 1 000 messages a call, as
//! src/broker/batch_consumer.rs, which is not public), the same fetch
//! settings, the same start offsets, assigned the same way (the topic's
//! metadata asked first, every partition in one assignment), and the same
//! end: every partition's end-of-partition event. What it leaves out is
//! what recovery is for: it neither decodes nor writes a record.

use std::ffi::CStr;
use std::os::raw::c_int;
use std::ptr;
use std::time::{Duration, Instant};

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::{RDKafkaMessage, RDKafkaQueue, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::fresh;
use crate::measure::{cpu_seconds, print_thread_cpu, thread_cpu, Measure, Who};

/// Messages taken per call into librdkafka at most (kstreams' reader: the
/// same).
const BATCH: usize = 1_000;
/// kstreams' changelog reader's `fetch.wait.max.ms` (src/runner.rs,
/// `CHANGELOG_FETCH_WAIT_MS`).
const FETCH_WAIT_MS: &str = "20";
/// kstreams' consumers' `fetch.queue.backoff.ms` (src/runner.rs,
/// `FETCH_QUEUE_BACKOFF_MS`): librdkafka's default backs off for a
/// second whenever its queue is full, which makes the figure swing.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";
/// How long one read waits for a message (kstreams' reader: the same).
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// How long the broker may stay silent before the baseline gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// Reads the `partitions` partitions of `changelog` from their beginning
/// to their end, and checks that it read what they held, at least the
/// `records` seeded.
pub fn run(
    broker: &str,
    changelog: &str,
    records: u64,
    partitions: i32,
) -> anyhow::Result<Measure> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", fresh("plain-consume"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .create()?;
    let reader = BatchReader::new(consumer)?;
    let consumer = &reader.consumer;
    // From explicit offsets, as kstreams' reader (which knows them from the
    // watermarks it asks for before its recovery starts).
    let (mut assignment, mut held) = (TopicPartitionList::new(), 0);
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(changelog, partition, PATIENCE)?;
        assignment.add_partition_offset(changelog, partition, Offset::Offset(low))?;
        held += u64::try_from(high - low)?;
    }
    let (started, cpu, threads) = (Instant::now(), cpu_seconds(Who::Process), thread_cpu());
    // Asked up front, as kstreams' reader does: librdkafka otherwise looks up
    // the leaders of a topic it has no metadata for on a 1 s timer.
    consumer.fetch_metadata(Some(changelog), PATIENCE)?;
    consumer.assign(&assignment)?;
    let mut ended = vec![false; partitions as usize];
    let (mut read, mut last_heard) = (0, Instant::now());
    while ended.iter().any(|ended| !ended) {
        let taken = reader.read(READ_TIMEOUT, |message| match message.err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => read += 1,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                if let Some(ended) = ended.get_mut(message.partition as usize) {
                    *ended = true;
                }
            }
            code => eprintln!(
                "plain consume: partition {}: {}",
                message.partition,
                rdkafka::error::RDKafkaErrorCode::from(code)
            ),
        });
        if taken > 0 {
            last_heard = Instant::now();
        }
        anyhow::ensure!(
            last_heard.elapsed() < PATIENCE,
            "plain consume: nothing for {PATIENCE:?} after {read} records"
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(Who::Process) - cpu;
    // Read second, the changelog also holds what kstreams wrote for the
    // new messages (two records a partition).
    anyhow::ensure!(
        read == held && read >= records,
        "plain consume: read {read} records to the end, expected {held} (at least {records})"
    );
    print_thread_cpu("plain consume:", (&threads, &thread_cpu()), read);
    Ok(Measure {
        messages: read,
        seconds,
        cpu: Some(cpu),
    })
}

/// A queue handle of librdkafka's, destroyed on drop.
struct Queue(*mut RDKafkaQueue);

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: every `Queue` holds a handle of its own.
        unsafe { rdsys::rd_kafka_queue_destroy(self.0) };
    }
}

/// A consumer whose fetched messages are taken a batch at a time (also the
/// end-to-end ceilings' consumer).
pub struct BatchReader {
    /// The consumer's queue of fetched messages.
    messages: Queue,
    /// The consumer's log lines: batch consume would print those on the
    /// consumer queue to stderr.
    logs: Queue,
    /// Declared last: the queue handles above drop first.
    pub consumer: BaseConsumer,
}

impl BatchReader {
    /// Takes over `consumer` (with a `group.id`, nothing assigned yet).
    pub fn new(consumer: BaseConsumer) -> anyhow::Result<Self> {
        let client = consumer.client().native_ptr();
        // SAFETY: the client lives as long as `consumer`, which the new
        // value owns and drops after both queue handles.
        let (messages, logs) = unsafe {
            let messages = rdsys::rd_kafka_queue_get_consumer(client);
            anyhow::ensure!(!messages.is_null(), "no consumer queue: no group.id?");
            let (messages, logs) = (Queue(messages), Queue(rdsys::rd_kafka_queue_new(client)));
            let code = rdsys::rd_kafka_set_log_queue(client, logs.0);
            anyhow::ensure!(
                code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
                "could not set the log queue: {code:?}"
            );
            (messages, logs)
        };
        // The log lines of the client's creation wait on the consumer queue:
        // served by rust-rdkafka, one event a poll.
        // SAFETY: the queue handle is live.
        for _ in 0..unsafe { rdsys::rd_kafka_queue_length(messages.0) } {
            let _ = consumer.poll(Duration::ZERO);
        }
        Ok(BatchReader {
            messages,
            logs,
            consumer,
        })
    }

    /// Hands every message fetched so far (up to a batch) to `each`,
    /// waiting up to `timeout` for the first when there is none, as
    /// kstreams' reader does; returns how many there were.
    pub fn read(&self, timeout: Duration, mut each: impl FnMut(&RDKafkaMessage)) -> usize {
        let mut batch = [ptr::null_mut::<RDKafkaMessage>(); BATCH];
        let mut taken = self.take(&mut batch, Duration::ZERO);
        if taken == 0 {
            // Wait for one, then take what came with it.
            taken = self.take(&mut batch[..1], timeout);
            if taken == 1 {
                taken += self.take(&mut batch[1..], Duration::ZERO);
            }
        }
        for &message in &batch[..taken] {
            // SAFETY: librdkafka handed the message over; it is destroyed
            // once, after its use.
            unsafe {
                each(&*message);
                rdsys::rd_kafka_message_destroy(message);
            }
        }
        self.print_logs();
        taken
    }

    /// Takes up to `into.len()` fetched messages into `into`, waiting up
    /// to `timeout` for them; returns how many came.
    fn take(&self, into: &mut [*mut RDKafkaMessage], timeout: Duration) -> usize {
        let timeout = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: the queue is live and `into` has room for `into.len()`
        // messages; librdkafka returns how many it wrote.
        let taken = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.messages.0,
                timeout,
                into.as_mut_ptr(),
                into.len(),
            )
        };
        usize::try_from(taken).unwrap_or(0)
    }

    /// Prints the consumer's warnings and errors; drops its other lines.
    fn print_logs(&self) {
        loop {
            // SAFETY: the queue is live; the event is destroyed once, after
            // its line was read.
            unsafe {
                let event = rdsys::rd_kafka_queue_poll(self.logs.0, 0);
                if event.is_null() {
                    return;
                }
                let (mut facility, mut line, mut level) = (ptr::null(), ptr::null(), 0);
                if rdsys::rd_kafka_event_type(event) == rdsys::RD_KAFKA_EVENT_LOG
                    && rdsys::rd_kafka_event_log(event, &mut facility, &mut line, &mut level) == 0
                    && level <= 4
                    && !line.is_null()
                {
                    let line = CStr::from_ptr(line).to_string_lossy();
                    eprintln!("plain consume: librdkafka: {line}");
                }
                rdsys::rd_kafka_event_destroy(event);
            }
        }
    }
}

impl Drop for BatchReader {
    fn drop(&mut self) {
        // The shutdown's log lines go where rust-rdkafka sends them (null:
        // the main queue); those already on the log queue are served here.
        // SAFETY: the client lives until `consumer` drops, after this.
        unsafe {
            rdsys::rd_kafka_set_log_queue(self.consumer.client().native_ptr(), ptr::null_mut())
        };
        self.print_logs();
    }
}
