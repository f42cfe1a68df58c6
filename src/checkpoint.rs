//! The checkpoint: what was processed since the last commit, and the commit
//! itself, whose order keeps invariant 1 of the design ("offsets last").

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::{committed_offsets, Ended, Origin, OutputProducer};
use crate::checkpoint_schedule::CheckpointSchedule;
use crate::config::{Config, ProcessingGuarantee};
use crate::error::{Error, Result};
use crate::on_error::ErrorPolicy;
use crate::retriable::{is_fenced, is_retriable};
use crate::state::{StateManager, COMMIT_METADATA};

/// How long a checkpoint waits for the broker to acknowledge outputs before
/// it gives up and tries again at the next one. Long enough for a busy
/// broker, short enough that an outage does not freeze the loop.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Exactly once: how many checkpoints in a row may be aborted for a
/// refused output the producer error callback skips, before the refusal
/// stops the application (a record the broker refuses every time).
const MAX_ABORTS_IN_A_ROW: u32 = 3;

/// What a commit attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Offsets were committed.
    Committed,
    /// Nothing was processed since the last commit.
    Empty,
    /// The broker was not ready (slow acknowledgements, coordinator moving):
    /// nothing was committed, the next checkpoint tries again.
    Deferred,
    /// The instance is no longer a member of the group (its session
    /// expired, or the loop was blocked past `max.poll.interval.ms`): its
    /// partitions belong to others now, and nothing more of them may be
    /// written. The next poll drops them.
    Lost,
    /// Exactly once: the checkpoint's transaction was aborted. What was
    /// processed since the last commit must be undone and processed
    /// again: see [`Checkpoint::take_uncommitted`].
    Aborted,
}

/// The offsets processed since the last commit.
pub(crate) struct Checkpoint {
    /// Per input partition, the offset after the last processed message.
    offsets: HashMap<(Arc<str>, i32), i64>,
    /// Exactly once: per input partition, the first message processed
    /// since the last commit, where an aborted checkpoint rewinds to.
    /// `None` at least once (never rewound).
    first: Option<HashMap<(Arc<str>, i32), i64>>,
    /// Exactly once: whether the broker keeps the offsets committed in a
    /// transaction (`None` until the first commit tells; librdkafka's mock
    /// cluster does not, and then gets them committed after each
    /// transaction too).
    keeps_transaction_offsets: Option<bool>,
    /// Exactly once: checkpoints aborted since the last commit.
    aborts_in_a_row: u32,
    schedule: CheckpointSchedule,
    /// Set once a failed output stopped the application: from then on
    /// nothing may be committed, or offsets would skip the lost output.
    poisoned: bool,
}

impl Checkpoint {
    pub(crate) fn new(config: &Config) -> Self {
        let exactly_once = config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
        Checkpoint {
            offsets: HashMap::default(),
            first: exactly_once.then(HashMap::default),
            keeps_transaction_offsets: None,
            aborts_in_a_row: 0,
            schedule: CheckpointSchedule::new(config),
            poisoned: false,
        }
    }

    /// Marks the message at `origin` as processed (or deliberately skipped).
    pub(crate) fn store_offset(&mut self, origin: &Origin) {
        let next = origin.offset + 1;
        let key = (origin.topic.clone(), origin.partition);
        if let Some(first) = self
            .first
            .as_mut()
            .filter(|first| !first.contains_key(&key))
        {
            first.insert(key.clone(), origin.offset);
        }
        // Offsets of a partition only grow while we own it; a smaller one
        // means the partition was re-read from an older commit, and the
        // commit must then follow what was really processed.
        if let Some(previous) = self.offsets.insert(key, next) {
            if previous > next {
                log::debug!(
                    "offset of {}[{}] went back from {previous} to {next}",
                    origin.topic,
                    origin.partition
                );
            }
        }
        self.schedule.processed();
    }

    /// Whether the next checkpoint is due: see [`CheckpointSchedule::is_due`].
    pub(crate) fn is_due(&mut self, pending_state_bytes: impl FnOnce() -> usize) -> bool {
        self.schedule.is_due(pending_state_bytes)
    }

    /// Refused messages: a changelog record stops the application; an
    /// output is skipped by choice, or stops it. Stopping forbids any
    /// further commit.
    fn handle_failures(&mut self, producer: &OutputProducer, policy: &ErrorPolicy) -> Result<()> {
        for failure in producer.take_failures() {
            let stop = match failure {
                Error::ChangelogProduce { .. } => Err(failure),
                output => policy.producer(output),
            };
            if let Err(error) = stop {
                self.poison();
                return Err(error);
            }
        }
        Ok(())
    }

    /// Exactly once: aborts the checkpoint's transaction because of
    /// `cause` (a refused record, or the broker's word). A refused
    /// changelog record stops the application, and so does a refused
    /// output unless the producer error callback says skip, which here
    /// means: process the checkpoint's messages again.
    fn abort(
        &mut self,
        producer: &OutputProducer,
        policy: &ErrorPolicy,
        cause: Error,
    ) -> Result<Outcome> {
        log::warn!("aborting the checkpoint's transaction: {cause}");
        self.schedule.deferred();
        self.aborts_in_a_row += 1;
        let stop = match cause {
            Error::ChangelogProduce { .. } => Err(cause),
            // Refused each time it is processed again: skipping cannot
            // get past it.
            Error::Produce { .. } | Error::Send { .. }
                if self.aborts_in_a_row >= MAX_ABORTS_IN_A_ROW =>
            {
                log::error!(
                    "{MAX_ABORTS_IN_A_ROW} checkpoints in a row were aborted: stopping on the \
                     last refusal"
                );
                Err(cause)
            }
            Error::Produce { .. } | Error::Send { .. } => policy.producer_in_transaction(cause),
            _ => Ok(()),
        };
        if let Err(error) = producer.abort_transaction().and(stop) {
            self.poison();
            return Err(error);
        }
        Ok(Outcome::Aborted)
    }

    /// After an aborted checkpoint: forgets its offsets and returns, per
    /// input partition, the first message it processed, to go back to.
    pub(crate) fn take_uncommitted(&mut self) -> Vec<(Arc<str>, i32, i64)> {
        self.offsets.clear();
        let first = self.first.as_mut().map(std::mem::take).unwrap_or_default();
        first
            .into_iter()
            .map(|((topic, partition), offset)| (topic, partition, offset))
            .collect()
    }

    /// Forbids any further commit: see `poisoned`.
    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Commits what was processed, in this order:
    ///
    /// 0. Unless the consumer lost its assignment: then nothing is written
    ///    (the partitions have a new owner, who moved on).
    /// 1. Produce every store update of the checkpoint to its changelog,
    ///    stamped with the input it belongs to; not before every changelog
    ///    record of an earlier (deferred) checkpoint was answered (waiting
    ///    as in step 2) and none refused (handled as in step 3), so that
    ///    each key's records reach the changelog in order.
    /// 2. Flush the producer: wait until the broker has acknowledged (or
    ///    refused) every output and changelog record sent so far.
    /// 3. Stop without committing on a refused changelog record; hand each
    ///    refused output to the producer error callback, and unless it
    ///    says skip, stop without committing.
    /// 4. Write each partition's store updates, the changelog offsets they
    ///    reached and what they absorbed of the input in one RocksDB batch
    ///    (the updates then stay in memory as a cache, while they fit).
    /// 5. Commit the consumer offsets, synchronously.
    ///
    /// # Errors
    ///
    /// A refused changelog record, a refused output the callback did not
    /// skip, or a commit error that is not retriable.
    pub(crate) fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        producer: &OutputProducer,
        policy: &ErrorPolicy,
        stores: &mut StateManager,
    ) -> Result<Outcome> {
        if self.poisoned {
            return Ok(Outcome::Deferred);
        }
        if self.offsets.is_empty() && !stores.has_updates() && !producer.has_open_transaction() {
            self.schedule.checkpointed();
            return Ok(Outcome::Empty);
        }
        // Step 0. A zombie writes nothing.
        if consumer.assignment_lost() {
            // Once an interval: the next poll drops the partitions.
            self.schedule.deferred();
            log::warn!(
                "the consumer lost its assignment (session expired or max.poll.interval.ms \
                 exceeded): dropping the checkpoint of {} message(s) without writing it",
                self.schedule.pending()
            );
            if let Err(error) = producer.abort_transaction() {
                // Its state unknown, no later transaction may commit.
                self.poison();
                return Err(error);
            }
            return Ok(Outcome::Lost);
        }
        // Step 1. State updates to the changelogs, once every earlier
        // changelog record was answered, and none refused: librdkafka may
        // still retry one of a deferred checkpoint, and it must not land
        // after a newer value of its key (compaction keeps the last).
        if producer.changelog_in_flight() && !producer.flush(FLUSH_TIMEOUT) {
            log::warn!(
                "changelog records of an earlier checkpoint not acknowledged within \
                 {FLUSH_TIMEOUT:?}; will retry"
            );
            self.schedule.deferred();
            return Ok(Outcome::Deferred);
        }
        if producer.is_transactional() {
            if let Some(refused) = producer.take_failures().into_iter().next() {
                return self.abort(producer, policy, refused);
            }
        } else {
            self.handle_failures(producer, policy)?;
        }
        if let Err(error) = produce_changelogs(producer, stores) {
            if producer.is_transactional() {
                // librdkafka refuses records once an earlier one made the
                // transaction abortable: that one is the cause.
                producer.flush(FLUSH_TIMEOUT);
                let refused = producer.take_failures().into_iter().next();
                return self.abort(producer, policy, refused.unwrap_or(error));
            }
            self.poison();
            return Err(error);
        }
        // Step 2. Every output and changelog record acknowledged or refused.
        if !producer.flush(FLUSH_TIMEOUT) {
            log::warn!("outputs not acknowledged within {FLUSH_TIMEOUT:?}; will retry");
            self.schedule.deferred();
            return Ok(Outcome::Deferred);
        }
        // Step 3. Refused messages.
        if producer.is_transactional() {
            if let Some(refused) = producer.take_failures().into_iter().next() {
                return self.abort(producer, policy, refused);
            }
            return self.commit_transaction(consumer, producer, policy, stores);
        }
        self.handle_failures(producer, policy)?;
        // Step 4. State, with the changelog and input offsets it reached.
        self.write_state(producer, stores)?;
        // Step 5. Offsets last (none when only ticks between messages
        // wrote state).
        if self.offsets.is_empty() {
            self.schedule.checkpointed();
            return Ok(Outcome::Committed);
        }
        let offsets = self.offsets_to_commit()?;
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => {
                self.committed(stores);
                Ok(Outcome::Committed)
            }
            Err(KafkaError::ConsumerCommit(code)) if is_fenced(code) => {
                // librdkafka marked the assignment lost before the commit
                // returned: the next poll drops the partitions. The state
                // written in step 4 is not to be trusted when they come
                // back (another instance may have moved on).
                log::warn!(
                    "offsets not committed ({code}): this instance is no longer a member of \
                     the group; its partitions go to others"
                );
                self.schedule.deferred();
                for (topic, partition) in self.offsets.keys() {
                    if let Some(state) = stores.get_mut(topic, *partition) {
                        state.store.distrust()?;
                    }
                }
                Ok(Outcome::Lost)
            }
            Err(KafkaError::ConsumerCommit(code)) if is_retriable(code) => {
                log::warn!("cannot commit offsets yet ({code}); will retry");
                self.schedule.deferred();
                Ok(Outcome::Deferred)
            }
            Err(source) => Err(Error::Commit {
                source: source.into(),
            }),
        }
    }

    /// Exactly once, after steps 1-3 (every record of the checkpoint is in
    /// its transaction, and acknowledged):
    ///
    /// 4. Commit the transaction with the consumer offsets in it (aborted
    ///    when the broker says so).
    /// 5. Only then write each partition's state, as in step 4 at least
    ///    once: a crash before leaves RocksDB behind the commit, and
    ///    recovery catches it up from the changelog.
    fn commit_transaction<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        producer: &OutputProducer,
        policy: &ErrorPolicy,
        stores: &mut StateManager,
    ) -> Result<Outcome> {
        let offsets = self.offsets_to_commit()?;
        let group = consumer.group_metadata().ok_or_else(|| Error::Commit {
            source: Box::new(KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::InvalidArgument,
            )),
        })?;
        // Step 4.
        match producer.commit_transaction(&offsets, &group)? {
            Ended::Committed => {}
            Ended::MustAbort(source) => {
                let cause = Error::Commit {
                    source: Box::new(source),
                };
                return self.abort(producer, policy, cause);
            }
        }
        // Step 5.
        self.write_state(producer, stores)?;
        if offsets.count() > 0 && !self.broker_keeps_transaction_offsets(consumer, &offsets) {
            // The transaction committed: a failure here costs at most a
            // replay of what it holds, as at least once.
            if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
                log::warn!("offsets of the committed transaction not committed again: {error}");
            }
        }
        self.committed(stores);
        Ok(Outcome::Committed)
    }

    /// Whether the broker kept `offsets`, just committed in a transaction:
    /// asked once, at the first commit (librdkafka's mock cluster answers
    /// the transactional offset commit without keeping it).
    fn broker_keeps_transaction_offsets<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> bool {
        if let Some(keeps) = self.keeps_transaction_offsets {
            return keeps;
        }
        let Ok(committed) = committed_offsets(consumer, offsets.clone(), FLUSH_TIMEOUT) else {
            // Unknown yet: asked again at the next commit.
            return false;
        };
        let keeps = committed.iter().all(|partition| {
            let sent = offsets.find_partition(&partition.topic, partition.partition);
            let sent = sent.and_then(|element| element.offset().to_raw());
            partition.offset.is_some() && partition.offset == sent
        });
        if !keeps {
            log::warn!(
                "the broker did not keep the offsets committed in the transaction (librdkafka's \
                 mock cluster does not): committing them after each transaction as well"
            );
        }
        self.keeps_transaction_offsets = Some(keeps);
        keeps
    }

    /// Step 4 (at least once) or 5 (exactly once): each partition's store
    /// updates, the changelog offsets they reached and what they absorbed
    /// of the input, in one RocksDB batch (the updates then stay in memory
    /// as a cache, while they fit).
    fn write_state(&mut self, producer: &OutputProducer, stores: &mut StateManager) -> Result<()> {
        let acknowledged = producer.take_changelog_offsets();
        let keep_cache = self.schedule.keeps_cache(stores.pending_bytes());
        for (_, partition, state) in stores.partitions_mut() {
            let changelog_offsets: Vec<Option<i64>> = state
                .stores()
                .iter()
                .map(|store| {
                    let partitions = acknowledged.get(&**store.changelog.as_ref()?)?;
                    partitions.get(&partition).map(|offset| offset + 1)
                })
                .collect();
            state.write_checkpoint(&changelog_offsets, keep_cache)?;
        }
        Ok(())
    }

    /// After the offsets were committed: tells each partition's state, and
    /// starts the next checkpoint.
    fn committed(&mut self, stores: &mut StateManager) {
        log::debug!(
            "committed {} message(s): {:?}",
            self.schedule.pending(),
            self.offsets
        );
        for ((topic, partition), offset) in self.offsets.drain() {
            if let Some(state) = stores.get_mut(&topic, partition) {
                state.committed(offset);
            }
        }
        if let Some(first) = &mut self.first {
            first.clear();
        }
        self.aborts_in_a_row = 0;
        self.schedule.checkpointed();
    }

    /// Drops the offsets of partitions this instance no longer owns.
    pub(crate) fn forget(&mut self, revoked: &TopicPartitionList) {
        for element in revoked.elements() {
            let key: (Arc<str>, i32) = (element.topic().into(), element.partition());
            if let Some(first) = &mut self.first {
                first.remove(&key);
            }
            if self.offsets.remove(&key).is_some() {
                log::warn!(
                    "{}[{}] was revoked before its offsets could be committed; \
                     its new owner will process those messages again",
                    key.0,
                    key.1
                );
            }
        }
    }

    /// The offsets to commit, marked as kstreams' own (so that recovery
    /// tells them from an operator's reset).
    fn offsets_to_commit(&self) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::with_capacity(self.offsets.len());
        for ((topic, partition), offset) in &self.offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|source| Error::Commit {
                    source: source.into(),
                })?;
            if let Some(mut element) = list.find_partition(topic, *partition) {
                element.set_metadata(COMMIT_METADATA);
            }
        }
        Ok(list)
    }
}

/// Step 1 of a commit: produces every store update of the checkpoint to
/// its changelog, stamped with the input it belongs to.
fn produce_changelogs(producer: &OutputProducer, stores: &mut StateManager) -> Result<()> {
    let mut payload = Vec::new();
    for (_, partition, state) in stores.partitions_mut() {
        let Some(stamp) = state.stamp() else {
            continue;
        };
        for (store, transaction) in state.stores().iter().zip(&state.transactions) {
            let Some(changelog) = &store.changelog else {
                continue;
            };
            for (key, value) in transaction.updates() {
                producer.send_changelog(
                    changelog,
                    partition,
                    &store.name,
                    key,
                    value,
                    stamp,
                    &mut payload,
                )?;
            }
        }
    }
    Ok(())
}
