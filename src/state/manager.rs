//! The stores of every partition this instance owns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::hash_map::Entry;

use foldhash::HashMap;

use super::options::RocksDbOptions;
use super::rocksdb::{destroy, PartitionStore};
use super::transaction::Transaction;
use crate::error::{Error, Result};

/// One input partition's stores and the updates of the running checkpoint.
pub(crate) struct PartitionState {
    /// Shared with the recovery writer while the partition recovers.
    pub(crate) store: Arc<PartitionStore>,
    pub(crate) transactions: Vec<Transaction>,
    stores: Arc<[String]>,
    /// The offset after the last message processed since the last
    /// checkpoint: what the next checkpoint records as absorbed.
    pub(crate) pending_input: Option<i64>,
}

impl PartitionState {
    pub(crate) fn store_name(&self, store: usize) -> &str {
        &self.stores[store]
    }

    pub(crate) fn store_names(&self) -> &[String] {
        &self.stores
    }

    /// Marks the message at `offset` as absorbed by this checkpoint, with
    /// its writes.
    pub(crate) fn absorb(&mut self, offset: i64) {
        self.transactions
            .iter_mut()
            .for_each(Transaction::keep_message);
        self.pending_input = Some(offset + 1);
    }

    /// Undoes the writes of a message that failed.
    pub(crate) fn discard_message_writes(&mut self) {
        self.transactions
            .iter_mut()
            .for_each(Transaction::undo_message);
    }

    /// About how much memory the checkpoint's updates (and the cache of
    /// earlier ones) hold.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.transactions.iter().map(Transaction::bytes).sum()
    }

    /// Writes the checkpoint's updates with the changelog offsets they
    /// reached, in one batch, and starts a new checkpoint; with
    /// `keep_cache` the updates stay in memory as a cache of the store.
    pub(crate) fn commit(
        &mut self,
        changelog_offsets: &[Option<i64>],
        keep_cache: bool,
    ) -> Result<()> {
        let nothing_new =
            self.pending_input.is_none() && self.transactions.iter().all(Transaction::is_empty);
        if !nothing_new {
            self.store
                .commit(&self.transactions, changelog_offsets, self.pending_input)?;
            self.pending_input = None;
        }
        // With nothing new, a cache that no longer fits goes all the same.
        for transaction in &mut self.transactions {
            transaction.checkpointed(keep_cache);
        }
        Ok(())
    }
}

/// Opens, holds and closes the partition stores under
/// `<state_dir>/<consumer group>/<topic>/<partition>`.
pub(crate) struct StateManager {
    root: PathBuf,
    /// One per stateful input topic.
    topics: Vec<TopicState>,
    options: RocksDbOptions,
}

/// A stateful input topic: its stores and its open partitions.
struct TopicState {
    name: Arc<str>,
    stores: Arc<[String]>,
    open: HashMap<i32, PartitionState>,
}

impl StateManager {
    pub(crate) fn new(
        root: PathBuf,
        stores: Vec<(Arc<str>, Vec<String>)>,
        options: RocksDbOptions,
    ) -> Self {
        StateManager {
            root,
            topics: stores
                .into_iter()
                .map(|(name, stores)| TopicState {
                    name,
                    stores: stores.into(),
                    open: HashMap::default(),
                })
                .collect(),
            options,
        }
    }

    fn topic(&self, topic: &str) -> Option<&TopicState> {
        self.topics.iter().find(|known| *known.name == *topic)
    }

    fn topic_mut(&mut self, topic: &str) -> Option<&mut TopicState> {
        self.topics.iter_mut().find(|known| *known.name == *topic)
    }

    /// The store names of `topic`; empty when it is processed statelessly.
    pub(crate) fn stores_of(&self, topic: &str) -> &[String] {
        self.topic(topic).map_or(&[], |known| &known.stores)
    }

    /// Whether any input topic has stores.
    pub(crate) fn is_stateful(&self) -> bool {
        !self.topics.is_empty()
    }

    /// The open state of a partition, if it has stores and is open.
    pub(crate) fn get_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionState> {
        self.topic_mut(topic)?.open.get_mut(&partition)
    }

    /// Opens the stores of a partition (a no-op when open).
    pub(crate) fn open(&mut self, topic: &str, partition: i32) -> Result<&mut PartitionState> {
        let Some(known) = self.topics.iter_mut().find(|known| *known.name == *topic) else {
            return Err(Error::Config {
                key: "state".into(),
                reason: format!("topic {topic} has no stateful steps"),
            });
        };
        let closed = match known.open.entry(partition) {
            Entry::Occupied(open) => return Ok(open.into_mut()),
            Entry::Vacant(closed) => closed,
        };
        let path = partition_path(&self.root, topic, partition);
        log::info!(
            "opening state of {topic}[{partition}] at {}",
            path.display()
        );
        let store = PartitionStore::open(&path, &known.stores, &self.options)?;
        Ok(closed.insert(PartitionState {
            store: Arc::new(store),
            transactions: known
                .stores
                .iter()
                .map(|_| Transaction::default())
                .collect(),
            stores: known.stores.clone(),
            pending_input: None,
        }))
    }

    /// Takes a partition's open stores out, for recovery on another thread.
    pub(crate) fn take(&mut self, topic: &str, partition: i32) -> Option<PartitionState> {
        self.topic_mut(topic)?.open.remove(&partition)
    }

    /// Puts back stores taken out with [`take`](Self::take).
    pub(crate) fn insert(&mut self, topic: &str, partition: i32, state: PartitionState) {
        // Stores are only ever taken from a stateful topic.
        if let Some(known) = self.topic_mut(topic) {
            known.open.insert(partition, state);
        }
    }

    /// The shared name of input `topic`.
    pub(crate) fn topic_name(&self, topic: &str) -> Arc<str> {
        self.topic(topic)
            .map_or_else(|| Arc::from(topic), |known| known.name.clone())
    }

    /// Deletes a partition's local state and opens it empty.
    pub(crate) fn reset(&mut self, topic: &str, partition: i32) -> Result<&mut PartitionState> {
        self.close(topic, partition);
        destroy(&partition_path(&self.root, topic, partition))?;
        self.open(topic, partition)
    }

    /// Closes a partition's stores, dropping its uncommitted updates.
    pub(crate) fn close(&mut self, topic: &str, partition: i32) {
        if self.take(topic, partition).is_some() {
            log::info!("closed state of {topic}[{partition}]");
        }
    }

    /// Every open partition.
    pub(crate) fn partitions_mut(
        &mut self,
    ) -> impl Iterator<Item = (&Arc<str>, i32, &mut PartitionState)> {
        self.topics
            .iter_mut()
            .flat_map(|TopicState { name, open, .. }| {
                let name = &*name;
                open.iter_mut()
                    .map(move |(partition, state)| (name, *partition, state))
            })
    }

    /// About how much memory the checkpoint's updates (and the cache of
    /// earlier ones) of every open partition hold.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.topics
            .iter()
            .flat_map(|known| known.open.values())
            .map(PartitionState::pending_bytes)
            .sum()
    }

    /// Closes every partition.
    pub(crate) fn close_all(&mut self) {
        self.topics.iter_mut().for_each(|known| known.open.clear());
    }
}

/// The directory of a partition's stores under the group's state directory.
fn partition_path(root: &Path, topic: &str, partition: i32) -> PathBuf {
    root.join(topic).join(partition.to_string())
}

/// The directory of a consumer group's state under `state_dir`.
pub(crate) fn group_dir(state_dir: &Path, group: &str) -> PathBuf {
    state_dir.join(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_over_budget_drops_the_cache_of_idle_partitions_too() {
        let dir = tempfile::tempdir().unwrap();
        let stores = vec![(Arc::from("in"), vec!["default".to_string()])];
        let mut manager = StateManager::new(dir.path().into(), stores, RocksDbOptions::default());
        let state = manager.open("in", 0).unwrap();
        state.transactions[0].put(b"k".to_vec(), b"v".to_vec());
        state.absorb(0);
        state.commit(&[], true).unwrap();
        assert!(state.pending_bytes() > 0, "kept as a cache");
        // Nothing new in this partition, and the checkpoint is over budget.
        state.commit(&[], false).unwrap();
        assert_eq!(state.pending_bytes(), 0);
        assert_eq!(state.transactions[0].get(b"k"), None);
    }
}
