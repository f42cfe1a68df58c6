//! A state store held by another process, or damaged on disk, stops the
//! app with an error naming the store's directory; nothing is processed.

mod common;

use std::path::Path;

use common::count_per_key::{Feeder, Job};

/// Runs the job once so that its stores exist; returns partition 0's.
fn job_with_stores(prefix: &str, state_dir: &Path) -> (Job, std::path::PathBuf) {
    let job = Job::new(prefix);
    let feeder = Feeder::start(&job, 10);
    let mut instance = job.spawn(state_dir, &state_dir.join("first.log"));
    job.wait_for_outputs_beyond(0, &mut instance);
    instance.terminate();
    feeder.finish();
    let store = state_dir.join(&job.group).join(job.input.name()).join("0");
    assert!(store.join("CURRENT").exists(), "no store at {store:?}");
    (job, store)
}

#[test]
fn store_locked_by_another_process_is_a_clear_error() {
    let state_dir = tempfile::tempdir().unwrap();
    let (job, store) = job_with_stores("locked", state_dir.path());
    // This test process holds the store, as a second instance would.
    let options = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&options, &store).unwrap();
    let _held = rocksdb::DB::open_cf(&options, &store, families).unwrap();

    let log = job
        .spawn(state_dir.path(), &state_dir.path().join("second.log"))
        .wait_for_failure();
    assert!(log.contains("is locked by another process"), "{log}");
    assert!(log.contains(&store.display().to_string()), "{log}");
}

#[test]
fn corrupt_store_is_a_clear_error() {
    let state_dir = tempfile::tempdir().unwrap();
    let (job, store) = job_with_stores("corrupt", state_dir.path());
    std::fs::write(store.join("CURRENT"), "MANIFEST-999999\n").unwrap();

    let log = job
        .spawn(state_dir.path(), &state_dir.path().join("second.log"))
        .wait_for_failure();
    assert!(log.contains("failed to open"), "{log}");
    assert!(log.contains(&store.display().to_string()), "{log}");
}
