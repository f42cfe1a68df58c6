//! [`WindowResult`]: what a window aggregation emits.

use serde::{Deserialize, Serialize};

/// The result of one window: its bounds (milliseconds since the Unix
/// epoch; `[start, end)` for tumbling and hopping windows, `[start, end]`
/// for sliding ones, and for session and count windows the first and last
/// event time of their messages) and its aggregate. As JSON,
/// `{"start": .., "end": .., "value": ..}`, as Quix Streams emits it.
///
/// Emitted keyed by the message key the window belongs to, timestamped at
/// `start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult<T> {
    /// The first millisecond of the window (session, count: the event
    /// time of its earliest message).
    pub start: i64,
    /// The window's end: the first millisecond after it (tumbling,
    /// hopping), its last millisecond (sliding), the event time of its
    /// latest message (session, count).
    pub end: i64,
    /// The aggregate of the window's values.
    pub value: T,
}
