//! The windows of `window_totals` as they should close, computed in memory
//! from the messages of each key in the order they were sent: tumbling
//! windows, or session windows. The embedded run of the example checks
//! itself against it, and so do the crash and rebalance tests.

use std::collections::BTreeMap;

/// The window of the pipeline, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Tumbling {
        window: i64,
    },
    /// Tumbling windows closing per partition (the input has one): any
    /// message advances the time of every key.
    TumblingPerPartition {
        window: i64,
    },
    Session {
        gap: i64,
    },
}

/// A closed window: key, start, end, count and sum.
pub type Closed = (String, i64, i64, u64, f64);

/// Each key's stream time, open windows and the windows closed so far.
pub struct Truth {
    shape: Shape,
    grace: i64,
    keys: BTreeMap<String, KeyTruth>,
    /// In the order they closed.
    pub closed: Vec<Closed>,
    pub late: u64,
}

#[derive(Default)]
struct KeyTruth {
    time: Option<i64>,
    /// Tumbling: count and sum by window start.
    windows: BTreeMap<i64, (u64, f64)>,
    /// Sessions: the (time, amount) of each message of an open session,
    /// and the end of the latest closed session.
    messages: Vec<(i64, f64)>,
    closed_end: Option<i64>,
}

impl Truth {
    pub fn new(shape: Shape, grace: i64) -> Self {
        Truth {
            shape,
            grace,
            keys: BTreeMap::new(),
            closed: Vec::new(),
            late: 0,
        }
    }

    /// The next message of `key`.
    pub fn push(&mut self, key: &str, ts: i64, amount: f64) {
        // Closing per partition keeps the one stream time under "".
        let clock = match self.shape {
            Shape::TumblingPerPartition { .. } => "",
            _ => key,
        };
        let time = self.keys.get(clock).and_then(|state| state.time);
        let now = time.map_or(ts, |time| time.max(ts));
        self.keys.entry(clock.to_string()).or_default().time = Some(now);
        let closed_by = now - self.grace;
        let state = self.keys.entry(key.to_string()).or_default();
        let in_time = match self.shape {
            Shape::Tumbling { window } | Shape::TumblingPerPartition { window } => {
                tumbling(state, window, closed_by, (ts, amount))
            }
            Shape::Session { gap } => session(state, gap, closed_by, (ts, amount)),
        };
        if !in_time {
            self.late += 1;
        }
        let closing: Vec<String> = match self.shape {
            Shape::TumblingPerPartition { .. } => self.keys.keys().cloned().collect(),
            _ => vec![key.to_string()],
        };
        for key in closing {
            self.close(&key, closed_by);
        }
    }

    /// Closes every window still open, as closing on an idle stream does
    /// once input stops.
    pub fn close_all(&mut self) {
        let keys: Vec<String> = self.keys.keys().cloned().collect();
        for key in keys {
            self.close(&key, i64::MAX - i64::from(u32::MAX));
        }
    }

    /// Closes the windows of `key` that end by `closed_by`.
    fn close(&mut self, key: &str, closed_by: i64) {
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        let closed = match self.shape {
            Shape::Tumbling { window } | Shape::TumblingPerPartition { window } => {
                close_tumbling(state, window, closed_by)
            }
            Shape::Session { gap } => close_sessions(state, gap, closed_by),
        };
        for (start, end, count, sum) in closed {
            self.closed.push((key.to_string(), start, end, count, sum));
        }
    }
}

/// Adds a message to its tumbling window unless that closed.
fn tumbling(state: &mut KeyTruth, window: i64, closed_by: i64, (ts, amount): (i64, f64)) -> bool {
    let start = ts - ts.rem_euclid(window);
    if start + window <= closed_by {
        return false;
    }
    let totals = state.windows.entry(start).or_default();
    totals.0 += 1;
    totals.1 += amount;
    true
}

fn close_tumbling(state: &mut KeyTruth, window: i64, closed_by: i64) -> Vec<(i64, i64, u64, f64)> {
    let closing: Vec<i64> = state
        .windows
        .keys()
        .copied()
        .filter(|start| start + window <= closed_by)
        .collect();
    closing
        .into_iter()
        .map(|start| {
            let (count, sum) = state.windows.remove(&start).unwrap_or_default();
            (start, start + window, count, sum)
        })
        .collect()
}

/// `messages` sorted by time and cut where two are more than `gap` apart.
fn sessions(messages: &[(i64, f64)], gap: i64) -> Vec<Vec<(i64, f64)>> {
    let mut sorted = messages.to_vec();
    sorted.sort_by_key(|(time, _)| *time);
    let mut sessions: Vec<Vec<(i64, f64)>> = Vec::new();
    for message in sorted {
        match sessions.last_mut() {
            Some(last) if last.last().is_some_and(|(time, _)| message.0 - time <= gap) => {
                last.push(message)
            }
            _ => sessions.push(vec![message]),
        }
    }
    sessions
}

/// Adds a message to the open sessions unless its session would be closed
/// or it is within the gap of a closed one.
fn session(state: &mut KeyTruth, gap: i64, closed_by: i64, (ts, amount): (i64, f64)) -> bool {
    if state.closed_end.is_some_and(|closed| ts <= closed + gap) {
        return false;
    }
    let mut with = state.messages.clone();
    with.push((ts, amount));
    let own_end = sessions(&with, gap)
        .into_iter()
        .find(|session| session.iter().any(|(time, _)| *time == ts))
        .and_then(|session| session.last().map(|(time, _)| *time))
        .unwrap_or(ts);
    if own_end + gap < closed_by {
        return false;
    }
    state.messages = with;
    true
}

fn close_sessions(state: &mut KeyTruth, gap: i64, closed_by: i64) -> Vec<(i64, i64, u64, f64)> {
    let mut closed = Vec::new();
    let mut open = Vec::new();
    for session in sessions(&state.messages, gap) {
        let (start, end) = (session[0].0, session[session.len() - 1].0);
        if end + gap < closed_by {
            let sum = session.iter().map(|(_, amount)| amount).sum();
            closed.push((start, end, session.len() as u64, sum));
            state.closed_end = Some(state.closed_end.map_or(end, |c| c.max(end)));
        } else {
            open.extend(session);
        }
    }
    state.messages = open;
    closed
}
