//! Key-scoped state: RocksDB stores per input partition, backed by compacted
//! changelog topics and rebuilt from them when a partition arrives without
//! its local state.
//!
//! Stateful steps ([`apply_stateful`](crate::StreamingDataFrame::apply_stateful)
//! and friends) get a [`State`] scoped to the key of the message being
//! processed. Writes stay in memory until the checkpoint, which produces
//! them to the changelog, writes them to RocksDB in one atomic batch per
//! partition with the input offset they absorbed, and only then commits the
//! consumer offsets.

mod batch_writer;
mod changelog;
mod changelog_batch;
mod handle;
pub(crate) mod key;
mod manager;
mod options;
mod recoverer;
mod recovery;
mod rocksdb;
mod short_bytes;
mod transaction;

pub use handle::State;
pub use options::{Compression, RocksDbOptions};

pub(crate) use changelog::{changelog_topic, encode_value, OFFSET_HEADER};
pub(crate) use manager::{group_dir, PartitionState, StateManager};
pub(crate) use recoverer::{Recovered, Recoverer};
pub(crate) use recovery::{plan, Plan, Recovery};

/// The store stateful steps use unless told another.
pub const DEFAULT_STORE: &str = "default";
