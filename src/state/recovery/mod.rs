//! Recovery: bringing a partition's stores up to date with their changelog
//! topics before its first message is processed.
//!
//! When partitions are assigned, the poll loop pauses them and hands them
//! to the [`RecoveryManager`], whose thread opens their stores, decides
//! what each needs (`plan.rs`: nothing, catching up with the changelog,
//! a rebuild, or a scan for a committed offset when the group has none)
//! and reads the changelogs of all those that need reading with one
//! consumer (`worker.rs`), while the poll loop processes the partitions
//! that are ready. A changelog partition is read until the reader reaches
//! its end (librdkafka's end-of-partition event: the fetch position at
//! the high watermark, past control records and compacted gaps). Batches
//! of records are written into RocksDB on a thread of their own
//! (`batch_writer.rs`) while the next ones are read.

mod batch_writer;
mod changelog_batch;
mod manager;
mod partition;
mod plan;
mod worker;

pub(crate) use changelog_batch::ChangelogBatch;
pub(crate) use manager::{Ready, Recovered, RecoveryManager};
pub(crate) use plan::COMMIT_METADATA;
