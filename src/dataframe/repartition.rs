//! Repartition records: what a `group_by` produces to its repartition
//! topic, and how the frame after it absorbs each of them once.
//!
//! After a crash the source messages since the last commit are processed
//! again, so their repartition records are produced again. Each record
//! carries a stamp: the source partition, the source offset and its index
//! among the records that one source message produced. Each partition of
//! the repartition topic keeps in its state, per source partition, the
//! highest stamp it absorbed (written with the message's state: same
//! RocksDB batch, same changelog, same input-offset stamp), and skips a
//! record at or below it: a copy of one it absorbed.
//!
//! That is exact because every copy of a record of source offset `o` is
//! preceded in its repartition partition by every record of the offsets
//! before `o` (the application's producer is idempotent with the gapless
//! guarantee, so one producer's records of a partition arrive in order and
//! without holes, and records before the committed source offset were
//! acknowledged before that commit), and because the steps before
//! `group_by` are deterministic: a source message produces the same
//! records each time it is processed.

use anyhow::bail;

use crate::error::{Cause, Result};
use crate::message::Headers;
use crate::state::key::PARTITION;
use crate::state::{PartitionState, State};

/// The header of a repartition record's stamp.
pub(crate) const STAMP_HEADER: &str = "__kstreams_source";

/// The header of a repartition record's timestamp (8 bytes, big-endian):
/// the record itself is timestamped when produced, so that the topic's
/// retention counts from then, not from an event time that may be long
/// past (a backfill).
pub(crate) const TIMESTAMP_HEADER: &str = "__kstreams_timestamp";

/// The store of a frame over a repartition topic that has none of its
/// own but feeds another `group_by`: it holds the marks only.
pub(crate) const MARKS_STORE: &str = "repartition-marks";

/// The prefix of every repartition topic's name.
const PREFIX: &str = "repartition__";

/// The repartition topic of the `group_by` called `name` on `source`, in
/// consumer group `group` (Quix Streams' name).
pub(crate) fn topic_name(group: &str, source: &str, name: &str) -> String {
    format!("{PREFIX}{group}--{source}--{name}")
}

/// Whether `topic` is a repartition topic.
pub(crate) fn is_repartition_topic(topic: &str) -> bool {
    topic.starts_with(PREFIX)
}

/// Where a repartition record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SourceStamp {
    /// Compared first: the source offset, then the record's index among
    /// those of its source message.
    pub(crate) offset: i64,
    pub(crate) index: u32,
    pub(crate) partition: i32,
}

/// A stamp's bytes: offset (8), index (4), partition (4), big-endian.
const STAMP_LEN: usize = 16;

impl SourceStamp {
    pub(crate) fn encode(&self) -> [u8; STAMP_LEN] {
        let mut bytes = [0; STAMP_LEN];
        bytes[..8].copy_from_slice(&self.offset.to_be_bytes());
        bytes[8..12].copy_from_slice(&self.index.to_be_bytes());
        bytes[12..].copy_from_slice(&self.partition.to_be_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let Ok(bytes) = <[u8; STAMP_LEN]>::try_from(bytes) else {
            bail!(
                "header {STAMP_HEADER} has {} bytes, not {STAMP_LEN}",
                bytes.len()
            );
        };
        let stamp = SourceStamp {
            offset: i64::from_be_bytes(array(&bytes[..8])),
            index: u32::from_be_bytes(array(&bytes[8..12])),
            partition: i32::from_be_bytes(array(&bytes[12..])),
        };
        if stamp.offset < 0 || stamp.partition < 0 {
            bail!("header {STAMP_HEADER} holds a negative offset or partition: {stamp:?}");
        }
        Ok(stamp)
    }

    /// The key of the highest stamp absorbed from this stamp's source
    /// partition, among the partition's own entries of store 0.
    fn mark_key(&self) -> [u8; 5] {
        let mut key = [b'g'; 5];
        key[1..].copy_from_slice(&self.partition.to_be_bytes());
        key
    }
}

/// Removes the stamp header from `headers`, and returns the stamp (`None`
/// when there is none: a record of a step that emits between messages).
pub(crate) fn take_stamp(headers: &mut Headers) -> anyhow::Result<Option<SourceStamp>> {
    let Some(at) = headers.iter().position(|(name, _)| name == STAMP_HEADER) else {
        return Ok(None);
    };
    let (_, bytes) = headers.remove(at);
    SourceStamp::decode(&bytes).map(Some)
}

/// Removes the timestamp header from `headers`, and returns the
/// timestamp it holds (`None` without one: the source message had none).
pub(crate) fn take_timestamp(headers: &mut Headers) -> anyhow::Result<Option<i64>> {
    let Some(at) = headers
        .iter()
        .position(|(name, _)| name == TIMESTAMP_HEADER)
    else {
        return Ok(None);
    };
    let (_, bytes) = headers.remove(at);
    match <[u8; 8]>::try_from(bytes.as_slice()) {
        Ok(bytes) => Ok(Some(i64::from_be_bytes(bytes))),
        Err(_) => bail!("header {TIMESTAMP_HEADER} has {} bytes, not 8", bytes.len()),
    }
}

/// Whether `stamp` is the first copy of its record that this partition
/// absorbs; if so, notes it as the highest absorbed, as a write of the
/// current message (undone with it when it fails).
pub(crate) fn first_copy(state: &mut PartitionState, stamp: SourceStamp) -> Result<bool> {
    let mut marks = State::new(state, 0, &PARTITION);
    let key = stamp.mark_key();
    let name = || format!("repartition mark of source partition {}", stamp.partition);
    let highest = marks.get_decoded(&key, name, decode_mark)?;
    if highest.is_some_and(|highest| (stamp.offset, stamp.index) <= highest) {
        return Ok(false);
    }
    let mut value = [0; 12];
    value[..8].copy_from_slice(&stamp.offset.to_be_bytes());
    value[8..].copy_from_slice(&stamp.index.to_be_bytes());
    marks.set_bytes(&key, value.to_vec());
    Ok(true)
}

fn decode_mark(bytes: &[u8]) -> std::result::Result<(i64, u32), Cause> {
    if bytes.len() != 12 {
        return Err(format!("{} bytes, not 12", bytes.len()).into());
    }
    let offset = i64::from_be_bytes(array(&bytes[..8]));
    let index = u32::from_be_bytes(array(&bytes[8..]));
    Ok((offset, index))
}

/// `bytes` as an array of its length (checked by the caller).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StoreLayout;

    #[test]
    fn a_stamp_survives_its_header() {
        let stamp = SourceStamp {
            partition: 3,
            offset: 1 << 40,
            index: 7,
        };
        let mut headers = vec![
            ("trace".to_string(), b"t".to_vec()),
            (STAMP_HEADER.to_string(), stamp.encode().to_vec()),
        ];
        assert_eq!(take_stamp(&mut headers).unwrap(), Some(stamp));
        assert_eq!(headers, [("trace".to_string(), b"t".to_vec())]);
        assert_eq!(take_stamp(&mut headers).unwrap(), None);
        let mut bad = vec![(STAMP_HEADER.to_string(), b"short".to_vec())];
        let error = take_stamp(&mut bad).unwrap_err().to_string();
        assert!(error.contains("5 bytes"), "{error}");
    }

    #[test]
    fn each_record_is_absorbed_once_per_source_partition() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StoreLayout::for_tests(dir.path());
        let mut state = layout.open("in", 0).unwrap();
        let stamp = |partition, offset, index| SourceStamp {
            partition,
            offset,
            index,
        };
        assert!(first_copy(&mut state, stamp(0, 5, 0)).unwrap());
        assert!(first_copy(&mut state, stamp(0, 5, 1)).unwrap());
        assert!(
            first_copy(&mut state, stamp(1, 2, 0)).unwrap(),
            "another source partition"
        );
        assert!(!first_copy(&mut state, stamp(0, 5, 1)).unwrap(), "a copy");
        assert!(
            !first_copy(&mut state, stamp(0, 4, 9)).unwrap(),
            "an older one"
        );
        state.absorb(0);
        state.write_checkpoint(&[], false).unwrap();
        // Read back from RocksDB.
        assert!(!first_copy(&mut state, stamp(0, 5, 0)).unwrap());
        assert!(first_copy(&mut state, stamp(0, 6, 0)).unwrap());
        // A failed message takes its mark back.
        state.discard_message_writes();
        assert!(first_copy(&mut state, stamp(0, 6, 0)).unwrap());
    }
}
