//! The recovery thread: opens the stores of assigned partitions, decides
//! what each needs ([`plan`]), and reads the changelogs of those that need
//! reading with one consumer, a batch of fetched records at a time, while
//! the poll loop goes on processing the partitions that are ready.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::TopicPartitionList;

use super::batch_writer::{BatchWriter, Written};
use super::manager::{Ready, Recovered};
use super::partition::{End, From, RecoveryPartition};
use super::plan::{after_scan, plan, Committed, Plan, COMMIT_METADATA};
use crate::broker::{committed_offsets, BatchConsumer, Fetched, FetchedRecord};
use crate::error::{Error, Result};
use crate::retriable::is_retriable;
use crate::state::manager::{PartitionState, StoreLayout};

/// How long one read of the changelog reader waits for a record: bounds
/// how late a new recovery or a cancellation is noticed.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often an idle reader's log lines are passed on.
const IDLE_LOGS_EVERY: Duration = Duration::from_secs(1);
/// How long the reader waits for a changelog topic's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How many partitions' stores open at once: an open reads and writes a
/// few files, and may wait for another process to let go of the store.
const OPENERS: usize = 4;

/// How long one request for the group's committed offsets may take.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before asking again after it failed.
const COMMITTED_RETRY: Duration = Duration::from_secs(1);

/// A partition assigned to this instance, for the thread to prepare.
pub(super) struct Assigned {
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    /// The group's committed offset of the partition, once asked.
    pub(super) committed: Option<Committed>,
    pub(super) cancelled: Arc<AtomicBool>,
}

/// The thread's state: a changelog reader, and the partitions it prepares.
pub(super) struct Worker {
    pub(super) reader: BatchConsumer<DefaultConsumerContext>,
    /// How long the broker may stay silent before every recovery fails.
    pub(super) patience: Duration,
    pub(super) active: Active,
}

impl Worker {
    /// Runs until the recovery manager is dropped.
    pub(super) fn run(mut self, queue: &Receiver<Vec<Assigned>>) {
        let reader = &self.reader;
        let consumer = reader.consumer();
        let mut last_heard = Instant::now();
        loop {
            if self.active.recoveries.is_empty() {
                // Idle: wait for work, passing on the reader's log lines
                // meanwhile (a broker it lost, say).
                let assigned = loop {
                    match queue.recv_timeout(IDLE_LOGS_EVERY) {
                        Ok(assigned) => break assigned,
                        Err(RecvTimeoutError::Timeout) => reader.serve_logs(),
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                };
                last_heard = Instant::now();
                self.active.start(consumer, assigned, self.patience);
            }
            for assigned in queue.try_iter() {
                self.active.start(consumer, assigned, self.patience);
            }
            self.active.drop_cancelled(consumer);
            if self.active.recoveries.is_empty() {
                continue;
            }
            let (active, mut heard) = (&mut self.active, false);
            reader.read(POLL_TIMEOUT, |fetched| match fetched {
                Fetched::Record(record) => {
                    heard = true;
                    active.apply(consumer, &record);
                }
                Fetched::End {
                    topic,
                    partition,
                    offset,
                } => {
                    heard = true;
                    active.end(consumer, topic, partition, offset);
                }
                Fetched::Error {
                    topic: Some(topic),
                    partition,
                    error,
                } if is_permanent(&error) => active.fail_reading(consumer, topic, partition, error),
                Fetched::Error { error, .. } => log::warn!("reading changelogs: {error}"),
            });
            // Records of a changelog partition whose recovery started over
            // that came in the same batch were read before it did.
            active.restarted.clear();
            if heard {
                last_heard = Instant::now();
            } else if last_heard.elapsed() > self.patience {
                let unavailable_for = last_heard.elapsed();
                while !self.active.recoveries.is_empty() {
                    let error = Error::BrokerUnavailable { unavailable_for };
                    self.active.finish(consumer, 0, Err(error));
                }
            }
        }
    }
}

/// The partitions being recovered, the writer of their batches, and where
/// to report those that are ready.
pub(super) struct Active {
    pub(super) layout: StoreLayout,
    pub(super) recoveries: Vec<RecoveryPartition>,
    pub(super) writer: BatchWriter,
    pub(super) report: Sender<Recovered>,
    /// Changelog topics whose metadata the reader has fetched.
    pub(super) known_topics: HashSet<String>,
    /// Changelog partitions whose reading started over during the current
    /// batch: its other records of them are stale.
    pub(super) restarted: Vec<(Arc<str>, i32)>,
}

impl Active {
    /// Asks the group's committed offsets of an assignment's partitions,
    /// opens their stores, reports those that need nothing, and starts
    /// reading the changelogs of the others.
    fn start(&mut self, reader: &BaseConsumer, mut assigned: Vec<Assigned>, patience: Duration) {
        if let Err(reason) = ask_committed(reader, &mut assigned, patience) {
            for assigned in assigned {
                let error = Error::RecoveryStopped {
                    topic: assigned.topic.to_string(),
                    partition: assigned.partition,
                    reason: reason.clone(),
                };
                self.report_error(assigned.topic, assigned.partition, error);
            }
            return;
        }
        let mut started = Vec::new();
        for (assigned, opened) in open_all(&self.layout, assigned) {
            let (topic, partition) = (assigned.topic.clone(), assigned.partition);
            match self.prepare(assigned, opened) {
                Ok(Some(recovery)) => started.push(recovery),
                Ok(None) => {}
                Err(error) => self.report_error(topic, partition, error),
            }
        }
        self.assign(reader, started);
    }

    /// Decides what a partition needs: reports it when it is ready, else
    /// returns its recovery.
    fn prepare(
        &mut self,
        assigned: Assigned,
        opened: Option<Result<PartitionState>>,
    ) -> Result<Option<RecoveryPartition>> {
        let Assigned {
            topic,
            partition,
            committed,
            cancelled,
        } = assigned;
        let assigned_at = committed.map(|committed| committed.offset);
        let Some(state) = opened.transpose()? else {
            // Revoked before it was opened.
            self.report_cancelled(topic, partition);
            return Ok(None);
        };
        let local = state.store.absorbed()?;
        let changelogs = state.stores().iter().any(|store| store.changelog.is_some());
        let recovery = match plan(local, committed, changelogs) {
            Plan::Ready { resume, committed } => {
                let seek = resume.filter(|resume| Some(*resume) != assigned_at);
                if let (Some(resume), Some(committed)) = (seek, committed) {
                    log::info!(
                        "state of {topic}[{partition}] already absorbed up to offset {resume}, \
                         past the committed offset {committed} (whose commit failed after the \
                         state was written): resuming there"
                    );
                }
                let ready = Ready {
                    state,
                    seek,
                    committed,
                };
                self.report(topic, partition, Ok(ready));
                return Ok(None);
            }
            Plan::CatchUp { committed } => RecoveryPartition::new(
                topic,
                partition,
                state,
                local,
                Some(committed),
                From::Stored,
            )?,
            Plan::Rebuild { committed } => {
                let absorbed = local.map_or(0, |local| local.next_input);
                log::warn!(
                    "local state of {topic}[{partition}] absorbed input up to offset {absorbed}, \
                     past the committed offset {committed}, and the offsets moved since (reset, \
                     or committed by another instance): rebuilding it from the changelog up to \
                     offset {committed}"
                );
                let state = reopen_empty(&self.layout, &topic, partition, state)?;
                RecoveryPartition::new(
                    topic,
                    partition,
                    state,
                    local,
                    Some(committed),
                    From::Beginning,
                )?
            }
            Plan::Scan => {
                log::info!(
                    "the group has no committed offset of {topic}[{partition}]: reading its \
                     changelog for one"
                );
                RecoveryPartition::new(topic, partition, state, local, None, From::Stored)?
            }
        };
        log::info!(
            "{}[{partition}] needs recovery from its changelog; other partitions go on meanwhile",
            recovery.topic
        );
        Ok(Some(recovery.with_cancel_flag(cancelled)))
    }

    /// Adds the changelog partitions of `recoveries` to what `reader`
    /// reads, in one assignment: librdkafka sends a fetch as soon as a
    /// partition is assigned, and one assigned a moment later waits for
    /// that fetch's answer (a third of a second on tansu) before its own.
    fn assign(&mut self, reader: &BaseConsumer, recoveries: Vec<RecoveryPartition>) {
        if recoveries.is_empty() {
            return;
        }
        // librdkafka looks up the leaders of a topic it has no metadata
        // for on a 1 s timer: asked up front, the first fetch goes out at once.
        // Asked once per topic: if it fails, the timer still finds them.
        for topic in recoveries
            .iter()
            .flat_map(RecoveryPartition::changelog_topics)
        {
            if self.known_topics.insert(topic.to_string()) {
                if let Err(error) = reader.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
                    log::debug!("metadata of {topic}: {error}");
                }
            }
        }
        let mut list = TopicPartitionList::new();
        let assigned = recoveries
            .iter()
            .try_for_each(|recovery| recovery.add_assignment(&mut list))
            .and_then(|()| reader.incremental_assign(&list));
        match assigned {
            Ok(()) => self.recoveries.extend(recoveries),
            // Never assigned, nothing written: reported as they are.
            Err(error) => {
                for recovery in recoveries {
                    let reason = format!("could not assign the changelog partitions: {error}");
                    let error = Error::RecoveryStopped {
                        topic: recovery.topic.to_string(),
                        partition: recovery.partition,
                        reason,
                    };
                    self.report_error(recovery.topic, recovery.partition, error);
                }
            }
        }
    }

    /// Hands a record to the recovery that reads its changelog partition,
    /// and a batch it filled to the writer.
    fn apply(&mut self, reader: &BaseConsumer, record: &FetchedRecord<'_>) {
        let (topic, partition) = (record.topic(), record.partition());
        let Some(index) = self.reading(topic, partition) else {
            // A record fetched before its recovery was cancelled.
            return;
        };
        let restarted = |(changelog, number): &(Arc<str>, i32)| {
            changelog.as_bytes() == topic && *number == partition
        };
        if self.restarted.iter().any(restarted) {
            return;
        }
        match self.recoveries[index].apply(topic, record) {
            Ok(Some(write)) => self.write(reader, write),
            Ok(None) => {}
            Err(error) => self.finish(reader, index, Err(error)),
        }
    }

    /// The reader reached the end of a changelog partition: its last batch
    /// goes to the writer, and a recovery that read all of its changelogs
    /// is over (or, after a scan, starts applying them).
    fn end(&mut self, reader: &BaseConsumer, topic: &[u8], partition: i32, offset: i64) {
        let Some(index) = self.reading(topic, partition) else {
            return;
        };
        match self.recoveries[index].end(topic, offset) {
            End::Read => {}
            End::Write(write) => self.write(reader, write),
            End::Truncated { committed } => {
                // The changelog ends before the records the stores hold:
                // it is not the one they were built from (it was deleted
                // and created again).
                let recovery = self.recoveries.swap_remove(index);
                unassign_changelogs(reader, &recovery);
                log::warn!(
                    "changelog {}[{partition}] ends at offset {offset}, before the records the \
                     stores of {}[{partition}] hold (it was created again): rebuilding them \
                     from it",
                    String::from_utf8_lossy(topic),
                    recovery.topic
                );
                self.start_over(reader, recovery, committed);
                return;
            }
        }
        // Writing may have failed the recovery, which moved others' places.
        let Some(index) = self.reading(topic, partition) else {
            return;
        };
        let recovery = &self.recoveries[index];
        if !recovery.is_done() {
            return;
        }
        let Some(scanned) = recovery.scanned() else {
            let committed = recovery.committed();
            // Its last batches are the ones just handed over.
            let written = self.writer.wait();
            self.settle(reader, written);
            if let Some(index) = self.reading(topic, partition) {
                self.finish(reader, index, Ok((committed, committed)));
            }
            return;
        };
        let local = recovery.local;
        match after_scan(local, scanned) {
            Plan::Rebuild { committed } => {
                let recovery = self.recoveries.swap_remove(index);
                unassign_changelogs(reader, &recovery);
                let (topic, partition) = (recovery.topic.clone(), recovery.partition);
                log::warn!(
                    "the group has no committed offset of {topic}[{partition}], but its \
                     changelog has state: restoring it up to input offset {committed}, the last \
                     one committed before its last checkpoint, and resuming there (outputs of \
                     messages from there on may be produced again)"
                );
                self.start_over(reader, recovery, committed);
            }
            Plan::Ready { resume, committed } => {
                if scanned.newer_records {
                    log::warn!(
                        "the group has no committed offset of {}[{partition}], and its changelog \
                         was written by a build of kstreams that did not stamp one: its records \
                         are not applied",
                        recovery.topic
                    );
                }
                self.finish(reader, index, Ok((resume, committed)));
            }
            Plan::CatchUp { .. } | Plan::Scan => {
                unreachable!("a scan ends in a rebuild or with the partition ready")
            }
        }
    }

    /// Reads the changelogs of `recovery` again from their beginning, into
    /// emptied stores, up to input offset `committed`.
    fn start_over(&mut self, reader: &BaseConsumer, recovery: RecoveryPartition, committed: i64) {
        let (topic, partition) = (recovery.topic.clone(), recovery.partition);
        self.restarted.extend(
            recovery
                .changelog_topics()
                .map(|changelog| (Arc::from(changelog), partition)),
        );
        let layout = &self.layout;
        let rebuilt = recovery.rebuild(committed, |state| {
            reopen_empty(layout, &topic, partition, state)
        });
        match rebuilt {
            Ok(recovery) => self.assign(reader, vec![recovery]),
            Err(error) => self.report_error(topic, partition, error),
        }
    }

    /// Fails the recovery that reads changelog partition `partition` of
    /// `topic`, which the reader cannot read (a permanent error).
    fn fail_reading(
        &mut self,
        reader: &BaseConsumer,
        topic: &[u8],
        partition: i32,
        error: KafkaError,
    ) {
        let Some(index) = self.reading(topic, partition) else {
            log::warn!("reading changelogs: {error}");
            return;
        };
        let recovery = &self.recoveries[index];
        let error = Error::RecoveryStopped {
            topic: recovery.topic.to_string(),
            partition: recovery.partition,
            reason: format!(
                "could not read changelog {}[{partition}]: {error}",
                String::from_utf8_lossy(topic)
            ),
        };
        self.finish(reader, index, Err(error));
    }

    /// Hands `write` to the writer, after failing the recoveries whose
    /// earlier batches failed.
    fn write(&mut self, reader: &BaseConsumer, write: super::batch_writer::ChangelogWrite) {
        let owner = (write.topic.clone(), write.partition);
        let written = self.writer.written();
        self.settle(reader, written);
        if self.position(&owner).is_some() {
            self.writer.write(write);
        }
    }

    /// The recovery that reads changelog partition `partition` of `topic`.
    fn reading(&self, topic: &[u8], partition: i32) -> Option<usize> {
        self.recoveries
            .iter()
            .position(|recovery| recovery.reads(topic, partition))
    }

    fn position(&self, (topic, partition): &(Arc<str>, i32)) -> Option<usize> {
        self.recoveries
            .iter()
            .position(|recovery| recovery.topic == *topic && recovery.partition == *partition)
    }

    /// Fails the recoveries whose batches failed to be written.
    fn settle(&mut self, reader: &BaseConsumer, written: Vec<Written>) {
        for written in written {
            let Written {
                topic,
                partition,
                result: Err(error),
            } = written
            else {
                continue;
            };
            if let Some(index) = self.position(&(topic, partition)) {
                self.finish(reader, index, Err(error));
            }
        }
    }

    /// Ends a recovery: stops reading its changelogs and reports it, once
    /// no batch is being written into its stores; on success, processing
    /// resumes at the first offset of `result`, and checkpoints are
    /// stamped with the second as committed.
    fn finish(
        &mut self,
        reader: &BaseConsumer,
        index: usize,
        result: Result<(Option<i64>, Option<i64>)>,
    ) {
        let pending = self.writer.wait();
        let recovery = self.recoveries.swap_remove(index);
        unassign_changelogs(reader, &recovery);
        let (topic, partition) = (recovery.topic.clone(), recovery.partition);
        if recovery.is_cancelled() {
            drop(recovery);
            self.report_cancelled(topic, partition);
        } else {
            let assigned_at = recovery.assigned_at;
            let ready = result.map(|(resume, committed)| Ready {
                state: recovery.state,
                seek: resume.filter(|resume| Some(*resume) != assigned_at),
                committed,
            });
            self.report(topic, partition, ready);
        }
        self.settle(reader, pending);
    }

    /// Hands a partition back to the recovery manager.
    fn report(&self, topic: Arc<str>, partition: i32, result: Result<Ready>) {
        if let Ok(ready) = &result {
            log::debug!("{topic}[{partition}] is ready: seeking to {:?}", ready.seek);
        }
        // The manager is gone when nobody listens: nothing to report to.
        let _ = self.report.send(Recovered {
            topic,
            partition,
            result,
        });
    }

    fn report_error(&self, topic: Arc<str>, partition: i32, error: Error) {
        self.report(topic, partition, Err(error));
    }

    /// Reports a recovery dropped because its partition was revoked; its
    /// stores are closed already, on this thread, before it prepares the
    /// next assignment (which may open them again).
    fn report_cancelled(&self, topic: Arc<str>, partition: i32) {
        log::info!("recovery of {topic}[{partition}] cancelled: the partition was revoked");
        let error = Error::RecoveryStopped {
            topic: topic.to_string(),
            partition,
            reason: "was cancelled: the partition was revoked".to_string(),
        };
        self.report(topic, partition, Err(error));
    }

    /// Ends the recoveries of revoked partitions.
    fn drop_cancelled(&mut self, reader: &BaseConsumer) {
        while let Some(index) = self
            .recoveries
            .iter()
            .position(RecoveryPartition::is_cancelled)
        {
            self.finish(reader, index, Ok((None, None)));
        }
    }
}

/// Asks the group's committed offsets of `assigned` (one request, asked
/// again while the coordinator is not ready, for up to `patience`) and
/// fills them in.
///
/// # Errors
///
/// Why they could not be had.
fn ask_committed(
    reader: &BaseConsumer,
    assigned: &mut [Assigned],
    patience: Duration,
) -> std::result::Result<(), String> {
    let started = Instant::now();
    loop {
        let mut list = TopicPartitionList::new();
        let live = assigned
            .iter()
            .filter(|assigned| !assigned.cancelled.load(Ordering::Relaxed));
        for assigned in live {
            list.add_partition(&assigned.topic, assigned.partition);
        }
        if list.count() == 0 {
            return Ok(());
        }
        let error = match committed_offsets(reader, list, COMMITTED_TIMEOUT) {
            Ok(offsets) => {
                for assigned in assigned.iter_mut() {
                    let found = offsets.iter().find(|committed| {
                        *committed.topic == *assigned.topic
                            && committed.partition == assigned.partition
                    });
                    assigned.committed = found.and_then(|committed| {
                        Some(Committed {
                            offset: committed.offset?,
                            by_kstreams: committed.metadata == COMMIT_METADATA.as_bytes(),
                        })
                    });
                }
                return Ok(());
            }
            Err(error) => error,
        };
        let code = error.rdkafka_error_code();
        // A group that never committed is unknown to some brokers (tansu).
        if matches!(
            code,
            Some(RDKafkaErrorCode::UnknownGroup | RDKafkaErrorCode::GroupIdNotFound)
        ) {
            return Ok(());
        }
        // A partition's own error (an unstable offset, say) passes too.
        let passing = code.is_some_and(is_retriable) || matches!(error, KafkaError::OffsetFetch(_));
        if !passing || started.elapsed() > patience {
            return Err(format!(
                "could not read the group's committed offset: {error}"
            ));
        }
        log::warn!("cannot read the group's committed offsets yet ({error}); asking again");
        std::thread::sleep(COMMITTED_RETRY);
    }
}

/// Whether an error reading a changelog partition will not pass by
/// itself: the recovery that reads it fails at once, naming it.
fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            TopicAuthorizationFailed
                | GroupAuthorizationFailed
                | ClusterAuthorizationFailed
                | UnknownTopicOrPartition
                | UnknownTopic
                | UnknownPartition
                | UnsupportedVersion
                | UnsupportedForMessageFormat
                | InvalidMessage
                | MessageSizeTooLarge
        )
    )
}

/// Deletes a partition's local state (`state`, closed first) and opens it
/// again, empty.
fn reopen_empty(
    layout: &StoreLayout,
    topic: &str,
    partition: i32,
    state: PartitionState,
) -> Result<PartitionState> {
    drop(state);
    layout.destroy(topic, partition)?;
    layout.open(topic, partition)
}

/// Opens the stores of the partitions in `assigned`, [`OPENERS`] at a
/// time; a partition revoked meanwhile is not opened (`None`).
fn open_all(
    layout: &StoreLayout,
    assigned: Vec<Assigned>,
) -> Vec<(Assigned, Option<Result<PartitionState>>)> {
    let open = |assigned: &Assigned| {
        let revoked = assigned.cancelled.load(Ordering::Relaxed);
        (!revoked).then(|| layout.open(&assigned.topic, assigned.partition))
    };
    if assigned.len() <= 1 {
        let opened: Vec<_> = assigned.iter().map(open).collect();
        return assigned.into_iter().zip(opened).collect();
    }
    let chunk = assigned.len().div_ceil(OPENERS);
    let opened: Vec<_> = std::thread::scope(|scope| {
        let openers: Vec<_> = assigned
            .chunks(chunk)
            .map(|chunk| scope.spawn(move || chunk.iter().map(open).collect::<Vec<_>>()))
            .collect();
        openers
            .into_iter()
            .flat_map(|opener| match opener.join() {
                Ok(opened) => opened,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    assigned.into_iter().zip(opened).collect()
}

/// Stops reading the changelogs of `recovery`.
fn unassign_changelogs(reader: &BaseConsumer, recovery: &RecoveryPartition) {
    if recovery.reads_nothing() {
        return;
    }
    let released = recovery.assignment().and_then(|list| {
        reader
            .incremental_unassign(&list)
            .map_err(|source| Error::Consume {
                source: source.into(),
            })
    });
    if let Err(error) = released {
        log::warn!(
            "releasing the changelogs of {}[{}]: {error}",
            recovery.topic,
            recovery.partition
        );
    }
}
