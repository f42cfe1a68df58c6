//! `apply`: map each value to a new one.

use super::{Step, StreamingDataFrame};
use crate::message::Metadata;

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Maps each value to a new value, possibly of another type.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let words = Topic::<String>::new("words");
    /// let lengths = Topic::<usize>::new("lengths");
    /// app.dataframe(&words).apply(|w| w.len()).to_topic(&lengths);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&words, TestMessage::new("kafka".to_string())).unwrap();
    /// assert_eq!(driver.values(&lengths).unwrap(), [5]);
    /// ```
    pub fn apply<U: Send + 'static>(
        self,
        mut f: impl FnMut(V) -> U + Send + 'static,
    ) -> StreamingDataFrame<U> {
        self.then(move |mut next: Step<U>| Box::new(move |value, ctx| next(f(value), ctx)))
    }

    /// Like [`apply`](Self::apply), with a closure that can fail.
    ///
    /// An error goes to the processing error callback, naming the message.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let text = Topic::<String>::new("text");
    /// let numbers = Topic::<i64>::new("numbers");
    /// app.dataframe(&text)
    ///     .try_apply(|s| Ok(s.trim().parse::<i64>()?))
    ///     .to_topic(&numbers);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&text, TestMessage::new(" 12 ".to_string())).unwrap();
    /// let err = driver.push(&text, TestMessage::new("twelve".to_string())).unwrap_err();
    /// assert_eq!(err.offset(), Some(1));
    /// assert_eq!(driver.values(&numbers).unwrap(), [12]);
    /// ```
    pub fn try_apply<U: Send + 'static>(
        self,
        mut f: impl FnMut(V) -> anyhow::Result<U> + Send + 'static,
    ) -> StreamingDataFrame<U> {
        self.then(move |mut next: Step<U>| Box::new(move |value, ctx| next(f(value)?, ctx)))
    }

    /// Like [`try_apply`](Self::try_apply), with the message's [`Metadata`]:
    /// key, timestamp, headers, topic, partition and offset.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let amounts = Topic::<f64>::new("amounts");
    /// let tagged = Topic::<String>::new("tagged");
    /// app.dataframe(&amounts)
    ///     .apply_with_metadata(|amount, meta| {
    ///         Ok(format!("{}={amount}", meta.key_str().unwrap_or("?")))
    ///     })
    ///     .to_topic(&tagged);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&amounts, TestMessage::new(2.5).key(b"alice".to_vec())).unwrap();
    /// assert_eq!(driver.values(&tagged).unwrap(), ["alice=2.5"]);
    /// ```
    pub fn apply_with_metadata<U: Send + 'static>(
        self,
        mut f: impl FnMut(V, &Metadata) -> anyhow::Result<U> + Send + 'static,
    ) -> StreamingDataFrame<U> {
        self.then(move |mut next: Step<U>| {
            Box::new(move |value, ctx| {
                let mapped = f(value, ctx.meta)?;
                next(mapped, ctx)
            })
        })
    }
}
