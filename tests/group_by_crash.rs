//! The crash test of `count_per_key --group-by user` over input keyed by
//! order id, against tansu, beside a second instance that stays up: the
//! partitions are split between the two, so each absorbs (and commits)
//! repartition records the other produced, and a killed run's successor
//! produces its uncommitted ones again. The steps after the `group_by`
//! absorb each once: every user's last count and total are exact. (A
//! test binary of its own: beside another crash test, the two brokers and
//! five instances on two cores stall tansu's group coordinator.)

mod common;

use common::count_per_key::{assert_counts_exact_after_random_kills, Feeder, Job};

const USERS: u64 = 200;
const KILLS: u64 = 10;

#[test]
#[ignore = "flaky on tansu 0.6: under this load its group coordinator stalls (sessions \
            expire, instances never get partitions); run with --ignored on a quiet machine"]
fn sigkill_at_random_points_keeps_every_count_after_group_by_exact() {
    let job = Job::new("gcrash")
        .group_by("user")
        .session_timeout_ms(6_000);
    let feeder = Feeder::start_by_user(&job, USERS);
    let steady_dir = tempfile::tempdir().unwrap();
    let log = steady_dir.path().join("steady.log");
    let mut steady = job.spawn(steady_dir.path(), &log);
    job.wait_for_outputs_beyond(0, &mut steady);
    assert_counts_exact_after_random_kills(&job, feeder, KILLS, 0x9e37_79b9);
    steady.terminate();
}
