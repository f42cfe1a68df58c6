//! The crash test: `count_per_key` runs as a child process against the test
//! broker and is killed with SIGKILL at random points while input trickles
//! in, sometimes also losing its state directory, and is restarted each
//! time. At the end every key's last emitted count and total equal the true
//! count and sum of its input: state is exact, although outputs may repeat
//! downstream.

mod common;

use common::count_per_key::{Feeder, Job};

const KEYS: u64 = 200;
const KILLS: u64 = 10;

#[test]
fn sigkill_at_random_points_keeps_every_count_exact() {
    let job = Job::new("crash");
    let state_dir = tempfile::tempdir().unwrap();
    let log = state_dir.path().join("count_per_key.log");
    let feeder = Feeder::start(&job, KEYS);

    // Each run is killed at a random instant once it is processing; every
    // third starts on a lost disk.
    job.kill_at_random_points(state_dir.path(), &log, KILLS, 0x2545_f491);
    let truth = feeder.finish();

    // A last run processes the rest and stops cleanly on SIGTERM.
    let mut instance = job.spawn(state_dir.path(), &log);
    job.wait_until_caught_up(&mut instance);
    let log = instance.log();
    instance.terminate();
    assert!(log.contains("recovered"), "no run recovered:\n{log}");
    assert_eq!(job.last_counts(), truth);
}
