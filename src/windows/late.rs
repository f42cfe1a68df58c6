//! [`LateMessage`]: what the `on_late` callback learns of a late message.

use crate::message::Metadata;

/// A message that arrived after one of its windows had closed (its end
/// plus the grace period was at or before the stream time), and is left
/// out of that window.
///
/// Given to the callback of
/// [`WindowDefinition::on_late`](super::WindowDefinition::on_late).
#[derive(Debug)]
#[non_exhaustive]
pub struct LateMessage<'a, V> {
    /// The message's value, as the window step received it.
    pub value: &'a V,
    /// The message key (`None` without one).
    pub key: Option<&'a [u8]>,
    /// Its event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// How late it is: how far the window's close (stream time minus
    /// grace) is past `timestamp`, in milliseconds.
    pub late_by_ms: i64,
    /// The closed window's start.
    pub start: i64,
    /// The closed window's end.
    pub end: i64,
    /// The window store's name.
    pub store: &'a str,
    /// The input topic.
    pub topic: &'a str,
    /// The input partition.
    pub partition: i32,
    /// The message's offset.
    pub offset: i64,
}

impl<'a, V> LateMessage<'a, V> {
    /// The message of `value` and `meta` at event time `timestamp`, late
    /// for window `(start, end)` of `store`, which closed at `closed_by`.
    pub(crate) fn new(
        value: &'a V,
        meta: &'a Metadata,
        timestamp: i64,
        closed_by: i64,
        (start, end): (i64, i64),
        store: &'a str,
    ) -> Self {
        LateMessage {
            value,
            key: meta.key(),
            timestamp,
            late_by_ms: closed_by.saturating_sub(timestamp),
            start,
            end,
            store,
            topic: meta.topic(),
            partition: meta.partition(),
            offset: meta.offset(),
        }
    }
}
