//! What happens when the consumer group moves partitions: a revoked
//! partition is checkpointed and its stores closed before it is released; an
//! assigned one has its stores recovered before it is fetched.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::broker::OutputProducer;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::on_error::ErrorPolicy;
use crate::state::{recover, StateManager};

/// How long to wait for the group's committed offsets on assignment.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(30);

/// What the poll loop and the rebalance callbacks share.
pub(crate) struct LoopState {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) producer: Arc<OutputProducer>,
    pub(crate) policy: ErrorPolicy,
    pub(crate) stores: StateManager,
    /// Reads changelogs during recovery; `None` without changelog topics.
    pub(crate) changelog_reader: Option<BaseConsumer>,
    pub(crate) group: String,
    pub(crate) patience: Duration,
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

    /// Opens and recovers the stores of newly assigned partitions; where
    /// local state is ahead of the committed offset, sets the offset to
    /// resume from in `assignment`.
    fn prepare<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        assignment: &mut TopicPartitionList,
    ) -> Result<()> {
        let mut stateful = TopicPartitionList::new();
        for element in assignment.elements() {
            if !self.stores.stores_of(element.topic()).is_empty() {
                stateful.add_partition(element.topic(), element.partition());
            }
        }
        if stateful.count() == 0 {
            return Ok(());
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
            Err(source) => {
                return Err(Error::Consume {
                    source: source.into(),
                })
            }
        };
        for element in stateful.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let committed = committed
                .find_partition(topic, partition)
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                });
            let resume = recover(
                &mut self.stores,
                self.changelog_reader.as_ref(),
                &self.group,
                topic,
                partition,
                committed,
                self.patience,
            )?;
            if let Some(offset) = resume {
                assignment
                    .set_partition_offset(topic, partition, Offset::Offset(offset))
                    .map_err(|source| Error::Consume {
                        source: source.into(),
                    })?;
            }
        }
        Ok(())
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
                // Recovery first: nothing of a partition is fetched before
                // its stores are caught up.
                if let Err(error) = state.prepare(consumer, partitions) {
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
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                log::info!("partitions revoked: {}", describe(partitions));
                state.commit(consumer);
                state.checkpoint.forget(partitions);
                for element in partitions.elements() {
                    state.stores.close(element.topic(), element.partition());
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
