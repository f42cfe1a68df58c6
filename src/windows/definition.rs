//! Declaring a window on a frame: its type, grace, name, closing and late
//! callback ([`WindowDefinition`]), its aggregation ([`Windowed`]), and
//! what it emits.

use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use super::aggregate::{Aggregator, Collect, Count, Extract, Max, Mean, Min, Number, Reduce, Sum};
use super::aggregations::Aggregations;
use super::count::CountStep;
use super::kind::Kind;
use super::late::LateMessage;
use super::result::WindowResult;
use super::session::SessionStep;
use super::sliding::SlidingStep;
use super::step::{run, Absorb, Aggregating, Row, WindowStep};
use crate::dataframe::Step;
use crate::StreamingDataFrame;

/// When a window closes: when stream time (the latest event time seen)
/// passes its end plus the grace period. Whose stream time:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Closing {
    /// Each key's own (Quix Streams' default, `"key"`): a key's windows
    /// close when a later message of that key comes. A key that falls
    /// silent keeps its last windows open.
    #[default]
    PerKey,
    /// The partition's (Quix Streams' `"partition"`): any message of the
    /// partition advances time and closes the windows of every key that
    /// it passed, at a cost in proportion to the windows closed. A result
    /// of another key's window carries that key (and its state, for the
    /// steps after), the window start as timestamp, and the headers and
    /// offset of the message that closed it.
    PerPartition,
}

/// What a windowed frame emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Emit {
    /// Every update of a window.
    Current,
    /// Each window once, when it closes.
    Closed,
}

/// The `on_late` callback: returns whether to log the message.
pub(crate) type OnLate<V> = Box<dyn FnMut(&LateMessage<'_, V>) -> bool + Send>;

/// A window declared on a frame, to be given an aggregation.
///
/// Get one from [`StreamingDataFrame::tumbling_window`] or
/// [`StreamingDataFrame::hopping_window`]; see the [module
/// documentation](crate::windows).
#[must_use = "a window does nothing until it has an aggregation and .current() or .closed()"]
pub struct WindowDefinition<V> {
    frame: StreamingDataFrame<V>,
    kind: Kind,
    grace: i64,
    name: Option<String>,
    closing: Closing,
    on_late: Option<OnLate<V>>,
    /// Closing on an idle stream: after how long without a message (ms).
    idle_after: Option<i64>,
}

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Tumbling windows of `duration`: `[start, start + duration)`, starts
    /// at multiples of `duration` since the epoch, each message in one.
    ///
    /// # Panics
    ///
    /// When `duration` is shorter than a millisecond.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use kstreams::windows::{Column, WindowResult};
    /// use serde_json::{json, Value};
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let purchases = app.topic::<Value>("purchases");
    /// let totals = app.topic::<WindowResult<f64>>("totals");
    /// app.dataframe(&purchases)
    ///     .tumbling_window(Duration::from_secs(10))
    ///     .sum(Column::new("amount"))
    ///     .closed()
    ///     .to_topic(&totals);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// for (amount, ms) in [(1.0, 1_000), (2.0, 9_999), (4.0, 10_000)] {
    ///     let purchase = TestMessage::new(json!({"amount": amount})).key(b"ada".to_vec()).timestamp(ms);
    ///     driver.push(&purchases, purchase)?;
    /// }
    /// // The third purchase closed the first window.
    /// assert_eq!(driver.values(&totals)?, [WindowResult { start: 0, end: 10_000, value: 3.0 }]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn tumbling_window(self, duration: Duration) -> WindowDefinition<V> {
        let duration = millis(duration, "a tumbling window's duration");
        WindowDefinition::new(self, Kind::Tumbling { duration })
    }

    /// Hopping windows of `duration` every `step`: `[start, start +
    /// duration)`, starts at multiples of `step` since the epoch, each
    /// message in every window that holds it (`duration / step` of them
    /// when `step` divides `duration`).
    ///
    /// # Panics
    ///
    /// When `step` is shorter than a millisecond or longer than
    /// `duration`, or when a message would fall into more than 10 000
    /// windows (`duration / step`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use kstreams::windows::WindowResult;
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let clicks = app.topic::<u32>("clicks");
    /// let counts = app.topic::<WindowResult<u64>>("click-counts");
    /// app.dataframe(&clicks)
    ///     .hopping_window(Duration::from_millis(10), Duration::from_millis(5))
    ///     .count()
    ///     .current()
    ///     .to_topic(&counts);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// driver.push(&clicks, TestMessage::new(1).timestamp(7))?;
    /// let starts: Vec<i64> = driver.values(&counts)?.iter().map(|w| w.start).collect();
    /// assert_eq!(starts, [0, 5]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn hopping_window(self, duration: Duration, step: Duration) -> WindowDefinition<V> {
        let duration = millis(duration, "a hopping window's duration");
        let step = millis(step, "a hopping window's step");
        assert!(
            step <= duration,
            "a hopping window's step ({step} ms) is longer than its duration ({duration} ms)"
        );
        assert!(
            duration / step <= MAX_WINDOWS_A_MESSAGE,
            "a hopping window of {duration} ms every {step} ms puts each message in {} \
             windows: at most {MAX_WINDOWS_A_MESSAGE}",
            duration / step
        );
        WindowDefinition::new(self, Kind::Hopping { duration, step })
    }
}

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Sliding windows of `duration` (Kafka Streams' KIP-450): both ends
    /// inclusive, a window wherever a message of the key enters (`[t -
    /// duration, t]`, the window it ends) or leaves (`[t + 1, t + 1 +
    /// duration]`, once a later message falls into it). Each window holds
    /// every message of the key in its bounds; closed windows are those
    /// whose end plus the grace period the key's stream time passed.
    /// Closing is per key, and the aggregator must merge (a [`Reduce`]
    /// needs [`with_merge`](Reduce::with_merge)).
    ///
    /// # Panics
    ///
    /// When `duration` is shorter than a millisecond; when the window is
    /// given [`Closing::PerPartition`] or an aggregator that cannot merge.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use kstreams::windows::WindowResult;
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let clicks = app.topic::<u32>("clicks");
    /// let counts = app.topic::<WindowResult<u64>>("click-counts");
    /// app.dataframe(&clicks)
    ///     .sliding_window(Duration::from_millis(10))
    ///     .count()
    ///     .current()
    ///     .to_topic(&counts);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// for ms in [100, 105, 120] {
    ///     driver.push(&clicks, TestMessage::new(1).timestamp(ms))?;
    /// }
    /// let windows: Vec<_> = driver.values(&counts)?.iter().map(|w| (w.start, w.end, w.value)).collect();
    /// // 105 enters [95, 105] with 100, and opens 100's right window
    /// // [101, 111]; 120 is alone in its window.
    /// assert_eq!(windows, [(90, 100, 1), (95, 105, 2), (101, 111, 1), (110, 120, 1)]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn sliding_window(self, duration: Duration) -> WindowDefinition<V> {
        let duration = millis(duration, "a sliding window's duration");
        WindowDefinition::new(self, Kind::Sliding { duration })
    }
}

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Count windows of `count` messages of each key (Quix Streams'
    /// `tumbling_count_window`): messages 0 to `count - 1` of a key, then
    /// the next `count`, and so on. A window closes with its last message;
    /// its `start` and `end` are the earliest and latest event time of its
    /// messages. Count windows close per key and have no grace period:
    /// no message is late.
    ///
    /// # Panics
    ///
    /// When `count` is 0; when the window is given a grace period or
    /// [`Closing::PerPartition`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use kstreams::windows::WindowResult;
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let readings = app.topic::<u32>("readings");
    /// let sums = app.topic::<WindowResult<u32>>("sums");
    /// app.dataframe(&readings)
    ///     .tumbling_count_window(3)
    ///     .sum(|reading: &u32| *reading)
    ///     .closed()
    ///     .to_topic(&sums);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// for (reading, ms) in [(1, 50), (2, 10), (3, 30), (4, 40)] {
    ///     driver.push(&readings, TestMessage::new(reading).timestamp(ms))?;
    /// }
    /// // The third reading closed the first window.
    /// assert_eq!(driver.values(&sums)?, [WindowResult { start: 10, end: 50, value: 6 }]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn tumbling_count_window(self, count: u64) -> WindowDefinition<V> {
        let count = messages(count, "a tumbling count window's count");
        WindowDefinition::new(self, Kind::Count { count, step: count })
    }

    /// Count windows of `count` messages of each key, a new one every
    /// `step` messages (Quix Streams' `hopping_count_window`): each
    /// message is in up to `count / step` windows. As
    /// [`tumbling_count_window`](Self::tumbling_count_window) otherwise.
    ///
    /// # Panics
    ///
    /// When `count` or `step` is 0, when `step` is larger than `count`,
    /// or when a message would fall into more than 10 000 windows.
    ///
    /// # Examples
    ///
    /// ```
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use kstreams::windows::WindowResult;
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let readings = app.topic::<u32>("readings");
    /// let counts = app.topic::<WindowResult<u64>>("counts");
    /// app.dataframe(&readings)
    ///     .hopping_count_window(4, 2)
    ///     .count()
    ///     .closed()
    ///     .to_topic(&counts);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// for ms in 0..6 {
    ///     driver.push(&readings, TestMessage::new(1).timestamp(ms))?;
    /// }
    /// // Messages 0-3, then 2-5.
    /// let windows: Vec<_> = driver.values(&counts)?.iter().map(|w| (w.start, w.end)).collect();
    /// assert_eq!(windows, [(0, 3), (2, 5)]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn hopping_count_window(self, count: u64, step: u64) -> WindowDefinition<V> {
        let count = messages(count, "a hopping count window's count");
        let step = messages(step, "a hopping count window's step");
        assert!(
            step <= count,
            "a hopping count window's step ({step}) is larger than its count ({count})"
        );
        assert!(
            count / step <= MAX_WINDOWS_A_MESSAGE,
            "a hopping count window of {count} every {step} puts each message in {} windows: \
             at most {MAX_WINDOWS_A_MESSAGE}",
            count / step
        );
        WindowDefinition::new(self, Kind::Count { count, step })
    }

    /// Count windows of the last `count` messages of each key, one ending
    /// at every message (Quix Streams' `sliding_count_window`): a hopping
    /// count window with a step of one.
    ///
    /// # Panics
    ///
    /// As [`hopping_count_window`](Self::hopping_count_window).
    pub fn sliding_count_window(self, count: u64) -> WindowDefinition<V> {
        self.hopping_count_window(count, 1)
    }
}

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Session windows with an inactivity gap of `gap`: per key, a run of
    /// messages each within `gap` of the next is one session, `[start,
    /// end]` its first and last event time (both inclusive). A message
    /// within the gap of a session extends it; one that bridges two or
    /// more sessions merges them, their aggregates merged in time order
    /// (so the aggregator must merge: a [`Reduce`] needs
    /// [`with_merge`](Reduce::with_merge)). A session closes when the
    /// key's stream time passes `end + gap + grace`; a message whose
    /// session would already be closed, or that is within the gap of a
    /// closed session, is late. Closing is per key.
    ///
    /// Kafka Streams and Bytewax have session windows; Quix Streams does
    /// not.
    ///
    /// # Panics
    ///
    /// When `gap` is shorter than a millisecond; when the window is given
    /// [`Closing::PerPartition`] or an aggregator that cannot merge.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use kstreams::windows::WindowResult;
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let clicks = app.topic::<u32>("clicks");
    /// let visits = app.topic::<WindowResult<u64>>("visits");
    /// app.dataframe(&clicks)
    ///     .session_window(Duration::from_millis(10))
    ///     .grace(Duration::from_millis(20))
    ///     .count()
    ///     .closed()
    ///     .to_topic(&visits);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// for ms in [100, 120, 105, 112, 200] {
    ///     driver.push(&clicks, TestMessage::new(1).timestamp(ms))?;
    /// }
    /// // 105 came in the grace period; 112 bridged [100, 105] and
    /// // [120, 120]; 200 passed 120 + 10 + 20 and closed the session.
    /// assert_eq!(driver.values(&visits)?, [WindowResult { start: 100, end: 120, value: 4 }]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn session_window(self, gap: Duration) -> WindowDefinition<V> {
        let gap = millis(gap, "a session window's gap");
        WindowDefinition::new(self, Kind::Session { gap })
    }
}

/// `count` messages, at least one.
fn messages(count: u64, what: &str) -> i64 {
    assert!(count >= 1, "{what} must be at least 1");
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// How many windows (or sessions) a key may keep open: they are stored as
/// one value, written at every message of the key and sent as one
/// changelog record (Kafka's default limit is 1 MB).
const MAX_OPEN_WINDOWS: i64 = 10_000;

/// How many hopping windows one message may fall into.
const MAX_WINDOWS_A_MESSAGE: i64 = 10_000;

/// `duration` in whole milliseconds, at least one.
fn millis(duration: Duration, what: &str) -> i64 {
    let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    assert!(
        millis >= 1,
        "{what} must be at least 1 ms, not {duration:?}"
    );
    millis
}

impl<V: Send + 'static> WindowDefinition<V> {
    fn new(frame: StreamingDataFrame<V>, kind: Kind) -> Self {
        WindowDefinition {
            frame,
            kind,
            grace: 0,
            name: None,
            closing: Closing::PerKey,
            on_late: None,
            idle_after: None,
        }
    }

    /// How long after its end a window still takes late messages (in
    /// stream time); default none.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// The window store's name (and its changelog's suffix). Default: the
    /// window type, its parameters and the aggregation, as Quix Streams
    /// names it (`tumbling_window_10000_sum`); two windows of one frame
    /// with the same default need names of their own.
    ///
    /// # Panics
    ///
    /// When `name` has other characters than ASCII letters, digits, `.`,
    /// `_` and `-` (it becomes part of a topic name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            "window name {name:?}: only ASCII letters, digits, '.', '_' and '-'"
        );
        self.name = Some(name);
        self
    }

    /// Closes windows per partition ([`Closing::PerPartition`]), and on
    /// an idle stream too: once a partition has been caught up (its
    /// consumer at the end of what the broker has), with no message, for
    /// `after` of wall-clock time, its stream time becomes the latest
    /// event time of its messages plus the time it has been idle (when
    /// that closes a window), so that its last windows close and their
    /// results come out when input stops
    /// (Quix Streams has no such option; its users send heartbeat
    /// messages). Bytewax's `EventClock(wait_for_system_duration)` works
    /// this way.
    ///
    /// The trade-off: a message that arrives after its window was closed
    /// this way is late. The advanced stream time is state, checkpointed
    /// before any window closes by it, so that a restart decides the same.
    /// Tumbling and hopping windows only; the poll loop checks idle
    /// partitions about every 100 ms, and
    /// [`TestDriver::idle`](crate::TestDriver::idle) lets time pass in
    /// tests. The poll loop does not tick while the broker is unreachable.
    /// A step after the window that fails on a result it closes this way
    /// goes to the error callback, and is tried again at the next tick
    /// (every 100 ms) until it succeeds.
    ///
    /// # Panics
    ///
    /// When `after` is shorter than a millisecond; when the window is then
    /// given [`Closing::PerKey`], or is not a tumbling or hopping window.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use kstreams::windows::WindowResult;
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let clicks = app.topic::<u32>("clicks");
    /// let counts = app.topic::<WindowResult<u64>>("click-counts");
    /// app.dataframe(&clicks)
    ///     .tumbling_window(Duration::from_secs(10))
    ///     .close_when_idle(Duration::from_secs(30))
    ///     .count()
    ///     .closed()
    ///     .to_topic(&counts);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// driver.push(&clicks, TestMessage::new(1).timestamp(4_000))?;
    /// driver.idle(Duration::from_secs(20))?;
    /// assert!(driver.values(&counts)?.is_empty(), "not idle long enough");
    /// driver.idle(Duration::from_secs(10))?;
    /// // Stream time is 4 s + 30 s: [0, 10 s) closed.
    /// assert_eq!(driver.values(&counts)?, [WindowResult { start: 0, end: 10_000, value: 1 }]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn close_when_idle(mut self, after: Duration) -> Self {
        self.closing = Closing::PerPartition;
        self.idle_after = Some(millis(after, "the idle time that closes windows"));
        self
    }

    /// Whose stream time closes windows; default [`Closing::PerKey`].
    pub fn closing(mut self, closing: Closing) -> Self {
        self.closing = closing;
        self
    }

    /// Called with every message that comes too late for one of its
    /// windows (which leaves it out); returns whether to log it at warn
    /// level, as kstreams does without a callback. A hopping message is
    /// reported once for each closed window; a sliding message only when
    /// no window that could hold it is open (one whose own window closed
    /// still joins the open windows that hold it).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use kstreams::windows::WindowResult;
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let clicks = app.topic::<u32>("clicks");
    /// let counts = app.topic::<WindowResult<u64>>("click-counts");
    /// let late = Arc::new(Mutex::new(Vec::new()));
    /// app.dataframe(&clicks)
    ///     .tumbling_window(Duration::from_millis(10))
    ///     .grace(Duration::from_millis(5))
    ///     .on_late({
    ///         let late = late.clone();
    ///         move |message| {
    ///             late.lock().unwrap().push((message.timestamp, message.late_by_ms, message.offset));
    ///             false
    ///         }
    ///     })
    ///     .count()
    ///     .closed()
    ///     .to_topic(&counts);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// for ms in [3, 12, 9, 15, 4] {
    ///     driver.push(&clicks, TestMessage::new(1).timestamp(ms))?;
    /// }
    /// // 15 closes [0, 10) (10 + 5 grace): 4 is late by 6 ms; 9 was in time.
    /// assert_eq!(*late.lock().unwrap(), [(4, 6, 4)]);
    /// assert_eq!(driver.values(&counts)?, [WindowResult { start: 0, end: 10, value: 2 }]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn on_late(
        mut self,
        on_late: impl FnMut(&LateMessage<'_, V>) -> bool + Send + 'static,
    ) -> Self {
        self.on_late = Some(Box::new(on_late));
        self
    }

    /// The number of messages in each window.
    pub fn count(self) -> Windowed<V, Count, WindowResult<u64>> {
        self.aggregate(Count)
    }

    /// The sum of a number of each message: a closure of the value, or a
    /// [`Column`](super::Column) of JSON rows.
    pub fn sum<N: Number, E: Extract<V, N>>(
        self,
        number: E,
    ) -> Windowed<V, Sum<E, N>, WindowResult<N>> {
        self.aggregate(Sum::of(number))
    }

    /// The mean of a number of each message, as an `f64`.
    pub fn mean<N: Number, E: Extract<V, N>>(
        self,
        number: E,
    ) -> Windowed<V, Mean<E, N>, WindowResult<f64>> {
        self.aggregate(Mean::of(number))
    }

    /// The smallest of what is read from each message.
    pub fn min<N, E>(self, what: E) -> Windowed<V, Min<E, N>, WindowResult<N>>
    where
        N: PartialOrd + Serialize + DeserializeOwned + Clone + Send + 'static,
        E: Extract<V, N>,
    {
        self.aggregate(Min::of(what))
    }

    /// The largest of what is read from each message.
    pub fn max<N, E>(self, what: E) -> Windowed<V, Max<E, N>, WindowResult<N>>
    where
        N: PartialOrd + Serialize + DeserializeOwned + Clone + Send + 'static,
        E: Extract<V, N>,
    {
        self.aggregate(Max::of(what))
    }

    /// A fold: `init` makes a window's state from its first message,
    /// `reduce` adds each later one (Quix Streams' `reduce(reducer,
    /// initializer)`).
    #[allow(clippy::type_complexity)]
    pub fn reduce<S, I, F>(
        self,
        init: I,
        reduce: F,
    ) -> Windowed<V, Reduce<I, F, fn(S, S) -> S, S>, WindowResult<S>>
    where
        S: Serialize + DeserializeOwned + Clone + Default + Send + 'static,
        I: Fn(&V) -> S + Send + 'static,
        F: Fn(S, &V) -> S + Send + 'static,
    {
        self.aggregate(Reduce::new(init, reduce))
    }

    /// Every value of each window, in event-time order (Quix Streams'
    /// `collect`): each value is stored as an entry of its own, and the
    /// list is read once, when the window closes. Only for
    /// [`closed`](Windowed::closed) windows, of every type but sliding; to
    /// collect a part of each value, use
    /// [`aggregate`](Self::aggregate)`(`[`Collect::of`]`(..))`.
    pub fn collect(self) -> Windowed<V, Collect<V, V>, WindowResult<Vec<V>>>
    where
        V: Clone + Serialize + DeserializeOwned,
    {
        self.aggregate(Collect::values())
    }

    /// Any [`Aggregator`], built in or your own.
    pub fn aggregate<A: Aggregator<V>>(
        self,
        aggregator: A,
    ) -> Windowed<V, A, WindowResult<A::Output>> {
        fn row<T>(start: i64, end: i64, value: T) -> WindowResult<T> {
            WindowResult { start, end, value }
        }
        Windowed::new(self, aggregator, row)
    }

    /// Several named aggregations at once: each window's result is a JSON
    /// object of `start`, `end` and each name's result (Quix Streams'
    /// `agg`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use kstreams::windows::{Aggregations, Count, Sum};
    /// use serde_json::{json, Value};
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let purchases = app.topic::<Value>("purchases");
    /// let totals = app.topic::<Value>("totals");
    /// app.dataframe(&purchases)
    ///     .tumbling_window(Duration::from_secs(10))
    ///     .agg(Aggregations::new().with("count", Count).with("sum", Sum::column("amount")))
    ///     .current()
    ///     .to_topic(&totals);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// driver.push(&purchases, TestMessage::new(json!({"amount": 2.5})).timestamp(12_000))?;
    /// assert_eq!(
    ///     driver.values(&totals)?,
    ///     [json!({"start": 10_000, "end": 20_000, "count": 1, "sum": 2.5})]
    /// );
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn agg(self, aggregations: Aggregations<V>) -> Windowed<V, Aggregations<V>, Value> {
        fn row(start: i64, end: i64, mut results: serde_json::Map<String, Value>) -> Value {
            results.insert("start".into(), start.into());
            results.insert("end".into(), end.into());
            Value::Object(results)
        }
        Windowed::new(self, aggregations, row)
    }
}

/// A window with its aggregation: choose what it emits with
/// [`current`](Self::current) or [`closed`](Self::closed).
#[must_use = "a window does nothing until .current() or .closed()"]
pub struct Windowed<V, A: Aggregator<V>, R> {
    definition: WindowDefinition<V>,
    aggregator: A,
    row: Row<A::Output, R>,
    result: PhantomData<fn() -> R>,
}

impl<V: Send + 'static, A: Aggregator<V>, R: Send + 'static> Windowed<V, A, R> {
    fn new(definition: WindowDefinition<V>, aggregator: A, row: Row<A::Output, R>) -> Self {
        Windowed {
            definition,
            aggregator,
            row,
            result: PhantomData,
        }
    }

    /// A frame of every update: each message emits the new result of
    /// every window it updated (Quix Streams' `.current()`). Closed
    /// windows are still deleted, without being emitted.
    pub fn current(self) -> StreamingDataFrame<R> {
        self.build(Emit::Current)
    }

    /// A frame of closed windows: each window's result once, when stream
    /// time passes its end plus the grace period (Quix Streams'
    /// `.final()`). Exact across crashes and rebalances: a window's
    /// result may be emitted again after a crash (at least once), always
    /// with the same value.
    pub fn closed(self) -> StreamingDataFrame<R> {
        self.build(Emit::Closed)
    }

    fn build(self, emit: Emit) -> StreamingDataFrame<R> {
        let WindowDefinition {
            frame,
            kind,
            grace,
            name,
            closing,
            on_late,
            idle_after,
        } = self.definition;
        let name = name.unwrap_or_else(|| match self.aggregator.name() {
            aggregation if aggregation.is_empty() => kind.name(),
            aggregation => format!("{}_{aggregation}", kind.name()),
        });
        let store = frame.register_window_store(&name);
        let keeps_items = self.aggregator.keeps_items();
        let idle = idle_after
            .map(|after| format!(", idle {after}"))
            .unwrap_or_default();
        let definition = format!("{}, grace {grace}, {closing:?}{idle}", kind.name());
        let aggregating = Aggregating {
            grace,
            emit,
            store,
            store_name: Arc::from(name),
            definition,
            aggregator: self.aggregator,
            row: self.row,
            on_late,
            keeps_items,
        };
        if aggregating.keeps_items {
            assert!(
                emit == Emit::Closed,
                "windows that collect their values are emitted when they close: use .closed()"
            );
            assert!(
                !matches!(kind, Kind::Sliding { .. }),
                "sliding windows cannot collect their values: use another window type"
            );
        }
        // A key's open tumbling or hopping windows (or sessions) are one
        // stored value, and one changelog record: bounded.
        let (span, step) = match kind {
            Kind::Tumbling { duration } => (duration.saturating_add(grace), duration),
            Kind::Hopping { duration, step } => (duration.saturating_add(grace), step),
            Kind::Session { gap } => (gap.saturating_add(grace), gap),
            Kind::Sliding { .. } | Kind::Count { .. } => (0, 1),
        };
        assert!(
            span / step <= MAX_OPEN_WINDOWS,
            "a key of this window would keep up to {} open windows ((duration or gap + grace) \
             / step), stored as one value: at most {MAX_OPEN_WINDOWS}; shorten the grace period",
            span / step
        );
        if let Kind::Count { count, step } = kind {
            assert!(
                grace == 0 && closing == Closing::PerKey,
                "count windows close per key, with their last message: no grace period or \
                 per-partition closing"
            );
            let step = CountStep {
                count,
                step,
                aggregating,
            };
            return chain(frame, step);
        }
        if let Kind::Session { gap } = kind {
            assert!(closing == Closing::PerKey, "session windows close per key");
            assert!(
                aggregating.aggregator.can_merge(),
                "session windows merge when a message bridges them: give the Reduce a merge \
                 with .with_merge(..)"
            );
            return chain(frame, SessionStep { gap, aggregating });
        }
        if let Kind::Sliding { duration } = kind {
            assert!(
                closing == Closing::PerKey,
                "sliding windows close per key (Closing::PerPartition is for tumbling and \
                 hopping windows)"
            );
            assert!(
                aggregating.aggregator.can_merge(),
                "sliding windows merge the aggregates of their messages: give the Reduce a \
                 merge with .with_merge(..)"
            );
            let step = SlidingStep {
                duration,
                aggregating,
                open: Vec::new(),
                times: Vec::new(),
            };
            return chain(frame, step);
        }
        let step = WindowStep {
            kind,
            closing,
            idle_after,
            aggregating,
            windows: Vec::new(),
            before_idle: Vec::new(),
        };
        if idle_after.is_none() {
            return chain(frame, step);
        }
        assert!(
            closing == Closing::PerPartition,
            "windows that close on an idle stream close per partition: .closing(Closing::PerKey) \
             turns .close_when_idle(..) off"
        );
        // The step runs for messages and for ticks: both hold it, and the
        // rest of the chain once it is composed.
        let shared = Arc::new(Mutex::new((step, None::<Step<R>>)));
        let ticking = shared.clone();
        frame.register_ticker(Box::new(move |tick, ctx| {
            let (step, next) = &mut *ticking.lock();
            match next {
                Some(next) => step.tick(tick, ctx, next),
                None => Ok(false),
            }
        }));
        frame.then(move |next: Step<R>| {
            shared.lock().1 = Some(next);
            Box::new(move |value, ctx| {
                let (step, next) = &mut *shared.lock();
                match next {
                    Some(next) => run(step, value, ctx, next),
                    None => Ok(()),
                }
            })
        })
    }
}

/// `frame`, then window step `step`.
fn chain<V, R, S>(frame: StreamingDataFrame<V>, mut step: S) -> StreamingDataFrame<R>
where
    V: Send + 'static,
    R: Send + 'static,
    S: Absorb<V, R> + Send + 'static,
{
    frame.then(move |mut next: Step<R>| {
        Box::new(move |value, ctx| run(&mut step, value, ctx, &mut next))
    })
}
