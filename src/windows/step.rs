//! The window step: assigns each message to its windows, aggregates it,
//! closes the windows that stream time passed, and emits results.

use std::sync::Arc;

use anyhow::anyhow;
use serde_json::Value;

use super::aggregate::Aggregator;
use super::definition::{Closing, Emit, OnLate};
use super::key_windows::{KeyWindow, KeyWindows};
use super::kind::Kind;
use super::late::LateMessage;
use super::store::{message_key, WindowStore, PARTITION};
use crate::dataframe::{Context, Step, StepError, Tick};
use crate::message::Metadata;
use crate::state::{OpenWindow, PartitionState};

/// A window's result maker: bounds and aggregate to the emitted row.
pub(crate) type Row<O, R> = fn(i64, i64, O) -> R;

/// The message's event time.
pub(crate) fn event_time(ctx: &Context<'_>) -> Result<i64, StepError> {
    let timestamp = ctx.meta.timestamp;
    Ok(timestamp.ok_or_else(|| anyhow!("the message has no timestamp, and windows need one"))?)
}

/// What both window steps share: where the windows live, how they
/// aggregate, what they emit, and what becomes of late messages.
pub(crate) struct Aggregating<V, A: Aggregator<V>, R> {
    pub(crate) grace: i64,
    pub(crate) emit: Emit,
    /// The window store's index among the topic's stores, and its name.
    pub(crate) store: usize,
    pub(crate) store_name: Arc<str>,
    /// The window's type, parameters, grace and closing, as text: what
    /// the store's windows were made by.
    pub(crate) definition: String,
    pub(crate) aggregator: A,
    pub(crate) row: Row<A::Output, R>,
    pub(crate) on_late: Option<OnLate<V>>,
    /// Whether the aggregator keeps items ([`Aggregator::keeps_items`],
    /// asked once).
    pub(crate) keeps_items: bool,
}

impl<V, A: Aggregator<V>, R> Aggregating<V, A, R> {
    /// The window store of the message's partition, once it is known to
    /// hold windows of this definition.
    pub(crate) fn store<'c>(
        &self,
        state: Option<&'c mut PartitionState>,
    ) -> Result<WindowStore<'c>, StepError> {
        let partition = state.ok_or_else(|| {
            anyhow!("no state store is open for this partition (is it still assigned?)")
        })?;
        let mut store = WindowStore::new(partition, self.store);
        store.check_definition(&self.definition).map_err(|stored| {
            anyhow!(
                "window store {} holds windows of another definition ({stored}; this window: \
                 {}): give the window a new .name(..), or clear the state and its changelog",
                self.store_name,
                self.definition
            )
        })?;
        Ok(store)
    }

    /// The row of window `(start, end)` with `state`.
    pub(crate) fn row(&self, start: i64, end: i64, state: &A::State) -> Result<R, StepError> {
        Ok((self.row)(start, end, self.aggregator.result(state)?))
    }

    /// Deletes a closed window's items; its row, when closed windows are
    /// emitted.
    pub(crate) fn close(
        &self,
        store: &mut WindowStore<'_>,
        prefix: &[u8],
        window: KeyWindow<A::State>,
    ) -> Result<Option<R>, StepError> {
        let items_at = (window.start, window.end);
        self.close_with_items_at(store, prefix, window, items_at)
    }

    /// [`close`](Self::close) of a window whose items are stored under
    /// other bounds than its own (a count window's: its message numbers).
    pub(crate) fn close_with_items_at(
        &self,
        store: &mut WindowStore<'_>,
        prefix: &[u8],
        window: KeyWindow<A::State>,
        items_at: (i64, i64),
    ) -> Result<Option<R>, StepError> {
        let KeyWindow {
            start,
            end,
            items: count,
            state,
        } = window;
        let mut items = Vec::with_capacity(count as usize);
        for index in 0..count {
            match store.item(prefix, items_at, index)? {
                Some(item) => items.push(item),
                None => log::error!("item {index} of window [{start}, {end}) is missing"),
            }
            store.delete_item(prefix, items_at, index);
        }
        if self.emit == Emit::Current {
            return Ok(None);
        }
        if !self.keeps_items {
            return Ok(Some(self.row(start, end, &state)?));
        }
        // Stable: values of one event time stay in arrival order.
        items.sort_by_key(|(time, _)| *time);
        let items = items.into_iter().map(|(_, item)| item).collect();
        let result = self.aggregator.result_with_items(&state, items)?;
        Ok(Some((self.row)(start, end, result)))
    }

    /// Stores the item of `value` (read once a message, into `item`) as the
    /// next of a window's `items`, under `items_at`, when the aggregator
    /// keeps items.
    pub(crate) fn keep_item(
        &self,
        store: &mut WindowStore<'_>,
        prefix: &[u8],
        (items_at, items): ((i64, i64), &mut u32),
        item: &mut Option<Value>,
        (value, timestamp): (&V, i64),
    ) -> Result<(), StepError> {
        if !self.keeps_items {
            return Ok(());
        }
        let item = match item {
            Some(item) => item,
            None => item.insert(self.aggregator.item(value)?),
        };
        store.set_item(prefix, items_at, *items, (timestamp, item))?;
        *items += 1;
        Ok(())
    }

    /// Reports a message left out of window `window`, closed at
    /// `closed_by`: to the callback, and to the log unless it says no.
    pub(crate) fn late(
        &mut self,
        value: &V,
        meta: &Metadata,
        (timestamp, closed_by): (i64, i64),
        window: (i64, i64),
    ) {
        let late = LateMessage::new(value, meta, timestamp, closed_by, window, &self.store_name);
        if self.on_late.as_mut().is_none_or(|on_late| on_late(&late)) {
            log::warn!(
                "late message at topic {} partition {} offset {} (timestamp {timestamp}, {} ms \
                 late): the window from {} to {} of store {} is closed; left out",
                late.topic,
                late.partition,
                late.offset,
                late.late_by_ms,
                late.start,
                late.end,
                late.store,
            );
        }
    }
}

/// The tumbling and hopping window step.
pub(crate) struct WindowStep<V, A: Aggregator<V>, R> {
    pub(crate) kind: Kind,
    pub(crate) closing: Closing,
    /// Closing per partition, on an idle stream: after how long without a
    /// message (ms) stream time runs with the wall clock.
    pub(crate) idle_after: Option<i64>,
    pub(crate) aggregating: Aggregating<V, A, R>,
    /// The windows of the current message (reused).
    pub(crate) windows: Vec<(i64, i64)>,
    /// Per partition, the stream time before a [`Tick::Idle`] advanced it,
    /// until the checkpoint after it is committed ([`Tick::Act`]) or not
    /// ([`Tick::Undo`]).
    pub(crate) before_idle: Vec<(i32, i64)>,
}

/// A result to emit: the key's prefix when it is not the message's own.
pub(crate) struct Emission<R> {
    pub(crate) prefix: Option<Vec<u8>>,
    pub(crate) start: i64,
    pub(crate) row: R,
}

impl<R> Emission<R> {
    /// A result of the message's own key.
    pub(crate) fn own(start: i64, row: R) -> Self {
        Emission {
            prefix: None,
            start,
            row,
        }
    }
}

/// A window step: what one message does to its windows.
pub(crate) trait Absorb<V, R> {
    /// Updates the windows of `value` and closes those that stream time
    /// passed; returns what to emit.
    fn absorb(&mut self, value: &V, ctx: &mut Context<'_>) -> Result<Vec<Emission<R>>, StepError>;
}

/// Runs one message through a window step, then `next` with each result.
pub(crate) fn run<V, R>(
    step: &mut impl Absorb<V, R>,
    value: V,
    ctx: &mut Context<'_>,
    next: &mut Step<R>,
) -> Result<(), StepError> {
    for emission in step.absorb(&value, ctx)? {
        let start = emission.start;
        emit(ctx, emission, next).map_err(|error| match error {
            StepError::User(error) => {
                StepError::User(error.context(format!("the result of the window from {start}")))
            }
            other => other,
        })?;
    }
    Ok(())
}

impl<V, A: Aggregator<V>, R> Absorb<V, R> for WindowStep<V, A, R> {
    fn absorb(&mut self, value: &V, ctx: &mut Context<'_>) -> Result<Vec<Emission<R>>, StepError> {
        let timestamp = event_time(ctx)?;
        let prefix = ctx.key_prefix;
        let agg = &mut self.aggregating;
        let mut store = agg.store(ctx.state.as_deref_mut())?;
        let mut keyed = store.per_key::<KeyWindows<A::State>>(prefix)?;
        let before = match self.closing {
            Closing::PerKey => keyed.time,
            Closing::PerPartition => store.time(&PARTITION)?,
        };
        let now = before.map_or(timestamp, |time| time.max(timestamp));
        match self.closing {
            Closing::PerKey => keyed.time = Some(now),
            Closing::PerPartition if before != Some(now) => store.set_time(&PARTITION, now),
            Closing::PerPartition => {}
        }
        if self.idle_after.is_some() {
            let latest = store.message_time()?;
            if latest.is_none_or(|latest| latest < timestamp) {
                store.set_message_time(timestamp);
            }
        }
        // Windows ending at or before this are closed.
        let closed_by = now.saturating_sub(agg.grace);
        let mut emissions = Vec::new();
        let mut windows = std::mem::take(&mut self.windows);
        self.kind.windows_of(timestamp, &mut windows);
        let mut item = None;
        for &(start, end) in &windows {
            if end <= closed_by {
                agg.late(value, ctx.meta, (timestamp, closed_by), (start, end));
                continue;
            }
            let at = match keyed.position(start, end) {
                Ok(at) => {
                    agg.aggregator
                        .add(&mut keyed.windows[at].state, value, timestamp)?;
                    at
                }
                Err(at) => {
                    let state = agg.aggregator.first(value, timestamp)?;
                    let window = KeyWindow {
                        start,
                        end,
                        items: 0,
                        state,
                    };
                    keyed.windows.insert(at, window);
                    if self.closing == Closing::PerPartition {
                        let prefix = prefix.to_vec();
                        store.index()?.insert(OpenWindow { end, start, prefix });
                    }
                    at
                }
            };
            let window = &mut keyed.windows[at];
            let items = ((start, end), &mut window.items);
            agg.keep_item(&mut store, prefix, items, &mut item, (value, timestamp))?;
            if agg.emit == Emit::Current {
                let row = agg.row(start, end, &window.state)?;
                emissions.push(Emission::own(start, row));
            }
        }
        self.windows = windows;
        match self.closing {
            Closing::PerKey => {
                let closing = keyed
                    .windows
                    .partition_point(|window| window.end <= closed_by);
                for window in keyed.windows.drain(..closing) {
                    let start = window.start;
                    if let Some(row) = agg.close(&mut store, prefix, window)? {
                        emissions.push(Emission::own(start, row));
                    }
                }
            }
            Closing::PerPartition => {
                let own = Some((prefix, &mut keyed));
                emissions.extend(agg.close_partition(&mut store, own, closed_by)?);
            }
        }
        store.set_per_key(prefix, &keyed)?;
        Ok(emissions)
    }
}

impl<V, A: Aggregator<V>, R> Aggregating<V, A, R> {
    /// Closes the partition's windows that end by `closed_by`, through its
    /// index: those of `own` (the message's key, whose windows are in
    /// hand) and of every other key.
    fn close_partition(
        &self,
        store: &mut WindowStore<'_>,
        mut own: Option<(&[u8], &mut KeyWindows<A::State>)>,
        closed_by: i64,
    ) -> Result<Vec<Emission<R>>, StepError> {
        let mut emissions = Vec::new();
        let closing: Vec<OpenWindow> = store.index()?.ending_by(closed_by).cloned().collect();
        for open in closing {
            let OpenWindow { start, end, .. } = open;
            let window = match &mut own {
                Some((prefix, keyed)) if *prefix == open.prefix => keyed.remove(start, end),
                _ => {
                    let mut theirs = store.per_key::<KeyWindows<A::State>>(&open.prefix)?;
                    let window = theirs.remove(start, end);
                    store.set_per_key(&open.prefix, &theirs)?;
                    window
                }
            };
            store.index()?.remove(&open);
            let Some(window) = window else {
                log::error!("window [{start}, {end}) was indexed as open but has no state");
                continue;
            };
            if let Some(row) = self.close(store, &open.prefix, window)? {
                let is_own = own
                    .as_ref()
                    .is_some_and(|(prefix, _)| *prefix == open.prefix);
                emissions.push(Emission {
                    start,
                    row,
                    prefix: (!is_own).then_some(open.prefix),
                });
            }
        }
        Ok(emissions)
    }
}

impl<V, A: Aggregator<V>, R> WindowStep<V, A, R> {
    /// A tick of closing on an idle stream (see [`Tick`]). `Idle`: once the
    /// partition has been idle for `idle_after`, and if that closes a
    /// window, its stream time becomes the latest event time of its
    /// messages plus the time it has been idle, written to state (and
    /// checkpointed before anything acts on it, so that a restart decides
    /// the same; `Undo` takes it back when that checkpoint fails). `Act`:
    /// closes the windows that the stream time in state passed.
    pub(crate) fn tick(
        &mut self,
        tick: Tick,
        ctx: &mut Context<'_>,
        next: &mut Step<R>,
    ) -> Result<bool, StepError> {
        let Some(idle_after) = self.idle_after else {
            return Ok(false);
        };
        let partition = ctx.meta.partition;
        let agg = &mut self.aggregating;
        let mut store = agg.store(ctx.state.as_deref_mut())?;
        let Some(time) = store.time(&PARTITION)? else {
            return Ok(false);
        };
        let undo = self.before_idle.iter().position(|(p, _)| *p == partition);
        match tick {
            Tick::Idle(idle) => {
                let idle = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
                let Some(latest) = store.message_time()? else {
                    return Ok(false);
                };
                let advanced = latest.saturating_add(idle);
                let closed_by = advanced.saturating_sub(agg.grace);
                if idle < idle_after
                    || advanced <= time
                    || store.index()?.ending_by(closed_by).next().is_none()
                {
                    return Ok(false);
                }
                store.set_time(&PARTITION, advanced);
                // Act or Undo follows every round of Idle ticks: an entry
                // found now is of a round whose partition was released
                // before (an aborted checkpoint's rewind), and stale.
                match undo {
                    Some(at) => self.before_idle[at].1 = time,
                    None => self.before_idle.push((partition, time)),
                }
                Ok(true)
            }
            Tick::Undo => {
                if let Some(at) = undo {
                    let (_, before) = self.before_idle.swap_remove(at);
                    store.set_time(&PARTITION, before);
                }
                Ok(false)
            }
            Tick::Act => {
                if let Some(at) = undo {
                    self.before_idle.swap_remove(at);
                }
                let closed_by = time.saturating_sub(agg.grace);
                for emission in agg.close_partition(&mut store, None, closed_by)? {
                    emit(ctx, emission, next)?;
                }
                Ok(false)
            }
        }
    }
}

/// Runs `next` with a result, timestamped at the window's start and keyed
/// by the window's key.
fn emit<R>(
    ctx: &mut Context<'_>,
    emission: Emission<R>,
    next: &mut Step<R>,
) -> Result<(), StepError> {
    let timestamp = ctx.meta.timestamp.replace(emission.start);
    let result = match &emission.prefix {
        None => next(emission.row, ctx),
        Some(prefix) => {
            let own_key = ctx.meta.key().map(<[u8]>::to_vec);
            ctx.meta.set_key(message_key(prefix));
            let mut theirs = Context {
                meta: &mut *ctx.meta,
                outputs: &mut *ctx.outputs,
                state: ctx.state.as_deref_mut(),
                key_prefix: prefix,
                repartition_records: ctx.repartition_records,
            };
            let result = next(emission.row, &mut theirs);
            ctx.repartition_records = theirs.repartition_records;
            ctx.meta.set_key(own_key.as_deref());
            result
        }
    };
    ctx.meta.timestamp = timestamp;
    result
}
