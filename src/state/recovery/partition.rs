//! One partition's recovery: which changelog partitions it reads, from
//! where, how far it got, and what it does with each record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::batch_writer::ChangelogWrite;
use super::changelog_batch::ChangelogBatch;
use super::plan::Scanned;
use crate::broker::FetchedRecord;
use crate::error::{Error, Result};
use crate::state::changelog;
use crate::state::manager::PartitionState;
use crate::state::rocksdb::Absorbed;

/// Records applied per RocksDB write batch during recovery.
const BATCH: usize = 10_000;
/// Minimum time between two progress lines of one changelog.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// A partition whose stores are read from, or brought up to date with,
/// their changelogs, and the stores themselves meanwhile.
pub(crate) struct RecoveryPartition {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) state: PartitionState,
    /// What the stores had absorbed when the partition was assigned.
    pub(crate) local: Option<Absorbed>,
    /// The group's committed offset when the partition was assigned: where
    /// the consumer starts by itself.
    pub(crate) assigned_at: Option<i64>,
    phase: Phase,
    changelogs: Vec<Range>,
    cancelled: Arc<AtomicBool>,
    /// Set by the writer when one of this recovery's batches failed: the
    /// batches queued after it are not written.
    write_failed: Arc<AtomicBool>,
}

/// What a recovery does with the records it reads.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Finds what the changelogs hold after the stores' records, without
    /// applying any (the group has no committed offset).
    Scan(Scanned),
    /// Applies the records that belong to input before `committed`.
    Apply { committed: i64 },
}

/// What reaching the end of a changelog partition means for a recovery.
pub(crate) enum End {
    /// Nothing to write (a scan, or a range that had ended).
    Read,
    /// The range's last batch, with what the stores then absorbed.
    Write(ChangelogWrite),
    /// The changelog ends before the records the stores hold: it is not
    /// the one they were built from. They must be rebuilt from it up to
    /// input offset `committed`.
    Truncated { committed: i64 },
}

/// Where a recovery starts reading its changelogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// After the records the stores hold.
    Stored,
    /// At the beginning (the stores are empty).
    Beginning,
}

/// One store's changelog partition: where reading started, how far it
/// got, and the records read and not yet written.
struct Range {
    store: usize,
    changelog: Arc<str>,
    start: Offset,
    /// The next changelog offset to read.
    next: i64,
    /// Whether the reader reached the end of the changelog partition.
    ended: bool,
    batch: ChangelogBatch,
    read: u64,
    applied: u64,
    started: Instant,
    last_progress: Instant,
}

impl Range {
    fn new(store: usize, changelog: Arc<str>, start: Offset) -> Self {
        let next = match start {
            Offset::Offset(offset) => offset,
            _ => 0,
        };
        Range {
            store,
            changelog,
            start,
            next,
            ended: false,
            batch: ChangelogBatch::default(),
            read: 0,
            applied: 0,
            started: Instant::now(),
            last_progress: Instant::now(),
        }
    }
}

impl RecoveryPartition {
    /// A recovery of `state`, whose stores absorbed `local`, in a group
    /// whose committed offset is `committed`: a scan for a committed offset
    /// when it has none, else applying the changelogs up to it, reading
    /// `from` where told.
    pub(crate) fn new(
        topic: Arc<str>,
        partition: i32,
        state: PartitionState,
        local: Option<Absorbed>,
        committed: Option<i64>,
        from: From,
    ) -> Result<Self> {
        let mut changelogs = Vec::with_capacity(state.stores().len());
        for (store, spec) in state.stores().iter().enumerate() {
            let Some(changelog) = &spec.changelog else {
                continue;
            };
            let start = match (from, state.store.changelog_offset(store)?) {
                (From::Stored, Some(offset)) => Offset::Offset(offset),
                _ => Offset::Beginning,
            };
            changelogs.push(Range::new(store, changelog.clone(), start));
        }
        let phase = match committed {
            Some(committed) => Phase::Apply { committed },
            None => Phase::Scan(Scanned::default()),
        };
        Ok(RecoveryPartition {
            topic,
            partition,
            state,
            local,
            assigned_at: committed,
            phase,
            changelogs,
            cancelled: Arc::default(),
            write_failed: Arc::default(),
        })
    }

    /// After a scan: applies the changelogs again, from their beginning,
    /// up to `committed`, into the stores `reopen` makes of the current
    /// ones (deleted: the local state is not to be trusted).
    pub(crate) fn rebuild(
        mut self,
        committed: i64,
        reopen: impl FnOnce(PartitionState) -> Result<PartitionState>,
    ) -> Result<Self> {
        let RecoveryPartition { state, .. } = self;
        self = RecoveryPartition {
            state: reopen(state)?,
            phase: Phase::Apply { committed },
            ..self
        };
        for range in &mut self.changelogs {
            *range = Range::new(range.store, range.changelog.clone(), Offset::Beginning);
        }
        Ok(self)
    }

    /// Uses `flag` as its cancel flag, which the recovery's owner sets when
    /// the partition is revoked while it recovers: the recovery is then
    /// dropped; what was applied so far stays, and a later recovery goes
    /// on from there.
    pub(crate) fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancelled = flag;
        self
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Whether it reads no changelog at all.
    pub(crate) fn reads_nothing(&self) -> bool {
        self.changelogs.is_empty()
    }

    /// The changelog partitions to read, each from where it got to.
    pub(crate) fn assignment(&self) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        self.add_assignment(&mut list)
            .map_err(|source| Error::Consume {
                source: source.into(),
            })?;
        Ok(list)
    }

    /// Adds the changelog partitions to read to `list`, each from where it
    /// got to.
    pub(crate) fn add_assignment(&self, list: &mut TopicPartitionList) -> KafkaResult<()> {
        for range in &self.changelogs {
            let position = match (range.read, range.start) {
                (0, start) => start,
                _ => Offset::Offset(range.next),
            };
            list.add_partition_offset(&range.changelog, self.partition, position)?;
        }
        Ok(())
    }

    /// The changelog topics it reads.
    pub(crate) fn changelog_topics(&self) -> impl Iterator<Item = &str> {
        self.changelogs.iter().map(|range| &*range.changelog)
    }

    /// Whether a record of `topic`/`partition` belongs to this recovery.
    pub(crate) fn reads(&self, topic: &[u8], partition: i32) -> bool {
        partition == self.partition && self.range_of(topic).is_some()
    }

    fn range_of(&self, topic: &[u8]) -> Option<usize> {
        self.changelogs
            .iter()
            .position(|range| range.changelog.as_bytes() == topic)
    }

    /// Whether every changelog was read to its end.
    pub(crate) fn is_done(&self) -> bool {
        self.changelogs.iter().all(|range| range.ended)
    }

    /// What a finished scan found; `None` when it applied records instead.
    pub(crate) fn scanned(&self) -> Option<Scanned> {
        match self.phase {
            Phase::Scan(scanned) => Some(scanned),
            Phase::Apply { .. } => None,
        }
    }

    /// The input offset it restores up to; `None` while it scans.
    pub(crate) fn committed(&self) -> Option<i64> {
        match self.phase {
            Phase::Apply { committed } => Some(committed),
            Phase::Scan(_) => None,
        }
    }

    /// Takes one changelog record (of `topic`): while scanning, notes its
    /// stamp; while applying, adds it to its store's batch if it belongs
    /// to committed input, and returns the batch once it is full.
    ///
    /// # Errors
    ///
    /// [`Error::ChangelogRecord`] for a record kstreams did not write.
    pub(crate) fn apply(
        &mut self,
        topic: &[u8],
        record: &FetchedRecord<'_>,
    ) -> Result<Option<ChangelogWrite>> {
        let Some(index) = self.range_of(topic) else {
            return Ok(None);
        };
        let range = &mut self.changelogs[index];
        let offset = record.offset();
        if offset < range.next || range.ended {
            return Ok(None);
        }
        range.next = offset + 1;
        range.read += 1;
        let entry =
            changelog::decode(record.payload(), |name| record.header(name)).map_err(|reason| {
                Error::ChangelogRecord {
                    topic: range.changelog.to_string(),
                    partition: self.partition,
                    offset,
                    reason,
                }
            })?;
        match &mut self.phase {
            Phase::Scan(scanned) => {
                scanned.record(entry.stamp.and_then(|stamp| stamp.committed_offset));
                Ok(None)
            }
            Phase::Apply { committed } => {
                if entry.is_before(*committed) {
                    range
                        .batch
                        .add(record.key().unwrap_or_default(), entry.value);
                    range.applied += 1;
                }
                if range.batch.len() < BATCH {
                    return Ok(None);
                }
                log_progress(range, self.partition);
                Ok(Some(self.write(index, None)))
            }
        }
    }

    /// The reader reached `offset`, the end of the changelog partition of
    /// `topic`. While applying, hands over the range's last batch, which
    /// also records what the stores now absorbed.
    pub(crate) fn end(&mut self, topic: &[u8], offset: i64) -> End {
        let Some(index) = self.range_of(topic) else {
            return End::Read;
        };
        let range = &mut self.changelogs[index];
        if range.ended {
            return End::Read;
        }
        let truncated = matches!(range.start, Offset::Offset(start) if offset < start);
        range.ended = true;
        range.next = range.next.max(offset);
        let (changelog, partition) = (&range.changelog, self.partition);
        let seconds = range.started.elapsed().as_secs_f64().max(1e-6);
        let committed = match &mut self.phase {
            Phase::Scan(scanned) => {
                if truncated {
                    // What the stores hold is not in it: they go.
                    scanned.newer_records = true;
                }
                log::info!(
                    "scanned {changelog}[{partition}]: {} record(s) in {seconds:.2} s",
                    range.read
                );
                return End::Read;
            }
            Phase::Apply { committed } => *committed,
        };
        if truncated {
            return End::Truncated { committed };
        }
        log::info!(
            "recovered {changelog}[{partition}]: applied {} of {} record(s) read in \
             {seconds:.2} s, {:.0}/s",
            range.applied,
            range.read,
            range.read as f64 / seconds
        );
        let absorbed = Absorbed {
            next_input: committed,
            committed: Some(committed),
        };
        End::Write(self.write(index, Some(absorbed)))
    }

    /// The batch of range `index`, to be written with the changelog offset
    /// it reached (and, with `absorbed`, what the stores then absorbed).
    fn write(&mut self, index: usize, absorbed: Option<Absorbed>) -> ChangelogWrite {
        let range = &mut self.changelogs[index];
        ChangelogWrite {
            topic: self.topic.clone(),
            partition: self.partition,
            store: self.state.store.clone(),
            store_index: range.store,
            records: range.batch.take(),
            next_offset: range.next,
            absorbed,
            failed: self.write_failed.clone(),
        }
    }
}

/// Logs a range's progress now and then.
fn log_progress(range: &mut Range, partition: i32) {
    if range.last_progress.elapsed() < PROGRESS_INTERVAL {
        return;
    }
    range.last_progress = Instant::now();
    let seconds = range.started.elapsed().as_secs_f64().max(1e-6);
    log::info!(
        "recovering {}[{partition}]: {} records read, {:.0}/s",
        range.changelog,
        range.read,
        range.read as f64 / seconds
    );
}

#[cfg(test)]
mod tests {
    use std::ptr;

    use rdkafka::types::{RDKafkaMessage, RDKafkaRespErr};

    use super::*;
    use crate::state::changelog::{encode_update, Stamp};
    use crate::state::manager::StoreLayout;

    const CHANGELOG: &[u8] = b"changelog__g--in--default";

    /// A fetched changelog record of `key` at `offset`, with `value` (the
    /// brokers the integration tests use write no transaction markers and
    /// leave no gaps: records are made here).
    fn message(offset: i64, key: &mut [u8], value: &mut [u8]) -> RDKafkaMessage {
        RDKafkaMessage {
            err: RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
            rkt: ptr::null_mut(),
            partition: 0,
            payload: value.as_mut_ptr().cast(),
            len: value.len(),
            key: key.as_mut_ptr().cast(),
            key_len: key.len(),
            offset,
            _private: ptr::null_mut(),
        }
    }

    fn update(input_offset: i64, committed: i64, value: &[u8]) -> Vec<u8> {
        let stamp = Stamp {
            input_offset,
            committed_offset: Some(committed),
        };
        let mut payload = Vec::new();
        encode_update(stamp, value, &mut payload);
        payload
    }

    fn recovery(dir: &std::path::Path, committed: Option<i64>) -> RecoveryPartition {
        let state = StoreLayout::for_tests(dir).open("in", 0).unwrap();
        RecoveryPartition::new("in".into(), 0, state, None, committed, From::Beginning).unwrap()
    }

    #[test]
    fn a_recovery_ends_at_the_end_of_the_partition_past_a_gap_at_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut recovery = recovery(dir.path(), Some(10));
        for (offset, value) in [(0, &b"1"[..]), (1, b"2")] {
            let (mut key, mut value) = (b"k".to_vec(), update(offset, 0, value));
            let record = message(offset, &mut key, &mut value);
            let applied = recovery.apply(CHANGELOG, &FetchedRecord::of(&record));
            assert!(applied.unwrap().is_none(), "a batch is written at its end");
        }
        assert!(!recovery.is_done());
        // Offsets 2 to 4 hold no record (a transaction's marker, records
        // compaction removed): the reader reaches the end at 5.
        let End::Write(write) = recovery.end(CHANGELOG, 5) else {
            panic!("the last batch");
        };
        assert!(recovery.is_done());
        assert_eq!(write.next_offset, 5);
        assert_eq!(write.records.in_key_order(), [(&b"k"[..], Some(&b"2"[..]))]);
        let absorbed = write
            .absorbed
            .expect("the input offset processing resumes from");
        assert_eq!((absorbed.next_input, absorbed.committed), (10, Some(10)));
    }

    #[test]
    fn a_changelog_that_ends_before_what_the_stores_hold_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let state = StoreLayout::for_tests(dir.path()).open("in", 0).unwrap();
        // The stores hold the changelog up to offset 10.
        let records = ChangelogBatch::default();
        state.store.write_changelog(&records, 0, 10, None).unwrap();
        let mut recovery =
            RecoveryPartition::new("in".into(), 0, state, None, Some(4), From::Stored).unwrap();
        assert!(matches!(
            recovery.end(CHANGELOG, 3),
            End::Truncated { committed: 4 }
        ));
    }

    #[test]
    fn a_scan_applies_nothing_and_notes_the_highest_committed_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut recovery = recovery(dir.path(), None);
        for (offset, committed) in [(0, 0), (1, 7), (2, 4)] {
            let (mut key, mut value) = (b"k".to_vec(), update(offset, committed, b"1"));
            let record = message(offset, &mut key, &mut value);
            let applied = recovery.apply(CHANGELOG, &FetchedRecord::of(&record));
            assert!(applied.unwrap().is_none());
        }
        assert!(matches!(recovery.end(CHANGELOG, 3), End::Read));
        assert!(recovery.is_done());
        let scanned = recovery.scanned().expect("a scan");
        assert!(scanned.newer_records);
        assert_eq!(scanned.committed, Some(7));
    }
}
