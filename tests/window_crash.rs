//! The crash tests of windows: `window_totals` (tumbling, then session
//! windows) runs as a child process
//! against the test broker and is killed with SIGKILL at random points
//! while input trickles in (out of order within the grace period, some
//! messages far too late), every third run on a deleted state directory.
//! At the end every window that closed in the truth was emitted, every
//! emission of a window carries the true count and sum, and no window was
//! emitted that the truth does not close: stream time, lateness and
//! closing are exact across crashes.

mod common;

use common::count_per_key::Job;
use common::window_totals::{
    assert_every_session_exact, assert_every_window_exact, feed, job, session_job,
};

const KILLS: u64 = 9;

#[test]
fn sigkill_at_random_points_keeps_every_closed_window_exact() {
    let job = job("wcrash");
    let sent = kill_at_random_points_while_feeding(&job, 0x9e37_79b9);
    assert_every_window_exact(&job, &sent);
}

#[test]
fn sigkill_at_random_points_keeps_every_closed_session_exact() {
    let job = session_job("scrash");
    let sent = kill_at_random_points_while_feeding(&job, 0x85eb_ca6b);
    assert_every_session_exact(&job, &sent);
}

/// Runs `job` while purchases trickle in, killed at random points (drawn
/// from `seed`), then once to the end; returns what was sent.
fn kill_at_random_points_while_feeding(job: &Job, seed: u64) -> common::window_totals::Sent {
    let state_dir = tempfile::tempdir().unwrap();
    let log = state_dir.path().join("window_totals.log");
    let feeder = feed(job);

    // Each run is killed at a random instant once it is processing; every
    // third starts on a lost disk.
    job.kill_at_random_points(state_dir.path(), &log, KILLS, seed);
    let sent = feeder.finish();

    let mut instance = job.spawn(state_dir.path(), &log);
    job.wait_until_caught_up(&mut instance);
    let log = instance.log();
    instance.terminate();
    assert!(log.contains("recovered"), "no run recovered:\n{log}");
    assert!(log.contains("late message"), "no message was late:\n{log}");
    sent
}
