//! Reading a consumer group's committed offsets, with the metadata they
//! were committed with. rust-rdkafka's `TopicPartitionListElem::metadata`
//! expects UTF-8 and panics otherwise, and any client may commit any bytes:
//! kstreams reads them itself. And a partition's high watermark as the
//! consumer last saw it, which rust-rdkafka does not expose.
#![allow(unsafe_code)]

use std::slice;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

/// A partition's committed offset, as the group coordinator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// `None`: the group committed none.
    pub(crate) offset: Option<i64>,
    /// The metadata it was committed with.
    pub(crate) metadata: Vec<u8>,
}

/// The group's committed offsets of `partitions`, asked in one request.
///
/// # Errors
///
/// The request's error, or the first partition's error.
pub(crate) fn committed_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<Vec<CommittedOffset>> {
    let list = consumer.committed_offsets(partitions, timeout)?;
    let mut committed = Vec::with_capacity(list.count());
    for (index, element) in list.elements().iter().enumerate() {
        element.error()?;
        let offset = match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        committed.push(CommittedOffset {
            topic: element.topic().to_string(),
            partition: element.partition(),
            offset,
            metadata: metadata(&list, index)?,
        });
    }
    Ok(committed)
}

/// The metadata of element `index` of `list`, as bytes.
fn metadata(list: &TopicPartitionList, index: usize) -> KafkaResult<Vec<u8>> {
    let raw = list.ptr();
    // SAFETY: `raw` is the live list `list` owns; `index` is below its
    // count; an element's metadata is `metadata_size` bytes (or null).
    unsafe {
        let count = usize::try_from((*raw).cnt).unwrap_or(0);
        if index >= count {
            return Err(KafkaError::OffsetFetch(RDKafkaErrorCode::InvalidArgument));
        }
        let element = &*(*raw).elems.add(index);
        if element.metadata.is_null() || element.metadata_size == 0 {
            return Ok(Vec::new());
        }
        let bytes = slice::from_raw_parts(element.metadata.cast::<u8>(), element.metadata_size);
        Ok(bytes.to_vec())
    }
}

/// The high watermark of `partition` of `topic` as the consumer's last
/// fetch saw it (librdkafka's cached figure: no request); `None` when it
/// has seen none.
pub(crate) fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the
    // topic is a NUL-terminated string; librdkafka writes both offsets.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    let known = error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
    (known && high >= 0).then_some(high)
}
