//! What a bounded run or a test driver produced.

use std::sync::{Arc, OnceLock};

use crate::error::{Error, Field, Result};
use crate::message::{Headers, Record};
use crate::topic::{same_name, Topic};

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
#[derive(Clone, Default)]
pub struct Outputs {
    /// Every output's key (if any) and value, back to back: collecting an
    /// output costs no allocation of its own.
    bytes: Vec<u8>,
    produced: Vec<Produced>,
    /// The output topics, each once.
    topics: Vec<Arc<str>>,
    /// The outputs' headers, each with the index of the first output that
    /// has them. The first set is empty, shared by every output without
    /// headers; outputs in a row with equal headers share a set.
    header_sets: Vec<(usize, Headers)>,
    /// Header sets dropped by `truncate`, whose buffers a new set reuses.
    spare_header_sets: Vec<Headers>,
    /// `produced` as [`Record`]s, built when first asked for.
    records: OnceLock<Vec<Record>>,
    pub(crate) processed: u64,
}

/// Where one output is in [`Outputs`]: plain numbers, so that collecting
/// and dropping many outputs touches no memory but their own.
#[derive(Debug, Clone, Copy)]
struct Produced {
    /// Index in `topics`.
    topic: usize,
    /// The output's key (`key_len` bytes, if any) then its value start
    /// here in `bytes`.
    start: usize,
    key_len: Option<usize>,
    value_len: usize,
    timestamp: Option<i64>,
    /// Index in `header_sets`.
    headers: usize,
}

/// One output, encoded, borrowed from where it was made or collected.
#[derive(PartialEq)]
pub(crate) struct Output<'a> {
    pub(crate) topic: &'a Arc<str>,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: &'a [u8],
    pub(crate) timestamp: Option<i64>,
    pub(crate) headers: &'a Headers,
}

impl Output<'_> {
    fn to_record(&self) -> Record {
        Record {
            topic: self.topic.to_string(),
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.to_vec(),
            timestamp: self.timestamp,
            headers: self.headers.clone(),
        }
    }
}

/// How many dropped header sets [`Outputs`] keeps for reuse.
const SPARE_HEADER_SETS: usize = 16;

impl Outputs {
    /// Every produced record, in production order. (They are built on the
    /// first call after new outputs arrived.)
    pub fn records(&self) -> &[Record] {
        self.records
            .get_or_init(|| self.iter().map(|view| view.to_record()).collect())
    }

    /// How many input messages were processed (including skipped ones).
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// The records produced to the topic called `name`.
    pub fn records_to<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records()
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
        self.decoded(topic, |key, value| {
            let key = match key {
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
        mut make: impl FnMut(Option<&[u8]>, V) -> std::result::Result<T, (Field, anyhow::Error)>,
    ) -> Result<Vec<T>> {
        self.iter()
            .filter(|view| **view.topic == *topic.name())
            .enumerate()
            .map(|(index, view)| {
                topic
                    .value_codec_ref()
                    .decode(view.value)
                    .map_err(|e| (Field::Value, e))
                    .and_then(|value| make(view.key, value))
                    .map_err(|(field, source)| Error::DecodeOutput {
                        topic: topic.name().to_string(),
                        index,
                        field,
                        source: source.into(),
                    })
            })
            .collect()
    }

    /// No outputs, with room for as many as these and a quarter more:
    /// outputs grow (a running total gets longer), and outgrowing the room
    /// copies every output collected.
    pub(crate) fn emptied(&self) -> Outputs {
        let room = |len: usize| len + len / 4;
        Outputs {
            bytes: Vec::with_capacity(room(self.bytes.len())),
            produced: Vec::with_capacity(room(self.produced.len())),
            ..Outputs::default()
        }
    }

    /// Collects a copy of `output`.
    pub(crate) fn push(&mut self, output: Output<'_>) {
        let topic = match self
            .topics
            .iter()
            .position(|known| same_name(known, output.topic))
        {
            Some(index) => index,
            None => {
                self.topics.push(output.topic.clone());
                self.topics.len() - 1
            }
        };
        let start = self.bytes.len();
        if let Some(key) = output.key {
            self.bytes.extend_from_slice(key);
        }
        self.bytes.extend_from_slice(output.value);
        let headers = self.header_set(output.headers);
        self.produced.push(Produced {
            topic,
            start,
            key_len: output.key.map(<[u8]>::len),
            value_len: output.value.len(),
            timestamp: output.timestamp,
            headers,
        });
        self.records.take();
    }

    /// The index in `header_sets` of a set equal to `headers`.
    fn header_set(&mut self, headers: &Headers) -> usize {
        let next_output = self.produced.len();
        if self.header_sets.is_empty() {
            self.header_sets.push((next_output, Headers::new()));
        }
        if headers.is_empty() {
            return 0;
        }
        let last = self.header_sets.len() - 1;
        if self.header_sets[last].1 != *headers {
            let mut set = self.spare_header_sets.pop().unwrap_or_default();
            set.clone_from(headers);
            self.header_sets.push((next_output, set));
            return last + 1;
        }
        last
    }

    /// How many outputs there are.
    pub(crate) fn len(&self) -> usize {
        self.produced.len()
    }

    /// Keeps the first `len` outputs only (their room stays).
    pub(crate) fn truncate(&mut self, len: usize) {
        if let Some(first_dropped) = self.produced.get(len) {
            self.bytes.truncate(first_dropped.start);
            self.produced.truncate(len);
            while let Some((first_output, _)) = self.header_sets.last() {
                if *first_output < len {
                    break;
                }
                if let Some((_, set)) = self.header_sets.pop() {
                    if self.spare_header_sets.len() < SPARE_HEADER_SETS {
                        self.spare_header_sets.push(set);
                    }
                }
            }
            self.records.take();
        }
    }

    /// Every output, in production order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Output<'_>> {
        self.produced.iter().map(|produced| self.view(produced))
    }

    /// Output number `index`.
    pub(crate) fn get(&self, index: usize) -> Option<Output<'_>> {
        self.produced.get(index).map(|produced| self.view(produced))
    }

    fn view(&self, produced: &Produced) -> Output<'_> {
        let key_len = produced.key_len.unwrap_or(0);
        let (key, value) =
            self.bytes[produced.start..][..key_len + produced.value_len].split_at(key_len);
        Output {
            topic: &self.topics[produced.topic],
            key: produced.key_len.map(|_| key),
            value,
            timestamp: produced.timestamp,
            headers: &self.header_sets[produced.headers].1,
        }
    }
}

impl PartialEq for Outputs {
    fn eq(&self, other: &Self) -> bool {
        self.processed == other.processed
            && self.produced.len() == other.produced.len()
            && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("records", &self.records())
            .field("processed", &self.processed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes an output with timestamp 7 and one header.
    fn push(outputs: &mut Outputs, topic: &Arc<str>, key: Option<&[u8]>, value: &[u8]) {
        let headers = vec![("h".to_string(), b"v".to_vec())];
        outputs.push(Output {
            topic,
            key,
            value,
            timestamp: Some(7),
            headers: &headers,
        });
    }

    #[test]
    fn records_follow_every_push_in_order() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut outputs = Outputs::default();
        push(&mut outputs, &a, Some(b"k"), b"1");
        assert_eq!(outputs.records().len(), 1);
        push(&mut outputs, &b, None, b"");
        push(&mut outputs, &a, Some(b""), b"3");
        let records = outputs.records();
        assert_eq!(records.len(), 3, "built again after new outputs");
        assert_eq!(
            records[0],
            Record {
                topic: "a".into(),
                key: Some(b"k".to_vec()),
                value: b"1".to_vec(),
                timestamp: Some(7),
                headers: vec![("h".to_string(), b"v".to_vec())],
            }
        );
        assert_eq!(
            (records[1].topic.as_str(), records[1].key.as_ref()),
            ("b", None)
        );
        assert_eq!(records[2].key, Some(Vec::new()), "an empty key is a key");
        let to_a: Vec<_> = outputs.records_to("a").map(|r| r.value.clone()).collect();
        assert_eq!(to_a, [b"1".to_vec(), b"3".to_vec()]);
    }

    #[test]
    fn outputs_are_equal_when_their_records_are() {
        let (a, other_a): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("a"));
        let (mut left, mut right) = (Outputs::default(), Outputs::default());
        push(&mut left, &a, Some(b"k"), b"1");
        push(&mut right, &other_a, Some(b"k"), b"1");
        assert_eq!(left, right);
        // The same bytes, split differently between key and value.
        push(&mut left, &a, Some(b"k2"), b"");
        push(&mut right, &a, Some(b"k"), b"2");
        assert_ne!(left, right);
        assert!(format!("{left:?}").contains("records"));
        assert_eq!(left.clone(), left);
    }

    #[test]
    fn an_emptied_copy_has_no_outputs() {
        let a: Arc<str> = Arc::from("a");
        let mut outputs = Outputs::default();
        push(&mut outputs, &a, None, b"1");
        let emptied = outputs.emptied();
        assert!(emptied.records().is_empty());
        assert_eq!(emptied.processed(), 0);
    }

    #[test]
    fn truncating_forgets_the_later_outputs_and_their_bytes() {
        let a: Arc<str> = Arc::from("a");
        let mut outputs = Outputs::default();
        push(&mut outputs, &a, Some(b"k"), b"1");
        assert_eq!(outputs.records().len(), 1);
        push(&mut outputs, &a, Some(b"k"), b"2");
        outputs.truncate(5);
        assert_eq!(outputs.len(), 2, "nothing to drop past the end");
        outputs.truncate(1);
        push(&mut outputs, &a, None, b"3");
        let values: Vec<_> = outputs.records().iter().map(|r| r.value.clone()).collect();
        assert_eq!(values, [b"1".to_vec(), b"3".to_vec()]);
        assert_eq!(outputs.bytes, b"k13", "the dropped output's bytes are gone");
        outputs.truncate(0);
        assert!(outputs.records().is_empty());
    }

    #[test]
    fn headers_are_kept_once_per_run_of_equal_sets_and_truncated_with_their_outputs() {
        let a: Arc<str> = Arc::from("a");
        let header = |value: &[u8]| vec![("h".to_string(), value.to_vec())];
        let mut outputs = Outputs::default();
        let push = |outputs: &mut Outputs, headers: &Headers| {
            outputs.push(Output {
                topic: &a,
                key: None,
                value: b"v",
                timestamp: None,
                headers,
            })
        };
        push(&mut outputs, &header(b"1"));
        push(&mut outputs, &Headers::new());
        push(&mut outputs, &header(b"2"));
        outputs.truncate(2);
        push(&mut outputs, &header(b"3"));
        push(&mut outputs, &header(b"3"));
        let headers: Vec<_> = outputs
            .records()
            .iter()
            .map(|r| r.headers.clone())
            .collect();
        assert_eq!(
            headers,
            [header(b"1"), vec![], header(b"3"), header(b"3")],
            "the truncated output's headers are gone"
        );
        assert_eq!(outputs.header_sets.len(), 3, "none, 1 and 3 (once)");
        outputs.truncate(0);
        assert!(outputs.header_sets.is_empty());
        push(&mut outputs, &Headers::new());
        assert_eq!(outputs.records()[0].headers, Headers::new());
    }
}
