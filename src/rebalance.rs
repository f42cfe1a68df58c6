//! What happens when the consumer group moves partitions.
//!
//! - Assigned: a stateful partition is paused at once, and the poll loop
//!   hands it to the recovery thread, which asks the group's committed
//!   offset, opens its stores and brings them up to date; it is processed
//!   once they are, from the offset recovery decided. Partitions without
//!   state are processed at once, and so are those that become ready
//!   while others still recover. The rebalance callback itself only
//!   assigns and pauses: nothing in it waits for the broker or the disk.
//! - Revoked: what was processed is checkpointed, then the stores close.
//! - Lost (the session expired, or the loop was blocked past
//!   `max.poll.interval.ms`, and the group gave the partitions to others):
//!   nothing is written, produced or committed for them; the updates in
//!   memory are dropped and RocksDB stays as of the last checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::broker::{committed_offsets, OutputProducer};
use crate::checkpoint::{Checkpoint, Outcome};
use crate::dataframe::is_repartition_topic;
use crate::error::{Error, Result};
use crate::on_error::ErrorPolicy;
use crate::state::{Ready, Recovered, RecoveryManager, StateManager};

/// How long an assignment waits for the recovery cancelled at the
/// partition's last revocation to let go of its stores.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a seek to where a recovered partition resumes may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a recovered partition may wait for its seek to be accepted:
/// librdkafka refuses one until the partition's fetcher started, after
/// the consumer's own committed offset request.
const SEEK_PATIENCE: Duration = Duration::from_secs(60);

/// What the poll loop and the rebalance callbacks share.
pub(crate) struct LoopState {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) producer: Arc<OutputProducer>,
    pub(crate) policy: ErrorPolicy,
    pub(crate) stores: StateManager,
    /// Prepares assigned stateful partitions; `None` without state.
    recovery: Option<RecoveryManager>,
    /// Stateful partitions assigned (and paused) whose recovery is still
    /// to be started.
    assigned: Vec<(Arc<str>, i32)>,
    /// Partitions assigned whose messages the poll loop still has to send
    /// to its input queue.
    new_partitions: Vec<(Arc<str>, i32)>,
    /// Partitions without state that an aborted checkpoint took back to
    /// their last commit by a seek, since the poll loop last asked.
    sought_back: Vec<(Arc<str>, i32)>,
    /// Messages of stateful partitions that arrived before the partition
    /// was ready (fetched before it was paused): its processing starts at
    /// the first of them at the latest.
    early: Vec<(Arc<str>, i32, i64)>,
    /// Recovered partitions still paused until the consumer accepts a
    /// seek to where they resume, with when it was first tried.
    seeking: Vec<(Arc<str>, i32, i64, Instant)>,
    /// An error raised inside a callback, for the loop to return.
    pub(crate) failure: Option<Error>,
}

impl LoopState {
    /// The partitions recovered but still paused until the consumer
    /// accepts the seek to where they resume: their messages since that
    /// offset are not processed yet.
    pub(crate) fn seeking(&self) -> Vec<(Arc<str>, i32)> {
        self.seeking
            .iter()
            .map(|(topic, partition, _, _)| (topic.clone(), *partition))
            .collect()
    }

    pub(crate) fn new(
        checkpoint: Checkpoint,
        producer: Arc<OutputProducer>,
        policy: ErrorPolicy,
        stores: StateManager,
        recovery: Option<RecoveryManager>,
    ) -> Self {
        LoopState {
            checkpoint,
            producer,
            policy,
            stores,
            recovery,
            assigned: Vec::new(),
            new_partitions: Vec::new(),
            sought_back: Vec::new(),
            early: Vec::new(),
            seeking: Vec::new(),
            failure: None,
        }
    }

    /// Runs the checkpoint; an error is kept for the loop. Returns whether
    /// everything processed is committed.
    fn checkpoint<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> bool {
        match self.commit_checkpoint(consumer) {
            Ok(outcome) => matches!(outcome, Outcome::Committed | Outcome::Empty),
            Err(error) => {
                self.failure.get_or_insert(error);
                false
            }
        }
    }

    /// Commits what was processed (see [`Checkpoint::commit`]); after an
    /// aborted transaction, rewinds to the last commit.
    pub(crate) fn commit_checkpoint<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<Outcome> {
        let outcome =
            self.checkpoint
                .commit(consumer, &self.producer, &self.policy, &mut self.stores)?;
        if outcome == Outcome::Aborted {
            self.rewind(consumer)?;
        }
        Ok(outcome)
    }

    /// Exactly once: aborts the open transaction and rewinds (below).
    fn abort_and_rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        self.producer.abort_transaction()?;
        self.rewind(consumer)
    }

    /// After an aborted transaction, takes every partition with work since
    /// the last commit back to it: a stateful one drops its updates and
    /// goes through recovery again, as if just assigned (its stores hold
    /// the last commit, and recovery decides where it resumes); the others
    /// seek back to the first message processed since.
    fn rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let mut stateful = TopicPartitionList::new();
        let mut firsts = Vec::new();
        for (topic, partition, first) in self.checkpoint.take_uncommitted() {
            if self.stores.is_stateful_topic(&topic) {
                stateful.add_partition(&topic, partition);
                firsts.push((topic, partition, first));
                continue;
            }
            consumer
                .seek(&topic, partition, Offset::Offset(first), SEEK_TIMEOUT)
                .map_err(consume_error)?;
            log::info!("{topic}[{partition}] goes back to offset {first}");
            self.sought_back.push((topic, partition));
        }
        // State written between messages (an idle window's tick) too.
        for (topic, partition, state) in self.stores.partitions_mut() {
            let known = stateful.find_partition(topic, partition).is_some();
            if !known && state.has_updates() {
                stateful.add_partition(topic, partition);
            }
        }
        log::info!("{} go back to their last commit", describe(&stateful));
        self.release(&stateful);
        // The consumer's position is past those messages: unless recovery
        // says where to resume, it is the first of them.
        self.early.extend(firsts);
        self.assigned(consumer, &stateful)
    }

    /// Takes newly assigned partitions: the stateful ones are paused until
    /// their stores are ready.
    fn assigned<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) -> Result<()> {
        let mut stateful = TopicPartitionList::new();
        for element in partitions.elements() {
            if self.stores.is_stateful_topic(element.topic()) {
                stateful.add_partition(element.topic(), element.partition());
                let topic = self.stores.topic_name(element.topic());
                self.assigned.push((topic, element.partition()));
            }
        }
        if stateful.count() > 0 {
            consumer.pause(&stateful).map_err(consume_error)?;
        }
        Ok(())
    }

    /// Lets go of revoked (or lost) partitions: stops their recoveries,
    /// forgets their uncommitted offsets and closes their stores, dropping
    /// the updates that were not checkpointed.
    fn release(&mut self, partitions: &TopicPartitionList) {
        self.checkpoint.forget(partitions);
        for element in partitions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            if let Some(recovery) = &mut self.recovery {
                recovery.cancel(topic, partition);
            }
            let gone = |t: &Arc<str>, p: i32| **t == *topic && p == partition;
            self.assigned.retain(|(t, p)| !gone(t, *p));
            self.new_partitions.retain(|(t, p)| !gone(t, *p));
            self.early.retain(|(t, p, _)| !gone(t, *p));
            self.seeking.retain(|(t, p, _, _)| !gone(t, *p));
            self.stores.close(topic, partition);
        }
    }

    /// The partitions without state sought back to their last commit since
    /// the last call (see [`LoopState::rewind`]): the messages of theirs
    /// the poll loop took already come again.
    pub(crate) fn take_sought_back(&mut self) -> Vec<(Arc<str>, i32)> {
        std::mem::take(&mut self.sought_back)
    }

    /// The partitions assigned since the last call.
    pub(crate) fn take_new_partitions(&mut self) -> Vec<(Arc<str>, i32)> {
        std::mem::take(&mut self.new_partitions)
    }

    /// Hands the partitions assigned since the last call to the recovery
    /// thread.
    ///
    /// # Errors
    ///
    /// A recovery cancelled at a revocation that still holds the stores.
    pub(crate) fn start_recoveries(&mut self) -> Result<()> {
        let Some(recovery) = &mut self.recovery else {
            return Ok(());
        };
        if self.assigned.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        for (topic, partition) in &self.assigned {
            // A recovery cancelled when the partition was last revoked
            // may still hold its stores.
            recovery.release(topic, *partition, deadline)?;
        }
        recovery.submit(std::mem::take(&mut self.assigned));
        Ok(())
    }

    /// Whether a partition is waiting for its stores.
    pub(crate) fn is_recovering(&self) -> bool {
        !self.assigned.is_empty()
            || !self.seeking.is_empty()
            || self.recovery.as_ref().is_some_and(RecoveryManager::is_busy)
    }

    /// Notes a message of a stateful partition that is not ready: it is not
    /// processed now, and its partition's processing starts at it at the
    /// latest.
    pub(crate) fn hold_early(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let known = self
            .early
            .iter()
            .any(|(t, p, _)| t == topic && *p == partition);
        if !known {
            log::debug!("{topic}[{partition}] sent offset {offset} before it was ready");
            self.early.push((topic.clone(), partition, offset));
        }
    }

    /// Takes back the stores of partitions that are ready and resumes
    /// fetching them, from where recovery decided.
    ///
    /// # Errors
    ///
    /// The error of a failed recovery.
    pub(crate) fn resume_recovered<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        let Some(recovery) = &mut self.recovery else {
            return Ok(());
        };
        for Recovered {
            topic,
            partition,
            result,
        } in recovery.collect()
        {
            let Ready {
                state,
                seek,
                committed,
            } = result?;
            let early = self
                .early
                .iter()
                .position(|(t, p, _)| *t == topic && *p == partition)
                .map(|index| self.early.swap_remove(index).2);
            self.stores.insert(&topic, partition, state, committed);
            match seek.or(early) {
                Some(offset) => self
                    .seeking
                    .push((topic, partition, offset, Instant::now())),
                None => {
                    resume(consumer, &topic, partition)?;
                    log::info!("{topic}[{partition}] is up to date: processing it");
                }
            }
        }
        self.seek_recovered(consumer)
    }

    /// Seeks the recovered partitions that resume elsewhere than the
    /// consumer starts by itself, and resumes those it accepted.
    ///
    /// # Errors
    ///
    /// A seek the consumer still refuses after [`SEEK_PATIENCE`].
    fn seek_recovered<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let mut index = 0;
        while index < self.seeking.len() {
            let (topic, partition, offset, since) = &self.seeking[index];
            match consumer.seek(topic, *partition, Offset::Offset(*offset), SEEK_TIMEOUT) {
                Ok(()) => {
                    resume(consumer, topic, *partition)?;
                    log::info!(
                        "{topic}[{partition}] is up to date: processing it from offset {offset}"
                    );
                    self.seeking.swap_remove(index);
                }
                Err(error) if since.elapsed() > SEEK_PATIENCE => {
                    return Err(Error::RecoveryStopped {
                        topic: topic.to_string(),
                        partition: *partition,
                        reason: format!("could not seek to offset {offset}: {error}"),
                    })
                }
                // Refused until the partition's fetcher started.
                Err(_) => index += 1,
            }
        }
        Ok(())
    }
}

/// Lets the consumer fetch `partition` of `topic` again.
fn resume<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Result<()> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    consumer.resume(&list).map_err(consume_error)
}

fn consume_error(source: KafkaError) -> Error {
    Error::Consume {
        source: source.into(),
    }
}

/// The consumer's context: checkpoints on revoke, pauses stateful
/// partitions on assign.
pub(crate) struct RebalanceContext {
    pub(crate) state: Arc<Mutex<LoopState>>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let mut state = self.state.lock();
        match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                log::info!("partitions assigned: {}", describe(partitions));
                if let Err(error) = start_new_repartitions_at_beginning(consumer, partitions) {
                    state.failure.get_or_insert(error);
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                };
                if let Err(error) = assigned {
                    log::warn!("assigning {} failed: {error}", describe(partitions));
                }
                for element in partitions.elements() {
                    let topic = state.stores.topic_name(element.topic());
                    state.new_partitions.push((topic, element.partition()));
                }
                // Recovery first: a stateful partition waits for its stores.
                if let Err(error) = state.assigned(consumer, partitions) {
                    state.failure.get_or_insert(error);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                let committed = if lost {
                    log::warn!(
                        "partitions lost (session expired or max.poll.interval.ms exceeded): {}; \
                         dropping what was processed since the last checkpoint without writing \
                         it: their new owner processes it again",
                        describe(partitions)
                    );
                    false
                } else {
                    log::info!("partitions revoked: {}", describe(partitions));
                    state.checkpoint(consumer)
                };
                // What is still on its way to the broker must not land
                // after what the new owners write. It can be dropped when
                // every partition goes: the new owners process it again.
                let everything = consumer
                    .assignment()
                    .is_ok_and(|assignment| assignment.count() <= partitions.count());
                if !committed && !lost && state.producer.is_transactional() {
                    // Exactly once, the open transaction holds records of
                    // the revoked partitions: it goes, and the partitions
                    // that stay go back to their last commit.
                    if let Err(error) = state.abort_and_rewind(consumer) {
                        state.failure.get_or_insert(error);
                    }
                } else if !committed && (everything || lost) {
                    if let Err(error) = state.producer.purge() {
                        state.failure.get_or_insert(error);
                    }
                }
                state.release(partitions);
                let unassigned = if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                };
                // An assignment already lost cannot be released; the group
                // moves on without us either way.
                if let Err(error) = unassigned {
                    log::warn!("releasing {} failed: {error}", describe(partitions));
                }
            }
            other => {
                log::warn!("rebalance failed: {other:?}");
                state.release(partitions);
                let unassigned = if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                };
                if let Err(error) = unassigned {
                    log::warn!("releasing the assignment failed: {error}");
                }
            }
        }
    }
}

/// How long the assignment waits for the committed offsets of the
/// repartition partitions it got.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes each assigned partition of a repartition topic that the group
/// never committed start at its beginning, whatever `auto_offset_reset`
/// says: its records were all produced for this group (Kafka Streams does
/// the same for its internal topics). The one wait for the broker in an
/// assignment, and only with a `group_by`.
///
/// # Errors
///
/// [`Error::Consume`] when the committed offsets cannot be read.
fn start_new_repartitions_at_beginning<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &mut TopicPartitionList,
) -> Result<()> {
    let mut repartitions = TopicPartitionList::new();
    for element in partitions.elements() {
        if is_repartition_topic(element.topic()) {
            repartitions.add_partition(element.topic(), element.partition());
        }
    }
    if repartitions.count() == 0 {
        return Ok(());
    }
    let fetched = committed_offsets(consumer, repartitions, COMMITTED_TIMEOUT);
    let committed = fetched.map_err(|source| Error::Consume {
        source: source.into(),
    })?;
    for partition in committed.iter().filter(|known| known.offset.is_none()) {
        let (topic, number) = (&partition.topic, partition.partition);
        let start = partitions.set_partition_offset(topic, number, Offset::Beginning);
        start.map_err(|source| Error::Consume {
            source: source.into(),
        })?;
        log::info!("{topic}[{number}] has no committed offset: starting at its beginning");
    }
    Ok(())
}

fn describe(list: &TopicPartitionList) -> String {
    let parts: Vec<String> = list
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}
