//! The checkpoint: what was processed since the last commit, and the commit
//! itself, whose order keeps invariant 1 of the design ("offsets last").

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::{Origin, OutputProducer};
use crate::checkpoint_schedule::CheckpointSchedule;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::on_error::ErrorPolicy;
use crate::retriable::is_retriable;
use crate::state::{changelog_topic, StateManager};

/// How long a checkpoint waits for the broker to acknowledge outputs before
/// it gives up and tries again at the next one. Long enough for a busy
/// broker, short enough that an outage does not freeze the loop.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

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
}

/// The offsets processed since the last commit.
pub(crate) struct Checkpoint {
    /// Per input partition, the offset after the last processed message.
    offsets: HashMap<(Arc<str>, i32), i64>,
    schedule: CheckpointSchedule,
    /// Set once a failed output stopped the application: from then on
    /// nothing may be committed, or offsets would skip the lost output.
    poisoned: bool,
    /// For changelog topic names; `None` without changelog topics.
    changelog_group: Option<String>,
}

impl Checkpoint {
    pub(crate) fn new(config: &Config) -> Self {
        Checkpoint {
            offsets: HashMap::default(),
            schedule: CheckpointSchedule::new(config),
            poisoned: false,
            changelog_group: config
                .use_changelog_topics
                .then(|| config.consumer_group.clone()),
        }
    }

    /// Marks the message at `origin` as processed (or deliberately skipped).
    pub(crate) fn store_offset(&mut self, origin: &Origin) {
        let next = origin.offset + 1;
        let key = (origin.topic.clone(), origin.partition);
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

    /// Forbids any further commit: see `poisoned`.
    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Commits what was processed, in this order:
    ///
    /// 1. Produce every store update of the checkpoint to its changelog,
    ///    stamped with the input offset it belongs to.
    /// 2. Flush the producer: wait until the broker has acknowledged (or
    ///    refused) every output and changelog record sent so far.
    /// 3. Hand each refused message to the producer error callback; unless
    ///    it says skip, stop without committing.
    /// 4. Write each partition's store updates, the changelog offsets they
    ///    reached and the input offset they absorbed in one RocksDB batch
    ///    (the updates then stay in memory as a cache, while they fit).
    /// 5. Commit the consumer offsets, synchronously.
    ///
    /// # Errors
    ///
    /// A refused output the callback did not skip, or a commit error that
    /// is not retriable.
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
        if self.offsets.is_empty() {
            self.schedule.checkpointed();
            return Ok(Outcome::Empty);
        }
        // Step 1. State updates to the changelogs.
        if let Some(group) = &self.changelog_group {
            let mut payload = Vec::new();
            for (topic, partition, state) in stores.partitions_mut() {
                let Some(next_input) = state.pending_input else {
                    continue;
                };
                for (index, transaction) in state.transactions.iter().enumerate() {
                    let changelog = changelog_topic(group, topic, state.store_name(index), 0).name;
                    for (key, value) in transaction.updates() {
                        producer.send_changelog(
                            &changelog,
                            partition,
                            key,
                            value,
                            next_input - 1,
                            &mut payload,
                        )?;
                    }
                }
            }
        }
        // Step 2. Every output and changelog record acknowledged or refused.
        if !producer.flush(FLUSH_TIMEOUT) {
            log::warn!("outputs not acknowledged within {FLUSH_TIMEOUT:?}; will retry");
            self.schedule.deferred();
            return Ok(Outcome::Deferred);
        }
        // Step 3. Refused messages: skip by choice, or stop with no commit.
        for failure in producer.take_failures() {
            if let Err(error) = policy.producer(failure) {
                self.poison();
                return Err(error);
            }
        }
        // Step 4. State, with the changelog and input offsets it reached.
        let acknowledged = producer.take_changelog_offsets();
        let keep_cache = self.schedule.keeps_cache(stores.pending_bytes());
        for (topic, partition, state) in stores.partitions_mut() {
            let changelog_offsets: Vec<Option<i64>> = match &self.changelog_group {
                Some(group) => state
                    .store_names()
                    .iter()
                    .map(|store| {
                        let name = changelog_topic(group, topic, store, 0).name;
                        acknowledged
                            .get(&name)
                            .and_then(|partitions| partitions.get(&partition))
                            .map(|offset| offset + 1)
                    })
                    .collect(),
                None => Vec::new(),
            };
            state.commit(&changelog_offsets, keep_cache)?;
        }
        // Step 5. Offsets last.
        let offsets = self.offsets_to_commit()?;
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => {
                log::debug!(
                    "committed {} message(s): {:?}",
                    self.schedule.pending(),
                    self.offsets
                );
                self.offsets.clear();
                self.schedule.checkpointed();
                Ok(Outcome::Committed)
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

    /// Drops the offsets of partitions this instance no longer owns.
    pub(crate) fn forget(&mut self, revoked: &TopicPartitionList) {
        for element in revoked.elements() {
            let key: (Arc<str>, i32) = (element.topic().into(), element.partition());
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

    fn offsets_to_commit(&self) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::with_capacity(self.offsets.len());
        for ((topic, partition), offset) in &self.offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|source| Error::Commit {
                    source: source.into(),
                })?;
        }
        Ok(list)
    }
}
