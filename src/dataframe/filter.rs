//! `filter`: keep the values for which a predicate holds.

use super::{Step, StreamingDataFrame};

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Passes on only the values for which `predicate` returns `true`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let amounts = Topic::<u32>::new("amounts");
    /// let big = Topic::<u32>::new("big");
    /// app.dataframe(&amounts).filter(|a| *a > 100).to_topic(&big);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// for a in [50, 150, 99, 101] {
    ///     driver.push(&amounts, TestMessage::new(a)).unwrap();
    /// }
    /// assert_eq!(driver.values(&big).unwrap(), [150, 101]);
    /// ```
    pub fn filter(self, mut predicate: impl FnMut(&V) -> bool + Send + 'static) -> Self {
        self.then(move |mut next: Step<V>| {
            Box::new(move |value, ctx| {
                if predicate(&value) {
                    next(value, ctx)
                } else {
                    Ok(())
                }
            })
        })
    }

    /// Like [`filter`](Self::filter), with a predicate that can fail.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let codes = Topic::<String>::new("codes");
    /// let even = Topic::<String>::new("even-codes");
    /// app.dataframe(&codes)
    ///     .try_filter(|c| Ok(c.parse::<u32>()? % 2 == 0))
    ///     .to_topic(&even);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&codes, TestMessage::new("4".to_string())).unwrap();
    /// assert!(driver.push(&codes, TestMessage::new("x".to_string())).is_err());
    /// assert_eq!(driver.values(&even).unwrap(), ["4"]);
    /// ```
    pub fn try_filter(
        self,
        mut predicate: impl FnMut(&V) -> anyhow::Result<bool> + Send + 'static,
    ) -> Self {
        self.then(move |mut next: Step<V>| {
            Box::new(move |value, ctx| {
                if predicate(&value)? {
                    next(value, ctx)
                } else {
                    Ok(())
                }
            })
        })
    }
}
