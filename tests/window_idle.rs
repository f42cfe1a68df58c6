//! Windows that close on an idle stream, against the test broker:
//! `window_totals --idle-close-ms` runs while purchases trickle in; input
//! stops, and the last windows still come out, exact, within the idle time
//! plus a commit interval (and the broker's delivery); an instance killed
//! with SIGKILL after input stopped changes nothing.

mod common;

use std::time::{Duration, Instant};

use common::window_totals::{
    assert_every_idle_window_exact, feed, idle_job, idle_windows_out, IDLE_CLOSE_MS,
};

/// The broker's part of how long the results take to arrive: a produce,
/// and the test's own read of the output topic.
const DELIVERY_SLACK: Duration = Duration::from_secs(10);

#[test]
fn the_last_windows_come_out_when_input_stops_and_a_restart_changes_nothing() {
    for restart in [false, true] {
        let job = idle_job("widle");
        let state_dir = tempfile::tempdir().unwrap();
        let log = state_dir.path().join("window_totals.log");
        let feeder = feed(&job);
        let mut instance = job.spawn(state_dir.path(), &log);
        job.wait_for_outputs_beyond(0, &mut instance);
        std::thread::sleep(Duration::from_secs(2));
        let sent = feeder.finish();
        let stopped = Instant::now();
        if restart {
            std::thread::sleep(Duration::from_millis(IDLE_CLOSE_MS / 2));
            instance.kill();
            instance = job.spawn(state_dir.path(), &log);
        }

        let deadline = stopped + Duration::from_secs(90);
        let mut out = idle_windows_out(&job, &sent);
        while out.0 < out.1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            out = idle_windows_out(&job, &sent);
        }
        let took = stopped.elapsed();
        let log_text = instance.log();
        instance.terminate();
        assert_eq!(out.0, out.1, "windows out after {took:?}:\n{log_text}");
        eprintln!("restart {restart}: every window out {took:?} after input stopped");
        if !restart {
            // The partition's stream time runs on once it has been idle
            // for the idle time; the tick and its checkpoint come within a
            // commit interval (100 ms here).
            let bound = Duration::from_millis(IDLE_CLOSE_MS + 100) + DELIVERY_SLACK;
            assert!(took < bound, "the last windows took {took:?}");
        }
        assert_every_idle_window_exact(&job, &sent);
    }
}
