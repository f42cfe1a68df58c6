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
use std::time::Duration;

use kstreams::{Application, OffsetReset, State, Until};
use serde_json::{json, Value};

struct Flags {
    broker: Option<String>,
    input: String,
    output: String,
    group: String,
    state_dir: String,
    commit_interval_ms: u64,
    commit_every: u64,
    count: Option<u64>,
    session_timeout_ms: Option<u64>,
}

fn flags() -> anyhow::Result<Flags> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut flags = Flags {
        broker: None,
        input: "purchases".into(),
        output: "counts".into(),
        group: "count-per-key".into(),
        state_dir: "state".into(),
        commit_interval_ms: 5_000,
        commit_every: 0,
        count: None,
        session_timeout_ms: None,
    };
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            anyhow::bail!("{} needs a value", pair[0]);
        };
        match flag.as_str() {
            "--broker" => flags.broker = Some(value.clone()),
            "--input" => flags.input = value.clone(),
            "--output" => flags.output = value.clone(),
            "--group" => flags.group = value.clone(),
            "--state-dir" => flags.state_dir = value.clone(),
            "--commit-interval-ms" => flags.commit_interval_ms = value.parse()?,
            "--commit-every" => flags.commit_every = value.parse()?,
            "--count" => flags.count = Some(value.parse()?),
            "--session-timeout-ms" => flags.session_timeout_ms = Some(value.parse()?),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(flags)
}

fn main() -> anyhow::Result<()> {
    // Recovery progress and rebalances are logged at info level.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let flags = flags()?;
    let embedded = flags.broker.is_none();
    let mut builder = Application::builder()
        .consumer_group(&flags.group)
        .auto_offset_reset(OffsetReset::Earliest)
        .commit_interval(Duration::from_millis(flags.commit_interval_ms))
        .commit_every(flags.commit_every)
        .state_dir(&flags.state_dir);
    if let Some(timeout) = flags.session_timeout_ms {
        // How long the group waits for a member that died without leaving.
        builder = builder
            .consumer_config("session.timeout.ms", timeout.to_string())
            .consumer_config("heartbeat.interval.ms", (timeout / 6).max(100).to_string());
    }
    builder = match &flags.broker {
        Some(broker) => builder.broker_address(broker),
        None => builder.use_embedded_broker(),
    };
    let app = builder.build()?;
    let input = app.topic::<Value>(&flags.input);
    let output = app.topic::<Value>(&flags.output);

    app.dataframe(&input)
        .apply_stateful(|purchase, state: &mut State| {
            let amount = purchase["amount"]
                .as_f64()
                .ok_or_else(|| anyhow::anyhow!("field \"amount\" is missing or not a number"))?;
            let count = state.get::<u64>("count")?.unwrap_or(0) + 1;
            let total = state.get::<f64>("total")?.unwrap_or(0.0) + amount;
            state.set("count", &count)?;
            state.set("total", &total)?;
            let key = String::from_utf8_lossy(state.message_key()).into_owned();
            Ok(json!({"key": key, "count": count, "total": total}))
        })
        .to_topic(&output);

    if !embedded {
        match flags.count {
            Some(count) => {
                app.run_until(Until::messages(count))?;
            }
            None => app.run()?,
        }
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
        producer.send(&input, Some(&key.into_bytes()), &json!({"amount": amount}))?;
    }
    producer.flush()?;
    println!("produced {messages} purchases for {} keys", expected.len());
    let outputs = app.run_until(Until::messages(messages).or_timeout(Duration::from_secs(60)))?;
    let mut last: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for row in outputs.values(&output)? {
        let key = row["key"].as_str().unwrap_or_default().to_string();
        let count = row["count"].as_u64().unwrap_or_default();
        let total = row["total"].as_f64().unwrap_or_default();
        last.insert(key, (count, total));
    }
    for (key, (count, total)) in &last {
        println!("  {key}: count {count}, total {total}");
    }
    assert_eq!(last, expected);
    println!("done: every key's count and total are exact");
    Ok(())
}
