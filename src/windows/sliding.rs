//! The sliding window step (Kafka Streams' KIP-450): windows of
//! `duration`, both ends inclusive, wherever a message enters or leaves.
//!
//! A message at `t` of a key ends its left window `[t - duration, t]`; the
//! right window `[t + 1, t + 1 + duration]` (the moment it leaves) exists
//! once a later message of the key falls into it. Each window holds every
//! message of the key in its bounds that came while it was open. A window
//! closes when the key's stream time passes its end plus the grace period
//! (`end < time - grace`); a message none of whose windows can still be
//! open (`t + duration < time - grace`) is late.
//!
//! The store keeps, besides each open window's aggregate, the aggregate of
//! the key's messages of each event time still needed (until no open
//! window can contain them): a new window is built by merging those in
//! time order, so the aggregator must merge.

use anyhow::anyhow;

use super::aggregate::Aggregator;
use super::definition::Emit;
use super::step::{event_time, Absorb, Aggregating, Emission};
use super::store::WindowStore;
use crate::dataframe::{Context, StepError};

/// The sliding window step.
pub(crate) struct SlidingStep<V, A: Aggregator<V>, R> {
    pub(crate) duration: i64,
    pub(crate) aggregating: Aggregating<V, A, R>,
    /// The key's open windows, by end then start (reused).
    pub(crate) open: Vec<(i64, i64)>,
    /// The event times of the key's kept messages (reused).
    pub(crate) times: Vec<i64>,
}

impl<V, A: Aggregator<V>, R> Absorb<V, R> for SlidingStep<V, A, R> {
    fn absorb(&mut self, value: &V, ctx: &mut Context<'_>) -> Result<Vec<Emission<R>>, StepError> {
        let ts = event_time(ctx)?;
        let prefix = ctx.key_prefix;
        let agg = &mut self.aggregating;
        let mut store = agg.store(ctx.state.as_deref_mut())?;
        let before = store.time(prefix)?;
        let now = before.map_or(ts, |time| time.max(ts));
        if before != Some(now) {
            store.set_time(prefix, now);
        }
        // Windows ending before this are closed.
        let closed_by = now.saturating_sub(agg.grace);
        let duration = self.duration;
        // How far a message's right window reaches past it.
        let reach = duration.saturating_add(1);
        if ts.saturating_add(duration) < closed_by {
            // Every window that could hold it is closed; the one it ends:
            let window = (ts.saturating_sub(duration), ts);
            agg.late(value, ctx.meta, (ts, closed_by), window);
            return Ok(Vec::new());
        }
        store.open_windows(prefix, &mut self.open)?;
        store.record_times(prefix, &mut self.times)?;
        let (open_before, times_before) = (self.open.len(), self.times.len());

        // The message joins the aggregate of its event time.
        let records = match store.records::<A::State>(prefix, ts)? {
            Some(mut records) => {
                agg.aggregator.add(&mut records, value, ts)?;
                records
            }
            None => {
                let at = self.times.partition_point(|time| *time < ts);
                self.times.insert(at, ts);
                agg.aggregator.first(value, ts)?
            }
        };
        store.set_records(prefix, ts, &records)?;

        // It joins every open window that holds it.
        let mut updated = Vec::new();
        for &(start, end) in &self.open {
            if start <= ts && ts <= end && end >= closed_by {
                let mut state = store
                    .window::<A::State>(prefix, start, end)?
                    .ok_or_else(|| anyhow!("sliding window [{start}, {end}] has no state"))?;
                agg.aggregator.add(&mut state, value, ts)?;
                store.set_window(prefix, start, end, &state)?;
                updated.push((start, end, state));
            }
        }
        // The windows it makes: its left window, the right windows of the
        // earlier messages it falls into, and its own right window when a
        // later message came first.
        let mut new = vec![(ts.saturating_sub(duration), ts)];
        let earlier = self
            .times
            .partition_point(|time| *time < ts.saturating_sub(reach));
        for &time in &self.times[earlier..] {
            if time >= ts {
                break;
            }
            new.push((time.saturating_add(1), time.saturating_add(reach)));
        }
        let later = self.times.partition_point(|time| *time <= ts);
        if self
            .times
            .get(later)
            .is_some_and(|time| *time <= ts.saturating_add(reach))
        {
            new.push((ts.saturating_add(1), ts.saturating_add(reach)));
        }
        for (start, end) in new {
            let exists = self.open.contains(&(start, end));
            if exists || end < closed_by {
                continue;
            }
            let Some(state) = fold(
                &agg.aggregator,
                &self.times,
                &mut store,
                prefix,
                (start, end),
            )?
            else {
                continue;
            };
            store.set_window(prefix, start, end, &state)?;
            let at = self
                .open
                .partition_point(|open| (open.1, open.0) < (end, start));
            self.open.insert(at, (start, end));
            updated.push((start, end, state));
        }

        let mut emissions = Vec::new();
        if agg.emit == Emit::Current {
            updated.sort_by_key(|(start, end, _)| (*start, *end));
            for (start, end, state) in updated {
                emissions.push(Emission::own(start, agg.row(start, end, &state)?));
            }
        }
        // Closing.
        let closing = self.open.partition_point(|open| open.1 < closed_by);
        for (start, end) in self.open.drain(..closing) {
            let state = store.window::<A::State>(prefix, start, end)?;
            store.delete_window(prefix, start, end);
            if let (Emit::Closed, Some(state)) = (agg.emit, state) {
                emissions.push(Emission::own(start, agg.row(start, end, &state)?));
            }
        }
        // Messages no open or future window can hold any more: the latest
        // window holding `time` ends at `time + duration + 1` (the right
        // window of the message just before it).
        let needed = self
            .times
            .partition_point(|time| time.saturating_add(reach) < closed_by);
        for time in self.times.drain(..needed) {
            store.delete_records(prefix, time);
        }
        if self.open.len() != open_before || closing > 0 {
            store.set_open_windows(prefix, &self.open);
        }
        if self.times.len() != times_before || needed > 0 {
            store.set_record_times(prefix, &self.times);
        }
        Ok(emissions)
    }
}

/// The aggregate of the key's kept messages (at `times`) in `[start, end]`,
/// merged in time order; `None` when there are none.
fn fold<V, A: Aggregator<V>>(
    aggregator: &A,
    times: &[i64],
    store: &mut WindowStore<'_>,
    prefix: &[u8],
    (start, end): (i64, i64),
) -> Result<Option<A::State>, StepError> {
    let from = times.partition_point(|time| *time < start);
    let mut folded: Option<A::State> = None;
    for &time in times[from..].iter().take_while(|time| **time <= end) {
        let records = store
            .records::<A::State>(prefix, time)?
            .ok_or_else(|| anyhow!("the messages at {time} have no state"))?;
        match &mut folded {
            Some(folded) => aggregator.merge(folded, records)?,
            None => folded = Some(records),
        }
    }
    Ok(folded)
}
