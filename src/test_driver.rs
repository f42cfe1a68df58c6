//! Runs an application's dataframes with no broker at all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::app::Application;
use crate::checkpoint_schedule::CheckpointSchedule;
use crate::dataframe::{Pipeline, Tick};
use crate::error::{Error, Field, Result};
use crate::message::{Headers, Metadata};
use crate::outputs::Outputs;
use crate::state::StateManager;

use crate::topic::{same_name, Topic};

/// Pushes messages through an application's dataframes without a broker and
/// collects what they would produce: fast, deterministic unit tests of a
/// pipeline (Kafka Streams' `TopologyTestDriver`, Quix Streams' `sdf.test`).
///
/// Messages go through the same codecs, chains and error callbacks as in
/// [`Application::run`]. Offsets count from 0 per topic and partition. The
/// records of a [`group_by`](crate::StreamingDataFrame::group_by) go
/// through the steps after it at once, in the partition of their key as
/// librdkafka's default partitioner picks it among
/// [`GroupBy::partitions`](crate::GroupBy::partitions) (default: the
/// application's [`topic_partitions`](crate::ApplicationBuilder::topic_partitions)). While
/// a driver exists the application cannot run; dropping it gives the
/// dataframes back.
///
/// # Examples
///
/// ```
/// use kstreams::{Application, TestDriver, TestMessage};
/// use serde_json::{json, Value};
///
/// let app = Application::builder().use_embedded_broker().build()?;
/// let purchases = app.topic::<Value>("purchases");
/// let big = app.topic::<Value>("big-purchases");
/// app.dataframe(&purchases)
///     .filter_column("amount", |a| a.as_f64().unwrap_or(0.0) > 100.0)
///     .to_topic(&big);
///
/// let mut driver = TestDriver::new(&app)?;
/// driver.push(&purchases, TestMessage::new(json!({"amount": 120})).key(b"ada".to_vec()))?;
/// driver.push(&purchases, TestMessage::new(json!({"amount": 80})))?;
/// assert_eq!(driver.values(&big)?, [json!({"amount": 120})]);
/// # Ok::<(), kstreams::Error>(())
/// ```
pub struct TestDriver<'a> {
    app: &'a Application,
    pipeline: Option<Pipeline>,
    /// Real stores, in a temporary directory removed on drop.
    stores: StateManager,
    state_dir: PathBuf,
    outputs: Outputs,
    /// Per input topic, per partition, the offset of the next message.
    next_offsets: Vec<(Arc<str>, BTreeMap<i32, i64>)>,
    /// The message being processed (reused from message to message).
    meta: Metadata,
    /// When state is next written to RocksDB.
    schedule: CheckpointSchedule,
    /// Per input partition, how long it has been idle ([`idle`](Self::idle))
    /// since its last message.
    idle: BTreeMap<(Arc<str>, i32), Duration>,
    /// The repartition topics, with their partition counts.
    repartitions: Vec<(Arc<str>, i32)>,
    /// The key and value of the repartition record being processed.
    forwarded_key: Vec<u8>,
    forwarded_value: Vec<u8>,
}

/// A message for [`TestDriver::push`]: a value and optionally a key,
/// timestamp, headers and partition.
#[derive(Debug, Clone)]
#[must_use]
pub struct TestMessage<V, K = Vec<u8>> {
    value: V,
    key: Option<K>,
    timestamp: Option<i64>,
    headers: Headers,
    partition: i32,
}

impl<V, K> TestMessage<V, K> {
    /// A message with `value`, no key, no timestamp, no headers, in partition 0.
    pub fn new(value: V) -> Self {
        TestMessage {
            value,
            key: None,
            timestamp: None,
            headers: Vec::new(),
            partition: 0,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: K) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch.
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = partition;
        self
    }
}

impl<'a> TestDriver<'a> {
    /// Takes the dataframes declared on `app` so far.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] while the application runs or another
    /// driver holds it.
    pub fn new(app: &'a Application) -> Result<Self> {
        static DRIVERS: AtomicU64 = AtomicU64::new(0);
        let pipeline = app.take_pipeline()?;
        let state_dir = std::env::temp_dir().join(format!(
            "kstreams-test-driver-{}-{}",
            std::process::id(),
            DRIVERS.fetch_add(1, Ordering::Relaxed)
        ));
        Ok(TestDriver {
            app,
            pipeline: Some(pipeline),
            stores: StateManager::new(app.store_layout_at(state_dir.clone())),
            state_dir,
            outputs: Outputs::default(),
            next_offsets: Vec::new(),
            meta: Metadata::new(),
            schedule: CheckpointSchedule::new(app.config()),
            idle: BTreeMap::new(),
            repartitions: app
                .repartitions()
                .into_iter()
                .map(|repartition| {
                    let partitions = repartition.partitions;
                    (
                        repartition.topic,
                        partitions.unwrap_or(app.config().topic_partitions),
                    )
                })
                .collect(),
            forwarded_key: Vec::new(),
            forwarded_value: Vec::new(),
        })
    }

    /// Processes one message of `topic`, encoded with the topic's codecs.
    ///
    /// # Errors
    ///
    /// What the application's processing error callback does not skip
    /// (without one: every processing error), naming topic, partition and
    /// offset; [`Error::Encode`] when the message itself cannot be encoded.
    pub fn push<V, K>(&mut self, topic: &Topic<V, K>, message: TestMessage<V, K>) -> Result<()> {
        let encode_failed = |field, source: anyhow::Error| Error::Encode {
            topic: topic.name().to_string(),
            field,
            source: source.into(),
        };
        let mut value = Vec::new();
        topic
            .value_codec_ref()
            .encode(&message.value, &mut value)
            .map_err(|source| encode_failed(Field::Value, source))?;
        let key = match &message.key {
            Some(key) => {
                let mut bytes = Vec::new();
                topic
                    .key_codec_ref()
                    .encode(key, &mut bytes)
                    .map_err(|source| encode_failed(Field::Key, source))?;
                Some(bytes)
            }
            None => None,
        };
        let name = topic.shared_name();
        self.set_message(name, message.partition, key.as_deref(), message.timestamp);
        self.meta.headers = message.headers;
        self.process(Some(&value))
    }

    /// Processes one message of `topic` given as raw key and value bytes
    /// (`None`: none), on partition 0: to test what undecodable input does,
    /// or to push input encoded once up front.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Error, TestDriver};
    /// let app = Application::builder().use_embedded_broker().build()?;
    /// let input = app.topic::<serde_json::Value>("input");
    /// app.dataframe(&input).to_topic(&app.topic::<serde_json::Value>("output"));
    ///
    /// let mut driver = TestDriver::new(&app)?;
    /// let err = driver.push_bytes(&input, None, Some(b"{oops")).unwrap_err();
    /// assert!(matches!(err, Error::Deserialize { offset: 0, .. }));
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn push_bytes<V, K>(
        &mut self,
        topic: &Topic<V, K>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<()> {
        self.set_message(topic.shared_name(), 0, key, None);
        self.meta.headers.clear();
        self.process(value)
    }

    /// Lets `duration` of wall-clock time pass with no message: each
    /// partition has been idle that much longer since its last message,
    /// and windows that close on an idle stream
    /// ([`close_when_idle`](crate::windows::WindowDefinition::close_when_idle))
    /// close what that passes, as the poll loop would have them do.
    ///
    /// # Errors
    ///
    /// What a window step fails with (its results' steps included, and
    /// those after a `group_by` they reach), naming the partition;
    /// [`Error::Store`] when RocksDB fails.
    pub fn idle(&mut self, duration: Duration) -> Result<()> {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return Err(Error::AlreadyRunning);
        };
        let keep_cache = self.schedule.keeps_cache(self.stores.pending_bytes());
        let emitted = self.outputs.len();
        for (topic, partition, state) in self.stores.partitions_mut() {
            if !pipeline.ticks(topic) {
                continue;
            }
            let idle = self.idle.entry((topic.clone(), partition)).or_default();
            *idle += duration;
            for tick in [Tick::Idle(*idle), Tick::Act] {
                self.meta.set_message(topic, partition, -1, None, None);
                self.meta.headers.clear();
                match pipeline.tick(tick, &mut self.meta, &mut self.outputs, state) {
                    Ok(wrote) => {
                        state.keep_writes();
                        // What the idle time decided is state before anything acts on it.
                        if wrote {
                            state.write_checkpoint(&[], keep_cache)?;
                        }
                    }
                    Err(error) => {
                        state.discard_message_writes();
                        return Err(error);
                    }
                }
            }
        }
        // What the windows emitted into a `group_by` goes on after it.
        self.forward_repartition_records(emitted)
    }

    /// Everything produced so far.
    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// Everything produced so far; the driver starts collecting afresh
    /// (with room for as many outputs as it hands over, and some more).
    pub fn take_outputs(&mut self) -> Outputs {
        let emptied = self.outputs.emptied();
        std::mem::replace(&mut self.outputs, emptied)
    }

    /// The values produced to `topic` so far, decoded.
    ///
    /// # Errors
    ///
    /// [`Error::DecodeOutput`] when a value does not decode.
    pub fn values<V, K>(&self, topic: &Topic<V, K>) -> Result<Vec<V>> {
        self.outputs.values(topic)
    }

    /// The keys and values produced to `topic` so far, decoded.
    ///
    /// # Errors
    ///
    /// [`Error::DecodeOutput`] when a key or value does not decode.
    pub fn keys_and_values<V, K>(&self, topic: &Topic<V, K>) -> Result<Vec<(Option<K>, V)>> {
        self.outputs.keys_and_values(topic)
    }

    /// Makes `self.meta` the metadata of the next message in `partition`
    /// of topic `name`, with `key` and `timestamp`.
    fn set_message(
        &mut self,
        name: &Arc<str>,
        partition: i32,
        key: Option<&[u8]>,
        timestamp: Option<i64>,
    ) {
        let index = match self
            .next_offsets
            .iter()
            .position(|(known, _)| same_name(known, name))
        {
            Some(index) => index,
            None => {
                self.next_offsets.push((name.clone(), BTreeMap::new()));
                self.next_offsets.len() - 1
            }
        };
        // (Without a clone of the name while no partition idles.)
        if !self.idle.is_empty() {
            self.idle.remove(&(name.clone(), partition));
        }
        let next = self.next_offsets[index].1.entry(partition).or_insert(0);
        let offset = *next;
        *next += 1;
        self.meta
            .set_message(name, partition, offset, key, timestamp);
    }

    /// Runs the message `self.meta` describes through the pipeline, then
    /// each repartition record it produced through the steps after its
    /// `group_by`.
    fn process(&mut self, value: Option<&[u8]>) -> Result<()> {
        let next = self.outputs.len();
        self.process_message(value)?;
        self.forward_repartition_records(next)
    }

    /// Runs each repartition record among the outputs from number `next`
    /// on (and those they produce in turn) through the steps after its
    /// `group_by`.
    fn forward_repartition_records(&mut self, mut next: usize) -> Result<()> {
        while let Some(output) = self.outputs.get(next) {
            next += 1;
            let topic = output.topic;
            let Some(&(_, partitions)) = self
                .repartitions
                .iter()
                .find(|(repartition, _)| same_name(repartition, topic))
            else {
                continue;
            };
            // Copied into buffers reused from record to record.
            let topic = topic.clone();
            let mut value = std::mem::take(&mut self.forwarded_value);
            value.clear();
            value.extend_from_slice(output.value);
            let mut key = std::mem::take(&mut self.forwarded_key);
            key.clear();
            key.extend_from_slice(output.key.unwrap_or_default());
            let (keyed, timestamp) = (output.key.is_some(), output.timestamp);
            self.meta.headers.clone_from(output.headers);
            let partition = if keyed {
                partition_of(&key, partitions)
            } else {
                0
            };
            self.set_message(&topic, partition, keyed.then_some(&key[..]), timestamp);
            let processed = self.process_message(Some(&value));
            (self.forwarded_key, self.forwarded_value) = (key, value);
            processed?;
        }
        Ok(())
    }

    /// Runs the message `self.meta` describes through the pipeline.
    fn process_message(&mut self, value: Option<&[u8]>) -> Result<()> {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return Err(Error::AlreadyRunning);
        };
        let meta = &mut self.meta;
        let mut partition_state = if self.stores.is_stateful_topic(&meta.topic) {
            Some(self.stores.open(&meta.topic, meta.partition)?)
        } else {
            None
        };
        let result = pipeline.process(
            meta,
            value,
            &mut self.outputs,
            partition_state.as_deref_mut(),
        );
        self.outputs.processed += 1;
        if let Some(state) = partition_state {
            match &result {
                Ok(()) => state.absorb(meta.offset),
                Err(_) => state.discard_message_writes(),
            }
        }
        self.checkpoint_when_due()?;
        if let Err(error) = result {
            self.app.config().on_error.processing(error)?;
        }
        Ok(())
    }
}

impl TestDriver<'_> {
    /// Writes the state (if any) to RocksDB when a checkpoint is due, as the
    /// application's poll loop would (see [`CheckpointSchedule`]).
    fn checkpoint_when_due(&mut self) -> Result<()> {
        if !self.stores.is_stateful() {
            return Ok(());
        }
        self.schedule.processed();
        let stores = &self.stores;
        if self.schedule.is_due(|| stores.pending_bytes()) {
            let keep_cache = self.schedule.keeps_cache(self.stores.pending_bytes());
            for (_, _, state) in self.stores.partitions_mut() {
                state.write_checkpoint(&[], keep_cache)?;
            }
            self.schedule.checkpointed();
        }
        Ok(())
    }
}

/// The partition librdkafka's default partitioner (`consistent_random`)
/// gives a keyed record among `partitions`: the key's CRC-32 modulo the
/// partition count.
fn partition_of(key: &[u8], partitions: i32) -> i32 {
    let mut crc = !0u32;
    for &byte in key {
        crc = (crc >> 8) ^ CRC_TABLE[usize::from(crc as u8 ^ byte)];
    }
    let partitions = u32::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(!crc % partitions).unwrap_or(0)
}

/// The CRC-32 (IEEE, reflected) of each byte value: [`partition_of`]
/// then takes one lookup per key byte, not eight shifts.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

impl Drop for TestDriver<'_> {
    fn drop(&mut self) {
        self.stores.close_all();
        let _ = std::fs::remove_dir_all(&self.state_dir);
        if let Some(pipeline) = self.pipeline.take() {
            self.app.return_pipeline(pipeline);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_go_where_librdkafka_sends_them() {
        // CRC-32 of "123456789" is 0xCBF43926.
        assert_eq!(super::partition_of(b"123456789", 1 << 30), 0x0BF4_3926);
        assert_eq!(super::partition_of(b"", 3), 0);
        let fox = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(super::partition_of(fox, 1 << 30), 0x014F_A339);
    }
}
