//! [`Aggregations`]: several named aggregators over one window.

use anyhow::anyhow;
use serde::Serialize;
use serde_json::{Map, Value};

use super::aggregate::Aggregator;
use super::finite;

/// Several aggregators over the same windows, each under a name: the
/// window's result is a JSON object of the names' results (beside `start`
/// and `end`, as Quix Streams' `agg` gives them).
///
/// # Examples
///
/// ```
/// use kstreams::windows::{Aggregations, Count, Max, Sum};
/// use serde_json::Value;
///
/// let aggregations = Aggregations::<Value>::new()
///     .with("count", Count)
///     .with("total", Sum::column("amount"))
///     .with("largest", Max::column("amount"));
/// ```
pub struct Aggregations<V> {
    named: Vec<(String, Box<dyn Erased<V>>)>,
}

impl<V: 'static> Aggregations<V> {
    /// No aggregator yet.
    pub fn new() -> Self {
        Aggregations { named: Vec::new() }
    }

    /// Adds `aggregator`, whose result goes under `name`.
    ///
    /// # Panics
    ///
    /// When `name` is `start`, `end` or taken.
    #[must_use]
    pub fn with<A: Aggregator<V>>(mut self, name: impl Into<String>, aggregator: A) -> Self {
        let name = name.into();
        assert!(
            name != "start" && name != "end",
            "\"{name}\" is the window's own field: name the aggregation otherwise"
        );
        assert!(
            self.named.iter().all(|(taken, _)| *taken != name),
            "two aggregations are named \"{name}\""
        );
        self.named.push((name, Box::new(aggregator)));
        self
    }
}

impl<V: 'static> Default for Aggregations<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// An aggregator whose state and result are JSON values.
trait Erased<V>: Send {
    fn can_merge(&self) -> bool;
    fn first(&self, value: &V, timestamp: i64) -> anyhow::Result<Value>;
    fn add(&self, state: &mut Value, value: &V, timestamp: i64) -> anyhow::Result<()>;
    fn merge(&self, into: &mut Value, later: Value) -> anyhow::Result<()>;
    fn result(&self, state: &Value) -> anyhow::Result<Value>;
    fn keeps_items(&self) -> bool;
    fn item(&self, value: &V) -> anyhow::Result<Value>;
    fn result_with_items(&self, state: &Value, items: Vec<Value>) -> anyhow::Result<Value>;
}

impl<V, A: Aggregator<V>> Erased<V> for A {
    fn can_merge(&self) -> bool {
        Aggregator::can_merge(self)
    }

    fn first(&self, value: &V, timestamp: i64) -> anyhow::Result<Value> {
        stored(Aggregator::first(self, value, timestamp)?)
    }

    fn add(&self, state: &mut Value, value: &V, timestamp: i64) -> anyhow::Result<()> {
        let mut typed: A::State = serde_json::from_value(state.take())?;
        Aggregator::add(self, &mut typed, value, timestamp)?;
        *state = stored(typed)?;
        Ok(())
    }

    fn merge(&self, into: &mut Value, later: Value) -> anyhow::Result<()> {
        let mut typed: A::State = serde_json::from_value(into.take())?;
        Aggregator::merge(self, &mut typed, serde_json::from_value(later)?)?;
        *into = stored(typed)?;
        Ok(())
    }

    fn result(&self, state: &Value) -> anyhow::Result<Value> {
        let typed: A::State = serde_json::from_value(state.clone())?;
        Ok(serde_json::to_value(Aggregator::result(self, &typed)?)?)
    }

    fn keeps_items(&self) -> bool {
        Aggregator::keeps_items(self)
    }

    fn item(&self, value: &V) -> anyhow::Result<Value> {
        Aggregator::item(self, value)
    }

    fn result_with_items(&self, state: &Value, items: Vec<Value>) -> anyhow::Result<Value> {
        let typed: A::State = serde_json::from_value(state.clone())?;
        let result = Aggregator::result_with_items(self, &typed, items)?;
        Ok(serde_json::to_value(result)?)
    }
}

/// A state as the JSON value the store keeps (refused when JSON cannot
/// hold it: see `finite`).
fn stored<S: Serialize>(state: S) -> anyhow::Result<Value> {
    finite::check(&state)?;
    Ok(serde_json::to_value(state)?)
}

impl<V: 'static> Aggregator<V> for Aggregations<V> {
    /// Each aggregator's state, in the order they were added.
    type State = Vec<Value>;
    type Output = Map<String, Value>;

    /// Quix Streams names a window store of several aggregations after the
    /// window alone.
    fn name(&self) -> String {
        String::new()
    }

    fn first(&self, value: &V, timestamp: i64) -> anyhow::Result<Vec<Value>> {
        self.named
            .iter()
            .map(|(name, aggregator)| {
                aggregator
                    .first(value, timestamp)
                    .map_err(|error| anyhow!("aggregation {name:?}: {error:#}"))
            })
            .collect()
    }

    fn add(&self, states: &mut Vec<Value>, value: &V, timestamp: i64) -> anyhow::Result<()> {
        self.check(states)?;
        for ((name, aggregator), state) in self.named.iter().zip(states) {
            aggregator
                .add(state, value, timestamp)
                .map_err(|error| anyhow!("aggregation {name:?}: {error:#}"))?;
        }
        Ok(())
    }

    fn merge(&self, into: &mut Vec<Value>, later: Vec<Value>) -> anyhow::Result<()> {
        for ((name, aggregator), (state, later)) in
            self.named.iter().zip(into.iter_mut().zip(later))
        {
            aggregator
                .merge(state, later)
                .map_err(|error| anyhow!("aggregation {name:?}: {error:#}"))?;
        }
        Ok(())
    }

    fn can_merge(&self) -> bool {
        self.named
            .iter()
            .all(|(_, aggregator)| aggregator.can_merge())
    }

    fn result(&self, states: &Vec<Value>) -> anyhow::Result<Map<String, Value>> {
        Aggregator::result_with_items(self, states, Vec::new())
    }

    fn keeps_items(&self) -> bool {
        self.named
            .iter()
            .any(|(_, aggregator)| aggregator.keeps_items())
    }

    /// The items of the aggregators that keep items, in their order.
    fn item(&self, value: &V) -> anyhow::Result<Value> {
        self.keeping()
            .map(|(name, aggregator)| {
                aggregator
                    .item(value)
                    .map_err(|error| anyhow!("aggregation {name:?}: {error:#}"))
            })
            .collect()
    }

    fn result_with_items(
        &self,
        states: &Vec<Value>,
        items: Vec<Value>,
    ) -> anyhow::Result<Map<String, Value>> {
        self.check(states)?;
        // Each keeping aggregator's items: a column of the items.
        let keeping = self.keeping().count();
        let mut columns: Vec<Vec<Value>> = vec![Vec::with_capacity(items.len()); keeping];
        for item in items {
            let Value::Array(parts) = item else {
                anyhow::bail!("a stored window item is not a list of {keeping} items");
            };
            anyhow::ensure!(
                parts.len() == keeping,
                "a stored window item has {} parts, the window defines {keeping}",
                parts.len()
            );
            columns
                .iter_mut()
                .zip(parts)
                .for_each(|(column, part)| column.push(part));
        }
        let mut columns = columns.into_iter();
        self.named
            .iter()
            .zip(states)
            .map(|((name, aggregator), state)| {
                let result = if aggregator.keeps_items() {
                    let items = columns.next().unwrap_or_default();
                    aggregator.result_with_items(state, items)
                } else {
                    aggregator.result(state)
                };
                let result = result.map_err(|error| anyhow!("aggregation {name:?}: {error:#}"))?;
                Ok((name.clone(), result))
            })
            .collect()
    }
}

impl<V> Aggregations<V> {
    /// The named aggregators that keep items.
    fn keeping(&self) -> impl Iterator<Item = &(String, Box<dyn Erased<V>>)> {
        self.named
            .iter()
            .filter(|(_, aggregator)| aggregator.keeps_items())
    }

    /// A stored state of another set of aggregations (the code changed,
    /// the store did not) is an error, not a silent mix-up.
    fn check(&self, states: &[Value]) -> anyhow::Result<()> {
        anyhow::ensure!(
            states.len() == self.named.len(),
            "the stored window has {} aggregation states, the window defines {}",
            states.len(),
            self.named.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windows::{Count, Mean, Sum};
    use serde_json::json;

    #[test]
    fn each_named_aggregator_folds_its_own_state() {
        let aggregations = Aggregations::<Value>::new()
            .with("count", Count)
            .with("sum", Sum::column("x"))
            .with("mean", Mean::column("x"));
        let mut state = Aggregator::first(&aggregations, &json!({"x": 2}), 0).unwrap();
        Aggregator::add(&aggregations, &mut state, &json!({"x": 4}), 1).unwrap();
        let result = Aggregator::result(&aggregations, &state).unwrap();
        assert_eq!(
            Value::Object(result),
            json!({"count": 2, "sum": 6.0, "mean": 3.0})
        );
        let error = Aggregator::add(&aggregations, &mut state, &json!({}), 2).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "aggregation \"sum\": field \"x\" is missing"
        );
    }

    #[test]
    #[should_panic(expected = "two aggregations are named \"n\"")]
    fn two_aggregations_of_one_name_are_refused() {
        let _ = Aggregations::<Value>::new()
            .with("n", Count)
            .with("n", Count);
    }
}
