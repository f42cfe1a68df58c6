//! What happens when the consumer group moves partitions: a revoked
//! partition is checkpointed and its stores closed before it is released; an
//! assigned one whose stores are behind their changelog is paused until the
//! recoverer has caught them up, while the others are processed at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::broker::OutputProducer;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::on_error::ErrorPolicy;
use crate::state::{plan, Plan, Recovered, Recoverer, Recovery, StateManager};

/// How long to wait for the group's committed offsets on assignment.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an assignment waits for the recovery cancelled at the
/// partition's last revocation to let go of its stores.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the poll loop and the rebalance callbacks share.
pub(crate) struct LoopState {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) producer: Arc<OutputProducer>,
    pub(crate) policy: ErrorPolicy,
    pub(crate) stores: StateManager,
    /// Recovers stores from their changelogs; `None` without changelog topics.
    pub(crate) recoverer: Option<Recoverer>,
    pub(crate) group: String,
    /// An error raised inside a callback, for the loop to return.
    pub(crate) failure: Option<Error>,
}

impl LoopState {
    /// Runs the checkpoint; an error is kept for the loop.
    pub(crate) fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let LoopState {
            checkpoint,
            producer,
            policy,
            stores,
            failure,
            ..
        } = self;
        if let Err(error) = checkpoint.commit(consumer, producer, policy, stores) {
            failure.get_or_insert(error);
        }
    }

    /// Opens the stores of newly assigned partitions and plans their
    /// recovery; where local state is ahead of the committed offset, sets
    /// the offset to resume from in `assignment`. Returns the recoveries to
    /// run before their partitions may be processed.
    fn prepare<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        assignment: &mut TopicPartitionList,
    ) -> Result<Vec<Recovery>> {
        let mut stateful = TopicPartitionList::new();
        for element in assignment.elements() {
            if !self.stores.stores_of(element.topic()).is_empty() {
                stateful.add_partition(element.topic(), element.partition());
            }
        }
        if stateful.count() == 0 {
            return Ok(Vec::new());
        }
        let committed = match consumer.committed_offsets(stateful.clone(), COMMITTED_TIMEOUT) {
            Ok(committed) => committed,
            // A group that never committed is unknown to some brokers (tansu).
            Err(error)
                if matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::UnknownGroup | RDKafkaErrorCode::GroupIdNotFound)
                ) =>
            {
                TopicPartitionList::new()
            }
            Err(source) => return Err(consume_error(source)),
        };
        let changelog_group = self.recoverer.is_some().then_some(self.group.as_str());
        let mut recoveries = Vec::new();
        let release_deadline = Instant::now() + RELEASE_TIMEOUT;
        for element in stateful.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let committed = committed
                .find_partition(topic, partition)
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                });
            if let Some(recoverer) = &mut self.recoverer {
                // A recovery cancelled when the partition was last revoked
                // may still hold its stores.
                recoverer.release(topic, partition, release_deadline)?;
            }
            let plan = plan(
                &mut self.stores,
                consumer,
                changelog_group,
                topic,
                partition,
                committed,
            )?;
            match plan {
                Plan::Ready { resume: None } => {}
                Plan::Ready {
                    resume: Some(offset),
                } => assignment
                    .set_partition_offset(topic, partition, Offset::Offset(offset))
                    .map_err(consume_error)?,
                Plan::Recover(recovery) => recoveries.push(*recovery),
            }
        }
        Ok(recoveries)
    }

    /// Pauses the partitions of `recoveries` (just assigned, so nothing of
    /// them was fetched yet) and hands the recoveries to the recoverer.
    fn start_recoveries<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        recoveries: Vec<Recovery>,
    ) -> Result<()> {
        let Some(recoverer) = &mut self.recoverer else {
            return Ok(());
        };
        if recoveries.is_empty() {
            return Ok(());
        }
        let mut paused = TopicPartitionList::new();
        for recovery in &recoveries {
            paused.add_partition(&recovery.topic, recovery.partition);
        }
        consumer.pause(&paused).map_err(consume_error)?;
        recoverer.submit(recoveries);
        Ok(())
    }

    /// Whether a partition is recovering.
    pub(crate) fn is_recovering(&self) -> bool {
        self.recoverer.as_ref().is_some_and(Recoverer::is_busy)
    }

    /// Takes back the stores of partitions whose recovery ended and resumes
    /// fetching them.
    ///
    /// # Errors
    ///
    /// The error of a failed recovery.
    pub(crate) fn resume_recovered<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<()> {
        let Some(recoverer) = &mut self.recoverer else {
            return Ok(());
        };
        for Recovered {
            topic,
            partition,
            state,
        } in recoverer.collect()
        {
            self.stores.insert(&topic, partition, state?);
            let mut list = TopicPartitionList::new();
            list.add_partition(&topic, partition);
            consumer.resume(&list).map_err(consume_error)?;
            log::info!("{topic}[{partition}] is up to date: processing it");
        }
        Ok(())
    }
}

fn consume_error(source: KafkaError) -> Error {
    Error::Consume {
        source: source.into(),
    }
}

/// The consumer's context: checkpoints on revoke, recovers on assign.
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
                // Recovery first: a partition whose stores are behind their
                // changelog is paused until the recoverer caught them up.
                let recoveries = state.prepare(consumer, partitions);
                let assigned = if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                };
                if let Err(error) = assigned {
                    log::warn!("assigning {} failed: {error}", describe(partitions));
                }
                let started =
                    recoveries.and_then(|recoveries| state.start_recoveries(consumer, recoveries));
                if let Err(error) = started {
                    state.failure.get_or_insert(error);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                log::info!("partitions revoked: {}", describe(partitions));
                state.commit(consumer);
                state.checkpoint.forget(partitions);
                for element in partitions.elements() {
                    let (topic, partition) = (element.topic(), element.partition());
                    if let Some(recoverer) = &mut state.recoverer {
                        recoverer.cancel(topic, partition);
                    }
                    state.stores.close(topic, partition);
                }
                let unassigned = if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                };
                // An assignment already lost (session expired) cannot be
                // released; the group moves on without us either way.
                if let Err(error) = unassigned {
                    log::warn!("releasing {} failed: {error}", describe(partitions));
                }
            }
            other => {
                log::warn!("rebalance failed: {other:?}");
                if let Err(error) = consumer.unassign() {
                    log::warn!("releasing the assignment failed: {error}");
                }
            }
        }
    }
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
