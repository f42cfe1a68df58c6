//! The session window step: per key, a session is a run of messages each
//! within `gap` of the next, `[start, end]` its first and last event time.
//!
//! A message at `t` joins every open session it is within the gap of
//! (`start - gap <= t <= end + gap`): none makes a new session, one is
//! extended, two or more (a message that bridges them) are merged, their
//! aggregates merged in time order ([`Aggregator::merge`]) and their items
//! moved under one anchor. A session closes when the key's stream time,
//! less the grace period, passes `end + gap`: no message in time can reach
//! it any more. A message is late when the session it would make or join
//! would already be closed, or when it is within the gap of a session
//! that closed (which was emitted and cannot change).

use super::aggregate::Aggregator;
use super::definition::Emit;
use super::key_sessions::{KeySessions, Session};
use super::key_windows::KeyWindow;
use super::step::{event_time, Absorb, Aggregating, Emission};
use super::store::WindowStore;
use crate::dataframe::{Context, StepError};

/// The session window step.
pub(crate) struct SessionStep<V, A: Aggregator<V>, R> {
    pub(crate) gap: i64,
    pub(crate) aggregating: Aggregating<V, A, R>,
}

impl<V, A: Aggregator<V>, R> Absorb<V, R> for SessionStep<V, A, R> {
    fn absorb(&mut self, value: &V, ctx: &mut Context<'_>) -> Result<Vec<Emission<R>>, StepError> {
        let ts = event_time(ctx)?;
        let prefix = ctx.key_prefix;
        let gap = self.gap;
        let agg = &mut self.aggregating;
        let mut store = agg.store(ctx.state.as_deref_mut())?;
        let mut keyed = store.per_key::<KeySessions<A::State>>(prefix)?;
        let now = keyed.time.map_or(ts, |time| time.max(ts));
        // Sessions ending (plus the gap) before this are closed.
        let closed_by = now.saturating_sub(agg.grace);

        // The open sessions it is within the gap of: sessions are disjoint
        // and apart by more than the gap, so their starts and ends ascend.
        let sessions = &keyed.sessions;
        let first = sessions.partition_point(|session| session.end.saturating_add(gap) < ts);
        let last = sessions.partition_point(|session| session.start.saturating_sub(gap) <= ts);
        let start = sessions[first..last]
            .first()
            .map_or(ts, |s| s.start.min(ts));
        let end = sessions[first..last].last().map_or(ts, |s| s.end.max(ts));
        let reaches_closed = keyed
            .closed_end
            .is_some_and(|closed| ts <= closed.saturating_add(gap));
        if reaches_closed || end.saturating_add(gap) < closed_by {
            agg.late(value, ctx.meta, (ts, closed_by), (start, end));
            return Ok(Vec::new());
        }
        keyed.time = Some(now);

        let mut joined = keyed.sessions.drain(first..last);
        let mut session = match joined.next() {
            Some(mut session) => {
                for later in joined.by_ref() {
                    merge(agg, &mut store, prefix, &mut session, later)?;
                }
                drop(joined);
                agg.aggregator.add(&mut session.state, value, ts)?;
                session.start = session.start.min(ts);
                session.end = session.end.max(ts);
                session
            }
            None => {
                drop(joined);
                Session {
                    anchor: ts,
                    start: ts,
                    end: ts,
                    items: 0,
                    state: agg.aggregator.first(value, ts)?,
                }
            }
        };
        let items = ((session.anchor, session.anchor), &mut session.items);
        agg.keep_item(&mut store, prefix, items, &mut None, (value, ts))?;
        let mut emissions = Vec::new();
        if agg.emit == Emit::Current {
            let row = agg.row(session.start, session.end, &session.state)?;
            emissions.push(Emission::own(session.start, row));
        }
        keyed.sessions.insert(first, session);

        let closing = keyed
            .sessions
            .partition_point(|session| session.end.saturating_add(gap) < closed_by);
        for session in keyed.sessions.drain(..closing) {
            keyed.closed_end = Some(keyed.closed_end.map_or(session.end, |c| c.max(session.end)));
            let anchor = (session.anchor, session.anchor);
            let window = KeyWindow {
                start: session.start,
                end: session.end,
                items: session.items,
                state: session.state,
            };
            let start = window.start;
            if let Some(row) = agg.close_with_items_at(&mut store, prefix, window, anchor)? {
                emissions.push(Emission::own(start, row));
            }
        }
        store.set_per_key(prefix, &keyed)?;
        Ok(emissions)
    }
}

/// Merges `later` into `session` (which ends before it starts): states in
/// time order, and the items of the one with fewer under the other's
/// anchor (two sessions never hold one event time, so the items' order
/// by time is kept).
fn merge<V, A: Aggregator<V>, R>(
    agg: &Aggregating<V, A, R>,
    store: &mut WindowStore<'_>,
    prefix: &[u8],
    session: &mut Session<A::State>,
    later: Session<A::State>,
) -> Result<(), StepError> {
    agg.aggregator.merge(&mut session.state, later.state)?;
    session.end = later.end;
    let (mut from, to) = ((later.anchor, later.items), (session.anchor, session.items));
    if from.1 > to.1 {
        session.anchor = later.anchor;
        from = to;
    }
    let (from_at, to_at) = ((from.0, from.0), (session.anchor, session.anchor));
    let to_items = session.items.max(later.items);
    for index in 0..from.1 {
        match store.item(prefix, from_at, index)? {
            Some((time, item)) => store.set_item(prefix, to_at, to_items + index, (time, &item))?,
            None => log::error!(
                "item {index} of a session merged at {} is missing",
                later.end
            ),
        }
        store.delete_item(prefix, from_at, index);
    }
    session.items += later.items;
    Ok(())
}
