//! What kstreams' own calls into librdkafka share: a queue handle, C
//! strings, and log events handed to a client's context as rust-rdkafka
//! would hand them.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::{c_char, CStr};
use std::ptr;

use rdkafka::bindings as rdsys;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::types::{RDKafkaEvent, RDKafkaQueue};
use rdkafka::ClientContext;

/// A handle on a librdkafka queue, destroyed on drop.
pub(super) struct Queue(pub(super) *mut RDKafkaQueue);

// SAFETY: librdkafka's queues are thread-safe.
unsafe impl Send for Queue {}
unsafe impl Sync for Queue {}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: every `Queue` holds a handle of its own, from one of
        // librdkafka's `rd_kafka_queue_get_*` or `rd_kafka_queue_new`.
        unsafe { rdsys::rd_kafka_queue_destroy(self.0) };
    }
}

/// Hands a log event's line to `context`.
///
/// # Safety
///
/// `event` is a live event of type `RD_KAFKA_EVENT_LOG`.
pub(super) unsafe fn forward_log(event: *mut RDKafkaEvent, context: &impl ClientContext) {
    let (mut facility, mut line, mut level) = (ptr::null(), ptr::null(), 0);
    if rdsys::rd_kafka_event_log(event, &mut facility, &mut line, &mut level) == 0 {
        let (facility, line) = (text(facility), text(line));
        context.log(log_level(level), facility.trim(), line.trim());
    }
}

/// A C string from librdkafka, empty for a null pointer.
///
/// # Safety
///
/// `text` is null or a valid C string that outlives the result.
pub(super) unsafe fn text<'a>(text: *const c_char) -> Cow<'a, str> {
    if text.is_null() {
        return "".into();
    }
    CStr::from_ptr(text).to_string_lossy()
}

/// A librdkafka syslog `level` as rust-rdkafka reads it.
fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}
