//! The thread that takes a producer's delivery reports off librdkafka's
//! queue, and the flush that waits for them.
//!
//! rust-rdkafka's `ThreadedProducer` polls in windows of 100 ms and cuts
//! each wait to whole milliseconds, so the last millisecond of every window
//! is a busy loop: about 1 % of a core for every producer, idle or not. Its
//! `flush` waits out a whole window even when the last report came at once.
//! This thread instead blocks in librdkafka until an event comes, and
//! [`flush`] waits in librdkafka until the message count is zero. Events go
//! to the producer's context as rust-rdkafka would hand them over, through
//! librdkafka's event API, which rust-rdkafka does not expose.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::{RDKafkaEvent, RDKafkaMessage, RDKafkaRespErr};
use rdkafka::ClientContext;

use super::delivery::{Delivery, DeliveryContext};
use super::native::{forward_log, text, Queue};
use crate::error::Result;
use crate::thread;

/// How long the thread blocks at most before it looks at its stop flag
/// (a stop also wakes it at once).
const POLL_MS: i32 = 1_000;

/// A producer's delivery-report thread; stops and joins on drop.
pub(crate) struct DeliveryReports {
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DeliveryReports {
    /// Starts serving `producer`'s event queue: delivery reports go to its
    /// context, librdkafka's log lines and errors to the `log` crate.
    pub(crate) fn start(producer: &BaseProducer<DeliveryContext>) -> Result<Self> {
        // SAFETY: the client pointer is valid while `producer` lives; the
        // queue handle is refcounted by librdkafka and destroyed by `Queue`
        // before the producer is (see `OutputProducer`'s field order).
        let queue = Arc::new(Queue(unsafe {
            rdsys::rd_kafka_queue_get_main(producer.client().native_ptr())
        }));
        let context = Arc::clone(producer.context());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn("producer", "kstreams-acks", {
            let (queue, stop) = (Arc::clone(&queue), Arc::clone(&stop));
            move || serve(&queue, &context, &stop)
        })?;
        Ok(DeliveryReports {
            queue,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DeliveryReports {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // SAFETY: the queue handle is alive (`self.queue`).
        unsafe { rdsys::rd_kafka_queue_yield(self.queue.0) };
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the delivery report thread panicked");
            }
        }
    }
}

/// Waits until librdkafka holds no message of `producer` that was not
/// reported (the reports thread serves them meanwhile); `false` when
/// `timeout` passed first.
pub(crate) fn flush(producer: &BaseProducer<DeliveryContext>, timeout: Duration) -> bool {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the client pointer is valid while `producer` lives. With
    // delivery reports as events, `rd_kafka_flush` only waits on a condition
    // variable until the message count is zero.
    let result = unsafe { rdsys::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
    result == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
}

fn serve(queue: &Queue, context: &DeliveryContext, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        // SAFETY: the queue handle outlives this thread (`DeliveryReports`
        // joins it before dropping its own handle).
        let event = unsafe { rdsys::rd_kafka_queue_poll(queue.0, POLL_MS) };
        if event.is_null() {
            continue;
        }
        // A panic (in a logger, say) must not skip the destroy: the event's
        // messages count against the producer until then, and a flush
        // would wait for them in vain.
        // SAFETY: `event` is live until it is destroyed, once, right after
        // its messages were read; `OutputProducer` sends every message
        // with a `Box<Delivery>` opaque.
        let handled = panic::catch_unwind(AssertUnwindSafe(|| unsafe { handle(event, context) }));
        unsafe { rdsys::rd_kafka_event_destroy(event) };
        if handled.is_err() {
            log::error!("handling a delivery report event panicked; the thread goes on");
        }
    }
}

/// Hands one event to `context`, as rust-rdkafka's producer poll would.
///
/// # Safety
///
/// `event` is a live event of a producer whose messages all carry a
/// `Box<Delivery>` as their opaque (`OutputProducer` sends only such).
unsafe fn handle(event: *mut RDKafkaEvent, context: &DeliveryContext) {
    match rdsys::rd_kafka_event_type(event) {
        rdsys::RD_KAFKA_EVENT_DR => loop {
            let message = rdsys::rd_kafka_event_message_next(event);
            if message.is_null() {
                break;
            }
            report(&*message, context);
        },
        rdsys::RD_KAFKA_EVENT_LOG => forward_log(event, context),
        rdsys::RD_KAFKA_EVENT_ERROR => {
            let code: RDKafkaErrorCode = rdsys::rd_kafka_event_error(event).into();
            let reason = text(rdsys::rd_kafka_event_error_string(event));
            context.error(KafkaError::Global(code), reason.trim());
        }
        rdsys::RD_KAFKA_EVENT_STATS => {
            let stats = rdsys::rd_kafka_event_stats(event);
            if !stats.is_null() {
                context.stats_raw(CStr::from_ptr(stats).to_bytes());
            }
        }
        // OAuth token refreshes are not enabled for this context, as with
        // rust-rdkafka's default.
        other => log::debug!("ignored producer event of type {other}"),
    }
}

/// # Safety
///
/// `message` is a message of a live delivery-report event whose opaque is
/// a `Box<Delivery>` not yet taken back.
unsafe fn report(message: &RDKafkaMessage, context: &DeliveryContext) {
    let delivery = match message._private.cast::<Delivery>() {
        opaque if opaque.is_null() => Delivery::Plain,
        opaque => *Box::from_raw(opaque),
    };
    let topic = text(rdsys::rd_kafka_topic_name(message.rkt));
    let result = match message.err {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(message.offset),
        code => Err(KafkaError::MessageProduction(code.into())),
    };
    context.report(&topic, message.partition, result, delivery);
}
