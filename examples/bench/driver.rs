//! Workloads 1 and 2 through the test driver: no broker, no network, the
//! engine's own cost.

use std::time::Instant;

use kstreams::{Application, TestDriver, Topic};
use serde_json::{json, Value};

use crate::count::{count_and_sum, Purchase, Totals};
use crate::measure::{cpu_seconds, Measure, Who};
use crate::{progress, purchase, Flags};

pub fn driver_stateless(flags: &Flags) -> anyhow::Result<Measure> {
    let app = Application::builder().use_embedded_broker().build()?;
    let purchases = app.topic::<Value>("purchases");
    let big = app.topic::<Value>("big-purchases");
    app.dataframe(&purchases)
        .filter(|p: &Value| p["amount"].as_u64().unwrap_or(0) >= 50)
        .apply(|p: Value| json!({"user": p["user"], "amount": p["amount"], "big": true}))
        .to_topic(&big);
    run_driver(&app, &purchases, "driver stateless", flags)
}

pub fn driver_stateful(flags: &Flags) -> anyhow::Result<Measure> {
    let dir = tempfile::tempdir()?;
    let app = Application::builder()
        .use_embedded_broker()
        .state_dir(dir.path())
        .build()?;
    let purchases = app.topic::<Purchase>("purchases");
    let totals = app.topic::<Totals>("totals");
    app.dataframe(&purchases)
        .apply_stateful(count_and_sum)
        .to_topic(&totals);
    run_driver(&app, &purchases, "driver stateful", flags)
}

/// Pushes the purchases, encoded up front, through the test driver.
fn run_driver<V>(
    app: &Application,
    topic: &Topic<V>,
    name: &str,
    flags: &Flags,
) -> anyhow::Result<Measure> {
    let inputs: Vec<(String, Vec<u8>)> = (0..flags.messages.min(1_000_000))
        .map(|i| purchase(i, flags.keys))
        .collect();
    let mut driver = TestDriver::new(app)?;
    let cpu = cpu_seconds(Who::Process);
    let started = Instant::now();
    for done in 1..=flags.messages {
        let (key, value) = &inputs[(done as usize - 1) % inputs.len()];
        driver.push_bytes(topic, Some(key.as_bytes()), Some(value))?;
        if done.is_multiple_of(10_000) {
            driver.take_outputs();
        }
        progress(name, done, started);
    }
    Ok(Measure {
        messages: flags.messages,
        seconds: started.elapsed().as_secs_f64(),
        cpu: Some(cpu_seconds(Who::Process) - cpu),
    })
}
