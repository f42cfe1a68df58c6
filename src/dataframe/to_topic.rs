//! `to_topic`: produce each value to a topic and pass it on.

use std::sync::Arc;

use super::{Step, StepError, StreamingDataFrame};
use crate::codec::Codec;
use crate::error::Field;
use crate::message::Metadata;
use crate::outputs::{Output, Outputs};
use crate::topic::Topic;

impl<V: Send + 'static> StreamingDataFrame<V> {
    /// Produces each value to `topic` with the input message's key,
    /// timestamp and headers, then passes the value on.
    ///
    /// The output is sent after the whole chain has run for the message, and
    /// the input offset is committed only once the broker has acknowledged it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let input = Topic::<i64>::new("input");
    /// let copy = Topic::<i64>::new("copy");
    /// let squares = Topic::<i64>::new("squares");
    /// app.dataframe(&input)
    ///     .to_topic(&copy)
    ///     .apply(|n| n * n)
    ///     .to_topic(&squares);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&input, TestMessage::new(3).key(b"k".to_vec())).unwrap();
    /// assert_eq!(driver.values(&copy).unwrap(), [3]);
    /// assert_eq!(driver.keys_and_values(&squares).unwrap(), [(Some(b"k".to_vec()), 9)]);
    /// ```
    pub fn to_topic<K>(self, topic: &Topic<V, K>) -> Self {
        let (name, codec) = self.register_output(topic);
        self.then(move |mut next: Step<V>| {
            let mut encoded = Vec::new();
            Box::new(move |value, ctx| {
                encode(&*codec, &value, &mut encoded, &name, Field::Value)?;
                produce(ctx.outputs, ctx.meta, &name, ctx.meta.key(), &encoded);
                next(value, ctx)
            })
        })
    }

    /// Like [`to_topic`](Self::to_topic), with a new key computed from the
    /// value and encoded with the topic's key codec.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage, codec::Utf8};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Purchase { user: String, amount: f64 }
    ///
    /// let purchases = Topic::<Purchase>::new("purchases");
    /// let by_user = Topic::<Purchase>::new("purchases-by-user").key_codec(Utf8);
    /// app.dataframe(&purchases).to_topic_keyed(&by_user, |p| p.user.clone());
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// let purchase = Purchase { user: "ada".into(), amount: 3.0 };
    /// driver.push(&purchases, TestMessage::new(purchase)).unwrap();
    /// let (key, _) = driver.keys_and_values(&by_user).unwrap().remove(0);
    /// assert_eq!(key.as_deref(), Some("ada"));
    /// ```
    pub fn to_topic_keyed<K: 'static>(
        self,
        topic: &Topic<V, K>,
        mut key: impl FnMut(&V) -> K + Send + 'static,
    ) -> Self {
        let (name, codec) = self.register_output(topic);
        let key_codec = topic.key_codec_ref().clone();
        self.then(move |mut next: Step<V>| {
            let (mut encoded_key, mut encoded) = (Vec::new(), Vec::new());
            Box::new(move |value, ctx| {
                encode(
                    &*key_codec,
                    &key(&value),
                    &mut encoded_key,
                    &name,
                    Field::Key,
                )?;
                encode(&*codec, &value, &mut encoded, &name, Field::Value)?;
                produce(ctx.outputs, ctx.meta, &name, Some(&encoded_key), &encoded);
                next(value, ctx)
            })
        })
    }

    fn register_output<K>(&self, topic: &Topic<V, K>) -> (Arc<str>, Arc<dyn Codec<V>>) {
        self.topology().lock().add_output(topic.spec());
        (topic.shared_name().clone(), topic.value_codec_ref().clone())
    }
}

/// Encodes `value` into `bytes`, a buffer the step reuses from message to
/// message (a codec may do anything to it: it only ever holds this value).
pub(super) fn encode<T>(
    codec: &dyn Codec<T>,
    value: &T,
    bytes: &mut Vec<u8>,
    topic: &Arc<str>,
    field: Field,
) -> Result<(), StepError> {
    bytes.clear();
    codec
        .encode(value, bytes)
        .map_err(|source| StepError::Encode {
            output_topic: topic.clone(),
            field,
            source,
        })
}

/// Collects one output of the message `meta` describes, with its
/// timestamp and headers.
fn produce(
    outputs: &mut Outputs,
    meta: &Metadata,
    topic: &Arc<str>,
    key: Option<&[u8]>,
    value: &[u8],
) {
    outputs.push(Output {
        topic,
        key,
        value,
        timestamp: meta.timestamp,
        headers: &meta.headers,
    });
}
