//! Micro-benchmarks of the per-message path, through the public API: one
//! message through the test driver (stateless; stateful on 10 000 and on
//! 100 000 keys, and with a checkpoint every 10 000 messages), and the JSON
//! codec alone.
//!
//! `cargo bench --bench hot_path`. The workloads against their baselines
//! are `examples/bench` (see BENCHMARKS.md); `benches/run` runs both.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kstreams::codec::{Codec, Json};
use kstreams::{Application, State, TestDriver, Topic};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Serialize, Deserialize)]
struct Purchase {
    amount: f64,
}

#[derive(Serialize, Deserialize)]
struct Totals {
    count: u64,
    total: f64,
}

/// The purchase of message `i`, as `../shared/bench/produce_purchases.py`
/// writes it.
fn purchase(i: u64, keys: u64) -> (Vec<u8>, Vec<u8>) {
    let key = format!("user-{}", i % keys);
    let value = json!({"user": key, "amount": i % 100, "seq": i}).to_string();
    (key.into_bytes(), value.into_bytes())
}

fn count_and_sum(purchase: Purchase, state: &mut State) -> anyhow::Result<Totals> {
    let count = state.get::<u64>("count")?.unwrap_or(0) + 1;
    let total = state.get::<f64>("total")?.unwrap_or(0.0) + purchase.amount;
    state.set("count", &count)?;
    state.set("total", &total)?;
    Ok(Totals { count, total })
}

/// Pushes one message of `inputs` (in turn) per iteration.
fn push_each<V>(
    c: &mut Criterion,
    name: &str,
    app: &Application,
    topic: &Topic<V>,
    inputs: &[(Vec<u8>, Vec<u8>)],
) {
    let mut driver = TestDriver::new(app).expect("test driver");
    let mut next = 0;
    let mut group = c.benchmark_group("test driver");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            let (key, value) = &inputs[next % inputs.len()];
            next += 1;
            driver
                .push_bytes(topic, Some(key), Some(value))
                .expect("processed");
            if next.is_multiple_of(10_000) {
                black_box(driver.take_outputs());
            }
        });
    });
    group.finish();
}

fn stateless(c: &mut Criterion) {
    let app = Application::builder()
        .use_embedded_broker()
        .build()
        .expect("app");
    let purchases = app.topic::<Value>("purchases");
    let big = app.topic::<Value>("big-purchases");
    app.dataframe(&purchases)
        .filter(|p: &Value| p["amount"].as_u64().unwrap_or(0) >= 50)
        .apply(|p: Value| json!({"user": p["user"], "amount": p["amount"], "big": true}))
        .to_topic(&big);
    let inputs: Vec<_> = (0..10_000).map(|i| purchase(i, 10_000)).collect();
    push_each(c, "stateless filter + apply", &app, &purchases, &inputs);
}

fn stateful(c: &mut Criterion, name: &str, keys: u64) {
    stateful_committing_every(c, name, keys, 0);
}

/// The stateful count on `keys` keys, with a checkpoint every `every`
/// messages (0: only by the commit interval, 5 s).
fn stateful_committing_every(c: &mut Criterion, name: &str, keys: u64, every: u64) {
    let dir = tempfile::tempdir().expect("state dir");
    let app = Application::builder()
        .use_embedded_broker()
        .state_dir(dir.path())
        .commit_every(every)
        .build()
        .expect("app");
    let purchases = app.topic::<Purchase>("purchases");
    let totals = app.topic::<Totals>("totals");
    app.dataframe(&purchases)
        .apply_stateful(count_and_sum)
        .to_topic(&totals);
    let inputs: Vec<_> = (0..100_000).map(|i| purchase(i, keys)).collect();
    push_each(c, name, &app, &purchases, &inputs);
}

fn stateful_hot_keys(c: &mut Criterion) {
    stateful(c, "stateful count, 10 000 keys", 10_000);
}

fn stateful_many_keys(c: &mut Criterion) {
    stateful(c, "stateful count, 100 000 keys", 100_000);
}

fn stateful_checkpoints(c: &mut Criterion) {
    // Each checkpoint writes the 20 000 store keys of 10 000 message keys
    // to RocksDB: the batch write, a share of every message.
    stateful_committing_every(
        c,
        "stateful count, 10 000 keys, checkpoint every 10 000 messages",
        10_000,
        10_000,
    );
}

fn json_codec(c: &mut Criterion) {
    let (_, bytes) = purchase(42, 10_000);
    let mut group = c.benchmark_group("json codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode a typed purchase", |b| {
        b.iter(|| Codec::<Purchase>::decode(&Json, black_box(&bytes)).expect("decoded"));
    });
    group.bench_function("decode a Value", |b| {
        b.iter(|| Codec::<Value>::decode(&Json, black_box(&bytes)).expect("decoded"));
    });
    let totals = Totals {
        count: 7,
        total: 312.5,
    };
    let mut out = Vec::new();
    group.bench_function("encode totals", |b| {
        b.iter(|| {
            out.clear();
            Json.encode(black_box(&totals), &mut out).expect("encoded");
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    stateless,
    stateful_hot_keys,
    stateful_many_keys,
    stateful_checkpoints,
    json_codec
);
criterion_main!(benches);
