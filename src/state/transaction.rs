//! The updates of one store and partition since the last checkpoint.

use foldhash::HashMap;

use super::short_bytes::ShortBytes;

/// A store's pending writes for one partition: the latest value per key, or
/// `None` for a delete. A hot key costs one write per checkpoint, however
/// many messages touched it.
///
/// After a checkpoint its entries stay, while they fit, as a cache of what
/// RocksDB now holds: a key touched in every checkpoint interval is then
/// read from memory, not from RocksDB.
///
/// The current message's writes are kept apart until it succeeds, so that
/// a failed message is undone by dropping them, and a successful one moves
/// them over without copying.
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    /// Short keys and values are kept inside the map's slots: a lookup
    /// then touches no other heap block.
    updates: HashMap<ShortBytes, Entry>,
    /// How many entries of `updates` were written since the last checkpoint.
    written: usize,
    /// The current message's writes, one entry per key (few per message).
    message: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Where each key of `message` is, once it holds more than
    /// `MESSAGE_SCAN` writes (a window closing many windows at once): a
    /// scan would then make the message quadratic.
    message_index: HashMap<Vec<u8>, usize>,
    /// About how much memory `updates` holds.
    bytes: usize,
    /// Emptied buffers of replaced keys and values, reused for new writes:
    /// a hot key costs no allocation (one with a value too long to be kept
    /// inline, at most a shrinking reallocation).
    spare: Vec<Vec<u8>>,
}

/// A key's latest value, and whether the next checkpoint must write it
/// (else it is what RocksDB holds).
#[derive(Debug)]
struct Entry {
    value: Option<ShortBytes>,
    written: bool,
}

/// The key of a write being kept: a buffer of the message's, taken over,
/// or bytes to copy.
enum KeptKey<'k> {
    Buffer(Vec<u8>),
    Copy(&'k [u8]),
}

impl KeptKey<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            KeptKey::Buffer(key) => key,
            KeptKey::Copy(key) => key,
        }
    }
}

/// How many writes of one message are found by a scan, not an index.
const MESSAGE_SCAN: usize = 16;

/// How many spare buffers a transaction keeps, and how big one may be.
const SPARE_BUFFERS: usize = 64;
const SPARE_CAPACITY: usize = 1024;

/// The room of a new buffer, and the least a spare one keeps: a store key
/// or a value kept inline (22 bytes) fits without growing it, whichever
/// of them the buffer held before.
const BUFFER_CAPACITY: usize = 32;

/// About the memory an entry of `updates` costs besides its key and value
/// bytes: the map's slot (56 bytes and a control byte) takes 65-130 bytes
/// at a load between 7/8 and 7/16. (Keys and values too long to be kept
/// inline also take a heap block's header, not counted.)
const ENTRY_OVERHEAD: usize = 128;

impl Transaction {
    /// `Some(Some(value))` written, `Some(None)` deleted, `None` untouched
    /// in this checkpoint.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        match self.message_position(key) {
            Some(at) => Some(self.message[at].1.as_deref()),
            None => self.updates.get(key).map(|entry| entry.value.as_deref()),
        }
    }

    /// Where the current message wrote `key`, if it did.
    fn message_position(&self, key: &[u8]) -> Option<usize> {
        if self.message.len() > MESSAGE_SCAN {
            self.message_index.get(key).copied()
        } else {
            self.message.iter().position(|(written, _)| written == key)
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
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY))
    }

    fn recycle(&mut self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if self.spare.len() < SPARE_BUFFERS
            && (BUFFER_CAPACITY..=SPARE_CAPACITY).contains(&capacity)
        {
            buffer.clear();
            self.spare.push(buffer);
        }
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.message_position(&key) {
            Some(index) => {
                let old = std::mem::replace(&mut self.message[index].1, value);
                self.recycle(key);
                old.into_iter().for_each(|old| self.recycle(old));
            }
            None => {
                let at = self.message.len();
                if at == MESSAGE_SCAN {
                    let positions = self.message.iter().enumerate();
                    let index = positions.map(|(at, (written, _))| (written.clone(), at));
                    self.message_index.extend(index);
                }
                if at >= MESSAGE_SCAN {
                    self.message_index.insert(key.clone(), at);
                }
                self.message.push((key, value));
            }
        }
    }

    /// The current message succeeded: its writes join the checkpoint's.
    pub(crate) fn keep_message(&mut self) {
        self.message_index.clear();
        let mut message = std::mem::take(&mut self.message);
        for (key, value) in message.drain(..) {
            self.bytes += value.as_ref().map_or(0, Vec::len);
            let value = value.map(|value| self.short(value));
            self.keep(KeptKey::Buffer(key), value);
        }
        self.message = message;
    }

    /// Sets `key` to `value` as a write of a message that was kept: for a
    /// partition's own entry that a message's success decides (it bypasses
    /// the current message's writes, so none of them may be of `key`).
    pub(crate) fn put_kept(&mut self, key: &[u8], value: &[u8]) {
        debug_assert!(self.message_position(key).is_none());
        self.bytes += value.len();
        self.keep(KeptKey::Copy(key), Some(ShortBytes::from_slice(value)));
    }

    /// Makes `value` the checkpoint's latest write of `key`.
    fn keep(&mut self, key: KeptKey<'_>, value: Option<ShortBytes>) {
        match self.updates.get_mut(key.bytes()) {
            Some(entry) => {
                self.bytes -= entry.value.as_ref().map_or(0, |old| old.len());
                let old = std::mem::replace(&mut entry.value, value);
                if !std::mem::replace(&mut entry.written, true) {
                    self.written += 1;
                }
                if let KeptKey::Buffer(key) = key {
                    self.recycle(key);
                }
                if let Some(ShortBytes::Heap(old)) = old {
                    self.recycle(old.into_vec());
                }
            }
            None => {
                self.bytes += key.bytes().len() + ENTRY_OVERHEAD;
                self.written += 1;
                let key = match key {
                    KeptKey::Buffer(key) => self.short(key),
                    KeptKey::Copy(key) => ShortBytes::from_slice(key),
                };
                let written = true;
                self.updates.insert(key, Entry { value, written });
            }
        }
    }

    /// `bytes` as kept in the map; their buffer is reused when they fit
    /// inline.
    fn short(&mut self, bytes: Vec<u8>) -> ShortBytes {
        let (short, spare) = ShortBytes::from_vec(bytes);
        if let Some(spare) = spare {
            self.recycle(spare);
        }
        short
    }

    /// The current message failed: its writes are dropped.
    pub(crate) fn undo_message(&mut self) {
        self.message_index.clear();
        let mut message = std::mem::take(&mut self.message);
        for (key, value) in message.drain(..) {
            self.recycle(key);
            value.into_iter().for_each(|value| self.recycle(value));
        }
        self.message = message;
    }

    /// About how much memory the checkpoint's updates and the cache hold.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing was written since the last checkpoint.
    pub(crate) fn is_empty(&self) -> bool {
        self.written == 0 && self.message.is_empty()
    }

    /// The checkpoint's updates (of messages that were kept).
    pub(crate) fn updates(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.updates
            .iter()
            .filter(|(_, entry)| entry.written)
            .map(|(key, entry)| (&**key, entry.value.as_deref()))
    }

    /// The updates are in RocksDB: they stay as its cache with
    /// `keep_cache`, else they go.
    pub(crate) fn checkpointed(&mut self, keep_cache: bool) {
        if keep_cache {
            // Nothing written since the last checkpoint: no flag to reset.
            if self.written > 0 {
                self.updates
                    .values_mut()
                    .for_each(|entry| entry.written = false);
            }
        } else {
            self.updates.clear();
            self.bytes = 0;
        }
        self.written = 0;
        self.message.clear();
        self.message_index.clear();
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
    fn a_message_of_many_writes_reads_and_replaces_each_through_its_index() {
        let mut tx = Transaction::default();
        for round in 0..2_u8 {
            for key in 0..100_u8 {
                tx.put(vec![key], vec![key, round]);
            }
        }
        tx.delete(vec![7]);
        assert_eq!(tx.get(&[42]), Some(Some(&[42, 1][..])));
        assert_eq!(tx.get(&[7]), Some(None));
        assert_eq!(tx.get(&[200]), None);
        tx.keep_message();
        assert_eq!(tx.updates().count(), 100);
        tx.put(vec![1], vec![9]);
        assert_eq!(tx.get(&[1]), Some(Some(&[9][..])), "scanned again");
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
        tx.checkpointed(true);
        assert_eq!(tx.bytes(), 3 + ENTRY_OVERHEAD, "the cache holds it");
        tx.checkpointed(false);
        assert_eq!(tx.bytes(), 0);
    }

    #[test]
    fn after_a_checkpoint_updates_stay_as_a_cache_and_are_not_written_again() {
        let mut tx = Transaction::default();
        tx.put(b"a".to_vec(), b"1".to_vec());
        tx.delete(b"b".to_vec());
        tx.keep_message();
        tx.checkpointed(true);
        assert!(tx.is_empty());
        assert_eq!(tx.updates().count(), 0, "nothing new to write");
        assert_eq!(tx.get(b"a"), Some(Some(&b"1"[..])), "read from memory");
        assert_eq!(tx.get(b"b"), Some(None), "known deleted");
        tx.put(b"a".to_vec(), b"2".to_vec());
        tx.keep_message();
        assert!(!tx.is_empty());
        assert_eq!(
            tx.updates().collect::<Vec<_>>(),
            [(&b"a"[..], Some(&b"2"[..]))]
        );
        tx.checkpointed(false);
        assert_eq!(tx.get(b"a"), None, "the cache is dropped");
    }
}
