//! When a bounded run stops.

use std::time::{Duration, Instant};

/// When [`Application::run_until`](crate::Application::run_until) stops:
/// after a number of messages, after some time, or once no message has
/// arrived for a while, whichever comes first. It then checkpoints and
/// returns what it produced.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kstreams::Until;
///
/// // At most 1000 messages, at most 30 s, and stop early once the input
/// // has been quiet for 2 s.
/// let until = Until::messages(1000)
///     .or_timeout(Duration::from_secs(30))
///     .or_idle(Duration::from_secs(2));
/// # drop(until);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct Until {
    messages: Option<u64>,
    timeout: Option<Duration>,
    idle: Option<Duration>,
}

impl Until {
    /// Stop after processing `count` messages.
    pub fn messages(count: u64) -> Self {
        Until::default().or_messages(count)
    }

    /// Stop once `timeout` has passed since the run started.
    pub fn timeout(timeout: Duration) -> Self {
        Until::default().or_timeout(timeout)
    }

    /// Stop once no message has arrived for `idle`.
    pub fn idle(idle: Duration) -> Self {
        Until::default().or_idle(idle)
    }

    /// Also stop after `count` messages.
    pub fn or_messages(mut self, count: u64) -> Self {
        self.messages = Some(count);
        self
    }

    /// Also stop once `timeout` has passed since the run started.
    pub fn or_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Also stop once no message has arrived for `idle`.
    pub fn or_idle(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// Never stop by itself: what `run` uses.
    pub(crate) fn never() -> Self {
        Until::default()
    }

    /// Whether it stops on idleness: only then is a message's arrival time
    /// worth reading the clock for.
    pub(crate) fn watches_idle(&self) -> bool {
        self.idle.is_some()
    }

    /// Whether a run that processed `processed` messages took all it was
    /// asked to.
    pub(crate) fn reached_messages(&self, processed: u64) -> bool {
        self.messages.is_some_and(|count| processed >= count)
    }

    pub(crate) fn reached(&self, processed: u64, started: Instant, last_message: Instant) -> bool {
        self.reached_messages(processed)
            || self
                .timeout
                .is_some_and(|timeout| started.elapsed() >= timeout)
            || self.idle.is_some_and(|idle| last_message.elapsed() >= idle)
    }
}
