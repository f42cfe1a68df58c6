//! The count-per-key pipeline, shared by the `count_per_key` and `bench`
//! examples: per message key, count the purchases and sum their amounts in
//! state, and emit the totals for every purchase.

use kstreams::State;
use serde::{Deserialize, Serialize};

/// An input message; other fields of the JSON object are ignored.
#[derive(Debug, Serialize, Deserialize)]
pub struct Purchase {
    pub amount: f64,
}

/// An output message: `{"key", "count", "total"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Totals {
    pub key: String,
    pub count: u64,
    pub total: f64,
}

/// Adds `purchase` to its key's count and total.
pub fn count_and_sum(purchase: Purchase, state: &mut State) -> anyhow::Result<Totals> {
    let count = state.get::<u64>("count")?.unwrap_or(0) + 1;
    let total = state.get::<f64>("total")?.unwrap_or(0.0) + purchase.amount;
    state.set("count", &count)?;
    state.set("total", &total)?;
    let key = String::from_utf8_lossy(state.message_key()).into_owned();
    Ok(Totals { key, count, total })
}
