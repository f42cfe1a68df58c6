//! The crash test: `count_per_key` runs as a child process against the test
//! broker and is killed with SIGKILL at random points while input trickles
//! in, sometimes also losing its state directory, and is restarted each
//! time. At the end every key's last emitted count and total equal the true
//! count and sum of its input: state is exact, although outputs may repeat
//! downstream.

mod common;

use common::count_per_key::{Counts, Feeder, Job};

const KEYS: u64 = 200;
const KILLS: u64 = 10;

#[test]
fn sigkill_at_random_points_keeps_every_count_exact() {
    let job = Job::new("crash");
    let feeder = Feeder::start(&job, KEYS);
    assert_counts_exact_after_random_kills(&job, feeder, 0x2545_f491);
}

/// The same with `--group-by user` over input keyed by order id, beside a
/// second instance that stays up: the partitions are split between the
/// two, so each absorbs (and commits) repartition records the other
/// produced, and a killed run's successor produces its uncommitted ones
/// again. The steps after the `group_by` absorb each once.
#[test]
fn sigkill_at_random_points_keeps_every_count_after_group_by_exact() {
    let job = Job::new("gcrash").group_by("user");
    let feeder = Feeder::start_by_user(&job, KEYS);
    let steady_dir = tempfile::tempdir().unwrap();
    let log = steady_dir.path().join("steady.log");
    let mut steady = job.spawn(steady_dir.path(), &log);
    job.wait_for_outputs_beyond(0, &mut steady);
    assert_counts_exact_after_random_kills(&job, feeder, 0x9e37_79b9);
    steady.terminate();
}

/// Kills runs of `job` at random points (from `seed`), every third on a
/// lost disk, while `feeder` feeds it; then a last run catches up and
/// stops cleanly, and every key's last count and total are the truth.
fn assert_counts_exact_after_random_kills(job: &Job, feeder: Feeder<Counts>, seed: u64) {
    let state_dir = tempfile::tempdir().unwrap();
    let log = state_dir.path().join("count_per_key.log");
    job.kill_at_random_points(state_dir.path(), &log, KILLS, seed);
    let truth = feeder.finish();

    // A last run processes the rest and stops cleanly on SIGTERM.
    let mut instance = job.spawn(state_dir.path(), &log);
    job.wait_until_caught_up(&mut instance);
    let log = instance.log();
    instance.terminate();
    assert!(log.contains("recovered"), "no run recovered:\n{log}");
    assert_eq!(job.last_counts(), truth);
}
