//! Time windows through the test driver: boundaries of each window type,
//! late messages, current and closed results, closing per key and per
//! partition, and a brute-force reference over random out-of-order input.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kstreams::windows::{
    Aggregations, Closing, Collect, Count, Sum, WindowDefinition, WindowResult,
};
use kstreams::{Application, StreamingDataFrame, TestDriver, TestMessage, Topic};
use serde_json::{json, Value};

fn app() -> Application {
    Application::builder()
        .use_embedded_broker()
        .commit_every(7)
        .build()
        .unwrap()
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Counts clicks with the window `window` makes of the frame; the input
/// and output topics.
fn counting(
    app: &Application,
    window: impl FnOnce(StreamingDataFrame<u32>) -> StreamingDataFrame<WindowResult<u64>>,
) -> (Topic<u32>, Topic<WindowResult<u64>>) {
    let input = app.topic::<u32>("clicks");
    let output = app.topic::<WindowResult<u64>>("counts");
    window(app.dataframe(&input)).to_topic(&output);
    (input, output)
}

/// Closed windows' count and sum of field `column` by name (and with
/// `collect`, its values as `items`), with the window's key beside them.
fn totals_with_key(
    window: WindowDefinition<Value>,
    column: &str,
    collect: bool,
) -> StreamingDataFrame<Value> {
    let mut aggregations = Aggregations::new()
        .with("count", Count)
        .with("sum", Sum::column(column));
    if collect {
        aggregations = aggregations.with("items", Collect::column(column));
    }
    window
        .agg(aggregations)
        .closed()
        .apply_with_metadata(|mut row, meta| {
            row["key"] = json!(meta.key_str());
            Ok(row)
        })
}

/// Pushes `(key, timestamp)` messages with value 1 each.
fn push_all(driver: &mut TestDriver<'_>, input: &Topic<u32>, messages: &[(&str, i64)]) {
    for (key, timestamp) in messages {
        let message = TestMessage::new(1)
            .key(key.as_bytes().to_vec())
            .timestamp(*timestamp);
        driver.push(input, message).unwrap();
    }
}

/// `(key, start, end, count)` of each result.
fn counts(
    driver: &TestDriver<'_>,
    output: &Topic<WindowResult<u64>>,
) -> Vec<(String, i64, i64, u64)> {
    driver
        .keys_and_values(output)
        .unwrap()
        .into_iter()
        .map(|(key, window)| {
            let key = String::from_utf8(key.unwrap_or_default()).unwrap();
            (key, window.start, window.end, window.value)
        })
        .collect()
}

#[test]
fn a_tumbling_window_takes_late_messages_until_end_plus_grace() {
    let app = app();
    let (input, output) = counting(&app, |clicks| {
        clicks.tumbling_window(ms(10)).grace(ms(5)).count().closed()
    });
    let mut driver = TestDriver::new(&app).unwrap();
    // 10 is the next window's; at stream time 14 (end + grace - 1) [0, 10)
    // still takes 9; at 15 it closes.
    push_all(
        &mut driver,
        &input,
        &[("k", 0), ("k", 10), ("k", 14), ("k", 9)],
    );
    assert!(counts(&driver, &output).is_empty());
    push_all(&mut driver, &input, &[("k", 15), ("k", 8)]);
    assert_eq!(counts(&driver, &output), [("k".into(), 0, 10, 2)]);
    // [10, 20) holds 10, 14, 15; closes at 25.
    push_all(&mut driver, &input, &[("k", 24)]);
    assert_eq!(counts(&driver, &output).len(), 1);
    push_all(&mut driver, &input, &[("k", 25)]);
    assert_eq!(counts(&driver, &output)[1], ("k".into(), 10, 20, 3));
}

#[test]
fn a_hopping_message_counts_in_every_window_that_holds_it_and_lateness_is_per_window() {
    let app = app();
    let late = Arc::new(Mutex::new(Vec::new()));
    let (input, output) = counting(&app, |clicks| {
        clicks
            .hopping_window(ms(10), ms(5))
            .on_late({
                let late = late.clone();
                move |message| {
                    late.lock()
                        .unwrap()
                        .push((message.timestamp, message.start, message.end));
                    true
                }
            })
            .count()
            .closed()
    });
    let mut driver = TestDriver::new(&app).unwrap();
    // 7 is in [0, 10) and [5, 15); 10 in [5, 15) and [10, 20): it closes
    // [0, 10). 8 is then late for [0, 10) only.
    push_all(&mut driver, &input, &[("k", 7), ("k", 10), ("k", 8)]);
    assert_eq!(counts(&driver, &output), [("k".into(), 0, 10, 1)]);
    assert_eq!(*late.lock().unwrap(), [(8, 0, 10)]);
    push_all(&mut driver, &input, &[("k", 20)]);
    assert_eq!(
        counts(&driver, &output),
        [
            ("k".into(), 0, 10, 1),
            ("k".into(), 5, 15, 3),
            ("k".into(), 10, 20, 1)
        ]
    );
}

#[test]
fn current_emits_every_update_and_closed_windows_are_deleted_silently() {
    let app = app();
    let (input, output) = counting(&app, |clicks| {
        clicks.tumbling_window(ms(10)).count().current()
    });
    let mut driver = TestDriver::new(&app).unwrap();
    push_all(
        &mut driver,
        &input,
        &[("k", 1), ("k", 2), ("k", 12), ("k", 3)],
    );
    assert_eq!(
        counts(&driver, &output),
        [
            ("k".into(), 0, 10, 1),
            ("k".into(), 0, 10, 2),
            ("k".into(), 10, 20, 1)
        ],
        "3 came after [0, 10) closed"
    );
    let timestamps: Vec<_> = driver
        .outputs()
        .records()
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(
        timestamps,
        [Some(0), Some(0), Some(10)],
        "results carry the window start"
    );
}

#[test]
fn per_key_closing_waits_for_the_key_and_per_partition_closing_does_not() {
    for (closing, expected) in [
        (Closing::PerKey, vec![]),
        (Closing::PerPartition, vec![("a".to_string(), 0, 10, 2)]),
    ] {
        let app = app();
        let (input, output) = counting(&app, |clicks| {
            clicks
                .tumbling_window(ms(10))
                .closing(closing)
                .count()
                .closed()
        });
        let mut driver = TestDriver::new(&app).unwrap();
        push_all(&mut driver, &input, &[("a", 1), ("a", 5), ("b", 30)]);
        assert_eq!(counts(&driver, &output), expected, "{closing:?}");
        let keys: Vec<_> = driver
            .outputs()
            .records()
            .iter()
            .map(|r| r.key.clone())
            .collect();
        assert!(keys.iter().all(|key| key.as_deref() == Some(&b"a"[..])));
    }
}

#[test]
fn agg_flattens_named_results_beside_start_and_end_and_steps_after_see_the_window_key() {
    let app = app();
    let input = app
        .topic::<Value>("purchases")
        .timestamp(|row, _| row["ts"].as_i64().ok_or_else(|| anyhow::anyhow!("no ts")));
    let output = app.topic::<Value>("totals");
    let window = app
        .dataframe(&input)
        .tumbling_window(ms(100))
        .closing(Closing::PerPartition);
    totals_with_key(window, "amount", false).to_topic(&output);
    let mut driver = TestDriver::new(&app).unwrap();
    for (key, amount, ts) in [
        ("ada", 2.0, 10),
        ("bob", 5.0, 20),
        ("ada", 1.5, 99),
        ("bob", 1.0, 250),
    ] {
        let row = json!({"amount": amount, "ts": ts});
        driver
            .push(&input, TestMessage::new(row).key(key.as_bytes().to_vec()))
            .unwrap();
    }
    assert_eq!(
        driver.values(&output).unwrap(),
        [
            json!({"key": "ada", "start": 0, "end": 100, "count": 2, "sum": 3.5}),
            json!({"key": "bob", "start": 0, "end": 100, "count": 1, "sum": 5.0}),
        ]
    );
    let error = driver
        .push(
            &input,
            TestMessage::new(json!({"ts": 300})).key(b"ada".to_vec()),
        )
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("field \"amount\" is missing"),
        "{error:#}"
    );
    assert_eq!(error.offset(), Some(4));
}

#[test]
fn two_windows_with_one_default_name_must_be_named() {
    let app = app();
    let input = app.topic::<u32>("clicks");
    let sdf = app.dataframe(&input);
    let _ = sdf.clone().tumbling_window(ms(10)).count().closed();
    let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = sdf.clone().tumbling_window(ms(10)).count().closed();
    }));
    assert!(second.is_err());
    let _ = sdf.tumbling_window(ms(10)).name("other").count().closed();
}

/// A simple PRNG: the property test must be reproducible.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// A window's key as its store key orders it: length first.
type Owner = (usize, String);

/// An open window's count, sum, and (timestamp, amount) of each message.
type Totals = (u64, f64, Vec<(i64, f64)>);

/// What windows should emit, computed the obvious way: every window of
/// every key in memory, closed by a scan.
struct Reference {
    duration: i64,
    step: i64,
    grace: i64,
    closing: Closing,
    time: BTreeMap<String, i64>,
    /// (end, start, (key length, key)) -> its totals: windows of one end
    /// close in the order of their store keys (length first).
    open: BTreeMap<(i64, i64, Owner), Totals>,
}

impl Reference {
    fn push(&mut self, key: &str, timestamp: i64, amount: f64) -> Vec<Closed> {
        let clock = match self.closing {
            Closing::PerKey => key.to_string(),
            _ => String::new(),
        };
        let now = self
            .time
            .get(&clock)
            .map_or(timestamp, |t| (*t).max(timestamp));
        self.time.insert(clock, now);
        let closed_by = now - self.grace;
        let mut start = timestamp - timestamp.rem_euclid(self.step);
        while start > timestamp - self.duration {
            let end = start + self.duration;
            if end > closed_by {
                let owner = (key.len(), key.to_string());
                let entry = self.open.entry((end, start, owner)).or_default();
                entry.0 += 1;
                entry.1 += amount;
                entry.2.push((timestamp, amount));
            }
            start -= self.step;
        }
        let closing: Vec<_> = self
            .open
            .keys()
            .filter(|(end, _, owner)| {
                *end <= closed_by && (self.closing == Closing::PerPartition || owner.1 == key)
            })
            .cloned()
            .collect();
        closing
            .into_iter()
            .map(|window| {
                let (count, sum, mut items) = self.open.remove(&window).unwrap();
                // In event-time order, arrival order among equal times.
                items.sort_by_key(|(timestamp, _)| *timestamp);
                let items = items.into_iter().map(|(_, amount)| amount).collect();
                (window.2 .1, window.1, window.0, count, sum, Some(items))
            })
            .collect()
    }
}

/// A window closed by a reference: (key, start, end, count, sum, and the
/// collected amounts where the windows collect them).
type Closed = (String, i64, i64, u64, f64, Option<Vec<f64>>);

/// Pushes `messages` (key, timestamp, amount) through count-and-sum
/// windows that `window` declares (collecting the amounts too with
/// `collect`), and asserts that the closed windows come out as
/// `reference` computes them, in the same order.
fn assert_closes_as(
    window: impl FnOnce(StreamingDataFrame<Value>) -> WindowDefinition<Value>,
    collect: bool,
    messages: impl Iterator<Item = (String, i64, f64)>,
    mut reference: impl FnMut(&str, i64, f64) -> Vec<Closed>,
    case: &str,
) {
    let app = app();
    let input = app.topic::<Value>("amounts");
    let output = app.topic::<Value>("windows");
    let window = window(app.dataframe(&input)).on_late(|_| false);
    totals_with_key(window, "x", collect).to_topic(&output);
    let mut driver = TestDriver::new(&app).unwrap();
    let mut expected = Vec::new();
    for (key, timestamp, amount) in messages {
        for (key, start, end, count, sum, items) in reference(&key, timestamp, amount) {
            let mut row =
                json!({"key": key, "start": start, "end": end, "count": count, "sum": sum});
            if let Some(items) = items {
                row["items"] = json!(items);
            }
            expected.push(row);
        }
        let message = TestMessage::new(json!({"x": amount}))
            .key(key.into_bytes())
            .timestamp(timestamp);
        driver.push(&input, message).unwrap();
    }
    let emitted = driver.values(&output).unwrap();
    assert!(expected.len() > 500, "{case}: the input closes windows");
    let first_difference = emitted.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        (emitted.len(), first_difference),
        (expected.len(), None),
        "{case}: first difference {:?}",
        first_difference.map(|at| (&emitted[at], &expected[at]))
    );
}

#[test]
fn closed_windows_equal_a_brute_force_reference_over_random_out_of_order_input() {
    for (seed, (duration, step), closing) in [
        (1, (10, 10), Closing::PerKey),
        (2, (10, 10), Closing::PerPartition),
        (3, (12, 4), Closing::PerKey),
        (4, (12, 4), Closing::PerPartition),
        (5, (10, 3), Closing::PerPartition),
    ] {
        let mut reference = Reference {
            duration,
            step,
            grace: 6,
            closing,
            time: BTreeMap::new(),
            open: BTreeMap::new(),
        };
        let mut random = Lcg(seed);
        let mut clock = 0;
        let messages = std::iter::repeat_with(move || {
            clock += random.below(3) as i64;
            // Mostly a little out of order, sometimes far too late.
            let timestamp = if random.below(20) == 0 {
                clock - 40
            } else {
                clock - random.below(9) as i64
            };
            (
                format!("k{}", random.below(13)),
                timestamp,
                random.below(100) as f64,
            )
        });
        let window = |sdf: StreamingDataFrame<Value>| {
            let window = if duration == step {
                sdf.tumbling_window(ms(duration as u64))
            } else {
                sdf.hopping_window(ms(duration as u64), ms(step as u64))
            };
            window.grace(ms(6)).closing(closing)
        };
        let push = |key: &str, timestamp, amount| reference.push(key, timestamp, amount);
        assert_closes_as(
            window,
            true,
            messages.take(3_000),
            push,
            &format!("seed {seed}, {closing:?}"),
        );
    }
}

/// Sliding windows as KIP-450 defines them, the slow way: after every
/// message, every window that the kept messages define (each message's
/// left window, and its right window when a message falls into it) is
/// found from scratch; a new open one holds every kept message in its
/// bounds, an existing open one takes the new message if it holds it.
struct SlidingReference {
    duration: i64,
    grace: i64,
    time: BTreeMap<String, i64>,
    /// Per key, the messages not late: (timestamp, amount).
    kept: BTreeMap<String, Vec<(i64, f64)>>,
    /// (key, end, start) -> (count, sum)
    open: BTreeMap<(String, i64, i64), (u64, f64)>,
}

impl SlidingReference {
    fn push(&mut self, key: &str, ts: i64, amount: f64) -> Vec<Closed> {
        let now = self.time.get(key).map_or(ts, |t| (*t).max(ts));
        self.time.insert(key.to_string(), now);
        let closed_by = now - self.grace;
        if ts + self.duration < closed_by {
            return Vec::new();
        }
        for ((owner, end, start), window) in self.open.iter_mut() {
            if owner == key && *start <= ts && ts <= *end && *end >= closed_by {
                window.0 += 1;
                window.1 += amount;
            }
        }
        let kept = self.kept.entry(key.to_string()).or_default();
        kept.push((ts, amount));
        let mut defined = BTreeSet::new();
        for (t, _) in kept.iter() {
            defined.insert((t - self.duration, *t));
            let right = (t + 1, t + 1 + self.duration);
            if kept.iter().any(|(u, _)| right.0 <= *u && *u <= right.1) {
                defined.insert(right);
            }
        }
        for (start, end) in defined {
            let id = (key.to_string(), end, start);
            if end >= closed_by && !self.open.contains_key(&id) {
                let inside = kept.iter().filter(|(u, _)| start <= *u && *u <= end);
                let window = inside.fold((0, 0.0), |(c, s), (_, a)| (c + 1, s + a));
                self.open.insert(id, window);
            }
        }
        let closing: Vec<_> = self
            .open
            .keys()
            .filter(|(owner, end, _)| owner == key && *end < closed_by)
            .cloned()
            .collect();
        closing
            .into_iter()
            .map(|id| {
                let (count, sum) = self.open.remove(&id).unwrap();
                (id.0, id.2, id.1, count, sum, None)
            })
            .collect()
    }
}

#[test]
fn sliding_windows_equal_a_brute_force_reference_over_random_out_of_order_input() {
    for (seed, grace) in [(11, 0), (12, 5), (13, 20)] {
        let mut reference = SlidingReference {
            duration: 10,
            grace: grace as i64,
            time: BTreeMap::new(),
            kept: BTreeMap::new(),
            open: BTreeMap::new(),
        };
        let mut random = Lcg(seed);
        let mut clock = 0;
        let messages = std::iter::repeat_with(move || {
            clock += random.below(4) as i64;
            let timestamp = clock - random.below(12) as i64;
            (
                format!("k{}", random.below(5)),
                timestamp,
                random.below(100) as f64,
            )
        });
        let window = |sdf: StreamingDataFrame<Value>| sdf.sliding_window(ms(10)).grace(ms(grace));
        let push = |key: &str, timestamp, amount| {
            let mut closed = reference.push(key, timestamp, amount);
            closed.sort_by_key(|(_, start, end, ..)| (*end, *start));
            closed
        };
        let case = format!("seed {seed}");
        assert_closes_as(window, false, messages.take(2_000), push, &case);
    }
}

/// Count windows computed the obvious way: per key, its message number
/// and each open window's messages.
struct CountReference {
    count: usize,
    step: usize,
    keys: BTreeMap<String, (usize, Vec<Messages>)>,
}

/// (timestamp, amount) of each message of a window.
type Messages = Vec<(i64, f64)>;

impl CountReference {
    fn push(&mut self, key: &str, timestamp: i64, amount: f64) -> Vec<Closed> {
        let (number, open) = self.keys.entry(key.to_string()).or_default();
        if *number % self.step == 0 {
            open.push(Vec::new());
        }
        open.iter_mut()
            .for_each(|window| window.push((timestamp, amount)));
        *number += 1;
        if open.first().is_none_or(|window| window.len() < self.count) {
            return Vec::new();
        }
        let mut window = open.remove(0);
        let start = window.iter().map(|(time, _)| *time).min().unwrap();
        let end = window.iter().map(|(time, _)| *time).max().unwrap();
        let sum = window.iter().map(|(_, amount)| amount).sum();
        window.sort_by_key(|(time, _)| *time);
        let items = window.into_iter().map(|(_, amount)| amount).collect();
        vec![(
            key.to_string(),
            start,
            end,
            self.count as u64,
            sum,
            Some(items),
        )]
    }
}

#[test]
fn count_windows_equal_a_brute_force_reference() {
    for (seed, count, step) in [(21, 3, 3), (22, 4, 2), (23, 3, 1), (24, 1, 1), (25, 7, 3)] {
        let mut reference = CountReference {
            count,
            step,
            keys: BTreeMap::new(),
        };
        let mut random = Lcg(seed);
        let messages = std::iter::repeat_with(move || {
            let key = format!("k{}", random.below(5));
            (
                key,
                random.below(1_000) as i64 - 500,
                random.below(100) as f64,
            )
        });
        let window =
            |sdf: StreamingDataFrame<Value>| sdf.hopping_count_window(count as u64, step as u64);
        let push = |key: &str, timestamp, amount| reference.push(key, timestamp, amount);
        let case = format!("count {count} step {step}");
        assert_closes_as(window, true, messages.take(2_000), push, &case);
    }
}

#[test]
fn count_windows_emit_every_update() {
    let app = app();
    let (input, output) = counting(&app, |clicks| {
        clicks.sliding_count_window(2).count().current()
    });
    let mut driver = TestDriver::new(&app).unwrap();
    push_all(
        &mut driver,
        &input,
        &[("a", 5), ("a", 3), ("b", 9), ("a", 4)],
    );
    assert_eq!(
        counts(&driver, &output),
        [
            ("a".into(), 5, 5, 1),
            ("a".into(), 3, 5, 2),
            ("a".into(), 3, 3, 1),
            ("b".into(), 9, 9, 1),
            ("a".into(), 3, 4, 2),
            ("a".into(), 4, 4, 1),
        ]
    );
}

/// Session windows computed the obvious way: per key, the messages of
/// its open sessions, clustered afresh at every message.
struct SessionReference {
    gap: i64,
    grace: i64,
    keys: BTreeMap<String, SessionKey>,
    /// Messages that merged two sessions, and late ones.
    merges: u64,
    late: u64,
}

#[derive(Default)]
struct SessionKey {
    time: Option<i64>,
    closed_end: Option<i64>,
    /// (timestamp, amount) of each message of an open session, in arrival
    /// order.
    open: Messages,
}

impl SessionReference {
    /// `messages` sorted by time (arrival order among equal times) and
    /// cut where two are more than the gap apart.
    fn sessions(&self, messages: &[(i64, f64)]) -> Vec<Messages> {
        let mut sorted = messages.to_vec();
        sorted.sort_by_key(|(time, _)| *time);
        let mut sessions: Vec<Messages> = Vec::new();
        for message in sorted {
            match sessions.last_mut() {
                Some(last) if message.0 - last.last().unwrap().0 <= self.gap => last.push(message),
                _ => sessions.push(vec![message]),
            }
        }
        sessions
    }

    fn push(&mut self, key: &str, timestamp: i64, amount: f64) -> Vec<Closed> {
        let mut state = self.keys.remove(key).unwrap_or_default();
        let now = state.time.map_or(timestamp, |time| time.max(timestamp));
        let closed_by = now - self.grace;
        let mut with = state.open.clone();
        with.push((timestamp, amount));
        let sessions = self.sessions(&with);
        let own = sessions
            .iter()
            .find(|session| session.iter().any(|(time, _)| *time == timestamp))
            .unwrap();
        let reaches_closed = state
            .closed_end
            .is_some_and(|closed| timestamp <= closed + self.gap);
        let mut closed = Vec::new();
        let late = reaches_closed || own.last().unwrap().0 + self.gap < closed_by;
        self.late += u64::from(late);
        if sessions.len() < self.sessions(&state.open).len() && !late {
            self.merges += 1;
        }
        if !late {
            state.time = Some(now);
            state.open = with;
            for session in self.sessions(&state.open) {
                let end = session.last().unwrap().0;
                if end + self.gap >= closed_by {
                    continue;
                }
                state.open.retain(|message| !session.contains(message));
                state.closed_end = Some(state.closed_end.map_or(end, |c| c.max(end)));
                let sum = session.iter().map(|(_, amount)| amount).sum();
                let items = session.iter().map(|(_, amount)| *amount).collect();
                let start = session[0].0;
                let count = session.len() as u64;
                closed.push((key.to_string(), start, end, count, sum, Some(items)));
            }
        }
        self.keys.insert(key.to_string(), state);
        closed
    }
}

#[test]
fn session_windows_equal_a_brute_force_reference_over_random_out_of_order_input() {
    for (seed, gap, grace) in [(31, 5, 0), (32, 5, 6), (33, 3, 9), (34, 12, 4)] {
        let mut reference = SessionReference {
            gap,
            grace,
            keys: BTreeMap::new(),
            merges: 0,
            late: 0,
        };
        let mut random = Lcg(seed);
        let mut clock = 0;
        // Distinct amounts per message: a message is known by its time
        // and amount.
        let mut sent = 0;
        let messages = std::iter::repeat_with(move || {
            clock += random.below(4) as i64;
            sent += 1;
            let timestamp = clock - random.below(15) as i64;
            (format!("k{}", random.below(5)), timestamp, sent as f64)
        });
        let window = |sdf: StreamingDataFrame<Value>| {
            sdf.session_window(ms(gap as u64)).grace(ms(grace as u64))
        };
        let push = |key: &str, timestamp, amount| reference.push(key, timestamp, amount);
        let case = format!("gap {gap} grace {grace}");
        assert_closes_as(window, true, messages.take(3_000), push, &case);
        let (merges, late) = (reference.merges, reference.late);
        // With no grace, the open sessions are within the gap of stream
        // time, so no message can come between two of them.
        let merged_enough = grace == 0 || merges > 10;
        assert!(
            merged_enough && late > 10,
            "{case}: {merges} merges, {late} late"
        );
    }
}

#[test]
fn bridging_messages_merge_sessions_and_the_merges_keep_every_value() {
    let app = Application::builder()
        .use_embedded_broker()
        .commit_every(1)
        .build()
        .unwrap();
    let input = app.topic::<u32>("visits");
    let output = app.topic::<WindowResult<Vec<u32>>>("merged");
    app.dataframe(&input)
        .session_window(ms(10))
        .grace(ms(100))
        .collect()
        .closed()
        .to_topic(&output);
    let mut driver = TestDriver::new(&app).unwrap();
    // Sessions [100, 102], [115, 115] and [128, 130]; 110 bridges the
    // first two, 122 the result and the third. (Open sessions are more
    // than the gap apart, so no message is within the gap of three.)
    for (value, timestamp) in [
        (1, 100),
        (2, 102),
        (3, 115),
        (4, 130),
        (5, 128),
        (6, 110),
        (7, 122),
    ] {
        let message = TestMessage::new(value)
            .key(b"k".to_vec())
            .timestamp(timestamp);
        driver.push(&input, message).unwrap();
    }
    let close = TestMessage::new(0).key(b"k".to_vec()).timestamp(500);
    driver.push(&input, close).unwrap();
    let merged = driver.values(&output).unwrap();
    assert_eq!(
        merged,
        [WindowResult {
            start: 100,
            end: 130,
            value: vec![1, 2, 6, 3, 7, 5, 4]
        }]
    );
    let items = stored_keys("visits")
        .into_iter()
        .filter(|key| key.starts_with(b"\0\0\0\x01kc"))
        .count();
    assert_eq!(items, 1, "only the item of 500's open session is left");
}

#[test]
fn windows_close_on_an_idle_partition_and_what_comes_after_is_late() {
    let app = app();
    let late = Arc::new(Mutex::new(Vec::new()));
    let (input, output) = counting(&app, |clicks| {
        let seen = late.clone();
        clicks
            .tumbling_window(ms(10))
            .grace(ms(5))
            .close_when_idle(ms(1_000))
            .on_late(move |message| {
                seen.lock().unwrap().push(message.timestamp);
                false
            })
            .count()
            .closed()
    });
    let mut driver = TestDriver::new(&app).unwrap();
    // Partition 0: two keys; partition 1: one, with a later event time.
    for (key, timestamp, partition) in [("a", 3, 0), ("b", 12, 0), ("c", 40, 1)] {
        let message = TestMessage::new(1)
            .key(key.as_bytes().to_vec())
            .timestamp(timestamp)
            .partition(partition);
        driver.push(&input, message).unwrap();
    }
    assert!(counts(&driver, &output).is_empty());
    // Idle, but not long enough.
    driver.idle(ms(999)).unwrap();
    assert!(counts(&driver, &output).is_empty());
    // Partition 0's time is 12 + 1000: both its windows close; partition
    // 1's (40 + 1000) closes its own.
    driver.idle(ms(1)).unwrap();
    let mut closed = counts(&driver, &output);
    closed.sort();
    assert_eq!(
        closed,
        [
            ("a".into(), 0, 10, 1),
            ("b".into(), 10, 20, 1),
            ("c".into(), 40, 50, 1)
        ]
    );
    // A message for a window closed this way is late; a message resets
    // the idle time of its partition only.
    let message = |key: &str, timestamp| {
        TestMessage::new(1)
            .key(key.as_bytes().to_vec())
            .timestamp(timestamp)
    };
    driver.push(&input, message("a", 8)).unwrap();
    assert_eq!(*late.lock().unwrap(), [8]);
    driver.push(&input, message("a", 1_500)).unwrap();
    driver.idle(ms(600)).unwrap();
    assert_eq!(counts(&driver, &output).len(), 3);
    driver.idle(ms(400)).unwrap();
    assert_eq!(
        counts(&driver, &output).last(),
        Some(&("a".into(), 1_500, 1_510, 1))
    );
}

#[test]
fn a_state_the_store_cannot_hold_fails_its_message_and_spares_the_key() {
    let app = app();
    let input = app.topic::<f64>("readings");
    let output = app.topic::<WindowResult<f64>>("highest");
    app.dataframe(&input)
        .tumbling_window(ms(10))
        .max(|reading: &f64| *reading)
        .closed()
        .to_topic(&output);
    let mut driver = TestDriver::new(&app).unwrap();
    let reading = |value: f64, timestamp| {
        TestMessage::new(value)
            .key(b"k".to_vec())
            .timestamp(timestamp)
    };
    driver.push(&input, reading(1.0, 1)).unwrap();
    // JSON has no NaN: the message fails, naming itself, and its writes
    // are undone; the key's next messages go on.
    let error = driver.push(&input, reading(f64::NAN, 2)).unwrap_err();
    assert!(
        error.to_string().contains("offset 1"),
        "{error}: {:?}",
        std::error::Error::source(&error).map(ToString::to_string)
    );
    driver.push(&input, reading(3.0, 3)).unwrap();
    driver.push(&input, reading(0.0, 20)).unwrap();
    assert_eq!(
        driver.values(&output).unwrap(),
        [WindowResult {
            start: 0,
            end: 10,
            value: 3.0
        }]
    );
}

#[test]
fn a_merge_of_sessions_whose_sum_overflows_fails_the_bridging_message() {
    let app = app();
    let input = app.topic::<u32>("large-amounts");
    let output = app.topic::<WindowResult<u32>>("session-sums");
    app.dataframe(&input)
        .session_window(ms(10))
        .grace(ms(100))
        .sum(|amount: &u32| *amount)
        .closed()
        .to_topic(&output);
    let mut driver = TestDriver::new(&app).unwrap();
    let amount = |value: u32, timestamp| {
        TestMessage::new(value)
            .key(b"k".to_vec())
            .timestamp(timestamp)
    };
    driver.push(&input, amount(3_000_000_000, 0)).unwrap();
    driver.push(&input, amount(2_000_000_000, 20)).unwrap();
    // 10 bridges the two sessions: 3e9 + 2e9 does not fit a u32.
    assert!(driver.push(&input, amount(1, 10)).is_err());
    driver.push(&input, amount(1, 500)).unwrap();
    let sums: Vec<u32> = driver
        .values(&output)
        .unwrap()
        .iter()
        .map(|w| w.value)
        .collect();
    assert_eq!(sums, [3_000_000_000, 2_000_000_000]);
}

#[test]
fn a_message_without_timestamp_fails_naming_itself() {
    let app = app();
    let (input, output) = counting(&app, |clicks| {
        clicks.tumbling_window(ms(10)).count().closed()
    });
    let mut driver = TestDriver::new(&app).unwrap();
    let error = driver.push(&input, TestMessage::new(1)).unwrap_err();
    assert!(error.to_string().contains("no timestamp"), "{error}");
    assert_eq!(error.offset(), Some(0));
    assert!(driver.values(&output).unwrap().is_empty());
}

#[test]
fn collected_values_come_out_in_event_time_order_and_are_deleted_with_their_window() {
    let app = Application::builder()
        .use_embedded_broker()
        .commit_every(1)
        .build()
        .unwrap();
    let input = app.topic::<u32>("collected-readings");
    let output = app.topic::<WindowResult<Vec<u32>>>("lists");
    app.dataframe(&input)
        .hopping_window(ms(10), ms(5))
        .grace(ms(2))
        .collect()
        .closed()
        .to_topic(&output);
    let mut driver = TestDriver::new(&app).unwrap();
    for (value, timestamp) in [(1, 7), (2, 3), (3, 7), (4, 12), (5, 8), (6, 30)] {
        let message = TestMessage::new(value)
            .key(b"k".to_vec())
            .timestamp(timestamp);
        driver.push(&input, message).unwrap();
    }
    let lists: Vec<_> = driver
        .values(&output)
        .unwrap()
        .into_iter()
        .map(|window| (window.start, window.end, window.value))
        .collect();
    // [-5, 5) closed at 7 (+ 2 grace) before 2 came; [0, 10) closed at 12
    // before 5 came.
    assert_eq!(
        lists,
        [
            (0, 10, vec![2, 1, 3]),
            (5, 15, vec![1, 3, 5, 4]),
            (10, 20, vec![4]),
        ]
    );
    // Under key "k" (length-prefixed), items are `c`, end, start, index.
    let items = stored_keys("collected-readings")
        .into_iter()
        .filter(|key| key.starts_with(b"\0\0\0\x01kc"))
        .count();
    assert_eq!(
        items, 2,
        "only the items of 6 in [25, 35) and [30, 40) are left"
    );
}

/// Every key in the stores of input topic `topic` that this process's
/// test drivers hold (in their state directories, which they delete when
/// dropped).
fn stored_keys(topic: &str) -> Vec<Vec<u8>> {
    let drivers = format!("kstreams-test-driver-{}-", std::process::id());
    let mut keys = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&drivers)
        })
        .collect();
    while let Some(dir) = dirs.pop() {
        let of_topic = dir.components().any(|part| part.as_os_str() == topic);
        if of_topic && dir.join("CURRENT").exists() {
            let options = rocksdb::Options::default();
            let families = rocksdb::DB::list_cf(&options, &dir).unwrap();
            let db = rocksdb::DB::open_cf_for_read_only(&options, &dir, &families, false).unwrap();
            for family in &families {
                let handle = db.cf_handle(family).unwrap();
                for entry in db.iterator_cf(handle, rocksdb::IteratorMode::Start) {
                    keys.push(entry.unwrap().0.to_vec());
                }
            }
            continue;
        }
        // Another test's driver, on another thread, may delete its
        // directory meanwhile.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|entry| entry.path()) {
            if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    keys
}

#[test]
fn windows_refuse_what_they_cannot_do() {
    let app = app();
    let input = app.topic::<u32>("readings");
    let sdf = app.dataframe(&input);
    for build in [
        Box::new(|sdf: StreamingDataFrame<u32>| {
            let _ = sdf.tumbling_window(ms(10)).collect().current();
        }) as Box<dyn Fn(StreamingDataFrame<u32>)>,
        Box::new(|sdf: StreamingDataFrame<u32>| {
            let _ = sdf.sliding_window(ms(10)).collect().closed();
        }),
        // Count windows close with their last message.
        Box::new(|sdf: StreamingDataFrame<u32>| {
            let _ = sdf.tumbling_count_window(3).grace(ms(5)).count().closed();
        }),
        Box::new(|sdf: StreamingDataFrame<u32>| {
            let window = sdf.tumbling_count_window(3);
            let _ = window.closing(Closing::PerPartition).count().closed();
        }),
        // 20 000 open windows a key, in one stored value.
        Box::new(|sdf: StreamingDataFrame<u32>| {
            let window = sdf.tumbling_window(ms(1)).grace(ms(20_000));
            let _ = window.count().closed();
        }),
    ] {
        let sdf = sdf.clone();
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(sdf)));
        assert!(refused.is_err());
    }
}
