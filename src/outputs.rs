//! What a bounded run or a test driver produced.

use crate::error::{Error, Field, Result};
use crate::message::Record;
use crate::topic::Topic;

/// The messages a bounded run ([`Application::run_until`](crate::Application::run_until))
/// or a [`TestDriver`](crate::TestDriver) produced, in production order.
///
/// # Examples
///
/// ```
/// # use kstreams::{Application, Topic, TestDriver, TestMessage};
/// # let app = Application::builder().use_embedded_broker().build().unwrap();
/// let input = Topic::<i64>::new("in");
/// let doubled = Topic::<i64>::new("doubled");
/// app.dataframe(&input).apply(|n| n * 2).to_topic(&doubled);
///
/// let mut driver = TestDriver::new(&app).unwrap();
/// driver.push(&input, TestMessage::new(21).key(b"k".to_vec())).unwrap();
/// let outputs = driver.outputs();
/// assert_eq!(outputs.values(&doubled).unwrap(), [42]);
/// assert_eq!(outputs.keys_and_values(&doubled).unwrap(), [(Some(b"k".to_vec()), 42)]);
/// assert_eq!(outputs.records()[0].topic, "doubled");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    pub(crate) records: Vec<Record>,
    pub(crate) processed: u64,
}

impl Outputs {
    /// Every produced record, in production order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// How many input messages were processed (including skipped ones).
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// The records produced to the topic called `name`.
    pub fn records_to<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records
            .iter()
            .filter(move |record| record.topic == name)
    }

    /// The values produced to `topic`, decoded with its value codec.
    ///
    /// # Errors
    ///
    /// [`Error::DecodeOutput`] when a value does not decode.
    pub fn values<V, K>(&self, topic: &Topic<V, K>) -> Result<Vec<V>> {
        self.decoded(topic, |_, value| Ok(value))
    }

    /// The keys and values produced to `topic`, decoded with its codecs.
    ///
    /// # Errors
    ///
    /// [`Error::DecodeOutput`] when a key or value does not decode.
    pub fn keys_and_values<V, K>(&self, topic: &Topic<V, K>) -> Result<Vec<(Option<K>, V)>> {
        self.decoded(topic, |record, value| {
            let key = match &record.key {
                Some(bytes) => Some(
                    topic
                        .key_codec_ref()
                        .decode(bytes)
                        .map_err(|e| (Field::Key, e))?,
                ),
                None => None,
            };
            Ok((key, value))
        })
    }

    fn decoded<V, K, T>(
        &self,
        topic: &Topic<V, K>,
        mut make: impl FnMut(&Record, V) -> std::result::Result<T, (Field, anyhow::Error)>,
    ) -> Result<Vec<T>> {
        self.records_to(topic.name())
            .enumerate()
            .map(|(index, record)| {
                topic
                    .value_codec_ref()
                    .decode(&record.value)
                    .map_err(|e| (Field::Value, e))
                    .and_then(|value| make(record, value))
                    .map_err(|(field, source)| Error::DecodeOutput {
                        topic: topic.name().to_string(),
                        index,
                        field,
                        source: source.into(),
                    })
            })
            .collect()
    }
}
