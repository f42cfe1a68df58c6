//! `update`: mutate the value in place or run a side effect; the value passes on.

use super::{Step, StreamingDataFrame};

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Runs `f` on each value, which may change it in place; the value then
    /// passes on.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let names = Topic::<String>::new("names");
    /// let shouted = Topic::<String>::new("shouted");
    /// app.dataframe(&names)
    ///     .update(|name| name.make_ascii_uppercase())
    ///     .to_topic(&shouted);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&names, TestMessage::new("ada".to_string())).unwrap();
    /// assert_eq!(driver.values(&shouted).unwrap(), ["ADA"]);
    /// ```
    pub fn update(self, mut f: impl FnMut(&mut V) + Send + 'static) -> Self {
        self.then(move |mut next: Step<V>| {
            Box::new(move |mut value, ctx| {
                f(&mut value);
                next(value, ctx)
            })
        })
    }

    /// Like [`update`](Self::update), with a closure that can fail.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let readings = Topic::<f64>::new("readings");
    /// let checked = Topic::<f64>::new("checked");
    /// app.dataframe(&readings)
    ///     .try_update(|r| {
    ///         anyhow::ensure!(r.is_finite(), "reading {r} is not finite");
    ///         Ok(())
    ///     })
    ///     .to_topic(&checked);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&readings, TestMessage::new(1.5)).unwrap();
    /// assert_eq!(driver.values(&checked).unwrap(), [1.5]);
    /// ```
    pub fn try_update(
        self,
        mut f: impl FnMut(&mut V) -> anyhow::Result<()> + Send + 'static,
    ) -> Self {
        self.then(move |mut next: Step<V>| {
            Box::new(move |mut value, ctx| {
                f(&mut value)?;
                next(value, ctx)
            })
        })
    }
}
