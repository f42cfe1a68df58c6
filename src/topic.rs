//! Kafka topics with their key and value codecs.

use std::fmt;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::codec::{Bytes, Codec, Json};
use crate::message::Metadata;

/// Reads a message's event time (milliseconds since the Unix epoch).
pub(crate) type TimestampExtractor<V> =
    Arc<dyn Fn(&V, &Metadata) -> anyhow::Result<i64> + Send + Sync>;

/// A Kafka topic whose values are `V` and whose keys are `K`.
///
/// A topic knows how to turn its keys and values into bytes and back (its
/// [codecs](crate::codec)): JSON values and raw byte keys unless told
/// otherwise. It also carries what kstreams needs to create it when it is
/// missing and [auto-creation](crate::ApplicationBuilder::auto_create_topics)
/// is on: a partition count and topic configs.
///
/// Cloning a topic is cheap.
///
/// # Examples
///
/// ```
/// use kstreams::{codec::Utf8, Topic};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Purchase { user: String, amount: f64 }
///
/// // JSON values, byte keys.
/// let purchases = Topic::<Purchase>::new("purchases");
/// // UTF-8 keys and values, created with 4 partitions if missing.
/// let lines = Topic::<String>::new("lines")
///     .value_codec(Utf8)
///     .key_codec(Utf8)
///     .partitions(4)
///     .config("retention.ms", "3600000");
/// assert_eq!(lines.name(), "lines");
/// ```
pub struct Topic<V, K = Vec<u8>> {
    name: Arc<str>,
    key_codec: Arc<dyn Codec<K>>,
    value_codec: Arc<dyn Codec<V>>,
    timestamp: Option<TimestampExtractor<V>>,
    spec: TopicSpec,
}

/// How to create a topic: the part of a [`Topic`] that does not depend on its types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicSpec {
    pub(crate) name: String,
    /// `None`: the application's default partition count.
    pub(crate) partitions: Option<i32>,
    pub(crate) config: Vec<(String, String)>,
}

impl<V: Serialize + DeserializeOwned> Topic<V> {
    /// A topic with JSON values and raw byte keys.
    pub fn new(name: impl Into<String>) -> Self {
        let name: String = name.into();
        Topic {
            name: name.as_str().into(),
            key_codec: Arc::new(Bytes),
            value_codec: Arc::new(Json),
            timestamp: None,
            spec: TopicSpec {
                name,
                partitions: None,
                config: Vec::new(),
            },
        }
    }
}

impl<V, K> Topic<V, K> {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Uses `codec` for values, which makes this a topic of `V2` values
    /// (and drops a [timestamp extractor](Self::timestamp) of `V` values).
    #[must_use]
    pub fn value_codec<V2>(self, codec: impl Codec<V2> + 'static) -> Topic<V2, K> {
        Topic {
            name: self.name,
            key_codec: self.key_codec,
            value_codec: Arc::new(codec),
            timestamp: None,
            spec: self.spec,
        }
    }

    /// Event time: every message's timestamp (milliseconds since the Unix
    /// epoch) is what `extract` reads from its value and metadata, not the
    /// one the producer or broker set. Every step sees it (windows decide
    /// with it) and outputs carry it.
    ///
    /// An error stops the message like a value that does not decode
    /// ([`Error::Deserialize`](crate::Error::Deserialize) with
    /// [`Field::Timestamp`](crate::Field::Timestamp)).
    ///
    /// # Examples
    ///
    /// ```
    /// use kstreams::{Application, TestDriver, TestMessage, Topic};
    /// use serde_json::{json, Value};
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let readings = Topic::<Value>::new("readings").timestamp(|reading, _meta| {
    ///     reading["ts"].as_i64().ok_or_else(|| anyhow::anyhow!("no integer field ts"))
    /// });
    /// let out = app.topic::<Value>("readings-out");
    /// app.dataframe(&readings).to_topic(&out);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// driver.push(&readings, TestMessage::new(json!({"ts": 1_000})).timestamp(5))?;
    /// assert_eq!(driver.outputs().records()[0].timestamp, Some(1_000));
    /// assert!(driver.push(&readings, TestMessage::new(json!({}))).is_err());
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    #[must_use]
    pub fn timestamp(
        mut self,
        extract: impl Fn(&V, &Metadata) -> anyhow::Result<i64> + Send + Sync + 'static,
    ) -> Self {
        self.timestamp = Some(Arc::new(extract));
        self
    }

    /// Uses `codec` for keys, which makes this a topic of `K2` keys.
    #[must_use]
    pub fn key_codec<K2>(self, codec: impl Codec<K2> + 'static) -> Topic<V, K2> {
        Topic {
            name: self.name,
            key_codec: Arc::new(codec),
            value_codec: self.value_codec,
            timestamp: self.timestamp,
            spec: self.spec,
        }
    }

    /// The partition count to create the topic with when it is missing.
    ///
    /// Default: the application's
    /// [`topic_partitions`](crate::ApplicationBuilder::topic_partitions).
    #[must_use]
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.spec.partitions = Some(partitions);
        self
    }

    /// A topic config (`cleanup.policy`, `retention.ms`, ...) to create the
    /// topic with when it is missing.
    #[must_use]
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.config.push((key.into(), value.into()));
        self
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn spec(&self) -> &TopicSpec {
        &self.spec
    }

    pub(crate) fn key_codec_ref(&self) -> &Arc<dyn Codec<K>> {
        &self.key_codec
    }

    pub(crate) fn value_codec_ref(&self) -> &Arc<dyn Codec<V>> {
        &self.value_codec
    }

    pub(crate) fn timestamp_extractor(&self) -> Option<&TimestampExtractor<V>> {
        self.timestamp.as_ref()
    }
}

/// Whether two shared topic names are the same: by address first, as a
/// [`Topic`], its clones and the frames built on it share one name.
pub(crate) fn same_name(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

impl<V, K> Clone for Topic<V, K> {
    fn clone(&self) -> Self {
        Topic {
            name: self.name.clone(),
            key_codec: self.key_codec.clone(),
            value_codec: self.value_codec.clone(),
            timestamp: self.timestamp.clone(),
            spec: self.spec.clone(),
        }
    }
}

impl<V, K> fmt::Debug for Topic<V, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("partitions", &self.spec.partitions)
            .field("config", &self.spec.config)
            .finish()
    }
}
