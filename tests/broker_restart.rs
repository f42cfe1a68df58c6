//! The broker stops mid-run and comes back: the app keeps retrying, resumes,
//! and nothing is lost. Runs a tansu broker of its own (sqlite engine, which
//! keeps its data across restarts) on a free port, so it can stop it.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use common::tansu::{free_port, Tansu};
use common::{app_at, committed_offset, read_topic, unique};
use kstreams::{Topic, Until};

/// Sends `values` and waits for them, again and again until the broker
/// takes them all: the harness must not lose input while tansu restarts
/// (resent values are duplicates, which an at-least-once pipeline accepts).
fn send_reliably(
    producer: &kstreams::Producer<'_>,
    topic: &Topic<i64>,
    values: std::ops::Range<i64>,
) {
    let started = Instant::now();
    loop {
        for n in values.clone() {
            producer.send(topic, None, &n).unwrap();
        }
        match producer.flush() {
            Ok(()) => return,
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "cannot feed: {error}"
                );
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn high_watermark(address: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .unwrap();
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(30))
        .unwrap()
        .1
}

/// Runs `app` until it is stopped, restarting it when it stops with an
/// error, as a supervisor would: tansu answers some requests right after
/// its restart with an unknown server error, which fails a delivery and
/// stops the app (without committing past it).
fn supervise(app: &kstreams::Application) {
    let mut restarts = 0;
    loop {
        match app.run_until(Until::timeout(Duration::from_secs(240))) {
            Ok(_) => return,
            Err(error) => {
                restarts += 1;
                assert!(restarts <= 3, "stopped {restarts} times, last: {error}");
                eprintln!("the app stopped ({error}); restarting it");
            }
        }
    }
}

#[test]
fn broker_restart_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Tansu::start(dir.path(), port);
    let address = broker.address.clone();

    let group = unique("restart");
    let input = Topic::<i64>::new(unique("restart-in"));
    let output = Topic::<i64>::new(unique("restart-out"));
    let app = app_at(&address, &group)
        .broker_availability_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    app.dataframe(&input).apply(|n| n + 1000).to_topic(&output);

    let producer = app.producer().unwrap();
    send_reliably(&producer, &input, 0..20);

    // The restarted broker lives until the output is read.
    let _restarted = thread::scope(|scope| {
        let run = scope.spawn(|| supervise(&app));
        // Wait until the first messages are processed and committed.
        let started = Instant::now();
        while committed_offset(&address, &group, input.name(), 0) != Some(20) {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "first batch never committed"
            );
            thread::sleep(Duration::from_millis(300));
        }
        // The broker goes away while the app works through the next batch.
        send_reliably(&producer, &input, 20..30);
        broker.stop();
        thread::sleep(Duration::from_secs(3));
        let restarted = Tansu::start(dir.path(), port);
        send_reliably(&producer, &input, 30..40);
        // The app catches up with everything the broker holds, then stops.
        let end = high_watermark(&address, input.name());
        let started = Instant::now();
        while committed_offset(&address, &group, input.name(), 0) != Some(end) {
            if run.is_finished() || started.elapsed() > Duration::from_secs(180) {
                let log = std::fs::read_to_string(dir.path().join("tansu.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let committed = committed_offset(&address, &group, input.name(), 0);
                let app = if run.is_finished() {
                    format!("{:?}", run.join())
                } else {
                    "still running".to_string()
                };
                panic!(
                    "never caught up to {end}: committed {committed:?}, app: {app}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(500));
        }
        app.stop_handle().stop();
        run.join().unwrap();
        restarted
    });
    let stored: BTreeSet<i64> = read_topic(&address, output.name(), 40, Duration::from_secs(60))
        .into_iter()
        .map(|(_, value)| serde_json::from_slice(&value).unwrap())
        .collect();
    // At least once: every input has its output on the broker.
    assert_eq!(stored, (1000..1040).collect::<BTreeSet<i64>>());
}
