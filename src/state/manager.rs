//! The stores of every partition this instance owns, and where they live:
//! `<state_dir>/<consumer group>/<topic>/<partition>`.

use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use foldhash::HashMap;

use super::changelog::{changelog_name, Stamp};
use super::options::{RocksDbOptions, StoreOptions};
use super::rocksdb::{destroy, Absorbed, PartitionStore};
use super::source_marks::SourceMarks;
use super::transaction::Transaction;
use super::window_index::WindowIndex;
use crate::error::{Error, Result};

/// A store of a stateful input topic, and its changelog topic.
#[derive(Debug)]
pub(crate) struct StoreSpec {
    pub(crate) name: Arc<str>,
    /// `None` when the application keeps no changelogs.
    pub(crate) changelog: Option<Arc<str>>,
}

/// One input partition's stores and the updates of the running checkpoint.
pub(crate) struct PartitionState {
    /// Shared with the recovery writer while the partition recovers.
    pub(crate) store: Arc<PartitionStore>,
    pub(crate) transactions: Vec<Transaction>,
    /// Per store, the index of its open windows, for a window store that
    /// closes per partition (built at its first message).
    pub(crate) window_indexes: Vec<Option<WindowIndex>>,
    /// Per store, whether a window step checked that the store holds its
    /// definition's windows (once a partition is opened).
    pub(crate) definitions_checked: Vec<bool>,
    /// Fed by a `group_by`: the highest repartition stamps absorbed.
    pub(crate) source_marks: SourceMarks,
    stores: Arc<[StoreSpec]>,
    /// The offset after the last message processed since the last
    /// checkpoint: what the next checkpoint records as absorbed.
    pending_input: Option<i64>,
    /// The group's committed offset of the partition, as far as this
    /// instance knows: what the next checkpoint stamps as committed.
    /// Without one, the offset processing started from.
    committed: Option<i64>,
}

impl PartitionState {
    /// The partition's stores, in the order of `transactions`.
    pub(crate) fn stores(&self) -> &[StoreSpec] {
        &self.stores
    }

    /// Marks the message at `offset` as absorbed by this checkpoint, with
    /// its writes.
    pub(crate) fn absorb(&mut self, offset: i64) {
        self.keep_writes();
        self.pending_input = Some(offset + 1);
        // A partition never committed starts from its first message: empty
        // state and that offset agree.
        self.committed.get_or_insert(offset);
    }

    /// Keeps the writes made since the last message outside any message
    /// (a tick: a window closing on an idle stream).
    pub(crate) fn keep_writes(&mut self) {
        if let Some(store) = self.transactions.first_mut() {
            self.source_marks.keep(store);
        }
        self.transactions
            .iter_mut()
            .for_each(Transaction::keep_message);
        self.window_indexes
            .iter_mut()
            .flatten()
            .for_each(WindowIndex::keep_message);
    }

    /// Undoes the writes of a message that failed.
    pub(crate) fn discard_message_writes(&mut self) {
        self.source_marks.undo();
        self.transactions
            .iter_mut()
            .for_each(Transaction::undo_message);
        self.window_indexes
            .iter_mut()
            .flatten()
            .for_each(WindowIndex::undo_message);
    }

    /// The stamp of the running checkpoint's changelog records: the last
    /// input it absorbed; when it absorbed none but has updates (written
    /// between messages, by a tick), the input before the committed
    /// offset, so that recovery applies them. `None` without either.
    pub(crate) fn stamp(&self) -> Option<Stamp> {
        match self.pending_input {
            Some(next) => Some(Stamp {
                input_offset: next - 1,
                committed_offset: self.committed,
            }),
            None => self.committed.map(|committed| Stamp {
                input_offset: committed - 1,
                committed_offset: Some(committed),
            }),
        }
    }

    /// The offset of the next message to process, as far as this
    /// instance knows: after the last one it processed, else where the
    /// group's commit says processing resumes.
    pub(crate) fn next_offset(&self) -> Option<i64> {
        self.pending_input.or(self.committed)
    }

    /// Records that the group committed `offset` for this partition.
    pub(crate) fn committed(&mut self, offset: i64) {
        self.committed = Some(offset);
    }

    /// Whether the partition has updates that no checkpoint wrote.
    pub(crate) fn has_updates(&self) -> bool {
        !self.transactions.iter().all(Transaction::is_empty)
    }

    /// About how much memory the checkpoint's updates (and the cache of
    /// earlier ones) hold.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.transactions.iter().map(Transaction::bytes).sum()
    }

    /// Writes the checkpoint's updates to RocksDB with the changelog
    /// offsets they reached, in one batch, and starts a new checkpoint;
    /// with `keep_cache` the updates stay in memory as a cache of the
    /// store.
    pub(crate) fn write_checkpoint(
        &mut self,
        changelog_offsets: &[Option<i64>],
        keep_cache: bool,
    ) -> Result<()> {
        let nothing_new =
            self.pending_input.is_none() && self.transactions.iter().all(Transaction::is_empty);
        if !nothing_new {
            let absorbed = self.pending_input.map(|next_input| Absorbed {
                next_input,
                committed: self.committed,
            });
            self.store
                .write_checkpoint(&self.transactions, changelog_offsets, absorbed)?;
            self.pending_input = None;
        }
        // With nothing new, a cache that no longer fits goes all the same.
        for transaction in &mut self.transactions {
            transaction.checkpointed(keep_cache);
        }
        Ok(())
    }
}

/// A stateful input topic and its stores.
struct TopicStores {
    name: Arc<str>,
    stores: Arc<[StoreSpec]>,
}

/// Where and how partition stores open: the group's state directory, the
/// stores of each stateful input topic and RocksDB's settings, with the
/// block cache and write buffer manager that every partition shares.
/// Cheap to clone: the poll loop and the recovery thread each hold one,
/// and share that memory.
#[derive(Clone)]
pub(crate) struct StoreLayout {
    root: PathBuf,
    topics: Arc<[TopicStores]>,
    options: StoreOptions,
}

impl StoreLayout {
    /// The layout under `root` (a group's state directory) of `stores`, per
    /// input topic its store names; with `changelog_group`, each store has
    /// the changelog topic of that group.
    pub(crate) fn new(
        root: PathBuf,
        stores: &[(Arc<str>, Vec<String>)],
        changelog_group: Option<&str>,
        options: RocksDbOptions,
    ) -> Self {
        let topics = stores
            .iter()
            .map(|(topic, names)| TopicStores {
                name: topic.clone(),
                stores: names
                    .iter()
                    .map(|store| StoreSpec {
                        name: store.as_str().into(),
                        changelog: changelog_group
                            .map(|group| changelog_name(group, topic, store).into()),
                    })
                    .collect(),
            })
            .collect();
        StoreLayout {
            root,
            topics,
            options: StoreOptions::new(options),
        }
    }

    /// Input topic `in` with store `default`, changelogs of group `g`,
    /// under `dir`: the layout of the state module's unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(dir: &Path) -> Self {
        let stores = vec![(Arc::from("in"), vec!["default".to_string()])];
        StoreLayout::new(dir.into(), &stores, Some("g"), RocksDbOptions::default())
    }

    fn topic(&self, topic: &str) -> Option<&TopicStores> {
        self.topics.iter().find(|known| *known.name == *topic)
    }

    /// The stores of `topic`; empty when it is processed statelessly.
    pub(crate) fn stores_of(&self, topic: &str) -> &[StoreSpec] {
        self.topic(topic).map_or(&[], |known| &known.stores)
    }

    /// Opens (or creates) the stores of a partition.
    pub(crate) fn open(&self, topic: &str, partition: i32) -> Result<PartitionState> {
        let Some(known) = self.topic(topic) else {
            return Err(Error::Config {
                key: "state".into(),
                reason: format!("topic {topic} has no stateful steps"),
            });
        };
        let path = self.partition_path(topic, partition);
        log::info!(
            "opening state of {topic}[{partition}] at {}",
            path.display()
        );
        let names: Vec<String> = known.stores.iter().map(|s| s.name.to_string()).collect();
        let store = PartitionStore::open(&path, &names, &self.options)?;
        Ok(PartitionState {
            store: Arc::new(store),
            transactions: known
                .stores
                .iter()
                .map(|_| Transaction::default())
                .collect(),
            window_indexes: known.stores.iter().map(|_| None).collect(),
            definitions_checked: known.stores.iter().map(|_| false).collect(),
            source_marks: SourceMarks::default(),
            stores: known.stores.clone(),
            pending_input: None,
            committed: None,
        })
    }

    /// Deletes a partition's local state; its stores must be closed.
    pub(crate) fn destroy(&self, topic: &str, partition: i32) -> Result<()> {
        destroy(&self.partition_path(topic, partition))
    }

    /// The directory of a partition's stores.
    fn partition_path(&self, topic: &str, partition: i32) -> PathBuf {
        self.root
            .join(path_component(topic))
            .join(partition.to_string())
    }
}

/// What [`StateManager::lookup`] finds of an input partition.
pub(crate) enum Lookup<'a> {
    /// Its topic is processed without state.
    Stateless,
    /// Its stores are not open: it is still being recovered.
    NotReady,
    Open(&'a mut PartitionState),
}

/// Opens, holds and closes the stores of the partitions this instance owns.
pub(crate) struct StateManager {
    layout: StoreLayout,
    /// Per stateful input topic (in the layout's order), its open partitions.
    open: Vec<HashMap<i32, PartitionState>>,
}

impl StateManager {
    pub(crate) fn new(layout: StoreLayout) -> Self {
        let open = layout.topics.iter().map(|_| HashMap::default()).collect();
        StateManager { layout, open }
    }

    /// Where the stores live.
    pub(crate) fn layout(&self) -> &StoreLayout {
        &self.layout
    }

    fn index(&self, topic: &str) -> Option<usize> {
        self.layout
            .topics
            .iter()
            .position(|known| *known.name == *topic)
    }

    /// Whether `topic` has stores.
    pub(crate) fn is_stateful_topic(&self, topic: &str) -> bool {
        self.index(topic).is_some()
    }

    /// The shared name of input `topic`.
    pub(crate) fn topic_name(&self, topic: &str) -> Arc<str> {
        self.index(topic).map_or_else(
            || Arc::from(topic),
            |index| self.layout.topics[index].name.clone(),
        )
    }

    /// Whether any input topic has stores.
    pub(crate) fn is_stateful(&self) -> bool {
        !self.layout.topics.is_empty()
    }

    /// The stores of an input partition, as the poll loop finds them.
    pub(crate) fn lookup(&mut self, topic: &str, partition: i32) -> Lookup<'_> {
        let Some(index) = self.index(topic) else {
            return Lookup::Stateless;
        };
        match self.open[index].get_mut(&partition) {
            Some(state) => Lookup::Open(state),
            None => Lookup::NotReady,
        }
    }

    /// The open state of a partition, if it has stores and is open.
    pub(crate) fn get_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionState> {
        let index = self.index(topic)?;
        self.open[index].get_mut(&partition)
    }

    /// Opens the stores of a partition (a no-op when open).
    pub(crate) fn open(&mut self, topic: &str, partition: i32) -> Result<&mut PartitionState> {
        let index = self.index(topic).ok_or_else(|| Error::Config {
            key: "state".into(),
            reason: format!("topic {topic} has no stateful steps"),
        })?;
        match self.open[index].entry(partition) {
            Entry::Occupied(open) => Ok(open.into_mut()),
            Entry::Vacant(closed) => Ok(closed.insert(self.layout.open(topic, partition)?)),
        }
    }

    /// Hands over stores opened elsewhere (by recovery), with the group's
    /// committed offset as recovery found it.
    pub(crate) fn insert(
        &mut self,
        topic: &str,
        partition: i32,
        mut state: PartitionState,
        committed: Option<i64>,
    ) {
        state.committed = committed;
        // Stores are only ever opened for a stateful topic.
        if let Some(index) = self.index(topic) {
            self.open[index].insert(partition, state);
        }
    }

    /// Closes a partition's stores, dropping its uncommitted updates.
    pub(crate) fn close(&mut self, topic: &str, partition: i32) {
        let Some(index) = self.index(topic) else {
            return;
        };
        if self.open[index].remove(&partition).is_some() {
            log::info!("closed state of {topic}[{partition}]");
        }
    }

    /// Every open partition.
    pub(crate) fn partitions_mut(
        &mut self,
    ) -> impl Iterator<Item = (&Arc<str>, i32, &mut PartitionState)> {
        self.layout
            .topics
            .iter()
            .zip(&mut self.open)
            .flat_map(|(known, open)| {
                open.iter_mut()
                    .map(move |(partition, state)| (&known.name, *partition, state))
            })
    }

    /// Whether any open partition has updates that no checkpoint wrote
    /// (of messages, or of ticks between them).
    pub(crate) fn has_updates(&self) -> bool {
        self.open
            .iter()
            .flat_map(HashMap::values)
            .any(PartitionState::has_updates)
    }

    /// About how much memory the checkpoint's updates (and the cache of
    /// earlier ones) of every open partition hold.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.open
            .iter()
            .flat_map(HashMap::values)
            .map(PartitionState::pending_bytes)
            .sum()
    }

    /// Closes every partition.
    pub(crate) fn close_all(&mut self) {
        self.open.iter_mut().for_each(HashMap::clear);
    }
}

/// The directory of a consumer group's state under `state_dir`: always a
/// child of it, whatever the group is called.
pub(crate) fn group_dir(state_dir: &Path, group: &str) -> PathBuf {
    state_dir.join(path_component(group))
}

/// `name` as one safe path component: letters, digits, `.`, `_` and `-`
/// stay (every legal Kafka topic name is unchanged), any other byte
/// becomes `%XX`, and so does the dot of a name made of dots only (`.`,
/// `..`), so that no name reaches outside its parent directory; the empty
/// name becomes `%`, so that it is not the parent itself. Distinct names
/// stay distinct.
fn path_component(name: &str) -> String {
    if name.is_empty() {
        return "%".to_string();
    }
    let dots_only = name.bytes().all(|byte| byte == b'.');
    let mut component = String::with_capacity(name.len());
    for byte in name.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'_' | b'-')
            || (byte == b'.' && !dots_only);
        if keep {
            component.push(char::from(byte));
        } else {
            component.push_str(&format!("%{byte:02X}"));
        }
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) -> StoreLayout {
        StoreLayout::for_tests(dir)
    }

    #[test]
    fn a_checkpoint_over_budget_drops_the_cache_of_idle_partitions_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut manager = StateManager::new(layout(dir.path()));
        let state = manager.open("in", 0).unwrap();
        state.transactions[0].put(b"k".to_vec(), b"v".to_vec());
        state.absorb(0);
        state.write_checkpoint(&[], true).unwrap();
        assert!(state.pending_bytes() > 0, "kept as a cache");
        // Nothing new in this partition, and the checkpoint is over budget.
        state.write_checkpoint(&[], false).unwrap();
        assert_eq!(state.pending_bytes(), 0);
        assert_eq!(state.transactions[0].get(b"k"), None);
    }

    #[test]
    fn a_checkpoint_is_stamped_with_the_committed_offset_or_where_processing_started() {
        let dir = tempfile::tempdir().unwrap();
        let mut manager = StateManager::new(layout(dir.path()));
        let state = manager.open("in", 0).unwrap();
        assert_eq!(state.stamp(), None, "nothing absorbed");
        state.absorb(5);
        state.absorb(6);
        let started = Stamp {
            input_offset: 6,
            committed_offset: Some(5),
        };
        assert_eq!(state.stamp(), Some(started));
        state.write_checkpoint(&[], true).unwrap();
        state.committed(7);
        state.absorb(7);
        assert_eq!(state.stamp().unwrap().committed_offset, Some(7));
        let absorbed = state.store.absorbed().unwrap().unwrap();
        assert_eq!((absorbed.next_input, absorbed.committed), (7, Some(5)));
        // Written between messages: applied by a recovery up to what is
        // committed.
        state.write_checkpoint(&[], true).unwrap();
        state.committed(8);
        let between = Stamp {
            input_offset: 7,
            committed_offset: Some(8),
        };
        assert_eq!(state.stamp(), Some(between));
        assert!(between.is_before(8));
    }

    #[test]
    fn every_partition_shares_one_block_cache_and_one_write_buffer_budget() {
        let dir = tempfile::tempdir().unwrap();
        let stores = [(Arc::from("in"), vec!["default".to_string()])];
        let options = RocksDbOptions::default()
            .block_cache_size(48 << 20)
            .total_write_buffer_size(16 << 20);
        let layout = StoreLayout::new(dir.path().into(), &stores, None, options);
        let mut manager = StateManager::new(layout.clone());
        manager.open("in", 0).unwrap();
        manager.open("in", 1).unwrap();
        let cache_of = |manager: &mut StateManager, partition| {
            manager
                .get_mut("in", partition)
                .unwrap()
                .store
                .block_cache(0)
        };
        // Writes 2 MiB into a partition's memtable.
        let write = |manager: &mut StateManager, partition| {
            let state = manager.get_mut("in", partition).unwrap();
            for key in 0..64_u8 {
                state.transactions[0].put(vec![key], vec![key; 32 << 10]);
            }
            state.absorb(0);
            state.write_checkpoint(&[], false).unwrap();
        };
        let (capacity, before) = cache_of(&mut manager, 1);
        assert_eq!(capacity, 48 << 20, "one cache of the whole budget");
        assert_eq!(cache_of(&mut manager, 0).0, 48 << 20);
        let memtables = layout.options.write_buffer_usage();
        write(&mut manager, 0);
        // Partition 0's memtable is charged to the write buffer manager and,
        // through it, to the block cache that partition 1 reads through.
        let after_0 = layout.options.write_buffer_usage();
        assert!(after_0 >= memtables + (2 << 20), "{memtables} -> {after_0}");
        let (_, after) = cache_of(&mut manager, 1);
        assert!(after >= before + (2 << 20), "{before} -> {after}");
        // And partition 1's to the same manager.
        write(&mut manager, 1);
        let after_1 = layout.options.write_buffer_usage();
        assert!(after_1 >= after_0 + (2 << 20), "{after_0} -> {after_1}");
    }

    #[test]
    fn empty_memtables_take_little_of_the_write_buffer_budget() {
        let dir = tempfile::tempdir().unwrap();
        let stores = [(Arc::from("in"), vec!["default".to_string()])];
        let layout = StoreLayout::new(dir.path().into(), &stores, None, RocksDbOptions::default());
        let mut manager = StateManager::new(layout.clone());
        for partition in 0..32 {
            manager.open("in", partition).unwrap();
        }
        // Each database has its store's column family and kstreams' own:
        // 64 memtables. With RocksDB's 1 MiB arena blocks they took 64 MiB,
        // twice the default budget, before holding any data.
        let usage = layout.options.write_buffer_usage();
        assert!(usage <= 16 << 20, "32 empty partitions hold {usage} bytes");
    }

    #[test]
    fn changelog_names_come_with_the_stores() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout(dir.path());
        let [store] = layout.stores_of("in") else {
            panic!("one store expected");
        };
        assert_eq!(
            store.changelog.as_deref(),
            Some("changelog__g--in--default")
        );
        assert!(layout.stores_of("stateless").is_empty());
    }

    #[test]
    fn group_and_topic_names_never_leave_the_state_dir() {
        let root = Path::new("/state");
        for (group, dir) in [
            ("counts", "/state/counts"),
            ("a.b_c-1", "/state/a.b_c-1"),
            ("/data", "/state/%2Fdata"),
            ("../x", "/state/..%2Fx"),
            ("..", "/state/%2E%2E"),
            (".", "/state/%2E"),
            ("", "/state/%"),
            ("50%", "/state/50%25"),
            ("grüße", "/state/gr%C3%BC%C3%9Fe"),
        ] {
            assert_eq!(group_dir(root, group), Path::new(dir), "{group}");
        }
        assert_ne!(path_component("%2F"), path_component("/"));
    }
}
