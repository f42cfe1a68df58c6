//! `set_timestamp`: change the timestamp of what follows.

use super::{Step, StreamingDataFrame};
use crate::message::Metadata;

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Sets the timestamp (milliseconds since the Unix epoch) that the rest
    /// of this branch sees and that its outputs carry.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Reading { at_ms: i64, celsius: f64 }
    ///
    /// let readings = Topic::<Reading>::new("readings");
    /// let out = Topic::<Reading>::new("readings-by-event-time");
    /// app.dataframe(&readings)
    ///     .set_timestamp(|r, _meta| r.at_ms)
    ///     .to_topic(&out);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&readings, TestMessage::new(Reading { at_ms: 1_000, celsius: 20.5 })).unwrap();
    /// assert_eq!(driver.outputs().records()[0].timestamp, Some(1_000));
    /// ```
    pub fn set_timestamp(self, mut f: impl FnMut(&V, &Metadata) -> i64 + Send + 'static) -> Self {
        self.then(move |mut next: Step<V>| {
            Box::new(move |value, ctx| {
                let timestamp = Some(f(&value, ctx.meta));
                let previous = std::mem::replace(&mut ctx.meta.timestamp, timestamp);
                let result = next(value, ctx);
                // Sibling branches must see the message's own timestamp.
                ctx.meta.timestamp = previous;
                result
            })
        })
    }
}
