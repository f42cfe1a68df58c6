//! The `window_totals` example as a job of the crash and rebalance tests:
//! its flags (tumbling or session windows), a feeder of purchases with
//! event times (out of order within the grace period, some far too late)
//! that remembers what it sent, and the check of every emitted window
//! against the truth (`examples/common/window_truth.rs`, which the example
//! checks itself with).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::count_per_key::{Feeder, Job};

#[path = "../../examples/common/window_truth.rs"]
mod window_truth;
use window_truth::{Shape, Truth};

const KEYS: u64 = 20;
const WINDOW_MS: i64 = 1_000;
const GRACE_MS: i64 = 300;
const SESSION_GAP_MS: i64 = 150;

/// Per key, its messages' event times and amounts, in the order sent.
pub type Sent = BTreeMap<String, Vec<(i64, u64)>>;

/// A job running `window_totals` with 1 s windows and 300 ms of grace.
pub fn job(prefix: &str) -> Job {
    let (window, grace) = (WINDOW_MS.to_string(), GRACE_MS.to_string());
    Job::new(prefix).example(
        "window_totals",
        &["--window-ms", &window, "--grace-ms", &grace],
    )
}

/// A job running `window_totals` on session windows with a gap of 150 ms
/// (a key's messages come 200 ms apart: those that come early bridge and
/// merge sessions) and 300 ms of grace.
pub fn session_job(prefix: &str) -> Job {
    let (gap, grace) = (SESSION_GAP_MS.to_string(), GRACE_MS.to_string());
    Job::new(prefix).example(
        "window_totals",
        &["--session-gap-ms", &gap, "--grace-ms", &grace],
    )
}

/// Feeds `job` purchases of 20 keys, event time 10 ms apart; one in seven
/// up to 250 ms early (in time), one in 31 five seconds early (late).
pub fn feed(job: &Job) -> Feeder<Sent> {
    Feeder::start_with(job, Sent::new(), |i, sent| {
        let key = format!("k{}", i % KEYS);
        let mut ts = 1_700_000_000_000 + i as i64 * 10;
        if i % 7 == 3 {
            ts -= (i % 251) as i64;
        }
        if i % 31 == 5 {
            ts -= 5_000;
        }
        let amount = i % 17;
        sent.entry(key.clone()).or_default().push((ts, amount));
        (key, json!({"amount": amount, "ts": ts}))
    })
}

/// A job running `window_totals` with 1 s windows and 300 ms of grace,
/// closing per partition (of one) and on an idle stream after
/// [`IDLE_CLOSE_MS`].
pub fn idle_job(prefix: &str) -> Job {
    let (window, grace) = (WINDOW_MS.to_string(), GRACE_MS.to_string());
    let idle = IDLE_CLOSE_MS.to_string();
    let args = [
        "--window-ms",
        &window,
        "--grace-ms",
        &grace,
        "--idle-close-ms",
        &idle,
    ];
    Job::new(prefix)
        .one_partition()
        .example("window_totals", &args)
}

pub const IDLE_CLOSE_MS: u64 = 2_000;

/// The windows that close in `shape`, by (key, start): (end, count, sum).
/// Closing per partition, the messages of each key in the order sent
/// stand for the order of the one partition (a key's messages keep their
/// order; across keys the feeder sends them in time order, round robin),
/// and every window closes in the end (the stream goes idle).
fn closed_windows(sent: &Sent, shape: Shape) -> BTreeMap<(String, i64), (i64, u64, u64)> {
    let mut truth = Truth::new(shape, GRACE_MS);
    match shape {
        Shape::TumblingPerPartition { .. } => {
            let mut next: BTreeMap<&String, usize> = BTreeMap::new();
            let total: usize = sent.values().map(Vec::len).sum();
            for i in 0..total as u64 {
                let key = format!("k{}", i % KEYS);
                let Some((key, messages)) = sent.get_key_value(&key) else {
                    continue;
                };
                let at = next.entry(key).or_default();
                if let Some((ts, amount)) = messages.get(*at) {
                    truth.push(key, *ts, *amount as f64);
                }
                *at += 1;
            }
            truth.close_all();
        }
        _ => {
            for (key, messages) in sent {
                for (ts, amount) in messages {
                    truth.push(key, *ts, *amount as f64);
                }
            }
        }
    }
    truth
        .closed
        .into_iter()
        .map(|(key, start, end, count, sum)| ((key, start), (end, count, sum as u64)))
        .collect()
}

/// Every window that closed in the truth was emitted, every emission of a
/// window carries the true end, count and sum, and no other window was
/// emitted: tumbling windows of `job`.
pub fn assert_every_window_exact(job: &Job, sent: &Sent) {
    assert_exact_as(job, sent, Shape::Tumbling { window: WINDOW_MS });
}

/// The same for a job of [`session_job`].
pub fn assert_every_session_exact(job: &Job, sent: &Sent) {
    assert_exact_as(
        job,
        sent,
        Shape::Session {
            gap: SESSION_GAP_MS,
        },
    );
}

/// The same for a job of [`idle_job`], once every window is out.
pub fn assert_every_idle_window_exact(job: &Job, sent: &Sent) {
    assert_exact_as(job, sent, Shape::TumblingPerPartition { window: WINDOW_MS });
}

/// How many of the windows that close in the end for [`idle_job`] were
/// emitted so far.
pub fn idle_windows_out(job: &Job, sent: &Sent) -> (usize, usize) {
    let truth = closed_windows(sent, Shape::TumblingPerPartition { window: WINDOW_MS });
    let emitted: BTreeSet<(String, i64)> = job
        .output_rows()
        .iter()
        .filter_map(|row| Some((row["key"].as_str()?.to_string(), row["start"].as_i64()?)))
        .collect();
    let out = truth
        .keys()
        .filter(|window| emitted.contains(*window))
        .count();
    (out, truth.len())
}

fn assert_exact_as(job: &Job, sent: &Sent, shape: Shape) {
    let truth = closed_windows(sent, shape);
    let mut emitted = BTreeSet::new();
    for row in job.output_rows() {
        let key = row["key"].as_str().expect("key").to_string();
        let start = row["start"].as_i64().expect("start");
        let true_window = truth.get(&(key.clone(), start));
        let (end, count, sum) = true_window.unwrap_or_else(|| panic!("not a closed window: {row}"));
        assert_eq!(
            (&row["end"], &row["count"], row["sum"].as_f64()),
            (&Value::from(*end), &Value::from(*count), Some(*sum as f64)),
            "{row}"
        );
        emitted.insert((key, start));
    }
    let missing: Vec<_> = truth
        .keys()
        .filter(|window| !emitted.contains(*window))
        .collect();
    assert!(
        missing.is_empty(),
        "closed windows never emitted: {missing:?}"
    );
    assert!(truth.len() > 100, "only {} windows closed", truth.len());
}
