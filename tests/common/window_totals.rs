//! The `window_totals` example as a job of the crash and rebalance tests:
//! its flags, a feeder of purchases with event times (out of order within
//! the grace period, some far too late) that remembers what it sent, and
//! the check of every emitted window against the truth.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::count_per_key::{Feeder, Job};

const KEYS: u64 = 20;
const WINDOW_MS: i64 = 1_000;
const GRACE_MS: i64 = 300;

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

/// The windows that close, by (key, start): (count, sum). Per key, the
/// windows whose end plus grace the key's latest event time reached.
fn closed_windows(sent: &Sent) -> BTreeMap<(String, i64), (u64, u64)> {
    let mut closed = BTreeMap::new();
    for (key, messages) in sent {
        let mut now = i64::MIN;
        let mut open: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for (ts, amount) in messages {
            now = now.max(*ts);
            let start = ts - ts.rem_euclid(WINDOW_MS);
            if start + WINDOW_MS > now - GRACE_MS {
                let window = open.entry(start).or_default();
                window.0 += 1;
                window.1 += amount;
            }
            let closing: Vec<i64> = open
                .keys()
                .copied()
                .filter(|start| start + WINDOW_MS <= now - GRACE_MS)
                .collect();
            for start in closing {
                closed.insert(
                    (key.clone(), start),
                    open.remove(&start).unwrap_or_default(),
                );
            }
        }
    }
    closed
}

/// Every window that closed in the truth was emitted, every emission of a
/// window carries the true count and sum, and no other window was emitted.
pub fn assert_every_window_exact(job: &Job, sent: &Sent) {
    let truth = closed_windows(sent);
    let mut emitted = BTreeSet::new();
    for row in job.output_rows() {
        let key = row["key"].as_str().expect("key").to_string();
        let start = row["start"].as_i64().expect("start");
        assert_eq!(row["end"], json!(start + WINDOW_MS), "{row}");
        let true_window = truth.get(&(key.clone(), start));
        let (count, sum) = true_window.unwrap_or_else(|| panic!("not a closed window: {row}"));
        assert_eq!(
            (&row["count"], row["sum"].as_f64()),
            (&Value::from(*count), Some(*sum as f64)),
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
