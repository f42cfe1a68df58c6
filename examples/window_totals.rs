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
//!     [--grace-ms 1000] [--session-gap-ms G | --idle-close-ms D] \
//!     [--commit-interval-ms 5000] [--commit-every 0] [--count N] \
//!     [--session-timeout-ms 45000] [--exactly-once]
//! ```
//!
//! `--exactly-once` makes each checkpoint a Kafka transaction
//! ([`kstreams::ProcessingGuarantee::ExactlyOnce`]).
//!
//! `--session-gap-ms G` puts session windows with that inactivity gap in
//! place of the tumbling windows: same output, `start` and `end` a
//! session's first and last event time. `--idle-close-ms D` closes the
//! tumbling windows per partition (any message advances time), and on an
//! idle stream: after D ms of wall time without a message, a partition's
//! stream time runs on with the wall clock, so the last windows come out
//! when input stops.
//!
//! Input: `{"amount": number, "ts": milliseconds}` keyed by user. A key's
//! windows close when that key's event time passes their end plus the
//! grace period. A new group starts from the earliest offset. SIGTERM
//! stops it cleanly; `--count N` stops after N messages with a final
//! checkpoint. A malformed message stops it with a non-zero exit and an
//! error naming topic, partition and offset.

use std::sync::Arc;
use std::time::Duration;

use kstreams::Until;

#[path = "common/cli.rs"]
mod cli;
use cli::{Flags, Progress};
#[path = "common/window.rs"]
mod window;
use window::{purchases, session_totals, window_totals, Purchase, WindowTotals};
#[path = "common/window_truth.rs"]
mod window_truth;
use window_truth::{Closed, Shape, Truth};

fn main() -> anyhow::Result<()> {
    // Recovery progress and rebalances are logged at info level.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (mut window_ms, mut grace_ms) = (5_000, 1_000);
    let (mut session_gap_ms, mut idle_close_ms) = (None, None);
    let flags = Flags::defaults("purchases", "windows", "window-totals").parse(|flag, value| {
        match flag {
            "--window-ms" => window_ms = value.parse()?,
            "--grace-ms" => grace_ms = value.parse()?,
            "--session-gap-ms" => session_gap_ms = Some(value.parse()?),
            "--idle-close-ms" => idle_close_ms = Some(value.parse()?),
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
    let grace = Duration::from_millis(grace_ms);
    let idle_close = idle_close_ms.map(Duration::from_millis);
    let totals = match session_gap_ms {
        Some(_) if idle_close.is_some() => {
            anyhow::bail!("--idle-close-ms closes tumbling windows, not sessions")
        }
        Some(gap) => session_totals(counted, Duration::from_millis(gap), grace),
        None => window_totals(counted, Duration::from_millis(window_ms), grace, idle_close),
    };
    totals.to_topic(&output);

    if !embedded {
        app.run()?;
        progress.report("window_totals");
        return Ok(());
    }

    // On the embedded broker: generate purchases, run, check every window.
    app.clear_state()?;
    let producer = app.producer()?;
    let messages = flags.count.unwrap_or(600);
    let shape = match session_gap_ms {
        Some(gap) => Shape::Session { gap: gap as i64 },
        None if idle_close.is_some() => Shape::TumblingPerPartition {
            window: window_ms as i64,
        },
        None => Shape::Tumbling {
            window: window_ms as i64,
        },
    };
    let mut truth = Truth::new(shape, grace_ms as i64);
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
    let until = match idle_close {
        // Input stops: the last windows close once the partition is idle.
        Some(after) => {
            truth.close_all();
            Until::idle(after + Duration::from_secs(2)).or_timeout(Duration::from_secs(60))
        }
        None => Until::messages(messages).or_timeout(Duration::from_secs(60)),
    };
    let outputs = app.run_until(until)?;
    let emitted = outputs.values(&output)?;
    for window in &emitted {
        println!(
            "  {} [{}, {}): count {}, sum {}",
            window.key, window.start, window.end, window.count, window.sum
        );
    }
    let sorted = |mut windows: Vec<Closed>| {
        windows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        windows
    };
    let emitted = emitted
        .into_iter()
        .map(|w| (w.key, w.start, w.end, w.count, w.sum))
        .collect();
    assert_eq!(sorted(emitted), sorted(truth.closed.clone()));
    println!(
        "done: {} closed windows exact, {} late messages left out",
        truth.closed.len(),
        truth.late
    );
    Ok(())
}
