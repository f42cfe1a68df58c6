//! `group_by`: re-key a frame through a repartition topic.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use super::repartition::{self, SourceStamp};
use super::{Step, StepError, StreamingDataFrame, Topology};
use crate::codec::{Bytes, Codec, Json, Utf8, I32, I64};
use crate::error::Field;
use crate::message::{Headers, Metadata};
use crate::outputs::Output;
use crate::topic::Topic;

/// The name of a [`group_by`](StreamingDataFrame::group_by), and the
/// partition count of its repartition topic.
///
/// A `&str` or `String` converts into one with the default partition
/// count: the source topic's.
///
/// # Examples
///
/// ```
/// use kstreams::GroupBy;
///
/// let by_user = GroupBy::new("user").partitions(8);
/// assert_eq!(by_user.name(), "user");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupBy {
    name: String,
    partitions: Option<i32>,
}

impl GroupBy {
    /// A `group_by` called `name`: its repartition topic is
    /// `repartition__<consumer group>--<source topic>--<name>`, and the
    /// stores of the steps after it are that topic's.
    pub fn new(name: impl Into<String>) -> Self {
        GroupBy {
            name: name.into(),
            partitions: None,
        }
    }

    /// The partition count to create the repartition topic with (default:
    /// the source topic's). A repartition topic that exists with another
    /// count is an error at start.
    #[must_use]
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl From<&str> for GroupBy {
    fn from(name: &str) -> Self {
        GroupBy::new(name)
    }
}

impl From<String> for GroupBy {
    fn from(name: String) -> Self {
        GroupBy::new(name)
    }
}

/// A key that [`group_by`](StreamingDataFrame::group_by) can give a
/// message, encoded by the [codec](crate::codec) of its type: `String` as
/// [`Utf8`], `Vec<u8>` as [`Bytes`], `i32` and `i64` as [`I32`] and [`I64`]
/// (big-endian), `serde_json::Value` as [`Json`]. The steps after the
/// `group_by` see the encoded key in [`Metadata::key`] and
/// [`State`](crate::State) is scoped to it.
///
/// Implement it for a key type of your own with a codec:
///
/// ```
/// use kstreams::{codec::{Codec, Json}, GroupKey};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Region { country: String, city: String }
///
/// impl GroupKey for Region {
///     fn encode_key(&self, out: &mut Vec<u8>) -> anyhow::Result<()> {
///         Json.encode(self, out)
///     }
/// }
/// ```
pub trait GroupKey {
    /// Appends the key's bytes to `out`.
    ///
    /// # Errors
    ///
    /// When the key cannot be encoded.
    fn encode_key(&self, out: &mut Vec<u8>) -> anyhow::Result<()>;
}

impl GroupKey for String {
    fn encode_key(&self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        Utf8.encode(self, out)
    }
}

impl GroupKey for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        Bytes.encode(self, out)
    }
}

impl GroupKey for i32 {
    fn encode_key(&self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        I32.encode(self, out)
    }
}

impl GroupKey for i64 {
    fn encode_key(&self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        I64.encode(self, out)
    }
}

impl GroupKey for Value {
    fn encode_key(&self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        Json.encode(self, out)
    }
}

impl<V: Serialize + DeserializeOwned + Send + 'static> StreamingDataFrame<V> {
    /// Re-keys the stream: each value gets the key `key` computes, and the
    /// steps after this one run on the messages of that key, with
    /// [`State`](crate::State) scoped to it (Quix Streams'
    /// `sdf.group_by(key, name=...)`).
    ///
    /// The values go as JSON to an internal repartition topic,
    /// `repartition__<consumer group>--<source topic>--<name>`, created at
    /// start with the source topic's partition count (see
    /// [`GroupBy::partitions`]) and `cleanup.policy=delete`, with the new
    /// key and the headers (the source's timestamp and stamp lead the
    /// value: the record is timestamped when produced, so that retention
    /// counts from then).
    /// The application consumes it in the same consumer group (a partition
    /// never committed from its beginning): the frame returned runs on its
    /// messages, with the source message's timestamp, and with stores and
    /// changelogs of its own. A frame can have several `group_by`s, and a
    /// `group_by` can follow another. Each repartition record counts as a
    /// processed message for [`Until::messages`](crate::Until::messages).
    ///
    /// **Exact state after it, at least once.** After a crash, the source
    /// messages since the last commit are processed again and produce
    /// their repartition records again; the stateful steps after the
    /// `group_by` skip those copies (each record is stamped with its
    /// source partition and offset, and each partition of the repartition
    /// topic keeps in its state, with that state, the last stamp it
    /// absorbed), so their state counts each source message once. That
    /// requires the steps before `group_by` to be deterministic: the same
    /// source message must give the same keys and values, in the same
    /// order, each time. Outputs can still repeat, as in any at-least-once
    /// pipeline. Repartition records have a producer of their own,
    /// idempotent with librdkafka's gapless guarantee, no message timeout
    /// and one request in flight, so that they keep their order. Records
    /// that a window closing on an idle stream emits between messages
    /// carry no stamp, and are not deduplicated.
    ///
    /// A failing `key`, an empty key (librdkafka would send it to a random
    /// partition), or a key or value that cannot be encoded fails the
    /// message like any step. A repartition record that the broker refuses
    /// stops the application whatever the producer error callback says: a
    /// later source offset must not be committed past it.
    ///
    /// # Panics
    ///
    /// When the frame's topic has a `group_by` of that name already.
    ///
    /// # Examples
    ///
    /// Counting purchases per user when the input is keyed by order:
    ///
    /// ```
    /// use kstreams::{Application, TestDriver, TestMessage, State};
    ///
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Purchase { user: String, amount: f64 }
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let purchases = app.topic::<Purchase>("purchases");
    /// let counts = app.topic::<u64>("purchases-per-user");
    /// app.dataframe(&purchases)
    ///     .group_by("user", |purchase, _meta| Ok(purchase.user.clone()))
    ///     .apply_stateful(|_purchase, state: &mut State| {
    ///         let count = state.get::<u64>("count")?.unwrap_or(0) + 1;
    ///         state.set("count", &count)?;
    ///         Ok(count)
    ///     })
    ///     .to_topic(&counts);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// for (order, user) in [("o1", "ada"), ("o2", "bob"), ("o3", "ada")] {
    ///     let purchase = Purchase { user: user.into(), amount: 1.0 };
    ///     driver.push(&purchases, TestMessage::new(purchase).key(order.as_bytes().to_vec()))?;
    /// }
    /// assert_eq!(driver.values(&counts)?, [1, 1, 2]);
    /// let (key, _) = driver.keys_and_values(&counts)?.remove(2);
    /// assert_eq!(key.as_deref(), Some(&b"ada"[..]));
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn group_by<K: GroupKey>(
        self,
        group: impl Into<GroupBy>,
        mut key: impl FnMut(&V, &Metadata) -> anyhow::Result<K> + Send + 'static,
    ) -> StreamingDataFrame<V> {
        let group = group.into();
        let topic = {
            let mut topology = self.topology().lock();
            // A frame over a repartition topic skips copies of its records
            // only with a store to keep its marks in: without one, each
            // copy would go on to this `group_by` as a new record.
            let nested = repartition::is_repartition_topic(&self.topic);
            if nested && !topology.has_stores(&self.topic) {
                topology.add_store(&self.topic, repartition::MARKS_STORE);
            }
            topology.add_repartition(&self.topic, &group.name, group.partitions)
        };
        let repartition = Topic::<V>::new(&*topic);
        let codec = repartition.value_codec_ref().clone();
        let name = repartition.shared_name().clone();
        let downstream = Topology::add_repartition_input(self.topology(), &repartition);
        let _end: StreamingDataFrame<V> = self.then(move |_: Step<V>| {
            let mut record = Record::default();
            Box::new(move |value, ctx| {
                record.key.clear();
                key(&value, ctx.meta)?
                    .encode_key(&mut record.key)
                    .map_err(|source| StepError::Encode {
                        output_topic: name.clone(),
                        field: Field::Key,
                        source,
                    })?;
                // The timestamp and stamp lead the value (see
                // `repartition::ENVELOPE_LEN`); a message's records, not
                // those a tick emits between messages (offset -1), are
                // stamped.
                let stamp = (ctx.meta.offset >= 0).then(|| SourceStamp {
                    partition: ctx.meta.partition,
                    offset: ctx.meta.offset,
                    index: ctx.next_stamp_index(),
                });
                record.value.clear();
                repartition::write_envelope(&mut record.value, ctx.meta.timestamp, stamp);
                codec
                    .encode(&value, &mut record.value)
                    .map_err(|source| StepError::Encode {
                        output_topic: name.clone(),
                        field: Field::Value,
                        source,
                    })?;
                if record.key.is_empty() {
                    return Err(StepError::User(anyhow::anyhow!(
                        "the key to group by is empty (librdkafka would send it to a random \
                         partition, splitting its state)"
                    )));
                }
                // The source's headers.
                let mut headers = 0;
                for (header, bytes) in &ctx.meta.headers {
                    put_header(&mut record.headers, &mut headers, header, bytes);
                }
                record.headers.truncate(headers);
                ctx.outputs.push(Output {
                    topic: &name,
                    key: Some(&record.key),
                    value: &record.value,
                    // Produce time: see `repartition::ENVELOPE_LEN`.
                    timestamp: None,
                    headers: &record.headers,
                });
                Ok(())
            })
        });
        downstream
    }
}

/// Makes header number `*at` of `headers` `name` with `bytes`, reusing
/// the buffers of the one there (no allocation from message to message),
/// and moves `at` on.
fn put_header(headers: &mut Headers, at: &mut usize, name: &str, bytes: &[u8]) {
    match headers.get_mut(*at) {
        Some((old_name, old_bytes)) => {
            old_name.clear();
            old_name.push_str(name);
            old_bytes.clear();
            old_bytes.extend_from_slice(bytes);
        }
        None => headers.push((name.to_string(), bytes.to_vec())),
    }
    *at += 1;
}

/// A repartition record being made (its buffers are reused from message
/// to message).
#[derive(Default)]
struct Record {
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Headers,
}

impl StreamingDataFrame<Value> {
    /// [`group_by`](Self::group_by) a field of JSON rows, named after it:
    /// a string field's text is the new key (UTF-8), another value's JSON
    /// text (`42`, `true`). A row without the field, or with `null` in it,
    /// fails like a step's error, naming the field.
    ///
    /// # Panics
    ///
    /// As [`group_by`](Self::group_by).
    ///
    /// # Examples
    ///
    /// ```
    /// use kstreams::{Application, TestDriver, TestMessage};
    /// use serde_json::{json, Value};
    ///
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let purchases = app.topic::<Value>("purchases");
    /// let by_user = app.topic::<Value>("by-user");
    /// app.dataframe(&purchases).group_by_column("user").to_topic(&by_user);
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// driver.push(&purchases, TestMessage::new(json!({"user": "ada", "amount": 3})))?;
    /// let (key, _) = driver.keys_and_values(&by_user)?.remove(0);
    /// assert_eq!(key.as_deref(), Some(&b"ada"[..]));
    /// assert!(driver.push(&purchases, TestMessage::new(json!({"amount": 1}))).is_err());
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn group_by_column(self, field: &str) -> Self {
        let name = field.to_string();
        self.group_by(field, move |row: &Value, _| column_key(row, &name))
    }
}

/// The key of `row` by its `field`.
fn column_key(row: &Value, field: &str) -> anyhow::Result<String> {
    match row.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Null) => Err(anyhow::anyhow!("field {field:?} to group by is null")),
        Some(value) => Ok(value.to_string()),
        None => Err(anyhow::anyhow!("no field {field:?} to group by")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_column_key_is_its_text() {
        assert_eq!(column_key(&json!({"u": "ada"}), "u").unwrap(), "ada");
        assert_eq!(column_key(&json!({"u": 42}), "u").unwrap(), "42");
        let missing = column_key(&json!({}), "u").unwrap_err().to_string();
        assert!(missing.contains("\"u\""), "{missing}");
        assert!(column_key(&json!({"u": null}), "u").is_err());
    }
}
