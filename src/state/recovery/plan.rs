//! The rule that decides, when a partition is assigned, what its stores
//! need before its messages are processed and where processing resumes.
//!
//! Three offsets meet here: what the local stores absorbed (written in the
//! same RocksDB batch as the state, with the committed offset its
//! checkpoint was stamped with), the group's committed offset, and what
//! the changelog holds. Processing must resume at an offset where the
//! state is the fold of exactly the input before it, and no output before
//! it may be unacknowledged.

use crate::state::rocksdb::Absorbed;

/// The text kstreams commits offsets with (the commit's metadata), so that
/// an offset it committed is told apart from one an operator set.
pub(crate) const COMMIT_METADATA: &str = "kstreams";

/// The group's committed offset of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    /// Whether kstreams committed it (rather than an operator's reset).
    pub(crate) by_kstreams: bool,
}

/// What a partition's stores need before its messages are processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing: process from `resume` (`None`: where the consumer's offset
    /// reset policy says), stamping checkpoints with `committed`.
    Ready {
        resume: Option<i64>,
        committed: Option<i64>,
    },
    /// Apply the changelog records after those the stores hold, up to the
    /// input offset `committed`, then process from there.
    CatchUp { committed: i64 },
    /// The local state cannot be trusted: delete it, rebuild it from the
    /// whole changelog up to `committed`, then process from there.
    Rebuild { committed: i64 },
    /// The group has no committed offset: read the changelog first, then
    /// decide with [`after_scan`].
    Scan,
}

/// The plan for stores that absorbed `local`, in a group whose committed
/// offset of the partition is `committed`; `changelogs` says whether the
/// stores have changelog topics.
///
/// 1. Without changelogs the local state is all there is: processing
///    resumes where it ends when it is ahead of the committed offset, else
///    at that offset.
/// 2. Local state ahead of the committed offset `C`, from a checkpoint
///    that was stamped with `C` as committed, where kstreams committed `C`:
///    that checkpoint's offset commit failed or never happened after
///    RocksDB was written, and its outputs were all acknowledged before.
///    Processing resumes after it.
/// 3. Local state ahead of `C` otherwise: the offsets moved since it was
///    written (an operator reset them, or another instance committed
///    since): it is rebuilt from the changelog up to `C`, and processing
///    resumes at `C`, as the offsets say.
/// 4. Local state at or behind `C`, or none: it catches up with the
///    changelog up to `C`.
/// 5. No committed offset (a new group, or one whose offsets expired):
///    the changelog is read first to find one.
pub(crate) fn plan(
    local: Option<Absorbed>,
    committed: Option<Committed>,
    changelogs: bool,
) -> Plan {
    let offset = committed.map(|committed| committed.offset);
    let ahead = local.filter(|local| offset.is_none_or(|c| local.next_input > c));
    if !changelogs {
        return match ahead {
            Some(local) => Plan::Ready {
                resume: Some(local.next_input),
                committed: offset,
            },
            None => Plan::Ready {
                resume: offset,
                committed: offset,
            },
        };
    }
    let Some(Committed {
        offset: committed,
        by_kstreams,
    }) = committed
    else {
        return Plan::Scan;
    };
    match ahead {
        Some(local) if by_kstreams && local.committed == Some(committed) => Plan::Ready {
            resume: Some(local.next_input),
            committed: Some(committed),
        },
        Some(_) => Plan::Rebuild { committed },
        None => Plan::CatchUp { committed },
    }
}

/// What reading a changelog found, for a group without committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Scanned {
    /// Whether it holds records after those the stores hold.
    pub(crate) newer_records: bool,
    /// The highest committed offset its records were stamped with.
    pub(crate) committed: Option<i64>,
}

impl Scanned {
    /// Takes in a record stamped with `committed`.
    pub(crate) fn record(&mut self, committed: Option<i64>) {
        self.newer_records = true;
        self.committed = self.committed.max(committed);
    }
}

/// The plan for a group without committed offset, once its changelog was
/// read after what the stores hold (`local`):
///
/// - no newer records: the local state, if any, is the latest there is,
///   and its outputs were acknowledged: processing resumes after it (with
///   none, where the offset reset policy says);
/// - newer records: the state is rebuilt from the changelog up to the
///   highest committed offset its stamps or the local state name, and
///   processing resumes there: no state is lost, and no output after it;
/// - newer records that name no committed offset (written by a build of
///   kstreams before stamps carried one): the local state, if any, is
///   kept, and nothing of the changelog is applied.
pub(crate) fn after_scan(local: Option<Absorbed>, scanned: Scanned) -> Plan {
    let keep_local = Plan::Ready {
        resume: local.map(|local| local.next_input),
        committed: local.and_then(|local| local.committed),
    };
    if !scanned.newer_records {
        return keep_local;
    }
    match scanned
        .committed
        .max(local.and_then(|local| local.committed))
    {
        Some(committed) => Plan::Rebuild { committed },
        None => keep_local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn absorbed(next_input: i64, committed: Option<i64>) -> Option<Absorbed> {
        Some(Absorbed {
            next_input,
            committed,
        })
    }

    /// Committed by kstreams.
    fn ours(offset: i64) -> Option<Committed> {
        Some(Committed {
            offset,
            by_kstreams: true,
        })
    }

    /// Set by an operator.
    fn reset(offset: i64) -> Option<Committed> {
        Some(Committed {
            offset,
            by_kstreams: false,
        })
    }

    #[test]
    fn local_state_at_the_committed_offset_or_behind_catches_up() {
        assert_eq!(
            plan(absorbed(10, Some(5)), ours(10), true),
            Plan::CatchUp { committed: 10 }
        );
        assert_eq!(
            plan(absorbed(4, Some(0)), ours(10), true),
            Plan::CatchUp { committed: 10 }
        );
        assert_eq!(plan(None, ours(10), true), Plan::CatchUp { committed: 10 });
    }

    #[test]
    fn local_state_whose_offset_commit_failed_resumes_after_it() {
        assert_eq!(
            plan(absorbed(12, Some(10)), ours(10), true),
            Plan::Ready {
                resume: Some(12),
                committed: Some(10)
            }
        );
    }

    #[test]
    fn local_state_ahead_of_offsets_that_moved_is_rebuilt_up_to_them() {
        // An operator rewound the offsets to 3, or to 10.
        assert_eq!(
            plan(absorbed(12, Some(10)), reset(3), true),
            Plan::Rebuild { committed: 3 }
        );
        assert_eq!(
            plan(absorbed(12, Some(10)), reset(10), true),
            Plan::Rebuild { committed: 10 }
        );
        // Another instance committed 11 while this one's commit failed.
        assert_eq!(
            plan(absorbed(12, Some(10)), ours(11), true),
            Plan::Rebuild { committed: 11 }
        );
    }

    #[test]
    fn without_committed_offset_the_changelog_is_scanned() {
        assert_eq!(plan(None, None, true), Plan::Scan);
        assert_eq!(plan(absorbed(12, Some(10)), None, true), Plan::Scan);
    }

    #[test]
    fn without_changelogs_local_state_is_all_there_is() {
        assert_eq!(
            plan(absorbed(12, Some(3)), ours(10), false),
            Plan::Ready {
                resume: Some(12),
                committed: Some(10)
            }
        );
        assert_eq!(
            plan(absorbed(8, None), ours(10), false),
            Plan::Ready {
                resume: Some(10),
                committed: Some(10)
            }
        );
        assert_eq!(
            plan(None, None, false),
            Plan::Ready {
                resume: None,
                committed: None
            }
        );
    }

    #[test]
    fn a_scan_that_finds_nothing_newer_keeps_the_local_state() {
        let nothing = Scanned::default();
        assert_eq!(
            after_scan(absorbed(12, Some(10)), nothing),
            Plan::Ready {
                resume: Some(12),
                committed: Some(10)
            }
        );
        assert_eq!(
            after_scan(None, nothing),
            Plan::Ready {
                resume: None,
                committed: None
            }
        );
    }

    #[test]
    fn a_scan_that_finds_newer_records_rebuilds_up_to_the_highest_committed_offset() {
        let mut scanned = Scanned::default();
        scanned.record(Some(20));
        scanned.record(Some(30));
        scanned.record(None);
        assert_eq!(after_scan(None, scanned), Plan::Rebuild { committed: 30 });
        assert_eq!(
            after_scan(absorbed(50, Some(40)), scanned),
            Plan::Rebuild { committed: 40 }
        );
    }

    #[test]
    fn a_scan_of_records_without_committed_offsets_keeps_the_local_state() {
        let mut legacy = Scanned::default();
        legacy.record(None);
        assert_eq!(
            after_scan(absorbed(5, None), legacy),
            Plan::Ready {
                resume: Some(5),
                committed: None
            }
        );
    }
}
