//! What happens when the consumer group moves partitions: a revoked
//! partition is checkpointed before it is released.

use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use crate::broker::OutputProducer;
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::on_error::ErrorPolicy;

/// What the poll loop and the rebalance callbacks share.
pub(crate) struct LoopState {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) producer: Arc<OutputProducer>,
    pub(crate) policy: ErrorPolicy,
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
            failure,
        } = self;
        if let Err(error) = checkpoint.commit(consumer, producer, policy) {
            failure.get_or_insert(error);
        }
    }
}

/// The consumer's context: checkpoints on revoke.
pub(crate) struct RebalanceContext {
    pub(crate) state: Arc<Mutex<LoopState>>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(revoked) => {
                log::info!("partitions revoked: {}", describe(revoked));
                let mut state = self.state.lock();
                state.commit(consumer);
                state.checkpoint.forget(revoked);
            }
            Rebalance::Assign(assigned) => {
                log::info!("partitions assigned: {}", describe(assigned));
            }
            Rebalance::Error(error) => log::warn!("rebalance failed: {error}"),
        }
    }
}

fn describe(list: &rdkafka::TopicPartitionList) -> String {
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
