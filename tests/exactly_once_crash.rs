//! The crash test of `count_per_key --exactly-once`: killed with SIGKILL at
//! random points while input trickles in, every third run on a deleted
//! state dir; every key's last count and total are exact, through
//! transactions that a kill leaves open and the next start aborts.
//!
//! It runs on librdkafka's mock cluster, in this process and listening on
//! TCP, not on tansu: tansu 0.6 has no EndTxn, so no transaction of it can
//! commit (`tests/exactly_once.rs` checks the error that says so). What
//! the mock cannot show: that the outputs hold no duplicate (it hands
//! aborted transactions' records to read-committed consumers too), and
//! offsets committed by the transactions themselves (it answers
//! TxnOffsetCommit without keeping the offsets; kstreams commits them
//! again after each transaction, which this test relies on).

mod common;

use common::count_per_key::{assert_counts_exact_after_random_kills, Feeder, Job};

const KEYS: u64 = 200;
const KILLS: u64 = 10;

#[test]
fn sigkill_at_random_points_keeps_every_count_exact_in_transactions() {
    let job = Job::on_mock("eos").exactly_once();
    let feeder = Feeder::start(&job, KEYS);
    let log = assert_counts_exact_after_random_kills(&job, feeder, KILLS, 0x5851_f42d);
    // Every run committed through transactions (and, on the mock, the
    // offsets once more after each).
    let runs = log.matches("consuming [").count();
    let transactional = log
        .matches("did not keep the offsets committed in the transaction")
        .count();
    assert!(runs > KILLS as usize, "{runs} runs:\n{log}");
    assert!(
        transactional > runs / 2,
        "{transactional} of {runs} runs:\n{log}"
    );
}
