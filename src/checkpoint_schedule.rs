//! When the next checkpoint is due: after `commit_every` messages, once
//! the state updates in memory reach `commit_state_bytes`, or once
//! `commit_interval` has passed, whichever comes first.

use std::time::{Duration, Instant};

use crate::config::Config;

/// Counts the messages processed since the last checkpoint and says when
/// the next one is due; the poll loop and the test driver share it.
pub(crate) struct CheckpointSchedule {
    /// Messages processed since the last checkpoint.
    pending: u64,
    /// `pending` at the last [`is_due`](Self::is_due): unchanged means idle.
    pending_when_asked: u64,
    started: Instant,
    interval: Duration,
    every: u64,
    state_bytes: usize,
}

impl CheckpointSchedule {
    /// A schedule by `config`'s `commit_interval`, `commit_every` and
    /// `commit_state_bytes`, its interval starting now.
    pub(crate) fn new(config: &Config) -> Self {
        CheckpointSchedule {
            pending: 0,
            pending_when_asked: 0,
            started: Instant::now(),
            interval: config.commit_interval,
            every: config.commit_every,
            state_bytes: config.commit_state_bytes,
        }
    }

    /// Counts one processed (or deliberately skipped) message.
    pub(crate) fn processed(&mut self) {
        self.pending += 1;
    }

    /// Messages processed since the last checkpoint.
    pub(crate) fn pending(&self) -> u64 {
        self.pending
    }

    /// Whether `commit_every` messages were processed, the state updates
    /// waiting in memory (`pending_state_bytes`) reached
    /// `commit_state_bytes`, or the commit interval has passed since the
    /// last checkpoint. Reading the clock costs more than the rest of a
    /// message's bookkeeping: while messages flow it is read every 64
    /// messages, and at every call once the loop is idle.
    pub(crate) fn is_due(&mut self, pending_state_bytes: impl FnOnce() -> usize) -> bool {
        const CLOCK_EVERY: u64 = 64;
        let idle = self.pending == self.pending_when_asked;
        self.pending_when_asked = self.pending;
        if self.pending == 0 {
            return false;
        }
        if (self.every > 0 && self.pending >= self.every)
            || pending_state_bytes() >= self.state_bytes
        {
            return true;
        }
        (idle || self.pending.is_multiple_of(CLOCK_EVERY))
            && self.started.elapsed() >= self.interval
    }

    /// Whether the updates a checkpoint writes stay in memory as a cache
    /// of the stores: while all of them (`pending_state_bytes` over every
    /// partition) take at most half of `commit_state_bytes`, so that new
    /// updates still have the other half before they force a checkpoint.
    pub(crate) fn keeps_cache(&self, pending_state_bytes: usize) -> bool {
        pending_state_bytes <= self.state_bytes / 2
    }

    /// A checkpoint was taken: counting starts again.
    pub(crate) fn checkpointed(&mut self) {
        self.pending = 0;
        self.pending_when_asked = 0;
        self.deferred();
    }

    /// A checkpoint was tried and must be tried again one interval later.
    pub(crate) fn deferred(&mut self) {
        self.started = Instant::now();
    }
}
