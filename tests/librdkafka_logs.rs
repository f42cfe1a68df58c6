//! librdkafka's log lines reach the `log` crate from the clients whose
//! queues kstreams serves itself: the producer's (on thread
//! `kstreams-acks`) and recovery's changelog reader's (on thread
//! `kstreams-recov`), as rust-rdkafka would hand them on.

mod common;

use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use common::{app_at, unique};
use kstreams::{Application, State, Until};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::Value;

/// Keeps librdkafka's log lines, with the thread that logged each.
struct Capture(Mutex<Vec<(Option<String>, String)>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "librdkafka"
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let thread = std::thread::current().name().map(str::to_string);
            let line = record.args().to_string();
            self.0.lock().unwrap().push((thread, line));
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// Starts capturing (once for all the tests of this file).
fn capture() {
    static START: Once = Once::new();
    START.call_once(|| {
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Waits up to 10 s for a librdkafka line logged on `thread`.
fn assert_logged_on(thread: &str) {
    let logged_on = |(name, line): &(Option<String>, String)| {
        name.as_deref() == Some(thread) && line.starts_with("librdkafka: ")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !CAPTURE.0.lock().unwrap().iter().any(logged_on) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = CAPTURE.0.lock().unwrap();
    assert!(
        lines.iter().any(logged_on),
        "no librdkafka line from thread {thread}: {lines:?}"
    );
}

#[test]
fn the_producers_librdkafka_log_lines_reach_the_log_crate() {
    capture();
    let app = Application::builder()
        .use_embedded_broker()
        // librdkafka logs each produce request at debug level with "msg".
        .producer_config("debug", "msg")
        .build()
        .unwrap();
    let greetings = app.topic::<String>("greetings");
    let producer = app.producer().unwrap();
    producer
        .send(&greetings, None, &"hello".to_string())
        .unwrap();
    producer.flush().unwrap();

    assert_logged_on("kstreams-acks");
}

#[test]
fn the_changelog_readers_librdkafka_log_lines_reach_the_log_crate() {
    capture();
    let group = unique("reader-logs");
    let mock = MockCluster::<DefaultProducerContext>::new(1).unwrap();
    let servers = mock.bootstrap_servers();
    // The mock cluster does not create topics when asked by an admin client.
    let input = format!("{group}-in");
    for topic in [
        input.clone(),
        format!("changelog__{group}--{input}--default"),
    ] {
        mock.create_topic(&topic, 1, 1).unwrap();
    }
    let state_dir = tempfile::tempdir().unwrap();
    let counting_app = |config: &[(&str, &str)]| {
        let mut builder = app_at(&servers, &group).state_dir(state_dir.path());
        for (key, value) in config {
            builder = builder.consumer_config(*key, *value);
        }
        let app = builder.build().unwrap();
        let input = app.topic::<Value>(&input);
        app.dataframe(&input)
            .update_stateful(|_, state: &mut State| {
                let count = state.get::<u64>("count")?.unwrap_or(0);
                Ok(state.set("count", &(count + 1))?)
            });
        app
    };
    let send = |app: &Application| {
        let producer = app.producer().unwrap();
        let input = kstreams::Topic::<Value>::new(&input);
        producer
            .send(&input, Some(&b"k".to_vec()), &Value::Null)
            .unwrap();
        producer.flush().unwrap();
    };
    let until = Until::messages(1).or_timeout(Duration::from_secs(60));
    let app = counting_app(&[]);
    send(&app);
    app.run_until(until).unwrap();
    drop(app);

    // Without its local state, the app recovers it from the changelog;
    // librdkafka logs each fetch of the reader at debug level with "fetch".
    std::fs::remove_dir_all(state_dir.path()).unwrap();
    let app = counting_app(&[("debug", "fetch")]);
    send(&app);
    app.run_until(until).unwrap();
    assert_logged_on("kstreams-recov");
}
