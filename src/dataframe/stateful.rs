//! Stateful steps: closures that get the message key's [`State`].

use super::{Step, StreamingDataFrame};
use crate::state::{State, DEFAULT_STORE};

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Like [`try_apply`](Self::try_apply), with the [`State`] of the
    /// message key in the default store.
    ///
    /// See [`State`] for an example.
    pub fn apply_stateful<U: Send + 'static>(
        self,
        f: impl FnMut(V, &mut State<'_>) -> anyhow::Result<U> + Send + 'static,
    ) -> StreamingDataFrame<U> {
        self.apply_stateful_in(DEFAULT_STORE, f)
    }

    /// [`apply_stateful`](Self::apply_stateful) on the store called `store`.
    /// Each store has its own column family and changelog topic.
    pub fn apply_stateful_in<U: Send + 'static>(
        self,
        store: &str,
        mut f: impl FnMut(V, &mut State<'_>) -> anyhow::Result<U> + Send + 'static,
    ) -> StreamingDataFrame<U> {
        let index = self.register_store(store);
        self.then(move |mut next: Step<U>| {
            Box::new(move |value, ctx| {
                let mapped = f(value, &mut ctx.state(index)?)?;
                next(mapped, ctx)
            })
        })
    }

    /// Like [`try_update`](Self::try_update), with the [`State`] of the
    /// message key in the default store.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let clicks = app.topic::<serde_json::Value>("clicks");
    /// let numbered = app.topic::<serde_json::Value>("numbered-clicks");
    /// app.dataframe(&clicks)
    ///     .update_stateful(|click, state| {
    ///         let n = state.get::<u64>("seen")?.unwrap_or(0) + 1;
    ///         state.set("seen", &n)?;
    ///         click["n"] = n.into();
    ///         Ok(())
    ///     })
    ///     .to_topic(&numbered);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// for _ in 0..2 {
    ///     driver.push(&clicks, TestMessage::new(serde_json::json!({})).key(b"k".to_vec())).unwrap();
    /// }
    /// assert_eq!(driver.values(&numbered).unwrap()[1]["n"], 2);
    /// ```
    pub fn update_stateful(
        self,
        f: impl FnMut(&mut V, &mut State<'_>) -> anyhow::Result<()> + Send + 'static,
    ) -> Self {
        self.update_stateful_in(DEFAULT_STORE, f)
    }

    /// [`update_stateful`](Self::update_stateful) on the store called `store`.
    pub fn update_stateful_in(
        self,
        store: &str,
        mut f: impl FnMut(&mut V, &mut State<'_>) -> anyhow::Result<()> + Send + 'static,
    ) -> Self {
        let index = self.register_store(store);
        self.then(move |mut next: Step<V>| {
            Box::new(move |mut value, ctx| {
                f(&mut value, &mut ctx.state(index)?)?;
                next(value, ctx)
            })
        })
    }

    /// Like [`try_filter`](Self::try_filter), with the [`State`] of the
    /// message key in the default store.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// // Passes on only the first event of each key.
    /// let events = app.topic::<String>("events");
    /// let firsts = app.topic::<String>("first-events");
    /// app.dataframe(&events)
    ///     .filter_stateful(|_, state| {
    ///         let first = !state.exists("seen")?;
    ///         state.set("seen", &true)?;
    ///         Ok(first)
    ///     })
    ///     .to_topic(&firsts);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// for (key, event) in [("a", "a1"), ("b", "b1"), ("a", "a2")] {
    ///     driver.push(&events, TestMessage::new(event.to_string()).key(key.as_bytes().to_vec())).unwrap();
    /// }
    /// assert_eq!(driver.values(&firsts).unwrap(), ["a1", "b1"]);
    /// ```
    pub fn filter_stateful(
        self,
        f: impl FnMut(&V, &mut State<'_>) -> anyhow::Result<bool> + Send + 'static,
    ) -> Self {
        self.filter_stateful_in(DEFAULT_STORE, f)
    }

    /// [`filter_stateful`](Self::filter_stateful) on the store called `store`.
    pub fn filter_stateful_in(
        self,
        store: &str,
        mut f: impl FnMut(&V, &mut State<'_>) -> anyhow::Result<bool> + Send + 'static,
    ) -> Self {
        let index = self.register_store(store);
        self.then(move |mut next: Step<V>| {
            Box::new(move |value, ctx| {
                if f(&value, &mut ctx.state(index)?)? {
                    next(value, ctx)
                } else {
                    Ok(())
                }
            })
        })
    }
}
