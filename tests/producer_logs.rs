//! librdkafka's log lines about an application's producer reach the `log`
//! crate: kstreams serves the producer's event queue on its own thread
//! (`kstreams-acks`), which hands them on as rust-rdkafka would.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kstreams::Application;

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

#[test]
fn the_producers_librdkafka_log_lines_reach_the_log_crate() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
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

    let deadline = Instant::now() + Duration::from_secs(10);
    let from_the_reports_thread = || {
        CAPTURE
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(thread, _)| thread.as_deref() == Some("kstreams-acks"))
    };
    while !from_the_reports_thread() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = CAPTURE.0.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|(thread, line)| thread.as_deref() == Some("kstreams-acks")
                && line.starts_with("librdkafka: ")),
        "no librdkafka line from the producer's reports thread: {lines:?}"
    );
}
