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

/// Errors that mean "this instance is no longer the member the group knew":
/// its session expired, or a newer instance of the same static member
/// fenced it. Its assignment is lost.
pub(crate) fn is_fenced(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(code, IllegalGeneration | UnknownMemberId | FencedInstanceId)
}
