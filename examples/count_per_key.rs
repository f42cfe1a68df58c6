//! Counts messages and sums `amount` per message key in state, and emits
//! `{"key", "count", "total"}` for every input message: the workload of the
//! reliability tests and the benchmarks.
//!
//! `cargo run --example count_per_key` runs on the embedded broker with
//! generated data and checks the final counts. Against a broker:
//!
//! ```text
//! count_per_key --broker 127.0.0.1:9092 --input purchases --output counts \
//!     --group counts --state-dir state [--commit-interval-ms 5000] \
//!     [--commit-every 0] [--count N] [--session-timeout-ms 45000]
//! ```
//!
//! A new group starts from the earliest offset. SIGTERM stops it cleanly;
//! `--count N` stops after N messages with a final checkpoint. A malformed
//! message stops it with a non-zero exit and an error naming topic,
//! partition and offset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kstreams::{State, Until};

#[path = "common/count.rs"]
mod count;
use count::{count_and_sum, Purchase, Totals};
#[path = "common/cli.rs"]
mod cli;
use cli::{Flags, Progress};

fn main() -> anyhow::Result<()> {
    // Recovery progress and rebalances are logged at info level.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let flags = Flags::defaults("purchases", "counts", "count-per-key").parse(|_, _| Ok(false))?;
    let embedded = flags.broker.is_none();
    let app = flags.application()?;
    let input = app.topic::<Purchase>(&flags.input);
    let output = app.topic::<Totals>(&flags.output);

    // `--count N` stops after the Nth message (the run ends with a final
    // checkpoint); the summary's clock starts at the first message, so group
    // join and recovery are not counted (as in the Quix Streams reference).
    let progress = Arc::new(Progress::default());
    let seen = Arc::clone(&progress);
    let (stop, limit) = (app.stop_handle(), flags.count.filter(|_| !embedded));
    app.dataframe(&input)
        .apply_stateful(move |purchase, state: &mut State| {
            if Some(seen.tick()) == limit {
                stop.stop();
            }
            count_and_sum(purchase, state)
        })
        .to_topic(&output);

    if !embedded {
        app.run()?;
        progress.report("count_per_key");
        return Ok(());
    }

    // On the embedded broker: generate purchases, run, check every key.
    app.clear_state()?;
    let producer = app.producer()?;
    let mut expected: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let messages = flags.count.unwrap_or(200);
    for i in 0..messages {
        let key = format!("user-{}", i % 7);
        let amount = (i % 13) as f64;
        let entry = expected.entry(key.clone()).or_default();
        entry.0 += 1;
        entry.1 += amount;
        producer.send(&input, Some(&key.into_bytes()), &Purchase { amount })?;
    }
    producer.flush()?;
    println!("produced {messages} purchases for {} keys", expected.len());
    let outputs = app.run_until(Until::messages(messages).or_timeout(Duration::from_secs(60)))?;
    let mut last: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for totals in outputs.values(&output)? {
        last.insert(totals.key, (totals.count, totals.total));
    }
    for (key, (count, total)) in &last {
        println!("  {key}: count {count}, total {total}");
    }
    assert_eq!(last, expected);
    println!("done: every key's count and total are exact");
    Ok(())
}
