//! Windows (of time, of message counts, and sessions) and their
//! aggregations.
//!
//! A window groups a key's messages by event time (the message timestamp,
//! or what the topic's [timestamp extractor](crate::Topic::timestamp)
//! reads) and aggregates each group. Declare one on a frame, give it an
//! aggregation, and choose what it emits:
//!
//! ```text
//! sdf.tumbling_window(Duration::from_secs(60))      // or hopping_window(duration, step), session_window(gap), tumbling_count_window(n), ...
//!    .grace(Duration::from_secs(5))                 // optional
//!    .count()                                       // sum, mean, min, max, reduce, aggregate, agg
//!    .closed()                                      // or .current()
//! ```
//!
//! The result is a frame of [`WindowResult`]s (`{start, end, value}`), or
//! of JSON objects for [`agg`](WindowDefinition::agg), keyed by the message
//! key and timestamped at the window start.
//!
//! | Quix Streams | kstreams |
//! |---|---|
//! | `sdf.tumbling_window(duration_ms=60_000, grace_ms=5_000)` | `sdf.tumbling_window(Duration::from_secs(60)).grace(Duration::from_secs(5))` |
//! | `sdf.hopping_window(duration_ms, step_ms)` | `sdf.hopping_window(duration, step)` |
//! | `sdf.sliding_window(duration_ms)` | `sdf.sliding_window(duration)` |
//! | `sdf.tumbling_count_window(count)`, `hopping_count_window(count, step)`, `sliding_count_window(count)` | the same, `count` a `u64` |
//! | (no session windows) | `sdf.session_window(gap)` |
//! | `.sum()`, `.count()`, `.mean()`, `.min()`, `.max()` | `.sum(Column::new("x"))` or `.sum(\|row\| row.x)`, `.count()`, `.mean(..)`, `.min(..)`, `.max(..)` |
//! | `.reduce(reducer, initializer)` | `.reduce(init, reduce)` |
//! | `.collect()` | `.collect()`, or `.aggregate(Collect::column("x"))` |
//! | `.agg(count=Count(), total=Sum("x"))` | `.agg(Aggregations::new().with("count", Count).with("total", Sum::column("x")))` |
//! | `.current()` / `.final()` | `.current()` / `.closed()` |
//! | `closing_strategy="key"` / `"partition"` | `.closing(Closing::PerKey)` / `.closing(Closing::PerPartition)` |
//! | `on_late=callback` | `.on_late(\|late\| ..)` |
//! | `name="..."` | `.name("...")` |
//!
//! # When windows close
//!
//! Stream time is the latest event time seen: per key by default, per
//! partition with [`Closing::PerPartition`]. A window `[start, end)`
//! closes when stream time reaches `end + grace`; a message whose window
//! already closed is late, left out of it, and reported (see
//! [`WindowDefinition::on_late`]).
//!
//! Stream time is state: it is written with the windows, in the same
//! RocksDB batch and changelog, so that after a crash, a lost state
//! directory or a rebalance the same messages are late and the same
//! windows close as in a run without failures. Closed windows are deleted
//! (tombstones in the changelog); what stays of a key is its stream time,
//! and, closing per key, the windows a key that fell silent never closed.
//!
//! A message that fails (and is skipped by the
//! [error callback](crate::ApplicationBuilder::on_processing_error)) leaves
//! the windows as they were before it. So a step after a window that
//! fails on a closed window's result fails every later message that
//! closes that window again: let such a step drop the row (a
//! `try_filter`, or a closure that handles the error) rather than rely on
//! skipping messages.
//!
//! A window's store keeps what its definition needs: changing the type,
//! duration, grace or closing of a window that has state needs a new
//! [`name`](WindowDefinition::name) (or cleared state and changelogs). The
//! store notes the definition it holds; a window of another one fails at
//! the first message of each partition, naming the store and both
//! definitions, rather than reopen windows that closed and were emitted.

mod aggregate;
mod aggregations;
mod count;
mod definition;
mod finite;
mod key_sessions;
mod key_windows;
mod kind;
mod late;
mod result;
mod session;
mod sliding;
mod step;
mod store;

pub use aggregate::{
    Aggregator, Collect, Column, Count, Earliest, Extract, First, Last, Latest, Max, Mean, Min,
    Number, Reduce, Sum,
};
pub use aggregations::Aggregations;
pub use definition::{Closing, WindowDefinition, Windowed};
pub use late::LateMessage;
pub use result::WindowResult;
