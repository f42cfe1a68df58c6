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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kstreams::{Application, OffsetReset, State, Until};

#[path = "common/count.rs"]
mod count;
use count::{count_and_sum, Purchase, Totals};

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

/// Messages seen, and when the first one came.
#[derive(Default)]
struct Progress {
    first: OnceLock<Instant>,
    seen: AtomicU64,
}

impl Progress {
    /// Counts a message; returns how many were seen, this one included.
    fn tick(&self) -> u64 {
        self.first.get_or_init(Instant::now);
        self.seen.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Prints `count_per_key: N messages in S s = R msg/s`.
    fn report(&self) {
        if let Some(first) = self.first.get() {
            let seconds = first.elapsed().as_secs_f64();
            let seen = self.seen.load(Ordering::Relaxed);
            let rate = seen as f64 / seconds;
            println!("count_per_key: {seen} messages in {seconds:.2} s = {rate:.0} msg/s");
        }
    }
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
        // How long the group waits for a member that died without leaving;
        // a rebalance waits for its members up to `max.poll.interval.ms`,
        // so that one is kept short too (tansu waits it out for a member
        // killed during a rebalance).
        builder = builder
            .consumer_config("session.timeout.ms", timeout.to_string())
            .consumer_config("heartbeat.interval.ms", (timeout / 6).max(100).to_string())
            .consumer_config("max.poll.interval.ms", (timeout * 3).to_string());
    }
    builder = match &flags.broker {
        Some(broker) => builder.broker_address(broker),
        None => builder.use_embedded_broker(),
    };
    let app = builder.build()?;
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
        progress.report();
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
