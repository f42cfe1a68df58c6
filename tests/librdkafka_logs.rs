//! librdkafka's log lines reach the `log` crate from the clients whose
//! queues kstreams serves itself: the producer's (on thread
//! `kstreams-acks`) and recovery's changelog reader's (on thread
//! `kstreams-recov`), as rust-rdkafka would hand them on.

mod common;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use common::{app_at, unique};
use kstreams::{Application, State, Until};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::Value;

/// Keeps librdkafka's log lines, with the thread that logged each and when.
struct Capture(Mutex<Vec<Logged>>);

struct Logged {
    thread: Option<String>,
    line: String,
    at: Instant,
}

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "librdkafka"
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let thread = std::thread::current().name().map(str::to_string);
            let line = record.args().to_string();
            let at = Instant::now();
            self.0.lock().unwrap().push(Logged { thread, line, at });
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// Starts capturing (once for all the tests of this file); the tests run
/// one at a time, so that the lines of one thread name are theirs.
fn capture() -> MutexGuard<'static, ()> {
    static START: Once = Once::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    START.call_once(|| {
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// When the first librdkafka line logged on `thread` since `since` came,
/// waiting up to 10 s for one.
fn first_logged_on(thread: &str, since: Instant) -> Option<Instant> {
    let first = || {
        CAPTURE
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|logged| logged.at >= since && logged.thread.as_deref() == Some(thread))
            .find(|logged| logged.line.starts_with("librdkafka: "))
            .map(|logged| logged.at)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while first().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    first()
}

/// Waits up to 10 s for a librdkafka line logged on `thread` since `since`.
fn assert_logged_on(thread: &str, since: Instant) {
    assert!(
        first_logged_on(thread, since).is_some(),
        "no librdkafka line from thread {thread}"
    );
}

/// A mock cluster with the input topic of `group`'s app and its changelog
/// (the mock cluster does not create topics when an admin client asks);
/// returns the cluster and the input topic's name.
fn cluster_for(group: &str) -> (MockCluster<'static, DefaultProducerContext>, String) {
    let mock = MockCluster::new(1).unwrap();
    let input = format!("{group}-in");
    for topic in [
        input.clone(),
        format!("changelog__{group}--{input}--default"),
    ] {
        mock.create_topic(&topic, 1, 1).unwrap();
    }
    (mock, input)
}

/// An app of `group` that counts the messages of each key of `input` in
/// state, with librdkafka's `debug` contexts on for its consumers.
fn counting_app(
    servers: &str,
    group: &str,
    input: &str,
    state_dir: &Path,
    debug: &str,
) -> Application {
    let app = app_at(servers, group)
        .state_dir(state_dir)
        .consumer_config("debug", debug)
        .build()
        .unwrap();
    let input = app.topic::<Value>(input);
    app.dataframe(&input)
        .update_stateful(|_, state: &mut State| {
            let count = state.get::<u64>("count")?.unwrap_or(0);
            Ok(state.set("count", &(count + 1))?)
        });
    app
}

#[test]
fn the_producers_librdkafka_log_lines_reach_the_log_crate() {
    let _one_at_a_time = capture();
    let since = Instant::now();
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

    assert_logged_on("kstreams-acks", since);
}

#[test]
fn the_changelog_readers_librdkafka_log_lines_reach_the_log_crate() {
    let _one_at_a_time = capture();
    let group = unique("reader-logs");
    let (mock, input) = cluster_for(&group);
    let servers = mock.bootstrap_servers();
    let state_dir = tempfile::tempdir().unwrap();
    // librdkafka logs each fetch of the reader at debug level with "fetch".
    let counting_app = || counting_app(&servers, &group, &input, state_dir.path(), "fetch");
    let send = |app: &Application| {
        let producer = app.producer().unwrap();
        let input = kstreams::Topic::<Value>::new(&input);
        producer
            .send(&input, Some(&b"k".to_vec()), &Value::Null)
            .unwrap();
        producer.flush().unwrap();
    };
    let until = Until::messages(1).or_timeout(Duration::from_secs(60));
    let app = counting_app();
    send(&app);
    app.run_until(until).unwrap();
    drop(app);

    // Without its local state, the app recovers it from the changelog.
    std::fs::remove_dir_all(state_dir.path()).unwrap();
    let since = Instant::now();
    let app = counting_app();
    send(&app);
    app.run_until(until).unwrap();
    assert_logged_on("kstreams-recov", since);
}

#[test]
fn an_idle_changelog_readers_log_lines_reach_the_log_crate() {
    let _one_at_a_time = capture();
    let group = unique("idle-reader-logs");
    let (mock, input) = cluster_for(&group);
    let state_dir = tempfile::tempdir().unwrap();
    // librdkafka logs each broker thread's start at debug level with
    // "broker"; the reader's come while no recovery runs.
    let servers = mock.bootstrap_servers();
    let app = counting_app(&servers, &group, &input, state_dir.path(), "broker");
    let started = Instant::now();
    app.run_until(Until::timeout(Duration::from_secs(4)))
        .unwrap();
    let stopped = Instant::now();
    // Not only when the app stops and the reader is dropped.
    let first = first_logged_on("kstreams-recov", started).expect("a line from the reader");
    assert!(
        first + Duration::from_secs(1) < stopped,
        "the reader's first line came {:?} after the start of a {:?} run",
        first - started,
        stopped - started
    );
}
