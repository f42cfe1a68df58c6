//! Recovery: bringing a partition's stores up to date with their changelog
//! topics before its first message is processed.
//!
//! Deciding whether a partition needs it ([`plan`]) is quick and runs when
//! the partition is assigned; reading the changelog can take long and runs
//! on the [`Recoverer`](super::Recoverer)'s thread, which feeds each record
//! to its partition's [`Recovery`], so that partitions which need no
//! recovery are processed meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::batch_writer::ChangelogWrite;
use super::changelog::{changelog_topic, decode_value, OFFSET_HEADER};
use super::changelog_batch::ChangelogBatch;
use super::manager::{PartitionState, StateManager};
use crate::broker::FetchedRecord;
use crate::error::{Error, Result};

/// Records applied per RocksDB write batch during recovery.
const BATCH: usize = 10_000;
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);
/// Minimum time between two progress lines of one changelog.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// What an assigned partition needs before its messages can be processed.
pub(crate) enum Plan {
    /// Its stores are up to date: process it at once, from `resume` when
    /// local state is ahead of the committed offset, else from the
    /// committed offset.
    Ready { resume: Option<i64> },
    /// Its stores are behind their changelogs: run this recovery first.
    Recover(Box<Recovery>),
}

/// The changelog records a partition's stores lack, and the stores
/// themselves while they are being brought up to date.
pub(crate) struct Recovery {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) state: PartitionState,
    /// The group's committed offset of the input partition.
    committed: Option<i64>,
    changelogs: Vec<Range>,
    cancelled: Arc<AtomicBool>,
    /// Set by the writer when one of this recovery's batches failed: the
    /// batches queued after it are not written.
    write_failed: Arc<AtomicBool>,
}

/// The part of one store's changelog to apply, and how far it got.
struct Range {
    store: usize,
    changelog: String,
    start: i64,
    /// The changelog's high watermark when the partition was assigned.
    end: i64,
    /// The next changelog offset to apply.
    next: i64,
    /// Records read and not yet written, with how many of them apply.
    batch: ChangelogBatch,
    applied: u64,
    started: Instant,
    last_progress: Instant,
}

/// Decides what `topic`/`partition` needs before it is processed; with a
/// recovery to run, the partition's stores move out of `manager` into it.
///
/// `committed` is the group's committed offset for the input partition.
/// Local state that is ahead of it (a checkpoint written to RocksDB whose
/// offset commit did not happen) is kept when no other instance wrote to
/// the changelog since, and processing resumes where it ends; otherwise it
/// is discarded and rebuilt from the changelog.
pub(crate) fn plan<C: ConsumerContext>(
    manager: &mut StateManager,
    consumer: &BaseConsumer<C>,
    group: Option<&str>,
    topic: &str,
    partition: i32,
    committed: Option<i64>,
) -> Result<Plan> {
    let stores = manager.stores_of(topic).to_vec();
    let state = manager.open(topic, partition)?;
    let local_next = state.store.input_offset()?;
    let ahead = local_next.is_some_and(|next| Some(next) > committed);
    let Some(group) = group else {
        // Without changelogs the local state is all there is.
        return Ok(Plan::Ready {
            resume: local_next.filter(|_| ahead),
        });
    };
    let mut changelogs = Vec::with_capacity(stores.len());
    for (store, name) in stores.iter().enumerate() {
        let changelog = changelog_topic(group, topic, name, 0).name;
        let (low, high) = consumer
            .fetch_watermarks(&changelog, partition, WATERMARK_TIMEOUT)
            .map_err(|source| Error::Metadata {
                topic: changelog.clone(),
                source: source.into(),
            })?;
        let stored = state.store.changelog_offset(store)?.unwrap_or(0);
        changelogs.push((store, changelog, stored, low, high));
    }
    let others_wrote = changelogs
        .iter()
        .any(|(_, _, stored, _, high)| high > stored);
    if ahead && !others_wrote {
        log::info!(
            "state of {topic}[{partition}] already absorbed up to offset {local_next:?}; \
             resuming there"
        );
        return Ok(Plan::Ready { resume: local_next });
    }
    if ahead {
        log::warn!(
            "local state of {topic}[{partition}] is ahead of the committed offset and the \
             changelog moved on: rebuilding it from the changelog"
        );
        manager.reset(topic, partition)?;
        for changelog in &mut changelogs {
            changelog.2 = 0;
        }
    }
    let changelogs: Vec<Range> = changelogs
        .into_iter()
        .map(|(store, changelog, stored, low, high)| {
            let start = stored.max(low);
            Range {
                store,
                changelog,
                start,
                end: high,
                next: start,
                batch: ChangelogBatch::default(),
                applied: 0,
                started: Instant::now(),
                last_progress: Instant::now(),
            }
        })
        .filter(|range| range.start < range.end)
        .collect();
    if changelogs.is_empty() {
        return Ok(Plan::Ready { resume: None });
    }
    let Some(state) = manager.take(topic, partition) else {
        unreachable!("the partition's stores were opened above");
    };
    Ok(Plan::Recover(Box::new(Recovery {
        topic: manager.topic_name(topic),
        partition,
        state,
        committed,
        changelogs,
        cancelled: Arc::default(),
        write_failed: Arc::default(),
    })))
}

impl Recovery {
    /// A flag set when the partition is revoked while it recovers: the
    /// recoverer then drops it; what was applied so far stays, and a later
    /// recovery goes on from there.
    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The number of changelog records to read.
    pub(crate) fn records(&self) -> i64 {
        self.changelogs
            .iter()
            .map(|range| range.end - range.start)
            .sum()
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
            list.add_partition_offset(
                &range.changelog,
                self.partition,
                Offset::Offset(range.next),
            )?;
        }
        Ok(())
    }

    /// The changelog topics it reads.
    pub(crate) fn changelog_topics(&self) -> impl Iterator<Item = &str> {
        self.changelogs.iter().map(|range| range.changelog.as_str())
    }

    /// Whether a record of `topic`/`partition` belongs to this recovery.
    pub(crate) fn reads(&self, topic: &[u8], partition: i32) -> bool {
        partition == self.partition
            && self
                .changelogs
                .iter()
                .any(|range| range.changelog.as_bytes() == topic)
    }

    /// Whether every changelog is applied up to its end.
    pub(crate) fn is_done(&self) -> bool {
        self.changelogs.iter().all(|range| range.next >= range.end)
    }

    /// Applies one changelog record (of `topic`) in large write batches:
    /// returns a batch when it is full or its changelog is complete, to be
    /// written with the changelog offset it reaches (and the last one with
    /// where the input resumes). Records stamped with an input offset at or
    /// past the committed one belong to a checkpoint that never finished and
    /// are skipped, so that the state equals the fold of exactly the input
    /// before the committed offset.
    pub(crate) fn apply(
        &mut self,
        topic: &[u8],
        record: &FetchedRecord<'_>,
    ) -> Result<Option<ChangelogWrite>> {
        let committed = self.committed;
        let Some(range) = self
            .changelogs
            .iter_mut()
            .find(|range| range.changelog.as_bytes() == topic)
        else {
            return Ok(None);
        };
        let offset = record.offset();
        if offset < range.next || range.next >= range.end {
            return Ok(None);
        }
        range.next = offset + 1;
        let (input_offset, value) = match record.payload() {
            Some(payload) => {
                let (offset, value) =
                    decode_value(payload).ok_or_else(|| Error::ChangelogRecord {
                        topic: range.changelog.clone(),
                        partition: self.partition,
                        offset,
                        reason: "its value is too short to start with the input offset",
                    })?;
                (Some(offset), Some(value))
            }
            None => (tombstone_input_offset(record), None),
        };
        if belongs_to_committed_input(input_offset, committed) {
            range.batch.add(record.key().unwrap_or_default(), value);
            range.applied += 1;
        }
        let finished = range.next >= range.end;
        if range.batch.len() < BATCH && !finished {
            return Ok(None);
        }
        log_progress(range, self.partition, finished);
        // The last batch also records where the input resumes.
        let input = finished.then_some(committed).flatten();
        Ok(Some(ChangelogWrite {
            topic: self.topic.clone(),
            partition: self.partition,
            store: self.state.store.clone(),
            store_index: range.store,
            records: range.batch.take(),
            next_offset: range.next,
            input_offset: input,
            failed: self.write_failed.clone(),
        }))
    }
}

/// Logs a range's progress now and then, and its end.
fn log_progress(range: &mut Range, partition: i32, finished: bool) {
    let (changelog, total) = (&range.changelog, range.end - range.start);
    let seconds = range.started.elapsed().as_secs_f64().max(1e-6);
    let done = range.next - range.start;
    if finished {
        log::info!(
            "recovered {changelog}[{partition}]: applied {} of {total} record(s) in \
             {seconds:.2} s, {:.0}/s",
            range.applied,
            total as f64 / seconds
        );
    } else if range.last_progress.elapsed() >= PROGRESS_INTERVAL {
        range.last_progress = Instant::now();
        log::info!(
            "recovering {changelog}[{partition}]: {done}/{total} records, {:.0}/s",
            done as f64 / seconds
        );
    }
}

/// The input offset a tombstone belongs to, from its header.
fn tombstone_input_offset(record: &FetchedRecord<'_>) -> Option<i64> {
    record
        .header(OFFSET_HEADER)
        .and_then(|value| value.try_into().ok())
        .map(i64::from_be_bytes)
}

/// Whether a changelog record stamped with `input_offset` belongs to input
/// that was committed (a tombstone without the stamp counts as committed).
fn belongs_to_committed_input(input_offset: Option<i64>, committed: Option<i64>) -> bool {
    match (input_offset, committed) {
        (Some(offset), Some(committed)) => offset < committed,
        (Some(_), None) => false,
        (None, _) => true,
    }
}
