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

pub(crate) mod changelog;
mod handle;
pub(crate) mod key;
mod manager;
mod options;
mod recovery;
mod rocksdb;
mod short_bytes;
pub(crate) mod source_marks;
mod transaction;
mod window_index;

pub use handle::State;
pub use options::{Compression, RocksDbOptions};

pub(crate) use manager::{group_dir, Lookup, PartitionState, StateManager, StoreLayout};
pub(crate) use recovery::{Ready, Recovered, RecoveryManager, COMMIT_METADATA};
pub(crate) use window_index::{OpenWindow, WindowIndex};

/// The store stateful steps use unless told another.
pub const DEFAULT_STORE: &str = "default";
