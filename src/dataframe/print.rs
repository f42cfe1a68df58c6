//! `print`: show each value on stdout, for debugging.

use std::fmt::Debug;

use super::{Step, StreamingDataFrame};

impl<V: Debug + Send + 'static> StreamingDataFrame<V> {
    /// Prints each value to stdout with `{:?}` and passes it on.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// # let input = Topic::<serde_json::Value>::new("input");
    /// app.dataframe(&input).print();
    /// ```
    pub fn print(self) -> Self {
        self.then(move |mut next: Step<V>| {
            Box::new(move |value, ctx| {
                println!("{value:?}");
                next(value, ctx)
            })
        })
    }

    /// Prints each value with where it came from: topic, partition, offset,
    /// key and timestamp.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// # let input = Topic::<serde_json::Value>::new("input");
    /// // Prints e.g. `input[0]@17 key="alice" ts=1700000000000 {"amount": 3}`.
    /// app.dataframe(&input).print_with_metadata();
    /// ```
    pub fn print_with_metadata(self) -> Self {
        self.then(move |mut next: Step<V>| {
            Box::new(move |value, ctx| {
                let meta = &*ctx.meta;
                let key = meta.key().map_or_else(
                    || "-".to_string(),
                    |key| format!("{:?}", String::from_utf8_lossy(key)),
                );
                let timestamp = meta
                    .timestamp()
                    .map_or("-".to_string(), |ts| ts.to_string());
                println!(
                    "{}[{}]@{} key={} ts={} {:?}",
                    meta.topic(),
                    meta.partition(),
                    meta.offset(),
                    key,
                    timestamp,
                    value
                );
                next(value, ctx)
            })
        })
    }
}
