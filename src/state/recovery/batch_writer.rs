//! The batch writer: a thread that sorts recovery's changelog batches and
//! writes them into RocksDB while the recoverer's thread reads the next
//! records, so that reading the changelog and inserting into the memtables
//! overlap.
//!
//! Batches are written one at a time, in the order handed over, with a few
//! queued behind the one being written: the batches of all partitions fill
//! up at about the same pace, and the reader goes on reading while they
//! are written. A store's batches land in changelog order; a batch whose
//! recovery already failed to write one is not written (it would record a
//! changelog offset past the failed records). Once [`BatchWriter::wait`]
//! returns, no write holds any store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::changelog_batch::ChangelogBatch;
use crate::error::{Error, Result};
use crate::state::rocksdb::{Absorbed, PartitionStore};
use crate::thread;

/// How many batches may wait behind the one being written.
const QUEUED: usize = 4;

/// Changelog records of a recovering partition's store, with the changelog
/// offset they reach and, in the last batch, what the stores then absorbed
/// of the input.
pub(crate) struct ChangelogWrite {
    /// The input topic and partition whose stores recover.
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// The partition's stores.
    pub(crate) store: Arc<PartitionStore>,
    /// Which of the partition's stores the records go to.
    pub(crate) store_index: usize,
    pub(crate) records: ChangelogBatch,
    /// The changelog offset after the last of `records`.
    pub(crate) next_offset: i64,
    /// In the last batch of a recovery: processing resumes there.
    pub(crate) absorbed: Option<Absorbed>,
    /// The recovery's flag, set when one of its batches failed.
    pub(crate) failed: Arc<AtomicBool>,
}

/// How a write ended, and whose it was.
pub(crate) struct Written {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) result: Result<()>,
}

/// Hands batches to the writer thread.
pub(crate) struct BatchWriter {
    jobs: Option<Sender<ChangelogWrite>>,
    done: Receiver<Written>,
    /// Batches handed over whose report was not yet taken.
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

impl BatchWriter {
    /// Starts the writer thread.
    pub(crate) fn start() -> Result<Self> {
        let (jobs, queue) = crossbeam_channel::bounded::<ChangelogWrite>(QUEUED);
        let (report, done) = crossbeam_channel::unbounded();
        let thread = thread::spawn("recovery", "kstreams-writer", move || {
            for write in queue {
                let (topic, partition) = (write.topic.clone(), write.partition);
                // `write` (and its hold on the store) ends here, before the
                // report: a waiter may close the store next.
                let result = write.write();
                let written = Written {
                    topic,
                    partition,
                    result,
                };
                if report.send(written).is_err() {
                    return;
                }
            }
        })?;
        Ok(BatchWriter {
            jobs: Some(jobs),
            done,
            in_flight: 0,
            thread: Some(thread),
        })
    }

    /// Queues `write`; waits while [`QUEUED`] batches wait already.
    pub(crate) fn write(&mut self, write: ChangelogWrite) {
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(write).is_ok(),
            None => false,
        };
        if !sent {
            self.resume_panic();
        }
        self.in_flight += 1;
    }

    /// The reports of the batches written since the last call, without
    /// waiting for the others.
    pub(crate) fn written(&mut self) -> Vec<Written> {
        let reports: Vec<Written> = self.done.try_iter().collect();
        self.in_flight -= reports.len();
        reports
    }

    /// Waits until every batch handed over is written (or not), and
    /// returns the reports not yet taken.
    pub(crate) fn wait(&mut self) -> Vec<Written> {
        let mut reports = Vec::with_capacity(self.in_flight);
        while self.in_flight > 0 {
            match self.done.recv() {
                Ok(written) => reports.push(written),
                Err(_) => self.resume_panic(),
            }
            self.in_flight -= 1;
        }
        reports
    }

    /// The thread only stops early by panicking (inside RocksDB): carry its
    /// panic on here, as if the write had run on this thread.
    fn resume_panic(&mut self) -> ! {
        drop(self.jobs.take());
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => panic!("the recovery writer thread stopped"),
        }
    }
}

impl Drop for BatchWriter {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ChangelogWrite {
    /// Sorts the records into a RocksDB batch and writes it: on the writer
    /// thread, which has less to do per record than the reader.
    fn write(self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::RecoveryStopped {
                topic: self.topic.to_string(),
                partition: self.partition,
                reason: "an earlier batch of its changelog failed to be written".into(),
            });
        }
        let result = self.store.write_changelog(
            &self.records,
            self.store_index,
            self.next_offset,
            self.absorbed,
        );
        if result.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::options::StoreOptions;

    #[test]
    fn a_batch_of_a_recovery_whose_earlier_batch_failed_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let stores = ["totals".to_string()];
        let store = PartitionStore::open(dir.path(), &stores, &StoreOptions::default()).unwrap();
        let store = Arc::new(store);
        let batch = |key: &[u8], failed: &Arc<AtomicBool>| {
            let mut records = ChangelogBatch::default();
            records.add(key, Some(b"v"));
            ChangelogWrite {
                topic: "input".into(),
                partition: 0,
                store: store.clone(),
                store_index: 0,
                records,
                next_offset: 1,
                absorbed: None,
                failed: failed.clone(),
            }
        };
        let failed = Arc::new(AtomicBool::new(true));
        let healthy = Arc::new(AtomicBool::new(false));
        let mut writer = BatchWriter::start().unwrap();
        writer.write(batch(b"after a failure", &failed));
        writer.write(batch(b"healthy", &healthy));
        let reports = writer.wait();
        assert!(matches!(
            reports[0].result,
            Err(Error::RecoveryStopped { .. })
        ));
        assert!(reports[1].result.is_ok());
        let stored = |key: &[u8]| store.read(0, key, |value| value.is_some()).unwrap();
        assert!(!stored(b"after a failure"));
        assert!(stored(b"healthy"));
        assert!(writer.written().is_empty());
    }
}
