//! The window-totals pipeline, shared by the `window_totals` and `bench`
//! examples: per message key, a tumbling (or session) window of event time
//! with a grace period; count and sum of `amount`; each window once, when
//! it closes.

use std::time::Duration;

use kstreams::windows::{Reduce, WindowDefinition};
use kstreams::{StreamingDataFrame, Topic};
use serde::{Deserialize, Serialize};

/// An input message; other fields of the JSON object are ignored.
#[derive(Debug, Serialize, Deserialize)]
pub struct Purchase {
    pub amount: f64,
    /// Event time, milliseconds since the epoch.
    pub ts: i64,
}

/// An output message: `{"key", "start", "end", "count", "sum"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowTotals {
    pub key: String,
    pub start: i64,
    pub end: i64,
    pub count: u64,
    pub sum: f64,
}

/// The input topic `name`, its event time read from `ts`.
pub fn purchases(name: &str) -> Topic<Purchase> {
    Topic::new(name).timestamp(|purchase: &Purchase, _| Ok(purchase.ts))
}

/// The pipeline's window, on `purchases`: tumbling windows of `window`,
/// closing per key, or per partition and on an idle stream after
/// `idle_close`.
pub fn window_totals(
    purchases: StreamingDataFrame<Purchase>,
    window: Duration,
    grace: Duration,
    idle_close: Option<Duration>,
) -> StreamingDataFrame<WindowTotals> {
    let windows = purchases.tumbling_window(window);
    match idle_close {
        Some(after) => totals(windows.close_when_idle(after), grace),
        None => totals(windows, grace),
    }
}

/// The pipeline on session windows of inactivity gap `gap`.
pub fn session_totals(
    purchases: StreamingDataFrame<Purchase>,
    gap: Duration,
    grace: Duration,
) -> StreamingDataFrame<WindowTotals> {
    totals(purchases.session_window(gap), grace)
}

/// Count and sum of `amount` in each window of `window`, each window once,
/// when it closes.
fn totals(window: WindowDefinition<Purchase>, grace: Duration) -> StreamingDataFrame<WindowTotals> {
    let count_and_sum = Reduce::new(
        |purchase: &Purchase| (1_u64, purchase.amount),
        |(count, sum), purchase: &Purchase| (count + 1, sum + purchase.amount),
    )
    .with_merge(|(count, sum), (more, total)| (count + more, sum + total));
    window
        .grace(grace)
        .aggregate(count_and_sum)
        .closed()
        .apply_with_metadata(|window, meta| {
            let (count, sum) = window.value;
            let key = meta.key_str().unwrap_or_default().to_string();
            let (start, end) = (window.start, window.end);
            Ok(WindowTotals {
                key,
                start,
                end,
                count,
                sum,
            })
        })
}
