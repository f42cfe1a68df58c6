//! The updates of one store and partition since the last checkpoint.

use std::collections::HashMap;

/// A store's pending writes for one partition: the latest value per key, or
/// `None` for a delete. A hot key costs one write per checkpoint, however
/// many messages touched it.
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    updates: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// What the current message changed: each key's entry before its first
    /// change (`None`: no entry), so a failed message can be undone.
    undo: Vec<(Vec<u8>, Before)>,
}

/// A key's entry in the transaction before a message changed it.
type Before = Option<Option<Vec<u8>>>;

impl Transaction {
    /// `Some(Some(value))` written, `Some(None)` deleted, `None` untouched
    /// in this checkpoint.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.updates.get(key).map(Option::as_deref)
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.write(key, None);
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if !self.undo.iter().any(|(changed, _)| *changed == key) {
            self.undo
                .push((key.clone(), self.updates.get(&key).cloned()));
        }
        self.updates.insert(key, value);
    }

    /// The current message succeeded: its writes stay.
    pub(crate) fn keep_message(&mut self) {
        self.undo.clear();
    }

    /// The current message failed: its writes are undone.
    pub(crate) fn undo_message(&mut self) {
        for (key, before) in self.undo.drain(..).rev() {
            match before {
                Some(value) => self.updates.insert(key, value),
                None => self.updates.remove(&key),
            };
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    pub(crate) fn updates(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.updates
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
    }

    pub(crate) fn clear(&mut self) {
        self.updates.clear();
        self.undo.clear();
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
        assert_eq!(tx.updates().count(), 1);
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
}
