//! The updates of one store and partition since the last checkpoint.

use foldhash::HashMap;

/// A store's pending writes for one partition: the latest value per key, or
/// `None` for a delete. A hot key costs one write per checkpoint, however
/// many messages touched it.
///
/// The current message's writes are kept apart until it succeeds, so that
/// a failed message is undone by dropping them, and a successful one moves
/// them over without copying.
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    updates: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The current message's writes, one entry per key (few per message).
    message: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// About how much memory `updates` holds.
    bytes: usize,
    /// Emptied buffers of replaced keys and values, reused for new writes:
    /// a hot key costs no allocation.
    spare: Vec<Vec<u8>>,
}

/// How many spare buffers a transaction keeps, and how big one may be.
const SPARE_BUFFERS: usize = 64;
const SPARE_CAPACITY: usize = 1024;

/// Memory an entry of `updates` costs besides its key and value bytes:
/// the map's slot (48 bytes, at a load between 7/16 and 7/8) and the heap
/// blocks of key and value (glibc rounds each up, 16 bytes of header).
const ENTRY_OVERHEAD: usize = 128;

impl Transaction {
    /// `Some(Some(value))` written, `Some(None)` deleted, `None` untouched
    /// in this checkpoint.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        match self.message.iter().find(|(written, _)| written == key) {
            Some((_, value)) => Some(value.as_deref()),
            None => self.updates.get(key).map(Option::as_deref),
        }
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.write(key, None);
    }

    /// An empty buffer for a key or value to write, reused when possible.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buffer.capacity() <= SPARE_CAPACITY {
            buffer.clear();
            self.spare.push(buffer);
        }
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.message.iter().position(|(written, _)| *written == key) {
            Some(index) => {
                let old = std::mem::replace(&mut self.message[index].1, value);
                self.recycle(key);
                old.into_iter().for_each(|old| self.recycle(old));
            }
            None => self.message.push((key, value)),
        }
    }

    /// The current message succeeded: its writes join the checkpoint's.
    pub(crate) fn keep_message(&mut self) {
        let value_len = |value: &Option<Vec<u8>>| value.as_ref().map_or(0, Vec::len);
        let mut message = std::mem::take(&mut self.message);
        for (key, value) in message.drain(..) {
            self.bytes += value_len(&value);
            match self.updates.get_mut(&key) {
                Some(slot) => {
                    self.bytes -= value_len(slot);
                    let old = std::mem::replace(slot, value);
                    self.recycle(key);
                    old.into_iter().for_each(|old| self.recycle(old));
                }
                None => {
                    self.bytes += key.len() + ENTRY_OVERHEAD;
                    self.updates.insert(key, value);
                }
            }
        }
        self.message = message;
    }

    /// The current message failed: its writes are dropped.
    pub(crate) fn undo_message(&mut self) {
        let mut message = std::mem::take(&mut self.message);
        for (key, value) in message.drain(..) {
            self.recycle(key);
            value.into_iter().for_each(|value| self.recycle(value));
        }
        self.message = message;
    }

    /// About how much memory the checkpoint's updates hold.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.updates.is_empty() && self.message.is_empty()
    }

    /// The checkpoint's updates (of messages that were kept).
    pub(crate) fn updates(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.updates
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
    }

    pub(crate) fn clear(&mut self) {
        self.updates.clear();
        self.message.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_writes_replace_earlier_ones_and_deletes_are_kept() {
        let mut tx = Transaction::default();
        tx.put(b"k".to_vec(), b"1".to_vec());
        tx.put(b"k".to_vec(), b"2".to_vec());
        assert_eq!(tx.get(b"k"), Some(Some(&b"2"[..])));
        tx.delete(b"k".to_vec());
        assert_eq!(tx.get(b"k"), Some(None));
        assert_eq!(tx.get(b"other"), None);
        tx.keep_message();
        tx.put(b"k".to_vec(), b"3".to_vec());
        tx.keep_message();
        assert_eq!(
            tx.updates().collect::<Vec<_>>(),
            [(&b"k"[..], Some(&b"3"[..]))]
        );
    }

    #[test]
    fn a_failed_message_leaves_the_transaction_as_before_it() {
        let mut tx = Transaction::default();
        tx.put(b"a".to_vec(), b"1".to_vec());
        tx.keep_message();
        tx.put(b"a".to_vec(), b"2".to_vec());
        tx.delete(b"a".to_vec());
        tx.put(b"b".to_vec(), b"x".to_vec());
        tx.undo_message();
        assert_eq!(tx.get(b"a"), Some(Some(&b"1"[..])));
        assert_eq!(tx.get(b"b"), None);
    }

    #[test]
    fn bytes_follow_the_kept_updates() {
        let mut tx = Transaction::default();
        tx.put(b"key".to_vec(), b"12345".to_vec());
        assert_eq!(tx.bytes(), 0, "the message is not kept yet");
        tx.keep_message();
        assert_eq!(tx.bytes(), 3 + 5 + ENTRY_OVERHEAD);
        tx.put(b"key".to_vec(), b"1".to_vec());
        tx.keep_message();
        assert_eq!(tx.bytes(), 3 + 1 + ENTRY_OVERHEAD);
        tx.delete(b"key".to_vec());
        tx.keep_message();
        assert_eq!(tx.bytes(), 3 + ENTRY_OVERHEAD);
        tx.clear();
        assert_eq!(tx.bytes(), 0);
    }
}
