//! The main consumer's messages, read a batch at a time.
//!
//! rust-rdkafka's `BaseConsumer::poll` takes one message per call, with
//! three clock reads and a pop under the queue's lock for each (see
//! [`BatchConsumer`](super::BatchConsumer)). librdkafka's batch consume
//! cannot read the consumer queue itself: a rebalance event it meets there
//! is served without rust-rdkafka's callback, which unassigns everything.
//! So the queue is split in two:
//!
//! - the messages of every assigned partition are forwarded to a queue of
//!   their own, read in batches;
//! - the consumer queue keeps the events (rebalances, errors, log lines),
//!   served by rust-rdkafka's `poll` as before. An event arriving there
//!   wakes a wait for messages, so that it is served at once.
//!
//! A partition's messages go to the consumer queue until it is forwarded,
//! just after its assignment: draining the consumer queue before reading a
//! batch keeps each partition's messages in order.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{c_void, CString};
use std::time::{Duration, Instant};

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafka;

use super::batch_consumer::{read_batch, BATCH};
use super::native::Queue;
use super::Fetched;

/// How long a batch of messages may take to process, about.
const BATCH_TIME: Duration = Duration::from_millis(100);

/// The queue of the fetched messages of a consumer's partitions, apart
/// from its events. Borrows the consumer: it goes first.
pub(crate) struct InputQueue<'c, C: ConsumerContext + 'static> {
    messages: Queue,
    /// How many messages the next batch takes at most.
    limit: Cell<usize>,
    /// The consumer queue, whose events wake a wait on `messages`.
    events: Queue,
    consumer: &'c BaseConsumer<C>,
}

impl<'c, C: ConsumerContext + 'static> InputQueue<'c, C> {
    /// A queue for the messages of `consumer`, which must have a
    /// `group.id` (librdkafka has a consumer queue only then).
    pub(crate) fn new(consumer: &'c BaseConsumer<C>) -> KafkaResult<Self> {
        let client = consumer.client().native_ptr();
        // SAFETY: the client outlives the borrow of `consumer`, so both
        // handles; the wake-up callback's queue (`messages`) lives until
        // `drop`, which turns the callback off first.
        unsafe {
            let events = rdsys::rd_kafka_queue_get_consumer(client);
            if events.is_null() {
                return Err(KafkaError::ClientCreation(
                    "a consumer read in batches needs a group.id: librdkafka gave no consumer \
                     queue"
                        .to_string(),
                ));
            }
            let (messages, events) = (Queue(rdsys::rd_kafka_queue_new(client)), Queue(events));
            rdsys::rd_kafka_queue_cb_event_enable(events.0, Some(wake), messages.0.cast());
            Ok(InputQueue {
                messages,
                limit: Cell::new(BATCH),
                events,
                consumer,
            })
        }
    }

    /// Sends the messages that `partition` of `topic` fetches from now on
    /// to this queue.
    pub(crate) fn take_partition(&self, topic: &str, partition: i32) -> KafkaResult<()> {
        let missing = || KafkaError::Subscription(format!("{topic}[{partition}] has no queue"));
        let name = CString::new(topic).map_err(|_| missing())?;
        let client = self.consumer.client().native_ptr();
        // SAFETY: the client is live; the partition's queue handle is
        // destroyed once forwarded (librdkafka keeps the forward).
        unsafe {
            let queue = rdsys::rd_kafka_queue_get_partition(client, name.as_ptr(), partition);
            if queue.is_null() {
                return Err(missing());
            }
            let queue = Queue(queue);
            rdsys::rd_kafka_queue_forward(queue.0, self.messages.0);
        }
        Ok(())
    }

    /// Whether events wait on the consumer queue, for `poll` to serve.
    pub(crate) fn has_events(&self) -> bool {
        // SAFETY: the queue handle is live.
        unsafe { rdsys::rd_kafka_queue_length(self.events.0) > 0 }
    }

    /// Hands every message fetched so far to `each`, up to a batch, waiting
    /// up to `timeout` for the first when there is none; an event on the
    /// consumer queue ends the wait. Stops at the first error of `each`:
    /// the rest of the batch is dropped (fetched again after a restart, as
    /// its offsets are not committed).
    ///
    /// A batch is as many messages as took [`BATCH_TIME`] before: the
    /// consumer is polled between batches, and `max.poll.interval.ms`,
    /// a rebalance and a stop request wait for the batch (a closure that
    /// takes a second gets one message a batch).
    pub(crate) fn read<E>(
        &self,
        timeout: Duration,
        mut each: impl FnMut(Fetched<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let (mut started, mut count) = (None, 0u32);
        let read = read_batch(
            &self.messages,
            timeout,
            self.limit.get(),
            || !self.has_events(),
            |fetched| {
                started.get_or_insert_with(Instant::now);
                count += 1;
                each(fetched)
            },
        );
        if let Some(started) = started {
            let each_took = started.elapsed() / count;
            let fit = BATCH_TIME.as_nanos() / each_took.as_nanos().max(1);
            self.limit
                .set(usize::try_from(fit).unwrap_or(BATCH).clamp(1, BATCH));
        }
        read
    }
}

impl<C: ConsumerContext + 'static> Drop for InputQueue<'_, C> {
    fn drop(&mut self) {
        // SAFETY: the queue is live. librdkafka runs the callback under the
        // queue's lock, so none runs once this returned.
        unsafe { rdsys::rd_kafka_queue_cb_event_enable(self.events.0, None, std::ptr::null_mut()) };
    }
}

/// Called by librdkafka when the consumer queue gets an event: ends the
/// wait for messages on the queue `opaque`.
///
/// # Safety
///
/// `opaque` is a live queue (the messages' queue, alive while the
/// callback is on).
unsafe extern "C" fn wake(_client: *mut RDKafka, opaque: *mut c_void) {
    rdsys::rd_kafka_queue_yield(opaque.cast());
}
