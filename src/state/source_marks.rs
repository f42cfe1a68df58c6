//! The marks of a partition fed by a `group_by`: per source partition,
//! the highest repartition stamp it absorbed (see
//! `dataframe::repartition`). Each is an entry of the partition's own in
//! store 0, written with the state of the message that raised it; the
//! marks looked up since the partition was opened stay in memory, so that
//! telling a copy from a new record costs no store lookup.
//!
//! The marks in memory live exactly as long as their `PartitionState`:
//! every rollback of state (an aborted exactly-once checkpoint, a revoked
//! or lost partition, a rebuilt store) drops it and recovery opens a new
//! one, so they never stand above what RocksDB and the checkpoint's
//! updates hold.

use super::key::PARTITION;
use super::transaction::Transaction;
use crate::error::Cause;

/// A source offset, and a record's index among those of its source
/// message: compared in that order.
pub(crate) type Mark = (i64, u32);

/// The marks known in memory, and the one the current message raises.
#[derive(Debug, Default)]
pub(crate) struct SourceMarks {
    /// Indexed by source partition (ids are dense and not negative): for
    /// each looked up since the partition was opened, its highest mark
    /// (`Some(None)`: none absorbed yet).
    highest: Vec<Option<Option<Mark>>>,
    /// The current message's mark, until its writes are kept or undone.
    message: Option<(i32, Mark)>,
}

impl SourceMarks {
    /// The highest mark of `source` when it is known in memory.
    pub(crate) fn known(&self, source: i32) -> Option<Option<Mark>> {
        let index = usize::try_from(source).ok()?;
        self.highest.get(index).copied().flatten()
    }

    /// Notes the highest mark of `source` read from the store.
    pub(crate) fn loaded(&mut self, source: i32, highest: Option<Mark>) {
        if let Some(slot) = self.slot(source) {
            slot.get_or_insert(highest);
        }
    }

    /// The current message is the record `mark` of `source` (above its
    /// highest): it becomes the highest once the message's writes are
    /// kept. One record a message: none is raised yet.
    pub(crate) fn raise(&mut self, source: i32, mark: Mark) {
        debug_assert!(self.message.is_none(), "two marks raised by one message");
        self.message = Some((source, mark));
    }

    /// The current message succeeded: its mark (if it raised one) is the
    /// highest of its source, and a kept write of `store` (store 0).
    pub(crate) fn keep(&mut self, store: &mut Transaction) {
        let Some((source, mark)) = self.message.take() else {
            return;
        };
        if let Some(slot) = self.slot(source) {
            debug_assert!(
                slot.flatten().is_none_or(|highest| mark > highest),
                "a mark raised to {mark:?} from {slot:?}"
            );
            *slot = Some(Some(mark));
        }
        let mut value = [0; 12];
        value[..8].copy_from_slice(&mark.0.to_be_bytes());
        value[8..].copy_from_slice(&mark.1.to_be_bytes());
        store.put_kept(&store_key(source), &value);
    }

    /// The current message failed: the mark it raised goes with it.
    pub(crate) fn undo(&mut self) {
        self.message = None;
    }

    /// The entry of `source` (`None` for a negative partition, which a
    /// stamp never holds: decoding refuses it).
    fn slot(&mut self, source: i32) -> Option<&mut Option<Option<Mark>>> {
        let index = usize::try_from(source).ok()?;
        if self.highest.len() <= index {
            self.highest.resize(index + 1, None);
        }
        self.highest.get_mut(index)
    }
}

/// The store key of the mark of `source`, without the partition prefix.
pub(crate) fn state_key(source: i32) -> [u8; 5] {
    let mut key = [b'g'; 5];
    key[1..].copy_from_slice(&source.to_be_bytes());
    key
}

/// The store key of the mark of `source`: the partition's own prefix, then
/// [`state_key`].
fn store_key(source: i32) -> [u8; 9] {
    let mut key = [0; 9];
    key[..4].copy_from_slice(&PARTITION);
    key[4..].copy_from_slice(&state_key(source));
    key
}

/// A mark's stored value: the offset (8 bytes) and the index (4),
/// big-endian.
pub(crate) fn decode(bytes: &[u8]) -> Result<Mark, Cause> {
    let (Ok(offset), Ok(index)) = (
        <[u8; 8]>::try_from(bytes.get(..8).unwrap_or_default()),
        <[u8; 4]>::try_from(bytes.get(8..).unwrap_or_default()),
    ) else {
        return Err(format!("{} bytes, not 12", bytes.len()).into());
    };
    Ok((i64::from_be_bytes(offset), u32::from_be_bytes(index)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_mark_is_the_highest_and_a_store_write() {
        let mut store = Transaction::default();
        let mut marks = SourceMarks::default();
        marks.loaded(1, None);
        marks.raise(1, (7, 2));
        marks.undo();
        marks.keep(&mut store);
        assert_eq!(marks.known(1), Some(None), "undone");
        assert_eq!(store.get(&store_key(1)), None);
        marks.raise(1, (7, 2));
        marks.keep(&mut store);
        assert_eq!(marks.known(1), Some(Some((7, 2))));
        let value = store.get(&store_key(1)).flatten().unwrap();
        assert_eq!(decode(value).unwrap(), (7, 2));
        assert_eq!(marks.known(0), None, "never looked up");
        assert!(decode(b"short").is_err());
    }
}
