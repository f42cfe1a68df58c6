//! The window-totals pipeline, shared by the `window_totals` and `bench`
//! examples: per message key, a tumbling window of event time with a grace
//! period; count and sum of `amount`; each window once, when it closes.

use std::time::Duration;

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

/// The pipeline's window, on `purchases`.
pub fn window_totals(
    purchases: StreamingDataFrame<Purchase>,
    window: Duration,
    grace: Duration,
) -> StreamingDataFrame<WindowTotals> {
    purchases
        .tumbling_window(window)
        .grace(grace)
        .reduce(
            |purchase| (1_u64, purchase.amount),
            |(count, sum), purchase| (count + 1, sum + purchase.amount),
        )
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
