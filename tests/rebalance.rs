//! Two instances of `count_per_key` (and of `window_totals`) in one group,
//! each with its own state directory, while input trickles in: when one
//! starts or stops, partitions move, and the receiving instance rebuilds
//! their state from the changelog before it processes them. Every key's
//! final count and total are exact, and every closed window.

mod common;

use common::count_per_key::{Feeder, Job};
use common::window_totals;

const KEYS: u64 = 100;

#[test]
fn partitions_moving_between_two_instances_keep_every_count_exact() {
    // Instances leave gracefully here: a long session rides out broker stalls.
    let job = Job::new("rebalance").session_timeout_ms(15_000);
    let truth = move_partitions_back_and_forth(&job, Feeder::start(&job, KEYS));
    assert_eq!(job.last_counts(), truth);
}

#[test]
fn partitions_moving_between_two_instances_keep_every_count_after_group_by_exact() {
    let job = Job::new("grebalance")
        .group_by("user")
        .session_timeout_ms(15_000);
    let truth = move_partitions_back_and_forth(&job, Feeder::start_by_user(&job, KEYS));
    assert_eq!(job.last_counts(), truth);
}

#[test]
fn partitions_moving_between_two_instances_keep_every_closed_window_exact() {
    let job = window_totals::job("wrebalance").session_timeout_ms(15_000);
    let sent = move_partitions_back_and_forth(&job, window_totals::feed(&job));
    window_totals::assert_every_window_exact(&job, &sent);
}

/// Runs `job` on A, then A and B, then B, then A again while `feeder`
/// feeds it; returns the truth once A caught up and stopped.
fn move_partitions_back_and_forth<T: Send + 'static>(job: &Job, feeder: Feeder<T>) -> T {
    let dirs = tempfile::tempdir().unwrap();
    let (state_a, state_b) = (dirs.path().join("a"), dirs.path().join("b"));
    let (log_a, log_b) = (dirs.path().join("a.log"), dirs.path().join("b.log"));

    // A alone owns both partitions.
    let mut a = job.spawn(&state_a, &log_a);
    job.wait_for_outputs_beyond(0, &mut a);

    // B joins: the partitions are split, B recovers the one it receives.
    let mut b = job.spawn(&state_b, &log_b);
    b.wait_for_log("recovered changelog__", 1);
    job.wait_for_outputs_beyond(job.outputs(), &mut b);

    // A leaves: B takes the other partition over and recovers it too, then
    // processes both (so both changelogs move past A's state).
    a.terminate();
    b.wait_for_log("recovered changelog__", 2);
    job.wait_for_commits_on_both_partitions(&mut b);

    // A comes back on its old, now stale, state directory, then B leaves:
    // A catches up on what B wrote to the changelog meanwhile.
    let mut a = job.spawn(&state_a, &dirs.path().join("a-again.log"));
    a.wait_for_log("recovered changelog__", 1);
    job.wait_for_outputs_beyond(job.outputs(), &mut a);
    b.terminate();
    a.wait_for_log("recovered changelog__", 2);

    let truth = feeder.finish();
    job.wait_until_caught_up(&mut a);
    a.terminate();
    truth
}
