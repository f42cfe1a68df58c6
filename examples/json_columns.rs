//! Works on JSON rows with the column helpers: filter on a field, compute a
//! new field, drop one, and branch one stream into two topics.
//!
//! Runs on the embedded broker with readings it generates itself:
//! `cargo run --example json_columns`. Against Kafka: set
//! `KSTREAMS_BROKER=host:port` or pass `--broker host:port`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kstreams::{Application, OffsetReset, Until};
use serde_json::{json, Value};

const READINGS: u64 = 12;

fn main() -> anyhow::Result<()> {
    let id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let mut builder = Application::builder()
        .consumer_group(format!("json-columns-{id}"))
        .auto_offset_reset(OffsetReset::Earliest)
        .commit_interval(Duration::from_secs(1));
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|arg| arg == "--broker") {
        if let Some(broker) = args.get(i + 1) {
            builder = builder.broker_address(broker.clone());
        }
    }
    let app = builder.build()?;
    println!("broker: {}", app.bootstrap_servers());

    let readings = app.topic::<Value>(format!("readings-{id}"));
    let hot = app.topic::<Value>(format!("hot-{id}"));
    let cold = app.topic::<Value>(format!("cold-{id}"));

    let producer = app.producer()?;
    for i in 0..READINGS {
        let reading = json!({
            "sensor": format!("s{}", i % 3),
            "celsius": 10.0 + (i * 3) as f64,
            "raw": "0x7f3a",
        });
        producer.send(&readings, None, &reading)?;
    }
    producer.flush()?;
    println!("produced {READINGS} readings to {}", readings.name());

    let sdf = app
        .dataframe(&readings)
        .drop_columns(["raw"])
        .set_column("fahrenheit", |row| {
            json!(row["celsius"].as_f64().unwrap_or(0.0) * 9.0 / 5.0 + 32.0)
        })
        .update(|row| println!("  {row}"));
    // Two branches: each sees every reading once.
    sdf.clone()
        .filter_column("celsius", |c| c.as_f64().is_some_and(|c| c >= 25.0))
        .select(["sensor", "celsius"])
        .update(|row| println!("    hot:  {row}"))
        .to_topic(&hot);
    sdf.filter_column("celsius", |c| c.as_f64().is_some_and(|c| c < 25.0))
        .column("sensor")
        .update(|sensor| println!("    cold: {sensor}"))
        .to_topic(&cold);

    let outputs = app.run_until(Until::messages(READINGS).or_timeout(Duration::from_secs(60)))?;

    let hot_rows = outputs.values(&hot)?;
    let cold_sensors = outputs.values(&cold)?;
    assert_eq!(hot_rows.len() + cold_sensors.len(), READINGS as usize);
    assert_eq!(hot_rows[0], json!({"sensor": "s2", "celsius": 25.0}));
    assert_eq!(cold_sensors[0], json!("s0"));
    println!(
        "done: {} readings in, {} hot rows to {}, {} cold sensors to {}",
        outputs.processed(),
        hot_rows.len(),
        hot.name(),
        cold_sensors.len(),
        cold.name()
    );
    Ok(())
}
