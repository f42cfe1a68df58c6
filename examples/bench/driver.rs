//! Workloads 1 and 2 through the test driver: no broker, no network, the
//! engine's own cost. Beside them, their baseline: the same closures in a
//! plain loop, with no kstreams at all (what any framework must spend at
//! least).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use kstreams::{Application, TestDriver, Topic};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Value};

use crate::count::{Purchase, Totals};
use crate::measure::{cpu_seconds, Measure, Who};
use crate::{progress, purchase, Flags};

/// The stateless workload's filter (also the stateless ceiling's and the
/// end-to-end pipeline's).
pub fn is_big(purchase: &Value) -> bool {
    purchase["amount"].as_u64().unwrap_or(0) >= 50
}

/// The stateless workload's apply (also the stateless ceiling's and the
/// end-to-end pipeline's).
pub fn summary(purchase: Value) -> Value {
    json!({"user": purchase["user"], "amount": purchase["amount"], "big": true})
}

/// The stateless workload's input as a typed row: the fields it reads
/// (serde skips the others).
#[derive(Serialize, Deserialize)]
struct TypedPurchase {
    user: String,
    amount: u64,
}

/// The stateless workload's output as a typed row.
#[derive(Serialize, Deserialize)]
struct BigPurchase {
    user: String,
    amount: u64,
    big: bool,
}

/// The stateless workload's filter, on typed rows.
fn is_big_typed(purchase: &TypedPurchase) -> bool {
    purchase.amount >= 50
}

/// The stateless workload's apply, on typed rows.
fn summary_typed(purchase: TypedPurchase) -> BigPurchase {
    BigPurchase {
        user: purchase.user,
        amount: purchase.amount,
        big: true,
    }
}

pub fn driver_stateless(flags: &Flags) -> anyhow::Result<Measure> {
    driver_stateless_on("driver stateless", is_big, summary, flags)
}

/// The stateless workload on typed (serde) rows instead of JSON values.
pub fn driver_stateless_typed(flags: &Flags) -> anyhow::Result<Measure> {
    driver_stateless_on("driver stateless typed", is_big_typed, summary_typed, flags)
}

/// The stateless workload (`filter`, `apply`, `to_topic`) on rows of type
/// `I`, through the test driver.
fn driver_stateless_on<I: Row, O: Row>(
    name: &str,
    filter: fn(&I) -> bool,
    apply: fn(I) -> O,
    flags: &Flags,
) -> anyhow::Result<Measure> {
    let app = Application::builder().use_embedded_broker().build()?;
    let purchases = app.topic::<I>("purchases");
    let big = app.topic::<O>("big-purchases");
    app.dataframe(&purchases)
        .filter(filter)
        .apply(apply)
        .to_topic(&big);
    run_driver(&app, &purchases, name, flags)
}

/// A row the JSON codec reads and writes.
trait Row: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Row for T {}

pub fn driver_stateful(flags: &Flags) -> anyhow::Result<Measure> {
    let dir = tempfile::tempdir()?;
    let (app, purchases) = stateful_count_app(dir.path())?;
    run_driver(&app, &purchases, "driver stateful", flags)
}

/// The stateful workload with `--driver-many-keys` message keys (1 000 000
/// by default), so that its state outgrows the transaction's cache and the
/// state reads go to RocksDB. Before the clock starts every key gets its
/// state (one message each, untimed, through the same driver): every timed
/// message then updates a key that has state, as in the 10 000-key run.
pub fn driver_stateful_many_keys(name: &str, flags: &Flags) -> anyhow::Result<Measure> {
    let dir = tempfile::tempdir()?;
    let (app, purchases) = stateful_count_app(dir.path())?;
    let inputs = every_key(flags.driver_many_keys);
    let mut driver = TestDriver::new(&app)?;
    let started = Instant::now();
    for (done, (key, value)) in (1_u64..).zip(&inputs) {
        driver.push_bytes(&purchases, Some(key.as_bytes()), Some(value))?;
        if done.is_multiple_of(10_000) {
            driver.take_outputs();
        }
    }
    driver.take_outputs();
    eprintln!(
        "  {name}: state of {} keys written in {:.1} s (untimed)",
        inputs.len(),
        started.elapsed().as_secs_f64()
    );
    timed_pushes(&mut driver, &purchases, name, &shuffled(&inputs), flags)
}

/// The baseline of [`driver_stateful_many_keys`]: the same closures in a
/// plain loop as [`closures_stateful`], on the same keys, with every key's
/// state in the `HashMap` before the clock starts.
pub fn closures_stateful_many_keys(name: &str, flags: &Flags) -> anyhow::Result<Measure> {
    let inputs = every_key(flags.driver_many_keys);
    let mut state: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut output = Vec::new();
    let mut count = |key: &[u8], value: &[u8]| {
        let purchase: Purchase = serde_json::from_slice(value)?;
        count_in_map(&mut state, key, purchase.amount, &mut output)
    };
    for (key, value) in &inputs {
        count(key.as_bytes(), value)?;
    }
    timed_closures(name, &shuffled(&inputs), flags, count)
}

/// One purchase of each of `keys` keys, encoded.
fn every_key(keys: u64) -> Vec<(String, Vec<u8>)> {
    (0..keys).map(|i| purchase(i, keys)).collect()
}

/// `inputs` in a fixed order unrelated to the one their state was written
/// in: the timed pass then reads keys scattered over the store, not the
/// neighbours of the last one (a multiplicative stride by a prime, which
/// visits every index once).
fn shuffled(inputs: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    const STRIDE: u64 = 2_654_435_761;
    let count = inputs.len() as u64;
    let stride = if count.is_multiple_of(STRIDE) {
        1
    } else {
        STRIDE
    };
    (0..count)
        .map(|i| inputs[(u128::from(i) * u128::from(stride) % u128::from(count)) as usize].clone())
        .collect()
}

/// The `count_per_key` pipeline on the embedded broker, with its state in
/// `state_dir`; returns the app and its input topic.
pub fn stateful_count_app(state_dir: &Path) -> anyhow::Result<(Application, Topic<Purchase>)> {
    let app = Application::builder()
        .use_embedded_broker()
        .state_dir(state_dir)
        .build()?;
    let purchases = app.topic::<Purchase>("purchases");
    let totals = app.topic::<Totals>("totals");
    app.dataframe(&purchases)
        .apply_stateful(crate::count::count_and_sum)
        .to_topic(&totals);
    Ok((app, purchases))
}

/// A purchase as the re-keyed workload reads it: the user to group by,
/// and the amount (serde skips the other fields).
#[derive(Serialize, Deserialize)]
struct UserPurchase {
    user: String,
    amount: f64,
}

/// The re-keyed workload: purchases keyed by order, grouped by user
/// through the repartition topic (both passes through the driver), then
/// counted and summed per user.
pub fn driver_group_by(flags: &Flags) -> anyhow::Result<Measure> {
    let dir = tempfile::tempdir()?;
    let app = Application::builder()
        .use_embedded_broker()
        .state_dir(dir.path())
        .build()?;
    let purchases = app.topic::<UserPurchase>("purchases");
    let totals = app.topic::<Totals>("totals");
    app.dataframe(&purchases)
        .group_by("user", |purchase: &UserPurchase, _| {
            Ok(purchase.user.clone())
        })
        .apply_stateful(|purchase, state| {
            let purchase = Purchase {
                amount: purchase.amount,
            };
            crate::count::count_and_sum(purchase, state)
        })
        .to_topic(&totals);
    push_through_driver(
        &app,
        &purchases,
        "driver group_by",
        &order_inputs(flags),
        flags,
    )
}

/// The re-keyed workload in a plain loop: decode, encode the repartition
/// record (key and value), decode it, count and sum in a `HashMap` as in
/// [`closures_stateful`], encode the totals.
pub fn closures_group_by(flags: &Flags) -> anyhow::Result<Measure> {
    let mut state: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let (mut key, mut record, mut output) = (Vec::new(), Vec::new(), Vec::new());
    // The same purchases as the driver's; their keys (the user) unused.
    run_closures("closures alone group_by", flags, |_, value| {
        let purchase: UserPurchase = serde_json::from_slice(value)?;
        key.clear();
        key.extend_from_slice(purchase.user.as_bytes());
        record.clear();
        serde_json::to_writer(&mut record, &purchase)?;
        let purchase: UserPurchase = serde_json::from_slice(&record)?;
        count_in_map(&mut state, &key, purchase.amount, &mut output)
    })
}

/// The purchases keyed by order (their sequence number), encoded.
fn order_inputs(flags: &Flags) -> Vec<(String, Vec<u8>)> {
    (0..flags.driver_messages.min(1_000_000))
        .map(|i| (format!("order-{i}"), purchase(i, flags.keys).1))
        .collect()
}

/// Pushes the purchases, encoded up front, through the test driver.
fn run_driver<V>(
    app: &Application,
    topic: &Topic<V>,
    name: &str,
    flags: &Flags,
) -> anyhow::Result<Measure> {
    push_through_driver(app, topic, name, &inputs(flags), flags)
}

/// Pushes `--driver-messages` of `inputs` (in turn) through the test
/// driver, dropping the outputs every 10 000 messages.
pub fn push_through_driver<V>(
    app: &Application,
    topic: &Topic<V>,
    name: &str,
    inputs: &[(String, Vec<u8>)],
    flags: &Flags,
) -> anyhow::Result<Measure> {
    let mut driver = TestDriver::new(app)?;
    timed_pushes(&mut driver, topic, name, inputs, flags)
}

/// [`push_through_driver`] on a driver given.
fn timed_pushes<V>(
    driver: &mut TestDriver<'_>,
    topic: &Topic<V>,
    name: &str,
    inputs: &[(String, Vec<u8>)],
    flags: &Flags,
) -> anyhow::Result<Measure> {
    let cpu = cpu_seconds(Who::Process);
    let started = Instant::now();
    for done in 1..=flags.driver_messages {
        let (key, value) = &inputs[(done as usize - 1) % inputs.len()];
        driver.push_bytes(topic, Some(key.as_bytes()), Some(value))?;
        if done.is_multiple_of(10_000) {
            driver.take_outputs();
        }
        progress(name, done, started);
    }
    Ok(Measure {
        messages: flags.driver_messages,
        seconds: started.elapsed().as_secs_f64(),
        cpu: Some(cpu_seconds(Who::Process) - cpu),
    })
}

/// The stateless closures in a plain loop: decode, filter, apply, encode.
pub fn closures_stateless(flags: &Flags) -> anyhow::Result<Measure> {
    closures_stateless_on("closures alone stateless", is_big, summary, flags)
}

/// The typed stateless closures in a plain loop.
pub fn closures_stateless_typed(flags: &Flags) -> anyhow::Result<Measure> {
    let name = "closures alone stateless typed";
    closures_stateless_on(name, is_big_typed, summary_typed, flags)
}

/// The stateless closures on rows of type `I` in a plain loop (each
/// closure its own type, so the compiler inlines it as in hand-written code).
fn closures_stateless_on<I: Row, O: Row>(
    name: &str,
    filter: impl Fn(&I) -> bool,
    apply: impl Fn(I) -> O,
    flags: &Flags,
) -> anyhow::Result<Measure> {
    let mut output = Vec::new();
    run_closures(name, flags, |_key, value| {
        let purchase: I = serde_json::from_slice(value)?;
        if filter(&purchase) {
            output.clear();
            serde_json::to_writer(&mut output, &apply(purchase))?;
        }
        Ok(())
    })
}

/// The `count_per_key` closure in a plain loop, with its state in a
/// `HashMap` in memory (JSON values under key + name, as kstreams stores
/// them): the cost of the work itself, with no durability at all.
pub fn closures_stateful(flags: &Flags) -> anyhow::Result<Measure> {
    let mut state: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut output = Vec::new();
    run_closures("closures alone stateful", flags, |key, value| {
        let purchase: Purchase = serde_json::from_slice(value)?;
        count_in_map(&mut state, key, purchase.amount, &mut output)
    })
}

/// Adds `amount` to `key`'s count and total in `state` (JSON values under
/// key + name, as kstreams stores them) and encodes the totals into
/// `output`.
fn count_in_map(
    state: &mut HashMap<Vec<u8>, Vec<u8>>,
    key: &[u8],
    amount: f64,
    output: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let state_key = |name: &str| [key, name.as_bytes()].concat();
    let (count_key, total_key) = (state_key("count"), state_key("total"));
    let count: u64 = match state.get(&count_key) {
        Some(bytes) => serde_json::from_slice::<u64>(bytes)? + 1,
        None => 1,
    };
    let total: f64 = match state.get(&total_key) {
        Some(bytes) => serde_json::from_slice::<f64>(bytes)? + amount,
        None => amount,
    };
    state.insert(count_key, serde_json::to_vec(&count)?);
    state.insert(total_key, serde_json::to_vec(&total)?);
    let key = String::from_utf8_lossy(key).into_owned();
    output.clear();
    serde_json::to_writer(output, &Totals { key, count, total })?;
    Ok(())
}

/// Runs `closures` on the purchases, encoded up front.
fn run_closures(
    name: &str,
    flags: &Flags,
    closures: impl FnMut(&[u8], &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<Measure> {
    timed_closures(name, &inputs(flags), flags, closures)
}

/// Runs `closures` on `--driver-messages` of `inputs`, in turn.
fn timed_closures(
    name: &str,
    inputs: &[(String, Vec<u8>)],
    flags: &Flags,
    mut closures: impl FnMut(&[u8], &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<Measure> {
    let cpu = cpu_seconds(Who::Process);
    let started = Instant::now();
    for done in 1..=flags.driver_messages {
        let (key, value) = &inputs[(done as usize - 1) % inputs.len()];
        closures(key.as_bytes(), value)?;
        progress(name, done, started);
    }
    Ok(Measure {
        messages: flags.driver_messages,
        seconds: started.elapsed().as_secs_f64(),
        cpu: Some(cpu_seconds(Who::Process) - cpu),
    })
}

/// The purchases, encoded: at most a million, reused in turn.
fn inputs(flags: &Flags) -> Vec<(String, Vec<u8>)> {
    (0..flags.driver_messages.min(1_000_000))
        .map(|i| purchase(i, flags.keys))
        .collect()
}
