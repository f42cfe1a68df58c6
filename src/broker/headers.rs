//! Reading a consumed message's headers. rust-rdkafka's `Headers::get`
//! and `try_get` unwrap each header name as UTF-8, so one message with
//! another name would panic the poll loop (a panic that no error callback
//! sees, on the same offset at every restart); kstreams reads them itself.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::ptr;
use std::slice;

use rdkafka::bindings as rdsys;
use rdkafka::types::RDKafkaRespErr;

use super::FetchedRecord;
use crate::message::Headers;

/// Headers that cannot be read: librdkafka could not parse them, or a
/// name is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadHeaders {
    /// librdkafka's error parsing them.
    Unparsable(RDKafkaRespErr),
    /// Header number `index` has a name that is not UTF-8.
    Name { index: usize, name: Vec<u8> },
}

impl std::fmt::Display for BadHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadHeaders::Unparsable(code) => write!(f, "headers cannot be parsed: {code:?}"),
            BadHeaders::Name { index, name } => write!(
                f,
                "header {index} has a name that is not UTF-8: {:?}",
                String::from_utf8_lossy(name)
            ),
        }
    }
}

impl std::error::Error for BadHeaders {}

/// The headers of `message`, in order.
///
/// # Errors
///
/// Headers librdkafka cannot parse, or the first header whose name is not
/// UTF-8.
pub(crate) fn read_headers(message: &FetchedRecord<'_>) -> Result<Headers, BadHeaders> {
    let mut headers = ptr::null_mut();
    // SAFETY: the message is live while borrowed; librdkafka parses its
    // headers into memory the message owns.
    let parsed = unsafe { rdsys::rd_kafka_message_headers(message.as_ptr(), &mut headers) };
    match parsed {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR if !headers.is_null() => {}
        // No headers at all.
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__NOENT | RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => {
            return Ok(Vec::new())
        }
        code => return Err(BadHeaders::Unparsable(code)),
    }
    // SAFETY: `headers` is the message's header list.
    let count = unsafe { rdsys::rd_kafka_header_cnt(headers) };
    let mut read = Vec::with_capacity(count);
    for index in 0..count {
        let (mut name, mut value, mut size) = (ptr::null(), ptr::null(), 0);
        // SAFETY: `index` is below the count; the name is a C string and
        // the value `size` bytes (or null), both in the message's memory.
        let (name, value) = unsafe {
            let found =
                rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size);
            if found != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return Err(BadHeaders::Unparsable(found));
            }
            let value = match value.is_null() {
                true => &[][..],
                false => slice::from_raw_parts(value.cast::<u8>(), size),
            };
            (CStr::from_ptr(name).to_bytes(), value)
        };
        let name = std::str::from_utf8(name).map_err(|_| BadHeaders::Name {
            index,
            name: name.to_vec(),
        })?;
        read.push((name.to_string(), value.to_vec()));
    }
    Ok(read)
}
