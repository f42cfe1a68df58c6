//! What kstreams knows about a message besides its value.

use std::fmt;
use std::sync::Arc;

/// Kafka message headers: names with byte values, in order, names may repeat.
pub type Headers = Vec<(String, Vec<u8>)>;

/// The coordinates, key, timestamp and headers of the message being processed.
///
/// Closures that need more than the value, such as
/// [`apply_with_metadata`](crate::StreamingDataFrame::apply_with_metadata),
/// receive it by reference.
///
/// # Examples
///
/// ```
/// # use kstreams::{Application, Topic, TestDriver, TestMessage};
/// # let app = Application::builder().use_embedded_broker().build().unwrap();
/// let input = Topic::<i64>::new("numbers");
/// let output = Topic::<String>::new("described");
/// app.dataframe(&input)
///     .apply_with_metadata(|n, meta| {
///         Ok(format!("{n} at {}[{}]@{}", meta.topic(), meta.partition(), meta.offset()))
///     })
///     .to_topic(&output);
///
/// let mut driver = TestDriver::new(&app).unwrap();
/// driver.push(&input, TestMessage::new(7).partition(2)).unwrap();
/// assert_eq!(driver.values(&output).unwrap(), ["7 at numbers[2]@0"]);
/// ```
#[derive(Clone, PartialEq)]
pub struct Metadata {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// The key's bytes (none without a key): the buffer is reused from
    /// message to message.
    key: Vec<u8>,
    has_key: bool,
    pub(crate) timestamp: Option<i64>,
    pub(crate) headers: Headers,
}

impl Metadata {
    /// The metadata of no message yet, to be set with
    /// [`set_message`](Self::set_message).
    pub(crate) fn new() -> Self {
        Metadata {
            topic: Arc::from(""),
            partition: 0,
            offset: 0,
            key: Vec::new(),
            has_key: false,
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// Makes this the metadata of the message at `offset` in `partition` of
    /// `topic`, with `key` and `timestamp`; its headers are set apart.
    pub(crate) fn set_message(
        &mut self,
        topic: &Arc<str>,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        timestamp: Option<i64>,
    ) {
        if !Arc::ptr_eq(&self.topic, topic) {
            self.topic = topic.clone();
        }
        self.partition = partition;
        self.offset = offset;
        self.set_key(key);
        self.timestamp = timestamp;
    }

    /// Makes `key` the message key (also of what follows in a chain: a
    /// window's results carry the key of the window, which per-partition
    /// closing takes from another message).
    pub(crate) fn set_key(&mut self, key: Option<&[u8]>) {
        self.key.clear();
        self.key.extend_from_slice(key.unwrap_or_default());
        self.has_key = key.is_some();
    }

    /// The input topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The input partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The message's offset in its partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The message key as bytes, `None` for a message without key.
    pub fn key(&self) -> Option<&[u8]> {
        self.has_key.then_some(self.key.as_slice())
    }

    /// The message key as text, `None` when there is no key or it is not UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key().and_then(|key| std::str::from_utf8(key).ok())
    }

    /// The timestamp in milliseconds since the Unix epoch, as set by the
    /// producer or the broker, or by an earlier
    /// [`set_timestamp`](crate::StreamingDataFrame::set_timestamp).
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The message headers.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_slice())
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("key", &self.key())
            .field("timestamp", &self.timestamp)
            .field("headers", &self.headers)
            .finish()
    }
}

/// A message as produced to an output topic, with its key and value encoded.
///
/// [`Outputs`](crate::Outputs) holds these for bounded runs and the
/// [`TestDriver`](crate::TestDriver).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The output topic.
    pub topic: String,
    /// The encoded key.
    pub key: Option<Vec<u8>>,
    /// The encoded value.
    pub value: Vec<u8>,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Headers, forwarded from the input message.
    pub headers: Headers,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_has_its_own_key_though_the_buffer_is_reused() {
        let topic: Arc<str> = Arc::from("purchases");
        let mut meta = Metadata::new();
        meta.set_message(&topic, 1, 5, Some(b"ada"), None);
        assert_eq!(
            (meta.topic(), meta.partition(), meta.offset(), meta.key()),
            ("purchases", 1, 5, Some(&b"ada"[..]))
        );
        meta.set_message(&topic, 1, 6, None, None);
        assert_eq!(meta.key(), None);
        assert!(format!("{meta:?}").contains("key: None"));
        meta.set_message(&topic, 0, 7, Some(b""), None);
        assert_eq!(meta.key(), Some(&b""[..]), "an empty key is a key");
        assert_eq!(meta.key_str(), Some(""));
    }
}
