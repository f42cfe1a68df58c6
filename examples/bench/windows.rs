//! The window workloads through the test driver: `window_totals`' tumbling
//! window (count and sum per key, closed windows only), the same on a
//! hopping window (duration 4 x step), on session windows and on count
//! windows of five messages, each beside the same work in a plain loop;
//! and the cost of closing per partition as the number of keys with an
//! open window grows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kstreams::windows::{Closing, WindowResult};
use kstreams::{Application, StreamingDataFrame, TestDriver, Topic};
use serde_json::json;

use crate::driver::push_through_driver;
use crate::measure::{cpu_seconds, Measure, Who};
use crate::window::{purchases, session_totals, window_totals, Purchase, WindowTotals};
use crate::{progress, Flags};

const WINDOW: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(1);
/// The hopping window's step: a quarter of its duration.
const STEP: Duration = Duration::from_millis(1_250);

/// Purchase `i` of `keys` keys: event time moves on 0.1 ms a message, so a
/// key of 10 000 gets one a second, five a window.
fn purchase(i: u64, keys: u64) -> (String, Vec<u8>) {
    let key = format!("user-{}", i % keys);
    let value = json!({"amount": i % 100, "ts": 1_700_000_000_000_i64 + (i / 10) as i64});
    (key, value.to_string().into_bytes())
}

fn inputs(flags: &Flags) -> Vec<(String, Vec<u8>)> {
    (0..flags.driver_messages)
        .map(|i| purchase(i, flags.keys))
        .collect()
}

/// The session workload's gap: a key's messages come a second apart
/// (10 000 keys), then every key pauses (see `session_purchase`).
const SESSION_GAP: Duration = Duration::from_secs(2);

/// Purchase `i` of `keys` keys in sessions of five messages: as
/// `purchase`, and event time jumps 10 s after every five messages of
/// each key, which closes every key's session.
fn session_purchase(i: u64, keys: u64) -> (String, Vec<u8>) {
    let key = format!("user-{}", i % keys);
    let ts = 1_700_000_000_000_i64 + (i / 10) as i64 + (i / keys / 5) as i64 * 10_000;
    let value = json!({"amount": i % 100, "ts": ts});
    (key, value.to_string().into_bytes())
}

fn session_inputs(flags: &Flags) -> Vec<(String, Vec<u8>)> {
    (0..flags.driver_messages)
        .map(|i| session_purchase(i, flags.keys))
        .collect()
}

pub fn driver_tumbling(flags: &Flags) -> anyhow::Result<Measure> {
    run_driver("driver window tumbling", flags, |frame| {
        window_totals(frame, WINDOW, GRACE, None)
    })
}

pub fn driver_hopping(flags: &Flags) -> anyhow::Result<Measure> {
    run_driver("driver window hopping", flags, |frame| {
        frame
            .hopping_window(WINDOW, STEP)
            .grace(GRACE)
            .reduce(
                |purchase| (1_u64, purchase.amount),
                |(count, sum), purchase| (count + 1, sum + purchase.amount),
            )
            .closed()
            .apply_with_metadata(|window, meta| Ok(totals(window, meta.key_str())))
    })
}

/// The count workload: windows of five messages of a key (one a window
/// per key per 5 s of the purchases' event time, as the tumbling one).
const COUNT: u64 = 5;

pub fn driver_count(flags: &Flags) -> anyhow::Result<Measure> {
    run_driver("driver window count", flags, |frame| {
        frame
            .tumbling_count_window(COUNT)
            .reduce(
                |purchase| (1_u64, purchase.amount),
                |(count, sum), purchase| (count + 1, sum + purchase.amount),
            )
            .closed()
            .apply_with_metadata(|window, meta| Ok(totals(window, meta.key_str())))
    })
}

/// The count workload in a plain loop: per key, the open window's first
/// and last event time, count and sum.
pub fn closures_count(flags: &Flags) -> anyhow::Result<Measure> {
    let mut keys: HashMap<String, Option<(i64, i64, u64, f64)>> = HashMap::new();
    let name = "closures alone window count";
    plain_loop(name, flags, &inputs(flags), |key, purchase, output| {
        let (ts, amount) = (purchase.ts, purchase.amount);
        let open = keys.entry(key.clone()).or_default();
        let window = match open.take() {
            Some((start, end, count, sum)) => (start.min(ts), end.max(ts), count + 1, sum + amount),
            None => (ts, ts, 1, amount),
        };
        if window.2 < COUNT {
            *open = Some(window);
            return Ok(());
        }
        encode_closed(output, key, window)
    })
}

pub fn driver_session(flags: &Flags) -> anyhow::Result<Measure> {
    let name = "driver window session";
    let pipeline = |frame| session_totals(frame, SESSION_GAP, GRACE);
    run_driver_on(name, flags, &session_inputs(flags), pipeline)
}

fn totals(window: WindowResult<(u64, f64)>, key: Option<&str>) -> WindowTotals {
    let (count, sum) = window.value;
    WindowTotals {
        key: key.unwrap_or_default().to_string(),
        start: window.start,
        end: window.end,
        count,
        sum,
    }
}

/// Pushes the purchases, encoded up front, through `pipeline`.
fn run_driver(
    name: &str,
    flags: &Flags,
    pipeline: impl FnOnce(StreamingDataFrame<Purchase>) -> StreamingDataFrame<WindowTotals>,
) -> anyhow::Result<Measure> {
    run_driver_on(name, flags, &inputs(flags), pipeline)
}

/// Pushes `inputs` through `pipeline`.
fn run_driver_on(
    name: &str,
    flags: &Flags,
    inputs: &[(String, Vec<u8>)],
    pipeline: impl FnOnce(StreamingDataFrame<Purchase>) -> StreamingDataFrame<WindowTotals>,
) -> anyhow::Result<Measure> {
    let dir = tempfile::tempdir()?;
    let app = Application::builder()
        .use_embedded_broker()
        .state_dir(dir.path())
        .build()?;
    let input = purchases("purchases");
    let output = app.topic::<WindowTotals>("windows");
    pipeline(app.dataframe(&input)).to_topic(&output);
    push_through_driver(&app, &input, name, inputs, flags)
}

/// A key's windows in the plain loop: its stream time and open windows.
#[derive(Default)]
struct KeyWindows {
    time: i64,
    /// (start, count, sum), by start.
    open: Vec<(i64, u64, f64)>,
}

pub fn closures_tumbling(flags: &Flags) -> anyhow::Result<Measure> {
    run_closures("closures alone window tumbling", WINDOW, flags)
}

pub fn closures_hopping(flags: &Flags) -> anyhow::Result<Measure> {
    run_closures("closures alone window hopping", STEP, flags)
}

/// The same windows in a plain loop, state in a `HashMap` in memory:
/// decode, assign to windows, aggregate, close, encode the closed ones.
fn run_closures(name: &str, step: Duration, flags: &Flags) -> anyhow::Result<Measure> {
    let (duration, step) = (WINDOW.as_millis() as i64, step.as_millis() as i64);
    let grace = GRACE.as_millis() as i64;
    let mut keys: HashMap<String, KeyWindows> = HashMap::new();
    plain_loop(name, flags, &inputs(flags), |key, purchase, output| {
        let windows = keys.entry(key.clone()).or_default();
        windows.time = windows.time.max(purchase.ts);
        let closed_by = windows.time - grace;
        let mut start = purchase.ts - purchase.ts.rem_euclid(step);
        while start > purchase.ts - duration {
            if start + duration > closed_by {
                match windows.open.iter_mut().find(|open| open.0 == start) {
                    Some(open) => {
                        open.1 += 1;
                        open.2 += purchase.amount;
                    }
                    None => {
                        let at = windows.open.partition_point(|open| open.0 < start);
                        windows.open.insert(at, (start, 1, purchase.amount));
                    }
                }
            }
            start -= step;
        }
        let closing = windows
            .open
            .partition_point(|open| open.0 + duration <= closed_by);
        for (start, count, sum) in windows.open.drain(..closing) {
            encode_closed(output, key, (start, start + duration, count, sum))?;
        }
        Ok(())
    })
}

/// The closed window (start, end, count, sum) of `key` as the pipeline's
/// output JSON, into `output`.
fn encode_closed(
    output: &mut Vec<u8>,
    key: &str,
    (start, end, count, sum): (i64, i64, u64, f64),
) -> anyhow::Result<()> {
    output.clear();
    let key = key.to_string();
    let totals = WindowTotals {
        key,
        start,
        end,
        count,
        sum,
    };
    Ok(serde_json::to_writer(output, &totals)?)
}

/// Runs `body` on each of `inputs`, decoded, in a plain loop: the
/// closures-alone baselines.
fn plain_loop(
    name: &str,
    flags: &Flags,
    inputs: &[(String, Vec<u8>)],
    mut body: impl FnMut(&String, Purchase, &mut Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<Measure> {
    let mut output = Vec::new();
    let cpu = cpu_seconds(Who::Process);
    let started = Instant::now();
    for (done, (key, value)) in (1..).zip(inputs) {
        body(key, serde_json::from_slice(value)?, &mut output)?;
        progress(name, done, started);
    }
    Ok(Measure {
        messages: flags.driver_messages,
        seconds: started.elapsed().as_secs_f64(),
        cpu: Some(cpu_seconds(Who::Process) - cpu),
    })
}

/// A key's sessions in the plain loop: its stream time, the end of its
/// latest closed session, and its open sessions (start, end, count, sum)
/// by start.
#[derive(Default)]
struct KeySessions {
    time: i64,
    closed_end: Option<i64>,
    open: Vec<(i64, i64, u64, f64)>,
}

/// The session workload in a plain loop, state in a `HashMap` in memory:
/// decode, extend or merge the sessions a message reaches, close, encode
/// the closed ones.
pub fn closures_session(flags: &Flags) -> anyhow::Result<Measure> {
    let name = "closures alone window session";
    let (gap, grace) = (SESSION_GAP.as_millis() as i64, GRACE.as_millis() as i64);
    let mut keys: HashMap<String, KeySessions> = HashMap::new();
    plain_loop(
        name,
        flags,
        &session_inputs(flags),
        |key, purchase, output| {
            let ts = purchase.ts;
            let sessions = keys.entry(key.clone()).or_default();
            sessions.time = sessions.time.max(ts);
            let closed_by = sessions.time - grace;
            let first = sessions.open.partition_point(|s| s.1 + gap < ts);
            let last = sessions.open.partition_point(|s| s.0 - gap <= ts);
            let reaches_closed = sessions.closed_end.is_some_and(|end| ts <= end + gap);
            let end = sessions.open[first..last]
                .last()
                .map_or(ts, |s| s.1.max(ts));
            if !reaches_closed && end + gap >= closed_by {
                let mut merged = (ts, ts, 1, purchase.amount);
                for (start, end, count, sum) in sessions.open.drain(first..last) {
                    merged = (
                        merged.0.min(start),
                        merged.1.max(end),
                        merged.2 + count,
                        merged.3 + sum,
                    );
                }
                sessions.open.insert(first, merged);
            }
            let closing = sessions.open.partition_point(|s| s.1 + gap < closed_by);
            for session in sessions.open.drain(..closing) {
                sessions.closed_end =
                    Some(sessions.closed_end.map_or(session.1, |c| c.max(session.1)));
                encode_closed(output, key, session)?;
            }
            Ok(())
        },
    )
}

/// What closing per partition cost at one number of keys.
pub struct ClosingCost {
    pub keys: u64,
    /// Windows closed by the measured messages.
    pub closed: u64,
    pub seconds: f64,
    /// How long the one message took that closed every key's first window.
    pub all_at_once_seconds: f64,
}

/// Every one of `keys` keys opens a window; then, step after step, 1 % of
/// the keys send one message each, and each step closes the windows of the
/// step before: only the active keys'. The measured part is the steps
/// after the first (which closes every key's first window).
pub fn closing_cost(keys: u64) -> anyhow::Result<ClosingCost> {
    let dir = tempfile::tempdir()?;
    let app = Application::builder()
        .use_embedded_broker()
        .state_dir(dir.path())
        .build()?;
    let input = Topic::<u64>::new("clicks");
    let output = app.topic::<WindowResult<u64>>("counts");
    app.dataframe(&input)
        .tumbling_window(Duration::from_millis(1_000))
        .closing(Closing::PerPartition)
        .count()
        .closed()
        .to_topic(&output);
    let mut driver = TestDriver::new(&app)?;
    let push = |driver: &mut TestDriver<'_>, key: u64, ts: i64| {
        let key = format!("user-{key}");
        driver.push(
            &input,
            kstreams::TestMessage::new(key.len() as u64)
                .key(key.into_bytes())
                .timestamp(ts),
        )
    };
    for key in 0..keys {
        push(&mut driver, key, 0)?;
    }
    let active = (keys / 100).max(1);
    // The first message of step 1 closes every key's window [0, 1000).
    let started = Instant::now();
    push(&mut driver, 0, 1_000)?;
    let all_at_once_seconds = started.elapsed().as_secs_f64();
    for key in 1..active {
        push(&mut driver, key, 1_000)?;
    }
    driver.take_outputs();
    let steps = 20;
    let started = Instant::now();
    for step in 2..2 + steps {
        for key in 0..active {
            push(&mut driver, key, step * 1_000)?;
        }
        driver.take_outputs();
    }
    Ok(ClosingCost {
        keys,
        closed: active * steps as u64,
        seconds: started.elapsed().as_secs_f64(),
        all_at_once_seconds,
    })
}
