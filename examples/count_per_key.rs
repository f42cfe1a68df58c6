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
//!     [--commit-every 0] [--count N] [--session-timeout-ms 45000] \
//!     [--group-by FIELD] [--exactly-once]
//! ```
//!
//! `--group-by FIELD` re-keys each purchase by its JSON field `FIELD` (a
//! string) through a repartition topic before counting, so the input may
//! be keyed by anything or not at all; `key` in the output is then the
//! field's value. `--exactly-once` makes each checkpoint a Kafka
//! transaction ([`kstreams::ProcessingGuarantee::ExactlyOnce`]).
//!
//! A new group starts from the earliest offset. SIGTERM stops it cleanly;
//! `--count N` stops after N messages with a final checkpoint. A malformed
//! message stops it with a non-zero exit and an error naming topic,
//! partition and offset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kstreams::{State, StreamingDataFrame, Until};
use serde_json::Value;

#[path = "common/count.rs"]
mod count;
use count::{count_and_sum, Purchase, Totals};
#[path = "common/cli.rs"]
mod cli;
use cli::{Flags, Progress};

fn main() -> anyhow::Result<()> {
    // Recovery progress and rebalances are logged at info level.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut group_by: Option<String> = None;
    let flags = Flags::defaults("purchases", "counts", "count-per-key").parse(|flag, value| {
        match flag {
            "--group-by" => group_by = Some(value.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let embedded = flags.broker.is_none();
    let app = flags.application()?;
    let output = app.topic::<Totals>(&flags.output);
    let purchases: StreamingDataFrame<Purchase> = match &group_by {
        None => app.dataframe(&app.topic::<Purchase>(&flags.input)),
        Some(field) => app
            .dataframe(&app.topic::<Value>(&flags.input))
            .group_by_column(field)
            .try_apply(|row| Ok(serde_json::from_value(row)?)),
    };

    // `--count N` stops after the Nth message (the run ends with a final
    // checkpoint); the summary's clock starts at the first message, so group
    // join and recovery are not counted (as in the Quix Streams reference).
    let progress = Arc::new(Progress::default());
    let seen = Arc::clone(&progress);
    let (stop, limit) = (app.stop_handle(), flags.count.filter(|_| !embedded));
    purchases
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

    // On the embedded broker: generate purchases (keyed by user, or by
    // order with the user in a field), run, check every user.
    app.clear_state()?;
    let producer = app.producer()?;
    let input = app.topic::<Value>(&flags.input);
    let mut expected: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let messages = flags.count.unwrap_or(200);
    for i in 0..messages {
        let user = format!("user-{}", i % 7);
        let amount = (i % 13) as f64;
        let entry = expected.entry(user.clone()).or_default();
        entry.0 += 1;
        entry.1 += amount;
        let (key, purchase) = match &group_by {
            None => (user, serde_json::json!({ "amount": amount })),
            Some(field) => (
                format!("order-{i}"),
                serde_json::json!({ field: user, "amount": amount }),
            ),
        };
        producer.send(&input, Some(&key.into_bytes()), &purchase)?;
    }
    producer.flush()?;
    println!("produced {messages} purchases for {} keys", expected.len());
    // With --group-by, each purchase is processed twice: from the input,
    // then from the repartition topic.
    let passes = if group_by.is_some() { 2 } else { 1 };
    let until = Until::messages(messages * passes).or_timeout(Duration::from_secs(60));
    let outputs = app.run_until(until)?;
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
