//! Filters purchases over 100 into a topic of big purchases, with typed serde
//! structs in and JSON out.
//!
//! Runs on the embedded broker with purchases it generates itself:
//! `cargo run --example purchases_filter`. Against Kafka: set
//! `KSTREAMS_BROKER=host:port` or pass `--broker host:port`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kstreams::{Application, OffsetReset, Until};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Purchase {
    user: String,
    amount: f64,
}

const PURCHASES: u64 = 20;

fn main() -> anyhow::Result<()> {
    let mut builder = Application::builder()
        .consumer_group(format!("purchases-filter-{}", run_id()))
        .auto_offset_reset(OffsetReset::Earliest)
        .commit_interval(Duration::from_secs(1));
    if let Some(broker) = flag("--broker") {
        builder = builder.broker_address(broker);
    }
    let app = builder.build()?;
    println!("broker: {}", app.bootstrap_servers());

    // Fresh topic names, so that a run against a real broker sees only its own data.
    let purchases = app.topic::<Purchase>(format!("purchases-{}", run_id()));
    let big = app.topic::<Value>(format!("big-purchases-{}", run_id()));

    let generated: Vec<Purchase> = (0..PURCHASES)
        .map(|i| Purchase {
            user: ["ada", "bob", "cy"][i as usize % 3].to_string(),
            amount: ((i * 37) % 250) as f64,
        })
        .collect();
    let producer = app.producer()?;
    for purchase in &generated {
        producer.send(
            &purchases,
            Some(&purchase.user.as_bytes().to_vec()),
            purchase,
        )?;
    }
    producer.flush()?;
    println!("produced {PURCHASES} purchases to {}", purchases.name());

    app.dataframe(&purchases)
        .update(|p| println!("  in:  {:<4} {:>6.2}", p.user, p.amount))
        .filter(|p| p.amount > 100.0)
        .apply(|p| json!({"user": p.user, "amount": p.amount}))
        .update(|row| println!("  out: {row}"))
        .to_topic(&big);

    let outputs = app.run_until(Until::messages(PURCHASES).or_timeout(Duration::from_secs(60)))?;

    let expected: Vec<Value> = generated
        .iter()
        .filter(|p| p.amount > 100.0)
        .map(|p| json!({"user": p.user, "amount": p.amount}))
        .collect();
    assert_eq!(outputs.processed(), PURCHASES);
    assert_eq!(outputs.values(&big)?, expected);
    println!(
        "done: {} purchases in, {} big purchases out to {}",
        outputs.processed(),
        expected.len(),
        big.name()
    );
    Ok(())
}

fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn run_id() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis())
}
