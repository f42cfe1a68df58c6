//! The batch writer: a thread that sorts recovery's changelog batches and
//! writes them into RocksDB while the recoverer's thread reads the next
//! records, so that reading the changelog and inserting into the memtables
//! overlap.
//!
//! One batch is written at a time, in the order handed over: a store's
//! batches land in changelog order, and once [`BatchWriter::wait`]
//! returns, no write holds any store.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::changelog_batch::ChangelogBatch;
use super::recoverer::spawn_thread;
use super::rocksdb::PartitionStore;
use crate::error::Result;

/// Changelog records of a recovering partition's store, with the changelog
/// offset they reach and, in the last batch, the input offset processing
/// resumes from.
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
    /// In the last batch of a recovery, where processing resumes.
    pub(crate) input_offset: Option<i64>,
}

/// How a write ended, and whose it was.
pub(crate) struct Written {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) result: Result<()>,
}

/// Hands batches to the writer thread, one at a time.
pub(crate) struct BatchWriter {
    jobs: Option<Sender<ChangelogWrite>>,
    done: Receiver<Written>,
    /// Whether a batch is being written.
    in_flight: bool,
    thread: Option<JoinHandle<()>>,
}

impl BatchWriter {
    /// Starts the writer thread.
    pub(crate) fn start() -> Result<Self> {
        let (jobs, queue) = crossbeam_channel::bounded::<ChangelogWrite>(1);
        let (report, done) = crossbeam_channel::bounded(1);
        let thread = spawn_thread("kstreams-writer", move || {
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
            in_flight: false,
            thread: Some(thread),
        })
    }

    /// Hands `write` over. [`wait`](Self::wait) for the batch before it
    /// first: a partition's batch goes only after the one before it was
    /// written.
    pub(crate) fn write(&mut self, write: ChangelogWrite) {
        debug_assert!(!self.in_flight, "a batch is still being written");
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(write));
        if !matches!(sent, Some(Ok(()))) {
            self.resume_panic();
        }
        self.in_flight = true;
    }

    /// Waits for the batch being written, if any, and returns how it ended.
    pub(crate) fn wait(&mut self) -> Option<Written> {
        if !std::mem::take(&mut self.in_flight) {
            return None;
        }
        match self.done.recv() {
            Ok(written) => Some(written),
            Err(_) => self.resume_panic(),
        }
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
        self.store.write_changelog(
            &self.records,
            self.store_index,
            self.next_offset,
            self.input_offset,
        )
    }
}
