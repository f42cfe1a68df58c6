//! The open windows of one store and partition, by end: what closing per
//! partition reads, so that it touches only the windows that close.
//!
//! Kept in memory, built from the store when the partition's first message
//! reaches the window (the store is the truth; the index follows it), and
//! changed with the current message's writes: a failed message's changes
//! are undone with them.

use std::collections::BTreeSet;

/// A window of one message key, ordered by end, then start, then key: the
/// order windows close in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct OpenWindow {
    pub(crate) end: i64,
    pub(crate) start: i64,
    /// The message key's store key prefix (see `key::write_prefix`).
    pub(crate) prefix: Vec<u8>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct WindowIndex {
    open: BTreeSet<OpenWindow>,
    /// The current message's changes: `true` for an insert.
    message: Vec<(bool, OpenWindow)>,
}

impl WindowIndex {
    /// An index of `open`, as the store holds them.
    pub(crate) fn of(open: impl IntoIterator<Item = OpenWindow>) -> Self {
        WindowIndex {
            open: open.into_iter().collect(),
            message: Vec::new(),
        }
    }

    pub(crate) fn insert(&mut self, window: OpenWindow) {
        if self.open.insert(window.clone()) {
            self.message.push((true, window));
        }
    }

    pub(crate) fn remove(&mut self, window: &OpenWindow) {
        if self.open.remove(window) {
            self.message.push((false, window.clone()));
        }
    }

    /// The open windows whose end is at most `end`, in closing order.
    pub(crate) fn ending_by(&self, end: i64) -> impl Iterator<Item = &OpenWindow> {
        self.open.iter().take_while(move |window| window.end <= end)
    }

    /// How many windows are open.
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    /// The current message succeeded.
    pub(crate) fn keep_message(&mut self) {
        self.message.clear();
    }

    /// The current message failed: its changes are undone, last first.
    pub(crate) fn undo_message(&mut self) {
        while let Some((inserted, window)) = self.message.pop() {
            if inserted {
                self.open.remove(&window);
            } else {
                self.open.insert(window);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: i64, end: i64, key: &[u8]) -> OpenWindow {
        OpenWindow {
            end,
            start,
            prefix: key.to_vec(),
        }
    }

    #[test]
    fn windows_close_by_end_then_start_then_key() {
        let mut index = WindowIndex::of([window(10, 20, b"b"), window(0, 10, b"z")]);
        index.insert(window(10, 20, b"a"));
        index.insert(window(5, 20, b"c"));
        index.insert(window(20, 30, b"a"));
        let closing: Vec<_> = index.ending_by(20).cloned().collect();
        assert_eq!(
            closing,
            [
                window(0, 10, b"z"),
                window(5, 20, b"c"),
                window(10, 20, b"a"),
                window(10, 20, b"b")
            ]
        );
    }

    #[test]
    fn a_failed_message_leaves_the_index_as_before_it() {
        let mut index = WindowIndex::of([window(0, 10, b"a")]);
        index.insert(window(10, 20, b"a"));
        index.keep_message();
        index.remove(&window(0, 10, b"a"));
        index.insert(window(20, 30, b"a"));
        index.remove(&window(20, 30, b"a"));
        index.insert(window(20, 30, b"b"));
        index.undo_message();
        let open: Vec<_> = index.ending_by(i64::MAX).cloned().collect();
        assert_eq!(open, [window(0, 10, b"a"), window(10, 20, b"a")]);
    }
}
