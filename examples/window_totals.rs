//! Counts and sums `amount` per message key in tumbling windows of event
//! time (the `ts` field), and emits each window once, when it closes:
//! `{"key", "start", "end", "count", "sum"}`. The workload of the window
//! tests and benchmarks.
//!
//! `cargo run --example window_totals` runs on the embedded broker with
//! generated data (out of order within the grace period, and some messages
//! far too late) and checks every window against the truth. Against a
//! broker:
//!
//! ```text
//! window_totals --broker 127.0.0.1:9092 --input purchases --output windows \
//!     --group window-totals --state-dir state [--window-ms 5000] \
//!     [--grace-ms 1000] [--commit-interval-ms 5000] [--commit-every 0] \
//!     [--count N] [--session-timeout-ms 45000]
//! ```
//!
//! Input: `{"amount": number, "ts": milliseconds}` keyed by user. A key's
//! windows close when that key's event time passes their end plus the
//! grace period. A new group starts from the earliest offset. SIGTERM
//! stops it cleanly; `--count N` stops after N messages with a final
//! checkpoint. A malformed message stops it with a non-zero exit and an
//! error naming topic, partition and offset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kstreams::Until;

#[path = "common/cli.rs"]
mod cli;
use cli::{Flags, Progress};
#[path = "common/window.rs"]
mod window;
use window::{purchases, window_totals, Purchase, WindowTotals};

fn main() -> anyhow::Result<()> {
    // Recovery progress and rebalances are logged at info level.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (mut window_ms, mut grace_ms) = (5_000, 1_000);
    let flags = Flags::defaults("purchases", "windows", "window-totals").parse(|flag, value| {
        match flag {
            "--window-ms" => window_ms = value.parse()?,
            "--grace-ms" => grace_ms = value.parse()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let embedded = flags.broker.is_none();
    let app = flags.application()?;
    let input = purchases(&flags.input);
    let output = app.topic::<WindowTotals>(&flags.output);

    let progress = Arc::new(Progress::default());
    let seen = Arc::clone(&progress);
    let (stop, limit) = (app.stop_handle(), flags.count.filter(|_| !embedded));
    let counted = app.dataframe(&input).update(move |_| {
        if Some(seen.tick()) == limit {
            stop.stop();
        }
    });
    let (window, grace) = (
        Duration::from_millis(window_ms),
        Duration::from_millis(grace_ms),
    );
    window_totals(counted, window, grace).to_topic(&output);

    if !embedded {
        app.run()?;
        progress.report("window_totals");
        return Ok(());
    }

    // On the embedded broker: generate purchases, run, check every window.
    app.clear_state()?;
    let producer = app.producer()?;
    let messages = flags.count.unwrap_or(600);
    let mut truth = Truth::new(window_ms as i64, grace_ms as i64);
    for i in 0..messages as i64 {
        let key = format!("user-{}", i % 5);
        // Time moves on 100 ms a message per key, a message in seven comes
        // up to 900 ms early (inside the grace period), one in 50 comes
        // 20 s early (far too late).
        let mut ts = 1_700_000_000_000 + (i / 5) * 100;
        if i % 7 == 3 {
            ts -= 900;
        }
        if i % 50 == 17 {
            ts -= 20_000;
        }
        let amount = (i % 13) as f64;
        truth.push(&key, ts, amount);
        producer.send(&input, Some(&key.into_bytes()), &Purchase { amount, ts })?;
    }
    producer.flush()?;
    println!("produced {messages} purchases for 5 keys");
    let outputs = app.run_until(Until::messages(messages).or_timeout(Duration::from_secs(60)))?;
    let emitted = outputs.values(&output)?;
    for window in &emitted {
        println!(
            "  {} [{}, {}): count {}, sum {}",
            window.key, window.start, window.end, window.count, window.sum
        );
    }
    assert_eq!(emitted.len(), truth.closed.len());
    let mut by_key: BTreeMap<(String, i64), WindowTotals> = BTreeMap::new();
    for window in emitted {
        by_key.insert((window.key.clone(), window.start), window);
    }
    assert_eq!(by_key.into_values().collect::<Vec<_>>(), truth.closed);
    println!(
        "done: {} closed windows exact, {} late messages left out",
        truth.closed.len(),
        truth.late
    );
    Ok(())
}

/// The windows as they should close: each key's stream time, open windows
/// and closed ones, computed in memory.
struct Truth {
    window: i64,
    grace: i64,
    time: BTreeMap<String, i64>,
    open: BTreeMap<(String, i64), (u64, f64)>,
    /// By key, then start.
    closed: Vec<WindowTotals>,
    late: u64,
}

impl Truth {
    fn new(window: i64, grace: i64) -> Self {
        Truth {
            window,
            grace,
            time: BTreeMap::new(),
            open: BTreeMap::new(),
            closed: Vec::new(),
            late: 0,
        }
    }

    fn push(&mut self, key: &str, ts: i64, amount: f64) {
        let now = self.time.get(key).map_or(ts, |time| (*time).max(ts));
        self.time.insert(key.to_string(), now);
        let start = ts - ts.rem_euclid(self.window);
        if start + self.window <= now - self.grace {
            self.late += 1;
        } else {
            let window = self.open.entry((key.to_string(), start)).or_default();
            window.0 += 1;
            window.1 += amount;
        }
        let closing: Vec<_> = self
            .open
            .keys()
            .filter(|(owner, start)| owner == key && start + self.window <= now - self.grace)
            .cloned()
            .collect();
        for (key, start) in closing {
            let (count, sum) = self.open.remove(&(key.clone(), start)).unwrap_or_default();
            let end = start + self.window;
            self.closed.push(WindowTotals {
                key,
                start,
                end,
                count,
                sum,
            });
        }
        self.closed
            .sort_by(|a, b| (&a.key, a.start).cmp(&(&b.key, b.start)));
    }
}
