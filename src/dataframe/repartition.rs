//! Repartition records: what a `group_by` produces to its repartition
//! topic, and how the frame after it absorbs each of them once.
//!
//! After a crash the source messages since the last commit are processed
//! again, so their repartition records are produced again. Each record
//! carries a stamp: the source partition, the source offset and its index
//! among the records that one source message produced (in an envelope
//! before the value, with the source's timestamp: not in headers, which
//! tansu 0.6 serves in time quadratic in how many it holds, stalling its
//! group coordinator meanwhile). Each partition of
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

use crate::error::Result;
use crate::state::key::PARTITION;
use crate::state::source_marks;
use crate::state::{PartitionState, State};

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

    pub(crate) fn decode(bytes: &[u8; STAMP_LEN]) -> anyhow::Result<Self> {
        let stamp = SourceStamp {
            offset: i64::from_be_bytes(array(&bytes[..8])),
            index: u32::from_be_bytes(array(&bytes[8..12])),
            partition: i32::from_be_bytes(array(&bytes[12..])),
        };
        if stamp.offset < 0 || stamp.partition < 0 {
            bail!("the repartition stamp holds a negative offset or partition: {stamp:?}");
        }
        Ok(stamp)
    }
}

/// The envelope that leads a repartition record's value: a flags byte
/// (high nibble [`ENVELOPE_MAGIC`]; bit 0: a timestamp, bit 1: a stamp), the source message's timestamp
/// (8 bytes, big-endian; the record itself is timestamped when produced,
/// so that the topic's retention counts from then, not from an event time
/// that may be long past), the stamp (16 bytes, as
/// [`SourceStamp::encode`]). Not headers: tansu 0.6 looks each fetched
/// record's headers up with a scan of every header it holds, and the
/// fetch holds its storage, group coordinator included, meanwhile.
pub(crate) const ENVELOPE_LEN: usize = 1 + 8 + STAMP_LEN;

/// The high nibble of an envelope's flags byte: a value that does not
/// start with it is not a repartition record of this format.
const ENVELOPE_MAGIC: u8 = 0xa0;

/// Appends the envelope of a record with `timestamp` and `stamp` to `out`.
pub(crate) fn write_envelope(
    out: &mut Vec<u8>,
    timestamp: Option<i64>,
    stamp: Option<SourceStamp>,
) {
    let flags = ENVELOPE_MAGIC | u8::from(timestamp.is_some()) | (u8::from(stamp.is_some()) << 1);
    out.push(flags);
    out.extend_from_slice(&timestamp.unwrap_or(0).to_be_bytes());
    match stamp {
        Some(stamp) => out.extend_from_slice(&stamp.encode()),
        None => out.extend_from_slice(&[0; STAMP_LEN]),
    }
}

/// The timestamp and stamp of a repartition record's value, and the
/// value after its envelope.
pub(crate) fn read_envelope(
    bytes: &[u8],
) -> anyhow::Result<(Option<i64>, Option<SourceStamp>, &[u8])> {
    if bytes.len() < ENVELOPE_LEN || bytes[0] & 0xf0 != ENVELOPE_MAGIC || bytes[0] & 0x0c != 0 {
        bail!(
            "the value has no repartition envelope ({} bytes)",
            bytes.len()
        );
    }
    let (envelope, value) = bytes.split_at(ENVELOPE_LEN);
    let timestamp = (envelope[0] & 1 != 0).then(|| i64::from_be_bytes(array(&envelope[1..9])));
    let stamp = match envelope[0] & 2 != 0 {
        true => Some(SourceStamp::decode(&array(&envelope[9..]))?),
        false => None,
    };
    Ok((timestamp, stamp, value))
}

/// Whether `stamp` is the first copy of its record that this partition
/// absorbs; if so, it raises the partition's mark of its source partition
/// once the message's writes are kept (undone with them when it fails).
pub(crate) fn first_copy(state: &mut PartitionState, stamp: SourceStamp) -> Result<bool> {
    let source = stamp.partition;
    let highest = match state.source_marks.known(source) {
        Some(highest) => highest,
        None => {
            let marks = State::new(state, 0, &PARTITION);
            let name = || format!("repartition mark of source partition {source}");
            let key = source_marks::state_key(source);
            let highest = marks.get_decoded(&key, name, source_marks::decode)?;
            state.source_marks.loaded(source, highest);
            highest
        }
    };
    let mark = (stamp.offset, stamp.index);
    if highest.is_some_and(|highest| mark <= highest) {
        return Ok(false);
    }
    state.source_marks.raise(source, mark);
    Ok(true)
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
    fn a_stamp_survives_its_envelope() {
        let stamp = SourceStamp {
            partition: 3,
            offset: 1 << 40,
            index: 7,
        };
        let mut bytes = Vec::new();
        write_envelope(&mut bytes, Some(42), Some(stamp));
        bytes.extend_from_slice(b"value");
        let (timestamp, read, value) = read_envelope(&bytes).unwrap();
        assert_eq!(
            (timestamp, read, value),
            (Some(42), Some(stamp), &b"value"[..])
        );
        bytes.clear();
        write_envelope(&mut bytes, None, None);
        assert_eq!(read_envelope(&bytes).unwrap(), (None, None, &b""[..]));
        let error = read_envelope(b"short").unwrap_err().to_string();
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
        // Each call is one message, kept at `offset`.
        let mut offset = 0;
        let mut absorbed = |state: &mut PartitionState, stamp| {
            let first = first_copy(state, stamp).unwrap();
            state.absorb(offset);
            offset += 1;
            first
        };
        assert!(absorbed(&mut state, stamp(0, 5, 0)));
        assert!(absorbed(&mut state, stamp(0, 5, 1)));
        assert!(
            absorbed(&mut state, stamp(1, 2, 0)),
            "another source partition"
        );
        assert!(!absorbed(&mut state, stamp(0, 5, 1)), "a copy");
        assert!(!absorbed(&mut state, stamp(0, 4, 9)), "an older one");
        state.write_checkpoint(&[], false).unwrap();
        // Read back from RocksDB by a state opened afresh.
        drop(state);
        let mut state = layout.open("in", 0).unwrap();
        assert!(!first_copy(&mut state, stamp(0, 5, 1)).unwrap());
        assert!(!first_copy(&mut state, stamp(1, 2, 0)).unwrap());
        assert!(first_copy(&mut state, stamp(0, 6, 0)).unwrap());
        // A failed message takes its mark back.
        state.discard_message_writes();
        assert!(first_copy(&mut state, stamp(0, 6, 0)).unwrap());
        state.absorb(9);
        assert!(!first_copy(&mut state, stamp(0, 6, 0)).unwrap());
    }
}
