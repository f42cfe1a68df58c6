//! Aggregators: what a window keeps of the values that fell into it.

use std::marker::PhantomData;

use anyhow::anyhow;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use super::finite;

/// Folds the values of one window into a state that the window store keeps
/// (serde, JSON-encoded) and turns it into the window's result.
///
/// A window is created by its first value ([`first`](Self::first)), so a
/// state is never empty. [`merge`](Self::merge) joins two states: sliding
/// windows are built by merging the states of each event time, in time
/// order, and two session windows merge when a message bridges them (so
/// there, [`First`] and [`Last`] follow event time).
///
/// The built-in aggregators are [`Count`], [`Sum`], [`Mean`], [`Min`],
/// [`Max`], [`First`], [`Last`], [`Earliest`], [`Latest`] and [`Reduce`];
/// [`Aggregations`](super::Aggregations) runs several by name.
///
/// # Examples
///
/// A custom aggregator, the range of the values:
///
/// ```
/// use kstreams::windows::Aggregator;
///
/// struct Range;
///
/// impl Aggregator<f64> for Range {
///     type State = (f64, f64);
///     type Output = f64;
///     fn name(&self) -> String { "range".into() }
///     fn first(&self, value: &f64, _timestamp: i64) -> anyhow::Result<(f64, f64)> {
///         Ok((*value, *value))
///     }
///     fn add(&self, (low, high): &mut (f64, f64), value: &f64, _timestamp: i64) -> anyhow::Result<()> {
///         *low = low.min(*value);
///         *high = high.max(*value);
///         Ok(())
///     }
///     fn merge(&self, (low, high): &mut (f64, f64), other: (f64, f64)) -> anyhow::Result<()> {
///         *low = low.min(other.0);
///         *high = high.max(other.1);
///         Ok(())
///     }
///     fn result(&self, (low, high): &(f64, f64)) -> anyhow::Result<f64> { Ok(high - low) }
/// }
/// ```
pub trait Aggregator<V>: Send + 'static {
    /// What the store keeps per window.
    type State: Serialize + DeserializeOwned + Send + 'static;
    /// The window's result.
    type Output: Serialize + Send + 'static;

    /// A short name (`"sum"`): part of the default store name.
    fn name(&self) -> String;

    /// The state of a window whose first value is `value`, with event time
    /// `timestamp` (milliseconds).
    ///
    /// # Errors
    ///
    /// When `value` cannot be aggregated (a JSON row without the column):
    /// the message fails, naming itself.
    fn first(&self, value: &V, timestamp: i64) -> anyhow::Result<Self::State>;

    /// Adds `value` to a window's state.
    ///
    /// # Errors
    ///
    /// As for [`first`](Self::first).
    fn add(&self, state: &mut Self::State, value: &V, timestamp: i64) -> anyhow::Result<()>;

    /// Adds the state of a window whose values all came after `into`'s.
    ///
    /// # Errors
    ///
    /// When the two cannot be joined (a sum that overflows): the message
    /// that made the windows meet fails, naming itself.
    fn merge(&self, into: &mut Self::State, later: Self::State) -> anyhow::Result<()>;

    /// Whether [`merge`](Self::merge) really joins two states: sliding
    /// windows build a window from the states of its messages. Only a
    /// [`Reduce`] without [`with_merge`](Reduce::with_merge) says no.
    fn can_merge(&self) -> bool {
        true
    }

    /// The window's result.
    ///
    /// # Errors
    ///
    /// When the state cannot make one: the message that updated or closed
    /// the window fails, naming itself.
    fn result(&self, state: &Self::State) -> anyhow::Result<Self::Output>;

    /// Whether the aggregator keeps values one by one beside its state, as
    /// [`Collect`] does: each value's [`item`](Self::item) is then stored
    /// as an entry of its own (a window never rewrites a growing list), and
    /// the result comes from
    /// [`result_with_items`](Self::result_with_items). Such windows are
    /// emitted only when they close (`.closed()`), and cannot be sliding.
    fn keeps_items(&self) -> bool {
        false
    }

    /// What of `value` is kept, when [`keeps_items`](Self::keeps_items).
    ///
    /// # Errors
    ///
    /// As for [`first`](Self::first).
    fn item(&self, _value: &V) -> anyhow::Result<Value> {
        Ok(Value::Null)
    }

    /// The result of a closed window from its state and its items, in
    /// event-time order (arrival order among equal times).
    ///
    /// # Errors
    ///
    /// As for [`result`](Self::result).
    fn result_with_items(
        &self,
        state: &Self::State,
        _items: Vec<Value>,
    ) -> anyhow::Result<Self::Output> {
        self.result(state)
    }
}

/// Reads the number (or value) an aggregator works on from a row: a closure
/// over typed rows, or a [`Column`] of JSON rows.
pub trait Extract<V, N>: Send + Sync + 'static {
    /// What of `value` is aggregated.
    ///
    /// # Errors
    ///
    /// When `value` does not have it.
    fn extract(&self, value: &V) -> anyhow::Result<N>;
}

impl<V, N, F> Extract<V, N> for F
where
    F: Fn(&V) -> N + Send + Sync + 'static,
{
    fn extract(&self, value: &V) -> anyhow::Result<N> {
        Ok(self(value))
    }
}

/// A field of JSON rows, read as a number (`f64`): `Sum::column("amount")`
/// is `Sum::of(Column::new("amount"))`.
#[derive(Debug, Clone)]
pub struct Column(String);

impl Column {
    /// The field `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Column(name.into())
    }
}

impl Extract<Value, f64> for Column {
    fn extract(&self, row: &Value) -> anyhow::Result<f64> {
        let field = row
            .get(&self.0)
            .ok_or_else(|| anyhow!("field {:?} is missing", self.0))?;
        field
            .as_f64()
            .ok_or_else(|| anyhow!("field {:?} is not a number: {field}", self.0))
    }
}

/// A number that can be summed: `f64`, `f32`, `i64`, `i32`, `u64`, `u32`.
pub trait Number: Copy + PartialOrd + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// `self + other`; `None` when an integer overflows or a float is no
    /// longer finite.
    fn checked_plus(self, other: Self) -> Option<Self>;
    /// As an `f64`, for means.
    fn as_f64(self) -> f64;
    /// Whether it is finite (always, for integers): JSON, the store's
    /// format, has no NaN or infinity.
    fn is_finite(self) -> bool;
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn checked_plus(self, other: Self) -> Option<Self> {
                self.checked_add(other)
            }
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn as_f64(self) -> f64 {
                self as f64
            }
            fn is_finite(self) -> bool {
                true
            }
        }
    )*};
}
integer!(i64, i32, u64, u32);

macro_rules! float {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn checked_plus(self, other: Self) -> Option<Self> {
                Some(self + other).filter(|sum| sum.is_finite())
            }
            #[allow(clippy::cast_lossless)]
            fn as_f64(self) -> f64 {
                self as f64
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    )*};
}
float!(f64, f32);

/// `number`, refused when it is not finite.
fn finite<N: Number>(number: N) -> anyhow::Result<N> {
    anyhow::ensure!(number.is_finite(), "not a finite number (NaN or infinite)");
    Ok(number)
}

/// The number of values in the window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl<V: 'static> Aggregator<V> for Count {
    type State = u64;
    type Output = u64;
    fn name(&self) -> String {
        "count".into()
    }
    fn first(&self, _: &V, _: i64) -> anyhow::Result<u64> {
        Ok(1)
    }
    fn add(&self, count: &mut u64, _: &V, _: i64) -> anyhow::Result<()> {
        *count += 1;
        Ok(())
    }
    fn merge(&self, count: &mut u64, later: u64) -> anyhow::Result<()> {
        *count += later;
        Ok(())
    }
    fn result(&self, count: &u64) -> anyhow::Result<u64> {
        Ok(*count)
    }
}

/// Declares an aggregator over what an [`Extract`] reads, with its
/// constructors for typed rows (`of`) and JSON columns (`column`).
macro_rules! extracting {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<E, N> {
            extract: E,
            number: PhantomData<fn() -> N>,
        }

        impl<E, N> $name<E, N> {
            /// Over what `extract` reads of each value (a closure of a
            /// typed row, or a [`Column`]).
            pub fn of(extract: E) -> Self {
                $name { extract, number: PhantomData }
            }
        }

        impl $name<Column, f64> {
            /// Over the number in field `name` of JSON rows.
            pub fn column(name: impl Into<String>) -> Self {
                $name::of(Column::new(name))
            }
        }
    };
}

extracting!(
    /// The sum of a number read from each value.
    Sum
);
extracting!(
    /// The mean of a number read from each value, as an `f64`.
    Mean
);
extracting!(
    /// The smallest of what is read from each value.
    Min
);
extracting!(
    /// The largest of what is read from each value.
    Max
);
extracting!(
    /// What is read from the first value to arrive.
    First
);
extracting!(
    /// What is read from the last value to arrive.
    Last
);
extracting!(
    /// What is read from the value with the earliest event time (the first
    /// to arrive of those with that time).
    Earliest
);
extracting!(
    /// What is read from the value with the latest event time (the last to
    /// arrive of those with that time).
    Latest
);

impl<V: 'static, N: Number, E: Extract<V, N>> Aggregator<V> for Sum<E, N> {
    type State = N;
    type Output = N;
    fn name(&self) -> String {
        "sum".into()
    }
    fn first(&self, value: &V, _: i64) -> anyhow::Result<N> {
        finite(self.extract.extract(value)?)
    }
    fn add(&self, sum: &mut N, value: &V, _: i64) -> anyhow::Result<()> {
        let number = finite(self.extract.extract(value)?)?;
        *sum = sum
            .checked_plus(number)
            .ok_or_else(|| anyhow!("the window's sum overflows"))?;
        Ok(())
    }
    fn merge(&self, sum: &mut N, later: N) -> anyhow::Result<()> {
        *sum = sum
            .checked_plus(later)
            .ok_or_else(|| anyhow!("the window's sum overflows"))?;
        Ok(())
    }
    fn result(&self, sum: &N) -> anyhow::Result<N> {
        Ok(*sum)
    }
}

impl<V: 'static, N: Number, E: Extract<V, N>> Aggregator<V> for Mean<E, N> {
    /// The sum and the count.
    type State = (f64, u64);
    type Output = f64;
    fn name(&self) -> String {
        "mean".into()
    }
    fn first(&self, value: &V, _: i64) -> anyhow::Result<(f64, u64)> {
        Ok((finite(self.extract.extract(value)?.as_f64())?, 1))
    }
    fn add(&self, (sum, count): &mut (f64, u64), value: &V, _: i64) -> anyhow::Result<()> {
        let total = *sum + finite(self.extract.extract(value)?.as_f64())?;
        *sum = finite(total).map_err(|_| anyhow!("the window's sum is no longer finite"))?;
        *count += 1;
        Ok(())
    }
    fn merge(&self, (sum, count): &mut (f64, u64), later: (f64, u64)) -> anyhow::Result<()> {
        *sum =
            finite(*sum + later.0).map_err(|_| anyhow!("the window's sum is no longer finite"))?;
        *count += later.1;
        Ok(())
    }
    #[allow(clippy::cast_precision_loss)]
    fn result(&self, (sum, count): &(f64, u64)) -> anyhow::Result<f64> {
        Ok(sum / *count as f64)
    }
}

/// Declares an aggregator that keeps one extracted value, replaced when
/// `replaces(new, kept)` holds; the state keeps the value's event time too.
macro_rules! keeping {
    ($name:ident, $label:literal, $($bound:ident)?, |$new:ident, $kept:ident| $replaces:expr) => {
        impl<V, N, E> Aggregator<V> for $name<E, N>
        where
            V: 'static,
            N: Serialize + DeserializeOwned + Clone + Send + 'static $(+ $bound)?,
            E: Extract<V, N>,
        {
            /// The value kept and its event time.
            type State = (N, i64);
            type Output = N;
            fn name(&self) -> String {
                $label.into()
            }
            fn first(&self, value: &V, timestamp: i64) -> anyhow::Result<(N, i64)> {
                Ok((self.extract.extract(value)?, timestamp))
            }
            fn add(&self, kept: &mut (N, i64), value: &V, timestamp: i64) -> anyhow::Result<()> {
                let new = (self.extract.extract(value)?, timestamp);
                let replaces = |$new: &(N, i64), $kept: &(N, i64)| $replaces;
                if replaces(&new, kept) {
                    *kept = new;
                }
                Ok(())
            }
            fn merge(&self, kept: &mut (N, i64), later: (N, i64)) -> anyhow::Result<()> {
                let replaces = |$new: &(N, i64), $kept: &(N, i64)| $replaces;
                if replaces(&later, kept) {
                    *kept = later;
                }
                Ok(())
            }
            fn result(&self, kept: &(N, i64)) -> anyhow::Result<N> {
                Ok(kept.0.clone())
            }
        }
    };
}

keeping!(Min, "min", PartialOrd, |new, kept| new.0 < kept.0);
keeping!(Max, "max", PartialOrd, |new, kept| new.0 > kept.0);
keeping!(First, "first", , |_new, _kept| false);
keeping!(Last, "last", , |_new, _kept| true);
keeping!(Earliest, "earliest", , |new, kept| new.1 < kept.1);
keeping!(Latest, "latest", , |new, kept| new.1 >= kept.1);

/// A fold of the values with closures: `init` makes the state of a window
/// from its first value, `reduce` adds a value to it, `merge` joins two.
/// The state moves through `reduce` without a copy (it needs a `Default`
/// to stand in meanwhile).
pub struct Reduce<I, R, M, S> {
    init: I,
    reduce: R,
    merge: M,
    can_merge: bool,
    state: PhantomData<fn() -> S>,
}

impl<I, R, S> Reduce<I, R, fn(S, S) -> S, S> {
    /// A fold with `init` and `reduce`; windows built this way cannot be
    /// merged (sliding windows need [`with_merge`](Reduce::with_merge)).
    pub fn new(init: I, reduce: R) -> Self {
        fn cannot_merge<S>(kept: S, _: S) -> S {
            kept
        }
        Reduce {
            init,
            reduce,
            merge: cannot_merge::<S>,
            can_merge: false,
            state: PhantomData,
        }
    }
}

impl<I, R, M, S> Reduce<I, R, M, S> {
    /// With `merge(earlier, later)` to join two windows' states.
    pub fn with_merge<M2>(self, merge: M2) -> Reduce<I, R, M2, S> {
        Reduce {
            init: self.init,
            reduce: self.reduce,
            merge,
            can_merge: true,
            state: PhantomData,
        }
    }
}

impl<V, I, R, M, S> Aggregator<V> for Reduce<I, R, M, S>
where
    V: 'static,
    S: Serialize + DeserializeOwned + Clone + Default + Send + 'static,
    I: Fn(&V) -> S + Send + 'static,
    R: Fn(S, &V) -> S + Send + 'static,
    M: Fn(S, S) -> S + Send + 'static,
{
    type State = S;
    type Output = S;
    fn name(&self) -> String {
        "reduce".into()
    }
    fn first(&self, value: &V, _: i64) -> anyhow::Result<S> {
        Ok((self.init)(value))
    }
    fn add(&self, state: &mut S, value: &V, _: i64) -> anyhow::Result<()> {
        *state = (self.reduce)(std::mem::take(state), value);
        Ok(())
    }
    fn merge(&self, into: &mut S, later: S) -> anyhow::Result<()> {
        *into = (self.merge)(std::mem::take(into), later);
        Ok(())
    }
    fn can_merge(&self) -> bool {
        self.can_merge
    }
    fn result(&self, state: &S) -> anyhow::Result<S> {
        Ok(state.clone())
    }
}

/// Every value of the window, or what is read from each, in event-time
/// order (Quix Streams' `Collect`). Each value is stored as an entry of
/// its own and the list is read once, when the window closes: windows of
/// many values cost no more a message than windows of few. Only for
/// closed windows of every type but sliding.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kstreams::{Application, TestDriver, TestMessage};
/// use kstreams::windows::{Collect, WindowResult};
///
/// let app = Application::builder().use_embedded_broker().build()?;
/// let readings = app.topic::<i64>("readings");
/// let lists = app.topic::<WindowResult<Vec<i64>>>("lists");
/// app.dataframe(&readings)
///     .tumbling_window(Duration::from_millis(10))
///     .aggregate(Collect::values())
///     .closed()
///     .to_topic(&lists);
///
/// let mut driver = TestDriver::new(&app)?;
/// for (value, ms) in [(7, 5), (3, 1), (9, 12)] {
///     driver.push(&readings, TestMessage::new(value).timestamp(ms))?;
/// }
/// // 12 closes [0, 10): its values in event-time order.
/// assert_eq!(driver.values(&lists)?, [WindowResult { start: 0, end: 10, value: vec![3, 7] }]);
/// # Ok::<(), kstreams::Error>(())
/// ```
pub struct Collect<V, T> {
    what: ReadItem<V, T>,
}

/// What [`Collect`] reads of a value: the item it keeps, or why it cannot.
type ReadItem<V, T> = Box<dyn Fn(&V) -> anyhow::Result<T> + Send + Sync>;

impl<V, T> Collect<V, T> {
    /// What `what` reads of each value.
    pub fn of(what: impl Fn(&V) -> T + Send + Sync + 'static) -> Self {
        Collect {
            what: Box::new(move |value| Ok(what(value))),
        }
    }
}

impl<V: Clone + 'static> Collect<V, V> {
    /// The values themselves.
    pub fn values() -> Self {
        Collect::of(V::clone)
    }
}

impl Collect<Value, Value> {
    /// Field `name` of JSON rows (a row without it fails, naming it).
    pub fn column(name: impl Into<String>) -> Self {
        let name = name.into();
        Collect {
            what: Box::new(move |row: &Value| {
                row.get(&name)
                    .cloned()
                    .ok_or_else(|| anyhow!("field {name:?} is missing"))
            }),
        }
    }
}

impl<V, T> Aggregator<V> for Collect<V, T>
where
    V: 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    /// Nothing: the values are the window's items.
    type State = ();
    type Output = Vec<T>;
    fn name(&self) -> String {
        "collect".into()
    }
    fn first(&self, _: &V, _: i64) -> anyhow::Result<()> {
        Ok(())
    }
    fn add(&self, (): &mut (), _: &V, _: i64) -> anyhow::Result<()> {
        Ok(())
    }
    fn merge(&self, (): &mut (), (): ()) -> anyhow::Result<()> {
        Ok(())
    }
    fn result(&self, (): &()) -> anyhow::Result<Vec<T>> {
        Ok(Vec::new())
    }
    fn keeps_items(&self) -> bool {
        true
    }
    fn item(&self, value: &V) -> anyhow::Result<Value> {
        let item = (self.what)(value)?;
        finite::check(&item)?;
        Ok(serde_json::to_value(item)?)
    }
    fn result_with_items(&self, (): &(), items: Vec<Value>) -> anyhow::Result<Vec<T>> {
        Ok(items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fold<A: Aggregator<Value>>(aggregator: &A, rows: &[(Value, i64)]) -> A::Output {
        let mut state = aggregator.first(&rows[0].0, rows[0].1).unwrap();
        for (row, timestamp) in &rows[1..] {
            aggregator.add(&mut state, row, *timestamp).unwrap();
        }
        aggregator.result(&state).unwrap()
    }

    #[test]
    fn built_in_aggregators_fold_as_their_names_say() {
        let rows = [
            (json!({"x": 3}), 20),
            (json!({"x": 1}), 10),
            (json!({"x": 7}), 20),
            (json!({"x": 5}), 15),
        ];
        assert_eq!(fold(&Count, &rows), 4);
        assert_eq!(fold(&Sum::column("x"), &rows), 16.0);
        assert_eq!(fold(&Mean::column("x"), &rows), 4.0);
        assert_eq!(fold(&Min::column("x"), &rows), 1.0);
        assert_eq!(fold(&Max::column("x"), &rows), 7.0);
        assert_eq!(fold(&First::column("x"), &rows), 3.0);
        assert_eq!(fold(&Last::column("x"), &rows), 5.0);
        assert_eq!(fold(&Earliest::column("x"), &rows), 1.0);
        assert_eq!(fold(&Latest::column("x"), &rows), 7.0, "ties: the last");
        let collect = Reduce::new(
            |row: &Value| vec![row["x"].clone()],
            |mut all: Vec<Value>, row: &Value| {
                all.push(row["x"].clone());
                all
            },
        );
        assert_eq!(
            fold(&collect, &rows),
            [json!(3), json!(1), json!(7), json!(5)]
        );
    }

    #[test]
    fn merged_states_equal_one_fold_of_all_values() {
        let rows: Vec<(Value, i64)> = (0..6).map(|i| (json!({"x": i * i}), 10 - i)).collect();
        let (earlier, later) = rows.split_at(2);
        let state_of = |aggregator: &Mean<Column, f64>, rows: &[(Value, i64)]| {
            let mut state = aggregator.first(&rows[0].0, rows[0].1).unwrap();
            for (row, timestamp) in &rows[1..] {
                aggregator.add(&mut state, row, *timestamp).unwrap();
            }
            state
        };
        let mean = Mean::column("x");
        let mut merged = state_of(&mean, earlier);
        mean.merge(&mut merged, state_of(&mean, later)).unwrap();
        assert_eq!(mean.result(&merged).unwrap(), fold(&mean, &rows));
        let earliest = Earliest::column("x");
        let mut kept = earliest.first(&rows[0].0, rows[0].1).unwrap();
        earliest.merge(&mut kept, (99.0, 1)).unwrap();
        assert_eq!(earliest.result(&kept).unwrap(), 99.0);
    }

    #[test]
    fn sums_refuse_what_the_store_cannot_keep() {
        let sum = Sum::of(|x: &f64| *x);
        assert!(sum.first(&f64::NAN, 0).is_err());
        let mut state = sum.first(&f64::MAX, 0).unwrap();
        assert!(sum.add(&mut state, &f64::MAX, 0).is_err(), "infinite");
        let count = Sum::of(|x: &i64| *x);
        let mut state = count.first(&i64::MAX, 0).unwrap();
        let error = count.add(&mut state, &1, 0).unwrap_err();
        assert_eq!(error.to_string(), "the window's sum overflows");
        assert_eq!(state, i64::MAX, "left as it was");
    }

    #[test]
    fn a_missing_or_non_numeric_column_is_an_error_naming_it() {
        let error = Sum::column("amount")
            .first(&json!({"x": 1}), 0)
            .unwrap_err();
        assert_eq!(error.to_string(), "field \"amount\" is missing");
        let error = Sum::column("amount")
            .first(&json!({"amount": "3"}), 0)
            .unwrap_err();
        assert!(error.to_string().contains("is not a number"), "{error}");
    }
}
