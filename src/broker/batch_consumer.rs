//! A consumer read in batches, for recovery's changelog reader.
//!
//! rust-rdkafka's `BaseConsumer::poll` takes one message per call, and
//! every call reads the clock three times (librdkafka notes when the
//! application polled, before and after, and rust-rdkafka when its own
//! timeout started): at a million changelog records a second that was a
//! fifth of the reader's time. librdkafka's batch consume takes every
//! message already fetched in one call, reading the clock a few times a
//! batch.
//!
//! Batch consume serves log lines only through a log callback, which
//! rust-rdkafka does not set: the consumer's log lines go to a queue of
//! their own instead, served after every batch. Other events are served
//! by librdkafka without callbacks, which suits a consumer that is only
//! assigned partitions: librdkafka's own errors come as log lines (level
//! error), statistics are not delivered, and the consumer must not
//! subscribe (a rebalance would drop its assignment), commit (a commit
//! result would abort the process) or refresh OAuth tokens.
#![allow(unsafe_code)]

use std::convert::Infallible;
use std::ffi::{CStr, CString};
use std::ptr;
use std::slice;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::{RDKafkaMessage, RDKafkaRespErr};

use super::native::{forward_log, Queue};

/// Messages taken per call into librdkafka at most.
pub(super) const BATCH: usize = 1_000;

/// A consumer whose fetched messages are read a batch at a time.
pub(crate) struct BatchConsumer<C: ConsumerContext + 'static> {
    /// The consumer's queue of fetched messages.
    messages: Queue,
    /// The consumer's log lines.
    logs: Queue,
    /// Declared last: the queue handles above go first.
    consumer: BaseConsumer<C>,
}

/// One fetched message, valid during the call it is handed to.
pub(crate) struct FetchedRecord<'a> {
    message: &'a RDKafkaMessage,
}

/// What a read hands over, one at a time.
pub(crate) enum Fetched<'a> {
    /// A record.
    Record(FetchedRecord<'a>),
    /// The reader fetched everything of `partition` of `topic` up to
    /// `offset`, the partition's end (its high watermark, or its last
    /// stable offset when reading committed records only): control
    /// records and gaps before it included. Needs
    /// `enable.partition.eof=true`.
    End {
        topic: &'a [u8],
        partition: i32,
        offset: i64,
    },
    /// An error of the consumer, or of `partition` of `topic`.
    Error {
        topic: Option<&'a [u8]>,
        partition: i32,
        error: KafkaError,
    },
}

impl<C: ConsumerContext + 'static> BatchConsumer<C> {
    /// Takes over `consumer`, which must have a `group.id` (librdkafka
    /// has a consumer queue only then), `enable.auto.commit=false`, and no
    /// partitions yet, to read it in batches.
    pub(crate) fn new(consumer: BaseConsumer<C>) -> KafkaResult<Self> {
        let client = consumer.client().native_ptr();
        // SAFETY: the client lives as long as `consumer`, which the new
        // value owns and drops after both queue handles.
        let (messages, logs) = unsafe {
            let messages = rdsys::rd_kafka_queue_get_consumer(client);
            if messages.is_null() {
                return Err(KafkaError::ClientCreation(
                    "a batch consumer needs a group.id: librdkafka gave no consumer queue"
                        .to_string(),
                ));
            }
            let (messages, logs) = (Queue(messages), Queue(rdsys::rd_kafka_queue_new(client)));
            match rdsys::rd_kafka_set_log_queue(client, logs.0) {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => (messages, logs),
                code => {
                    return Err(KafkaError::ClientCreation(format!(
                        "a batch consumer needs its log lines on a queue: {}",
                        rdkafka::error::RDKafkaErrorCode::from(code)
                    )))
                }
            }
        };
        // Log lines of the client's creation wait on the consumer queue,
        // where batch consume would print them to stderr: rust-rdkafka
        // serves them, one event a poll (nothing is assigned yet).
        // SAFETY: the queue handle is live.
        for _ in 0..unsafe { rdsys::rd_kafka_queue_length(messages.0) } {
            let _ = consumer.poll(Duration::ZERO);
        }
        Ok(BatchConsumer {
            messages,
            logs,
            consumer,
        })
    }

    /// The consumer, for everything but reading messages: assignments,
    /// metadata.
    pub(crate) fn consumer(&self) -> &BaseConsumer<C> {
        &self.consumer
    }

    /// Hands every message fetched so far to `each`, up to a batch, waiting
    /// up to `timeout` for the first when there is none.
    pub(crate) fn read(&self, timeout: Duration, mut each: impl FnMut(Fetched<'_>)) {
        let read = read_batch(
            &self.messages,
            timeout,
            BATCH,
            || true,
            |fetched| {
                each(fetched);
                Ok::<(), Infallible>(())
            },
        );
        let Ok(()) = read;
        self.serve_logs();
    }

    /// Hands the consumer's waiting log lines to its context ([`read`]
    /// does after every batch).
    ///
    /// [`read`]: Self::read
    pub(crate) fn serve_logs(&self) {
        loop {
            // SAFETY: the queue lives as long as `self`; the event is
            // destroyed once, after its line was read.
            unsafe {
                let event = rdsys::rd_kafka_queue_poll(self.logs.0, 0);
                if event.is_null() {
                    return;
                }
                if rdsys::rd_kafka_event_type(event) == rdsys::RD_KAFKA_EVENT_LOG {
                    forward_log(event, &**self.consumer.context());
                }
                rdsys::rd_kafka_event_destroy(event);
            }
        }
    }
}

impl<C: ConsumerContext + 'static> Drop for BatchConsumer<C> {
    fn drop(&mut self) {
        // Log lines of the consumer's shutdown go where rust-rdkafka sends
        // them (null: the main queue); those already on the log queue are
        // served here.
        // SAFETY: the client lives until `consumer` drops, after this.
        unsafe {
            rdsys::rd_kafka_set_log_queue(self.consumer.client().native_ptr(), ptr::null_mut())
        };
        self.serve_logs();
    }
}

/// Hands every message fetched on `queue` so far to `each`, up to `limit`
/// (at most [`BATCH`]); when there is none, waits up to `timeout` for the
/// first if `wait` says so. Stops at the first error `each` returns; the
/// messages after it are dropped.
pub(super) fn read_batch<E>(
    queue: &Queue,
    timeout: Duration,
    limit: usize,
    wait: impl FnOnce() -> bool,
    mut each: impl FnMut(Fetched<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let limit = limit.clamp(1, BATCH);
    let mut batch = Batch::default();
    if batch.take(queue, Duration::ZERO, limit) == 0 && !timeout.is_zero() && wait() {
        // Wait for one, then take what came with it.
        if batch.take(queue, timeout, 1) > 0 {
            batch.take(queue, Duration::ZERO, limit - 1);
        }
    }
    for index in 0..batch.taken {
        let message = batch.messages[index];
        // SAFETY: librdkafka handed `message` over; it is destroyed once:
        // here after its use, or by `Batch`'s drop should `each` fail or
        // panic (its slot is cleared only once `each` returned).
        let handed = each(Fetched::from(unsafe { &*message }));
        batch.messages[index] = ptr::null_mut();
        unsafe { rdsys::rd_kafka_message_destroy(message) };
        handed?;
    }
    Ok(())
}

/// Messages taken from librdkafka; those not handed over yet are destroyed
/// on drop.
struct Batch {
    messages: [*mut RDKafkaMessage; BATCH],
    taken: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            messages: [ptr::null_mut(); BATCH],
            taken: 0,
        }
    }
}

impl Batch {
    /// Appends up to `wanted` of the messages fetched on `queue`, waiting
    /// up to `timeout` for the first; returns how many came.
    fn take(&mut self, queue: &Queue, timeout: Duration, wanted: usize) -> usize {
        let wanted = wanted.min(BATCH - self.taken);
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the queue handle is live, and the array has room for
        // `wanted` more messages. librdkafka returns how many it wrote.
        let taken = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                queue.0,
                timeout_ms,
                self.messages.as_mut_ptr().add(self.taken),
                wanted,
            )
        };
        let taken = usize::try_from(taken).unwrap_or(0);
        self.taken += taken;
        taken
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        for &message in &self.messages[..self.taken] {
            if !message.is_null() {
                // SAFETY: a message taken and not destroyed yet.
                unsafe { rdsys::rd_kafka_message_destroy(message) };
            }
        }
    }
}

impl<'a> Fetched<'a> {
    fn from(message: &'a RDKafkaMessage) -> Self {
        match message.err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => {
                Fetched::Record(FetchedRecord { message })
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => Fetched::End {
                topic: topic_of(message),
                partition: message.partition,
                offset: message.offset,
            },
            code => Fetched::Error {
                topic: (!message.rkt.is_null()).then(|| topic_of(message)),
                partition: message.partition,
                error: KafkaError::MessageConsumption(code.into()),
            },
        }
    }
}

/// The name of a fetched message's topic, as bytes (Kafka topic names are
/// ASCII).
fn topic_of(message: &RDKafkaMessage) -> &[u8] {
    // SAFETY: a fetched message's topic handle and its name live as long
    // as the message.
    unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(message.rkt)).to_bytes() }
}

impl<'a> FetchedRecord<'a> {
    /// A record of `message`, made by a test: its topic handle and headers
    /// are not read.
    #[cfg(test)]
    pub(crate) fn of(message: &'a RDKafkaMessage) -> Self {
        FetchedRecord { message }
    }

    /// A message rust-rdkafka's poll returned.
    pub(crate) fn borrowed(message: &'a BorrowedMessage<'_>) -> Self {
        // SAFETY: the message lives as long as its borrow.
        FetchedRecord {
            message: unsafe { &*message.ptr() },
        }
    }

    /// The message, for librdkafka's functions.
    pub(super) fn as_ptr(&self) -> *mut RDKafkaMessage {
        ptr::from_ref(self.message).cast_mut()
    }

    /// The topic's name, as bytes (Kafka topic names are ASCII).
    pub(crate) fn topic(&self) -> &'a [u8] {
        topic_of(self.message)
    }

    pub(crate) fn partition(&self) -> i32 {
        self.message.partition
    }

    pub(crate) fn offset(&self) -> i64 {
        self.message.offset
    }

    pub(crate) fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: librdkafka's key pointer and length describe the key, in
        // the message's memory.
        unsafe { bytes(self.message.key.cast(), self.message.key_len) }
    }

    /// The timestamp in milliseconds, `None` when the record has none
    /// (as rust-rdkafka reads it).
    pub(crate) fn timestamp(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live.
        let timestamp = unsafe { rdsys::rd_kafka_message_timestamp(self.message, &mut kind) };
        let available = kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        (available && timestamp != -1).then_some(timestamp)
    }

    pub(crate) fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: as for the key.
        unsafe { bytes(self.message.payload.cast(), self.message.len) }
    }

    /// The value of the last header named `name` (`None` for a header
    /// without a value, too).
    pub(crate) fn header(&self, name: &str) -> Option<&'a [u8]> {
        let name = CString::new(name).ok()?;
        let message = self.as_ptr();
        let (mut headers, mut value, mut size) = (ptr::null_mut(), ptr::null(), 0);
        // SAFETY: the message is live; librdkafka parses its headers into
        // memory the message owns, and the value points into it.
        unsafe {
            if rdsys::rd_kafka_message_headers(message, &mut headers)
                != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                return None;
            }
            let found =
                rdsys::rd_kafka_header_get_last(headers, name.as_ptr(), &mut value, &mut size);
            if found != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                return None;
            }
            bytes(value.cast(), size)
        }
    }
}

/// # Safety
///
/// `data` is null or points at `len` bytes that live for `'a`.
unsafe fn bytes<'a>(data: *const u8, len: usize) -> Option<&'a [u8]> {
    (!data.is_null()).then(|| slice::from_raw_parts(data, len))
}
