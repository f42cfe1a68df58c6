//! The count window step: windows of `count` messages of a key, a new one
//! every `step` messages (tumbling when `step == count`, sliding when
//! `step == 1`), as Quix Streams' count windows.
//!
//! The key's messages are numbered from 0. Window `s` (for `s` a multiple
//! of `step`) holds messages `s` to `s + count - 1` and closes with its
//! last one: no grace, nothing is late. The key's stored windows (in
//! [`KeyWindows`](super::key_windows::KeyWindows)) keep the number of its
//! next message as their time and, as each window's bounds, the earliest
//! and latest event time of its messages: what it emits as `start` and
//! `end`. Its message numbers are not stored: the open windows are those
//! of the multiples of `step` in `(next - count, next)`, in order.

use anyhow::anyhow;

use super::aggregate::Aggregator;
use super::definition::Emit;
use super::key_windows::{KeyWindow, KeyWindows};
use super::step::{event_time, Absorb, Aggregating, Emission};
use crate::dataframe::{Context, StepError};

/// The count window step.
pub(crate) struct CountStep<V, A: Aggregator<V>, R> {
    pub(crate) count: i64,
    pub(crate) step: i64,
    pub(crate) aggregating: Aggregating<V, A, R>,
}

/// The first message numbers of the windows of `count` every `step` that
/// message `number` falls into: the multiples of `step` in `(number -
/// count, number]`, from 0.
fn windows_of(count: i64, step: i64, number: i64) -> impl Iterator<Item = i64> {
    let earliest = (number - count + 1).max(0);
    let first = earliest + (step - earliest % step) % step;
    (first..=number).step_by(usize::try_from(step).unwrap_or(usize::MAX))
}

impl<V, A: Aggregator<V>, R> Absorb<V, R> for CountStep<V, A, R> {
    fn absorb(&mut self, value: &V, ctx: &mut Context<'_>) -> Result<Vec<Emission<R>>, StepError> {
        let timestamp = event_time(ctx)?;
        let prefix = ctx.key_prefix;
        let agg = &self.aggregating;
        let mut store = agg.store(ctx.state.as_deref_mut())?;
        let mut keyed = store.per_key::<KeyWindows<A::State>>(prefix)?;
        let number = keyed.time.unwrap_or(0);
        keyed.time = Some(number + 1);

        let starts: Vec<i64> = windows_of(self.count, self.step, number).collect();
        let opens_one = number % self.step == 0;
        let open_before = starts.len() - usize::from(opens_one);
        if keyed.windows.len() != open_before {
            return Err(anyhow!(
                "the key's count windows in store {} do not match its message count {number} \
                 ({} open, {open_before} expected): was the window's count or step changed \
                 without a new name?",
                agg.store_name,
                keyed.windows.len()
            )
            .into());
        }
        if opens_one {
            let state = agg.aggregator.first(value, timestamp)?;
            keyed.windows.push(KeyWindow {
                start: timestamp,
                end: timestamp,
                items: 0,
                state,
            });
        }
        let mut emissions = Vec::new();
        let mut item = None;
        for (at, window) in keyed.windows.iter_mut().enumerate() {
            let first = starts[at];
            if first != number {
                agg.aggregator.add(&mut window.state, value, timestamp)?;
                window.start = window.start.min(timestamp);
                window.end = window.end.max(timestamp);
            }
            let items = ((first, first + self.count), &mut window.items);
            agg.keep_item(&mut store, prefix, items, &mut item, (value, timestamp))?;
            if agg.emit == Emit::Current {
                let row = agg.row(window.start, window.end, &window.state)?;
                emissions.push(Emission::own(window.start, row));
            }
        }
        // The oldest window closes with its last message.
        if starts
            .first()
            .is_some_and(|first| first + self.count - 1 == number)
        {
            let window = keyed.windows.remove(0);
            let (start, items_at) = (window.start, (starts[0], starts[0] + self.count));
            if let Some(row) = agg.close_with_items_at(&mut store, prefix, window, items_at)? {
                emissions.push(Emission::own(start, row));
            }
        }
        store.set_per_key(prefix, &keyed)?;
        Ok(emissions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(count: i64, step: i64, number: i64) -> Vec<i64> {
        windows_of(count, step, number).collect()
    }

    #[test]
    fn a_message_falls_into_the_windows_of_the_step_multiples_before_it() {
        // Tumbling: one window each.
        assert_eq!(windows(3, 3, 0), [0]);
        assert_eq!(windows(3, 3, 2), [0]);
        assert_eq!(windows(3, 3, 3), [3]);
        // Hopping by 2 over 5: the windows of 2, 4 and 6 hold message 6.
        assert_eq!(windows(5, 2, 6), [2, 4, 6]);
        assert_eq!(windows(5, 2, 1), [0]);
        // Sliding: the last `count` windows.
        assert_eq!(windows(3, 1, 5), [3, 4, 5]);
        assert_eq!(windows(3, 1, 1), [0, 1]);
    }
}
