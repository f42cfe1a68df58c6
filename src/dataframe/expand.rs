//! `expand`: turn one value into zero or more.

use super::{Step, StreamingDataFrame};

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Replaces each value by the items `f` returns, each of which goes
    /// through the rest of the chain as a message of its own (same key,
    /// timestamp and headers).
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let sentences = Topic::<String>::new("sentences");
    /// let words = Topic::<String>::new("words");
    /// app.dataframe(&sentences)
    ///     .expand(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    ///     .to_topic(&words);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&sentences, TestMessage::new("hello stream world".to_string())).unwrap();
    /// assert_eq!(driver.values(&words).unwrap(), ["hello", "stream", "world"]);
    /// ```
    pub fn expand<U: Send + 'static, I: IntoIterator<Item = U>>(
        self,
        mut f: impl FnMut(V) -> I + Send + 'static,
    ) -> StreamingDataFrame<U> {
        self.then(move |mut next: Step<U>| {
            Box::new(move |value, ctx| f(value).into_iter().try_for_each(|item| next(item, ctx)))
        })
    }

    /// Like [`expand`](Self::expand), with a closure that can fail.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let csv = Topic::<String>::new("csv");
    /// let numbers = Topic::<i64>::new("csv-numbers");
    /// app.dataframe(&csv)
    ///     .try_expand(|line| {
    ///         line.split(',').map(|n| Ok(n.parse::<i64>()?)).collect::<anyhow::Result<Vec<_>>>()
    ///     })
    ///     .to_topic(&numbers);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&csv, TestMessage::new("1,2,3".to_string())).unwrap();
    /// assert_eq!(driver.values(&numbers).unwrap(), [1, 2, 3]);
    /// ```
    pub fn try_expand<U: Send + 'static, I: IntoIterator<Item = U>>(
        self,
        mut f: impl FnMut(V) -> anyhow::Result<I> + Send + 'static,
    ) -> StreamingDataFrame<U> {
        self.then(move |mut next: Step<U>| {
            Box::new(move |value, ctx| f(value)?.into_iter().try_for_each(|item| next(item, ctx)))
        })
    }
}
