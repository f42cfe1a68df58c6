//! The crash test: `count_per_key` runs as a child process against the test
//! broker and is killed with SIGKILL at random points while input trickles
//! in, sometimes also losing its state directory, and is restarted each
//! time. At the end every key's last emitted count and total equal the true
//! count and sum of its input: state is exact, although outputs may repeat
//! downstream.

mod common;

use common::count_per_key::{assert_counts_exact_after_random_kills, Feeder, Job};

const KEYS: u64 = 200;
const KILLS: u64 = 10;

#[test]
fn sigkill_at_random_points_keeps_every_count_exact() {
    let job = Job::new("crash");
    let feeder = Feeder::start(&job, KEYS);
    assert_counts_exact_after_random_kills(&job, feeder, KILLS, 0x2545_f491);
}
