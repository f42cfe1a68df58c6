//! The crash test of `count_per_key --group-by user` over input keyed by
//! order id, against tansu, beside a second instance that stays up: the
//! partitions are split between the two, so each absorbs (and commits)
//! repartition records the other produced, and a killed run's successor
//! produces its uncommitted ones again. The steps after the `group_by`
//! absorb each once: every user's last count and total are exact. (Each
//! killed run's session is waited out before the next starts: tansu 0.6
//! does not rebalance a group of three whose killed member's session
//! expired. A test binary of its own, so that it does not share the two
//! cores with another crash test's broker and instances.)

mod common;

use common::count_per_key::{assert_counts_exact_after_random_kills, Feeder, Job};

const USERS: u64 = 200;
const KILLS: u64 = 10;

#[test]
fn sigkill_at_random_points_keeps_every_count_after_group_by_exact() {
    let job = Job::new("gcrash")
        .group_by("user")
        .session_timeout_ms(6_000)
        .settle_after_kill();
    let feeder = Feeder::start_by_user(&job, USERS);
    let steady_dir = tempfile::tempdir().unwrap();
    let log = steady_dir.path().join("steady.log");
    let mut steady = job.spawn(steady_dir.path(), &log);
    job.wait_for_outputs_beyond(0, &mut steady);
    assert_counts_exact_after_random_kills(&job, feeder, KILLS, 0x9e37_79b9);
    steady.terminate();
}
