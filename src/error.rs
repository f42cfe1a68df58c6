//! The crate's error type.

use std::time::Duration;

/// A boxed cause: what a user closure, a codec or a client library reported.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which part of a Kafka message could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The message key.
    Key,
    /// The message value.
    Value,
    /// The message headers.
    Header,
    /// The event time read by the topic's
    /// [timestamp extractor](crate::Topic::timestamp).
    Timestamp,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Key => "key",
            Field::Value => "value",
            Field::Header => "header",
            Field::Timestamp => "timestamp",
        })
    }
}

/// Everything that can go wrong in kstreams.
///
/// Each variant is named for the operation that failed and carries where it
/// failed: the topic, partition and offset of the input message for errors
/// while processing one, the topic for errors while talking to the broker.
/// [`std::error::Error::source`] gives the underlying cause.
///
/// # Examples
///
/// ```
/// use kstreams::{Error, Field};
///
/// let err = Error::Deserialize {
///     topic: "purchases".into(),
///     partition: 0,
///     offset: 42,
///     field: Field::Value,
///     source: "expected value at line 1 column 1".into(),
/// };
/// assert_eq!(
///     err.to_string(),
///     "cannot decode value of message at topic purchases partition 0 offset 42: \
///      expected value at line 1 column 1"
/// );
/// assert!(err.offset().is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error("invalid configuration {key}: {reason}")]
    Config {
        /// The setting that is wrong.
        key: String,
        /// Why it is wrong.
        reason: String,
    },

    /// librdkafka refused to create a client (consumer, producer or admin).
    #[error("cannot create the Kafka {client}: {source}")]
    CreateClient {
        /// `consumer`, `producer` or `admin client`.
        client: &'static str,
        /// The cause.
        source: Box<rdkafka::error::KafkaError>,
    },

    /// The embedded broker (librdkafka's mock cluster) failed.
    #[error("embedded broker: {reason}")]
    EmbeddedBroker {
        /// What went wrong.
        reason: String,
    },

    /// Reading topic metadata from the broker failed.
    #[error("cannot read metadata of topic {topic}: {source}")]
    Metadata {
        /// The topic.
        topic: String,
        /// The cause.
        source: Box<rdkafka::error::KafkaError>,
    },

    /// A topic does not exist and automatic topic creation is off.
    #[error(
        "topic {topic} does not exist and topic auto-creation is off: \
         create it or enable ApplicationBuilder::auto_create_topics"
    )]
    TopicNotFound {
        /// The missing topic.
        topic: String,
    },

    /// Creating a topic failed.
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// What the broker said.
        reason: String,
    },

    /// Subscribing to the input topics failed.
    #[error("cannot subscribe to topics {topics:?}: {source}")]
    Subscribe {
        /// The input topics.
        topics: Vec<String>,
        /// The cause.
        source: Box<rdkafka::error::KafkaError>,
    },

    /// The consumer reported an error.
    #[error("consumer error: {source}")]
    Consume {
        /// The cause.
        source: Box<rdkafka::error::KafkaError>,
    },

    /// A message key or value could not be decoded by the topic's codec.
    #[error("cannot decode {field} of message at topic {topic} partition {partition} offset {offset}: {source}")]
    Deserialize {
        /// The input topic.
        topic: String,
        /// The input partition.
        partition: i32,
        /// The offset of the message.
        offset: i64,
        /// Key or value.
        field: Field,
        /// The codec's error.
        source: Cause,
    },

    /// A user closure failed while processing a message.
    #[error("processing failed for message at topic {topic} partition {partition} offset {offset}: {source}")]
    Process {
        /// The input topic.
        topic: String,
        /// The input partition.
        partition: i32,
        /// The offset of the message.
        offset: i64,
        /// The closure's error.
        source: Cause,
    },

    /// An output key or value could not be encoded by the output topic's codec.
    #[error(
        "cannot encode {field} for output topic {output_topic} while processing message at \
         topic {topic} partition {partition} offset {offset}: {source}"
    )]
    Serialize {
        /// The output topic.
        output_topic: String,
        /// Key or value.
        field: Field,
        /// The input topic.
        topic: String,
        /// The input partition.
        partition: i32,
        /// The offset of the input message.
        offset: i64,
        /// The codec's error.
        source: Cause,
    },

    /// The broker did not accept an output message.
    #[error(
        "cannot produce to topic {output_topic} the output of message at topic {topic} \
         partition {partition} offset {offset}: {source}"
    )]
    Produce {
        /// The output topic.
        output_topic: String,
        /// The input topic of the message whose output failed.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// The cause.
        source: Box<rdkafka::error::KafkaError>,
    },

    /// The broker did not accept a record of a store's changelog. The
    /// checkpoint it belongs to is not committed, whatever the producer
    /// error callback says: the state would otherwise be lost on the next
    /// recovery.
    #[error(
        "cannot write to changelog topic {changelog} partition {partition} (store {store}): \
         {source}; nothing of this checkpoint is committed"
    )]
    ChangelogProduce {
        /// The changelog topic.
        changelog: String,
        /// Its partition (the input partition whose state it backs).
        partition: i32,
        /// The store.
        store: String,
        /// The cause.
        source: Box<rdkafka::error::KafkaError>,
    },

    /// A changelog topic's partition count differs from its input topic's
    /// (partitions were added to the input, say): partition N of a
    /// changelog backs partition N of the input, so its state cannot be
    /// used.
    #[error(
        "changelog topic {changelog} has {changelog_partitions} partition(s) but its input topic \
         {topic} has {partitions}: give the input back its partition count, or start over \
         (delete the changelog topics, clear the state, and reprocess the input)"
    )]
    ChangelogPartitions {
        /// The changelog topic.
        changelog: String,
        /// Its partition count.
        changelog_partitions: i32,
        /// The input topic.
        topic: String,
        /// Its partition count.
        partitions: i32,
    },

    /// The repartition topic of a [`group_by`](crate::StreamingDataFrame::group_by)
    /// exists with another partition count than it should have (its
    /// source's, or the one its [`GroupBy`](crate::GroupBy) asks for).
    #[error(
        "repartition topic {repartition} has {existing} partition(s), but {partitions} are \
         expected: delete it (the group's state after it then starts over), or ask for \
         {existing} with GroupBy::partitions"
    )]
    RepartitionPartitions {
        /// The repartition topic.
        repartition: String,
        /// Its partition count.
        existing: i32,
        /// The expected count.
        partitions: i32,
    },

    /// The broker did not accept a message sent with a [`Producer`](crate::Producer).
    #[error("cannot produce to topic {topic}: {source}")]
    Send {
        /// The topic.
        topic: String,
        /// The cause.
        source: Box<rdkafka::error::KafkaError>,
    },

    /// A key or value given to a [`Producer`](crate::Producer) could not be encoded.
    #[error("cannot encode {field} for topic {topic}: {source}")]
    Encode {
        /// The topic.
        topic: String,
        /// Key or value.
        field: Field,
        /// The codec's error.
        source: Cause,
    },

    /// Committing consumer offsets failed.
    #[error("cannot commit consumer offsets: {source}")]
    Commit {
        /// The cause.
        source: Box<rdkafka::error::KafkaError>,
    },

    /// A step of an exactly-once checkpoint's Kafka transaction failed for
    /// good (not an error that aborting the transaction clears).
    #[error("cannot {operation} the transaction of producer {transactional_id}: {source}")]
    Transaction {
        /// What failed: `init`, `begin`, `send offsets to`, `commit`, `abort`.
        operation: &'static str,
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// The cause.
        source: Box<rdkafka::error::KafkaError>,
    },

    /// Another instance took this instance's `transactional.id` (a newer
    /// start of the same instance, or a second instance sharing its host
    /// and state directory name): this one must stop, the other goes on.
    #[error(
        "producer {transactional_id} was fenced: another instance with the same \
         transactional.id started; this one stops"
    )]
    ProducerFenced {
        /// The producer's `transactional.id`.
        transactional_id: String,
    },

    /// The broker was unreachable for longer than the configured timeout.
    #[error(
        "the broker has been unavailable for {unavailable_for:?}, longer than the \
         broker availability timeout: check the broker and restart the application"
    )]
    BrokerUnavailable {
        /// How long it was unavailable.
        unavailable_for: Duration,
    },

    /// A produced record could not be decoded with its topic's codecs.
    #[error("cannot decode {field} of output record {index} of topic {topic}: {source}")]
    DecodeOutput {
        /// The output topic.
        topic: String,
        /// The record's position among that topic's outputs.
        index: usize,
        /// Key or value.
        field: Field,
        /// The codec's error.
        source: Cause,
    },

    /// A RocksDB state store failed. A store that fails to open because its
    /// files are damaged can be deleted while the app is stopped: with
    /// changelog topics on, the next run rebuilds it from the changelog.
    #[error("state store at {path} failed to {operation}: {source}")]
    Store {
        /// The partition's database directory.
        path: std::path::PathBuf,
        /// `open`, `read`, `write` or `destroy`.
        operation: &'static str,
        /// RocksDB's error.
        source: rocksdb::Error,
    },

    /// A changelog record that recovery cannot apply: its value does not
    /// start with a stamp of kstreams' changelog format, so kstreams did
    /// not write it (a changelog topic is kstreams' own; see the README).
    #[error("changelog record at topic {topic} partition {partition} offset {offset}: {reason}")]
    ChangelogRecord {
        /// The changelog topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// The offset of the record.
        offset: i64,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The recovery of `topic`/`partition` from its changelogs could not go
    /// on: the recovery thread stopped (it panicked), could not assign the
    /// changelog partitions, or did not let go of the stores of a recovery
    /// cancelled when the partition was revoked.
    #[error(
        "recovery of topic {topic} partition {partition} stopped: the recovery thread {reason}"
    )]
    RecoveryStopped {
        /// The input topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Why the thread stopped.
        reason: String,
    },

    /// Another process holds a state store.
    #[error(
        "state store at {path} is locked by another process: give each instance \
         its own state_dir, or stop the other instance"
    )]
    StoreLocked {
        /// The partition's database directory.
        path: std::path::PathBuf,
    },

    /// The state directory could not be created or removed.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A state value could not be encoded, or a stored one does not decode
    /// as the requested type.
    #[error("state value {key:?} in store {store} is not a valid {type_name}: {source}")]
    StateValue {
        /// The store.
        store: String,
        /// The state key.
        key: String,
        /// The requested type.
        type_name: &'static str,
        /// The decoding error.
        source: Cause,
    },

    /// The application is already running (or a test driver is using it).
    #[error("the application is already running")]
    AlreadyRunning,
}

impl Error {
    /// The input topic of the message this error is about, if any.
    pub fn topic(&self) -> Option<&str> {
        self.coordinates().map(|(topic, _, _)| topic)
    }

    /// The input partition of the message this error is about, if any.
    pub fn partition(&self) -> Option<i32> {
        self.coordinates().map(|(_, partition, _)| partition)
    }

    /// The offset of the input message this error is about, if any.
    pub fn offset(&self) -> Option<i64> {
        self.coordinates().map(|(_, _, offset)| offset)
    }

    fn coordinates(&self) -> Option<(&str, i32, i64)> {
        match self {
            Error::Deserialize {
                topic,
                partition,
                offset,
                ..
            }
            | Error::Process {
                topic,
                partition,
                offset,
                ..
            }
            | Error::Serialize {
                topic,
                partition,
                offset,
                ..
            }
            | Error::Produce {
                topic,
                partition,
                offset,
                ..
            } => Some((topic, *partition, *offset)),
            _ => None,
        }
    }
}
