//! A producer for feeding topics from outside a dataframe.

use std::collections::HashSet;

use parking_lot::Mutex;

use crate::app::Application;
use crate::broker::{Admin, OutputProducer};
use crate::config::{Config, ProcessingGuarantee};
use crate::error::{Error, Field, Result};
use crate::outputs::Output;
use crate::topic::Topic;

/// Sends messages to topics with their codecs: test data for an example,
/// or a script's input. Get one from [`Application::producer`].
///
/// Messages are sent asynchronously; [`flush`](Self::flush) waits for them
/// and reports any the broker refused.
///
/// # Examples
///
/// ```
/// # use kstreams::Application;
/// let app = Application::builder().use_embedded_broker().build()?;
/// let readings = app.topic::<f64>("readings");
/// let producer = app.producer()?;
/// producer.send(&readings, Some(&b"sensor-1".to_vec()), &21.5)?;
/// producer.flush()?;
/// # Ok::<(), kstreams::Error>(())
/// ```
pub struct Producer<'a> {
    app: &'a Application,
    inner: OutputProducer,
    /// Topics known to exist.
    ready: Mutex<HashSet<String>>,
}

impl<'a> Producer<'a> {
    pub(crate) fn new(app: &'a Application) -> Result<Self> {
        // Never transactional: a producer of the application's own
        // `transactional.id` would fence the application.
        let config = Config {
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            ..app.config().clone()
        };
        Ok(Producer {
            app,
            inner: OutputProducer::create(app.broker(), &config, false)?,
            ready: Mutex::new(HashSet::new()),
        })
    }

    /// Sends `value` with `key` to `topic`, creating the topic first if it
    /// is missing and auto-creation is on.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when a codec fails, [`Error::TopicNotFound`],
    /// [`Error::Send`] when librdkafka refuses the message.
    pub fn send<V, K>(&self, topic: &Topic<V, K>, key: Option<&K>, value: &V) -> Result<()> {
        self.ensure_topic(topic)?;
        let encode_failed = |field, source: anyhow::Error| Error::Encode {
            topic: topic.name().to_string(),
            field,
            source: source.into(),
        };
        let mut bytes = Vec::new();
        topic
            .value_codec_ref()
            .encode(value, &mut bytes)
            .map_err(|source| encode_failed(Field::Value, source))?;
        let key = match key {
            Some(key) => {
                let mut key_bytes = Vec::new();
                topic
                    .key_codec_ref()
                    .encode(key, &mut key_bytes)
                    .map_err(|source| encode_failed(Field::Key, source))?;
                Some(key_bytes)
            }
            None => None,
        };
        let output = Output {
            topic: topic.shared_name(),
            key: key.as_deref(),
            value: &bytes,
            timestamp: None,
            headers: &Vec::new(),
        };
        self.inner.send(&output, None)
    }

    /// Waits until every message sent so far is acknowledged.
    ///
    /// # Errors
    ///
    /// The first message the broker refused ([`Error::Send`]), or
    /// [`Error::BrokerUnavailable`] when the broker does not acknowledge
    /// within the broker availability timeout.
    pub fn flush(&self) -> Result<()> {
        let patience = self.app.config().broker_availability_timeout;
        if !self.inner.flush(patience) {
            return Err(Error::BrokerUnavailable {
                unavailable_for: patience,
            });
        }
        match self.inner.take_failures().into_iter().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Creates `topic`, with its partitions and configs, unless it exists:
    /// what [`send`](Self::send) does before a topic's first record. For
    /// topics that others write to, such as the input of a script.
    ///
    /// # Errors
    ///
    /// [`Error::TopicNotFound`] when the topic is missing and topic
    /// auto-creation is off; [`Error::CreateTopic`] when the broker refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic};
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let events = Topic::<serde_json::Value>::new("events").partitions(4);
    /// app.producer()?.ensure_topic(&events)?;
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn ensure_topic<V, K>(&self, topic: &Topic<V, K>) -> Result<()> {
        let mut ready = self.ready.lock();
        if !ready.contains(topic.name()) {
            Admin::connect(self.app.broker(), self.app.config())?
                .ensure_topics(std::slice::from_ref(topic.spec()))?;
            ready.insert(topic.name().to_string());
        }
        Ok(())
    }
}
