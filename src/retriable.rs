//! Which broker errors are passing (retry) and which are final.

use rdkafka::types::RDKafkaErrorCode;

/// Errors that mean "the broker or the group is not ready right now": an
/// outage, a moving coordinator, a rebalance. Retrying later is right.
pub(crate) fn is_retriable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BrokerTransportFailure
            | AllBrokersDown
            | MessageTimedOut
            | OperationTimedOut
            | RequestTimedOut
            | NetworkException
            | CoordinatorLoadInProgress
            | CoordinatorNotAvailable
            | NotCoordinator
            | RebalanceInProgress
            | IllegalGeneration
            | UnknownMemberId
            | WaitingForCoordinator
            | Resolve
            | LeaderNotAvailable
            | NotLeaderForPartition
    )
}
