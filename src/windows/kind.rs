//! Which windows a timestamp falls into.

/// A window type and its parameters, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `[start, start + duration)`, starts at multiples of `duration`.
    Tumbling { duration: i64 },
    /// `[start, start + duration)`, starts at multiples of `step`.
    Hopping { duration: i64, step: i64 },
    /// `[start, start + duration]`, both ends inclusive, wherever a message
    /// enters or leaves (see `sliding`).
    Sliding { duration: i64 },
    /// `count` messages of a key, a new window every `step` messages (see
    /// `count`): tumbling when `step == count`, sliding when `step == 1`.
    Count { count: i64, step: i64 },
    /// Runs of a key's messages each within `gap` of the next (see
    /// `session`).
    Session { gap: i64 },
}

impl Kind {
    /// The window type and parameters, as Quix Streams names its stores:
    /// `tumbling_window_5000`, `hopping_window_5000_1000`.
    pub(crate) fn name(&self) -> String {
        match self {
            Kind::Tumbling { duration } => format!("tumbling_window_{duration}"),
            Kind::Hopping { duration, step } => format!("hopping_window_{duration}_{step}"),
            Kind::Sliding { duration } => format!("sliding_window_{duration}"),
            Kind::Count { count, step } if step == count => {
                format!("tumbling_count_window_{count}")
            }
            Kind::Count { count, step: 1 } => format!("sliding_count_window_{count}"),
            Kind::Count { count, step } => format!("hopping_count_window_{count}_{step}"),
            Kind::Session { gap } => format!("session_window_{gap}"),
        }
    }

    /// Replaces `windows` with the `(start, end)` of every window that
    /// `timestamp` falls into, by start ascending. Starts are aligned to
    /// the epoch (`start = timestamp - timestamp mod step`), negative
    /// timestamps included. (For a sliding window: the one it ends; for
    /// count and session windows, which time alone does not place, none.)
    pub(crate) fn windows_of(&self, timestamp: i64, windows: &mut Vec<(i64, i64)>) {
        windows.clear();
        let (duration, step) = match *self {
            Kind::Tumbling { duration } => (duration, duration),
            Kind::Hopping { duration, step } => (duration, step),
            Kind::Count { .. } | Kind::Session { .. } => return,
            Kind::Sliding { duration } => {
                // The window a message opens: the one it ends.
                windows.push((timestamp.saturating_sub(duration), timestamp));
                return;
            }
        };
        let mut start = timestamp.saturating_sub(timestamp.rem_euclid(step));
        let earliest = timestamp.saturating_sub(duration);
        while start > earliest {
            windows.push((start, start.saturating_add(duration)));
            match start.checked_sub(step) {
                Some(earlier) => start = earlier,
                None => break,
            }
        }
        windows.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(kind: Kind, timestamp: i64) -> Vec<(i64, i64)> {
        let mut windows = Vec::new();
        kind.windows_of(timestamp, &mut windows);
        windows
    }

    #[test]
    fn a_tumbling_window_holds_its_start_and_not_its_end() {
        let kind = Kind::Tumbling { duration: 10 };
        assert_eq!(windows(kind, 0), [(0, 10)]);
        assert_eq!(windows(kind, 9), [(0, 10)]);
        assert_eq!(windows(kind, 10), [(10, 20)]);
        assert_eq!(windows(kind, -1), [(-10, 0)]);
    }

    #[test]
    fn a_hopping_timestamp_falls_into_duration_over_step_windows() {
        let kind = Kind::Hopping {
            duration: 10,
            step: 5,
        };
        assert_eq!(windows(kind, 12), [(5, 15), (10, 20)]);
        assert_eq!(windows(kind, 10), [(5, 15), (10, 20)]);
        assert_eq!(windows(kind, 9), [(0, 10), (5, 15)]);
        let uneven = Kind::Hopping {
            duration: 10,
            step: 4,
        };
        assert_eq!(windows(uneven, 9), [(0, 10), (4, 14), (8, 18)]);
        assert_eq!(windows(uneven, 10), [(4, 14), (8, 18)]);
    }

    #[test]
    fn the_extremes_of_time_do_not_overflow() {
        let kind = Kind::Tumbling { duration: 1000 };
        assert_eq!(windows(kind, i64::MAX).len(), 1);
        assert!(windows(kind, i64::MIN).len() <= 1);
    }
}
