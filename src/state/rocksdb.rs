//! The RocksDB database of one input partition: a column family per store,
//! plus one for kstreams' own bookkeeping, written in one atomic batch.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, ReadOptions, WriteBatch, DB};

use super::options::StoreOptions;
use super::recovery::ChangelogBatch;
use super::transaction::Transaction;
use crate::error::{Error, Result};

/// Column family of the offsets that say what the stores hold.
const META: &str = "__kstreams";
/// In `META`: the next input offset to process (the absorbed one + 1).
const INPUT_OFFSET: &[u8] = b"input-offset";
/// In `META`: the group's committed offset when the last checkpoint
/// written began (see [`Absorbed::committed`]).
const COMMITTED_OFFSET: &[u8] = b"committed-offset";
/// How long to wait for another process to release the store's lock.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// What the stores of a partition absorbed of its input, written with the
/// state it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Absorbed {
    /// The next input offset to process (the last one absorbed + 1).
    pub(crate) next_input: i64,
    /// The group's committed offset of the partition when the checkpoint
    /// began (or where processing started, without one): the changelog
    /// records of that checkpoint carry it too.
    pub(crate) committed: Option<i64>,
}

/// One partition's stores.
pub(crate) struct PartitionStore {
    db: DB,
    path: PathBuf,
    stores: Vec<String>,
    /// Made once: the rocksdb crate's plain `get` builds and frees one per read.
    read_options: ReadOptions,
}

impl PartitionStore {
    /// Opens (or creates) the database at `path` with one column family per
    /// store, sharing the block cache and the write buffer manager of
    /// `options` with every other database opened with them. Waits up to
    /// 10 s for another process holding it to let go.
    pub(crate) fn open(path: &Path, stores: &[String], options: &StoreOptions) -> Result<Self> {
        let failed = |operation, source| Error::Store {
            path: path.to_path_buf(),
            operation,
            source,
        };
        std::fs::create_dir_all(path).map_err(|source| Error::StateDir {
            path: path.to_path_buf(),
            source,
        })?;
        let mut db_options = options.to_rocksdb();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        let names: Vec<&str> = stores.iter().map(String::as_str).chain([META]).collect();
        let started = Instant::now();
        let db = loop {
            let families = names
                .iter()
                .map(|name| ColumnFamilyDescriptor::new(*name, options.to_rocksdb()));
            match DB::open_cf_descriptors(&db_options, path, families) {
                Ok(db) => break db,
                Err(error) if is_lock_error(&error, path) => {
                    if started.elapsed() > LOCK_PATIENCE {
                        return Err(Error::StoreLocked {
                            path: path.to_path_buf(),
                        });
                    }
                    thread::sleep(Duration::from_millis(200));
                }
                Err(error) => return Err(failed("open", error)),
            }
        };
        Ok(PartitionStore {
            db,
            path: path.to_path_buf(),
            stores: stores.to_vec(),
            read_options: ReadOptions::default(),
        })
    }

    /// Hands the value of `key` in store number `store` to `read`, without
    /// copying it out of RocksDB.
    pub(crate) fn read<R>(
        &self,
        store: usize,
        key: &[u8],
        read: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R> {
        let value = self
            .db
            .get_pinned_cf_opt(self.family(&self.stores[store]), key, &self.read_options)
            .map_err(|source| self.failed("read", source))?;
        Ok(read(value.as_deref()))
    }

    /// Calls `visit` with every key and value of store number `store`, in
    /// key order.
    pub(crate) fn for_each(&self, store: usize, mut visit: impl FnMut(&[u8], &[u8])) -> Result<()> {
        let mut entries = self.db.raw_iterator_cf(self.family(&self.stores[store]));
        entries.seek_to_first();
        while let (Some(key), Some(value)) = (entries.key(), entries.value()) {
            visit(key, value);
            entries.next();
        }
        entries
            .status()
            .map_err(|source| self.failed("scan", source))
    }

    /// What the stores absorbed of the input, as of the last checkpoint;
    /// `None` before the first.
    pub(crate) fn absorbed(&self) -> Result<Option<Absorbed>> {
        let Some(next_input) = self.meta(INPUT_OFFSET)? else {
            return Ok(None);
        };
        let committed = self.meta(COMMITTED_OFFSET)?;
        Ok(Some(Absorbed {
            next_input,
            committed,
        }))
    }

    /// The next changelog offset of store number `store` to read in recovery.
    pub(crate) fn changelog_offset(&self, store: usize) -> Result<Option<i64>> {
        self.meta(&changelog_key(&self.stores[store]))
    }

    /// Writes a checkpoint in one atomic batch: every store's updates, the
    /// changelog offsets they reached, and what they absorbed of the input.
    pub(crate) fn write_checkpoint(
        &self,
        transactions: &[Transaction],
        changelog_offsets: &[Option<i64>],
        absorbed: Option<Absorbed>,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (store, transaction) in transactions.iter().enumerate() {
            let family = self.family(&self.stores[store]);
            // In key order: the memtable inserts keys that come in order
            // faster (each search starts where the last one ended).
            let mut updates: Vec<_> = transaction.updates().collect();
            updates.sort_unstable_by(|a, b| a.0.cmp(b.0));
            write_updates(&mut batch, family, updates.into_iter());
        }
        let stores = changelog_offsets.iter().enumerate();
        let reached = stores.filter_map(|(store, offset)| Some((store, (*offset)?)));
        self.put_offsets(&mut batch, reached, absorbed);
        self.write(batch)
    }

    /// Writes `records` of store number `store` (in key order, the last
    /// record of each key), in one batch with the changelog offset they
    /// reached and, at the end of a recovery, what the stores now absorbed.
    pub(crate) fn write_changelog(
        &self,
        records: &ChangelogBatch,
        store: usize,
        next_offset: i64,
        absorbed: Option<Absorbed>,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        let family = self.family(&self.stores[store]);
        write_updates(&mut batch, family, records.in_key_order().into_iter());
        self.put_offsets(&mut batch, [(store, next_offset)], absorbed);
        self.write(batch)
    }

    /// Marks the last checkpoint as not to be trusted: its offset commit
    /// was refused because this instance was no longer the partition's
    /// owner. Without the committed offset it was stamped with, the stores
    /// are rebuilt from the changelog when they are next assigned.
    pub(crate) fn distrust(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.family(META), COMMITTED_OFFSET);
        self.write(batch)
    }

    /// Adds to `batch` the next changelog offset of each `(store, offset)`
    /// and, if given, what the stores absorbed.
    fn put_offsets(
        &self,
        batch: &mut WriteBatch,
        changelog_offsets: impl IntoIterator<Item = (usize, i64)>,
        absorbed: Option<Absorbed>,
    ) {
        let meta = self.family(META);
        for (store, offset) in changelog_offsets {
            batch.put_cf(
                meta,
                changelog_key(&self.stores[store]),
                offset.to_be_bytes(),
            );
        }
        if let Some(absorbed) = absorbed {
            batch.put_cf(meta, INPUT_OFFSET, absorbed.next_input.to_be_bytes());
            match absorbed.committed {
                Some(offset) => batch.put_cf(meta, COMMITTED_OFFSET, offset.to_be_bytes()),
                None => batch.delete_cf(meta, COMMITTED_OFFSET),
            }
        }
    }

    /// The capacity and the usage of the block cache of store number
    /// `store`, as RocksDB reports them.
    #[cfg(test)]
    pub(crate) fn block_cache(&self, store: usize) -> (u64, u64) {
        let family = self.family(&self.stores[store]);
        let property = |name| {
            self.db
                .property_int_value_cf(family, name)
                .unwrap()
                .unwrap()
        };
        (
            property("rocksdb.block-cache-capacity"),
            property("rocksdb.block-cache-usage"),
        )
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        self.db
            .write(batch)
            .map_err(|source| self.failed("write", source))
    }

    fn meta(&self, key: &[u8]) -> Result<Option<i64>> {
        let value = self
            .db
            .get_cf(self.family(META), key)
            .map_err(|source| self.failed("read", source))?;
        Ok(value.and_then(|bytes| bytes.try_into().ok().map(i64::from_be_bytes)))
    }

    fn family(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every store's column family is created when the database opens")
    }

    fn failed(&self, operation: &'static str, source: rocksdb::Error) -> Error {
        Error::Store {
            path: self.path.clone(),
            operation,
            source,
        }
    }
}

/// Deletes the database at `path`.
pub(crate) fn destroy(path: &Path) -> Result<()> {
    DB::destroy(&Options::default(), path).map_err(|source| Error::Store {
        path: path.to_path_buf(),
        operation: "destroy",
        source,
    })?;
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::StateDir {
            path: path.to_path_buf(),
            source: error,
        }),
        _ => Ok(()),
    }
}

/// Adds puts (`Some`) and deletes (`None`) to `batch`.
fn write_updates<'a>(
    batch: &mut WriteBatch,
    family: &ColumnFamily,
    updates: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) {
    for (key, value) in updates {
        match value {
            Some(value) => batch.put_cf(family, key, value),
            None => batch.delete_cf(family, key),
        }
    }
}

fn changelog_key(store: &str) -> Vec<u8> {
    format!("changelog-offset/{store}").into_bytes()
}

/// Whether `error` says that another process (or another handle in this
/// one) holds the lock of the database at `path`. RocksDB words it
/// "IO error: While lock file: <path>/LOCK: <reason>", or "IO error: lock
/// hold by current process, acquire time ...: <path>/LOCK: <reason>"
/// (`env/fs_posix.cc`): nothing else counts, not even an error about a
/// path that happens to contain "lock".
fn is_lock_error(error: &rocksdb::Error, path: &Path) -> bool {
    let text = error.to_string();
    let lock_file = format!("{}: ", path.join("LOCK").display());
    error.kind() == rocksdb::ErrorKind::IOError
        && (text.starts_with("IO error: While lock file: ")
            || text.starts_with("IO error: lock hold by current process"))
        && text.contains(&lock_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> Vec<String> {
        vec!["default".to_string(), "totals".to_string()]
    }

    #[test]
    fn checkpoint_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store =
                PartitionStore::open(dir.path(), &stores(), &StoreOptions::default()).unwrap();
            let mut tx = Transaction::default();
            tx.put(b"k".to_vec(), b"v".to_vec());
            tx.keep_message();
            let mut other = Transaction::default();
            other.put(b"k".to_vec(), b"w".to_vec());
            other.keep_message();
            let absorbed = Absorbed {
                next_input: 42,
                committed: Some(40),
            };
            store
                .write_checkpoint(&[tx, other], &[Some(7), None], Some(absorbed))
                .unwrap();
        }
        let store = PartitionStore::open(dir.path(), &stores(), &StoreOptions::default()).unwrap();
        assert_eq!(
            store.read(0, b"k", |v| v.map(<[u8]>::to_vec)).unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(
            store.read(1, b"k", |v| v.map(<[u8]>::to_vec)).unwrap(),
            Some(b"w".to_vec())
        );
        let absorbed = store.absorbed().unwrap().unwrap();
        assert_eq!((absorbed.next_input, absorbed.committed), (42, Some(40)));
        // A checkpoint whose commit was fenced loses the committed offset it
        // was stamped with, and with it the trust of the next assignment.
        store.distrust().unwrap();
        let absorbed = store.absorbed().unwrap().unwrap();
        assert_eq!((absorbed.next_input, absorbed.committed), (42, None));
        assert_eq!(store.changelog_offset(0).unwrap(), Some(7));
        assert_eq!(store.changelog_offset(1).unwrap(), None);
    }

    #[test]
    fn second_opener_gets_a_locked_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = PartitionStore::open(dir.path(), &stores(), &StoreOptions::default()).unwrap();
        let second = PartitionStore::open(dir.path(), &stores(), &StoreOptions::default());
        assert!(
            matches!(second, Err(Error::StoreLocked { .. })),
            "{:?}",
            second.err()
        );
    }

    #[test]
    fn a_damaged_store_whose_path_mentions_lock_fails_at_once_and_is_not_locked() {
        let dir = tempfile::tempdir().unwrap();
        // A topic named "blocklist": the path contains "lock".
        let path = dir.path().join("blocklist").join("0");
        drop(PartitionStore::open(&path, &stores(), &StoreOptions::default()).unwrap());
        std::fs::write(path.join("CURRENT"), "damaged").unwrap();
        let started = Instant::now();
        let reopened = PartitionStore::open(&path, &stores(), &StoreOptions::default());
        assert!(
            matches!(
                reopened,
                Err(Error::Store {
                    operation: "open",
                    ..
                })
            ),
            "{:?}",
            reopened.err()
        );
        assert!(started.elapsed() < LOCK_PATIENCE, "it waited for a lock");
    }
}
