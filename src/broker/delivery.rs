//! Producing outputs and collecting the broker's delivery reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};

use super::delivery_reports::{self, DeliveryReports};
use super::transaction::{Ended, Transactions};
use super::Broker;
use crate::config::{Config, ProcessingGuarantee};
use crate::dataframe::is_repartition_topic;
use crate::error::{Error, Result};
use crate::outputs::Output;
use crate::state::changelog::{self, Stamp};

/// The input message an output was produced for.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// What a produced message was, for its delivery report.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    /// An output of the input message at `Origin`.
    Output(Origin),
    /// A record of `store`'s changelog: its offset is what recovery
    /// resumes from.
    Changelog { store: Arc<str> },
    /// A message sent with the public `Producer`.
    Plain,
}

impl Delivery {
    /// The error for this message, refused for `source` by librdkafka or
    /// the broker on its way to `partition` of `output_topic`.
    fn failed(&self, output_topic: &str, partition: i32, source: KafkaError) -> Error {
        let (output_topic, source) = (output_topic.to_string(), Box::new(source));
        match self {
            Delivery::Output(origin) => Error::Produce {
                output_topic,
                topic: origin.topic.to_string(),
                partition: origin.partition,
                offset: origin.offset,
                source,
            },
            Delivery::Changelog { store } => Error::ChangelogProduce {
                changelog: output_topic,
                partition,
                store: store.to_string(),
                source,
            },
            Delivery::Plain => Error::Send {
                topic: output_topic,
                source,
            },
        }
    }
}

/// Per changelog topic, per partition, the highest acknowledged offset:
/// keyed by topic first, so that a report finds its topic without
/// allocating its name.
pub(crate) type ChangelogOffsets = HashMap<String, HashMap<i32, i64>>;

/// Records the outputs the broker did not accept, and the offsets of
/// acknowledged changelog records, for the next checkpoint.
#[derive(Default)]
pub(crate) struct DeliveryContext {
    failures: Mutex<Vec<Error>>,
    /// Per changelog topic and partition, the highest acknowledged offset.
    changelog_offsets: Mutex<ChangelogOffsets>,
    /// Changelog records sent and not answered yet.
    changelog_in_flight: AtomicUsize,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    /// Reports served by rust-rdkafka's own poll: only those the producer's
    /// drop collects after the reports thread stopped.
    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Self::DeliveryOpaque) {
        let (message, result) = match result {
            Ok(message) => (message, Ok(message.offset())),
            Err((source, message)) => (message, Err(source.clone())),
        };
        self.report(message.topic(), message.partition(), result, *delivery);
    }
}

impl DeliveryContext {
    /// The broker's answer for one message sent to `partition` of `topic`:
    /// its offset, or why it was refused.
    pub(crate) fn report(
        &self,
        topic: &str,
        partition: i32,
        result: std::result::Result<i64, KafkaError>,
        delivery: Delivery,
    ) {
        if let Delivery::Changelog { .. } = delivery {
            self.changelog_in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        match (result, delivery) {
            (Ok(offset), Delivery::Changelog { .. }) => {
                let acknowledge = |partitions: &mut HashMap<i32, i64>| {
                    let acknowledged = partitions.entry(partition).or_insert(offset);
                    *acknowledged = (*acknowledged).max(offset);
                };
                let mut offsets = self.changelog_offsets.lock();
                match offsets.get_mut(topic) {
                    Some(partitions) => acknowledge(partitions),
                    None => acknowledge(offsets.entry(topic.to_string()).or_default()),
                }
            }
            (Ok(_), _) => {}
            (Err(source), delivery) => {
                let error = delivery.failed(topic, partition, source);
                self.failures.lock().push(error);
            }
        }
    }
}

/// The producer of an application's outputs and changelog records, and
/// (when the application has a `group_by`) of its repartition records.
pub(crate) struct OutputProducer {
    plain: Lane,
    /// Repartition records: idempotent with librdkafka's gapless
    /// guarantee, no message timeout and one request in flight, so that
    /// each partition gets them in order and without holes, or the lane
    /// fails for good (the `group_by` deduplication relies on it). A lane
    /// of its own, so that outputs keep the cheaper producer and a refused
    /// output stays skippable.
    ordered: Option<Lane>,
    /// Exactly once: the plain lane is transactional, and carries every
    /// record (repartition records too).
    transactions: Option<Transactions>,
    /// How long a full local queue may block a send (the broker is away).
    patience: Duration,
}

/// One librdkafka producer and the thread serving its delivery reports.
struct Lane {
    /// Declared before `producer`: its queue handle goes first.
    _reports: DeliveryReports,
    producer: BaseProducer<DeliveryContext>,
}

impl Lane {
    fn create(client: &ClientConfig) -> Result<Self> {
        let producer = client
            .create_with_context(DeliveryContext::default())
            .map_err(|source| Error::CreateClient {
                client: "producer",
                source: source.into(),
            })?;
        Ok(Lane {
            _reports: DeliveryReports::start(&producer)?,
            producer,
        })
    }

    fn context(&self) -> &DeliveryContext {
        self.producer.context()
    }
}

impl OutputProducer {
    /// With `ordered`, repartition records get a lane of their own.
    pub(crate) fn create(broker: &Broker, config: &Config, ordered: bool) -> Result<Self> {
        let mut client = broker.client_config(&[]);
        // librdkafka's default of 5 ms trades a little latency for batches.
        client.set("linger.ms", "5");
        // Not idempotent: librdkafka's broker thread then keeps busy while
        // requests wait on a slow broker (BENCHMARKS.md). Changelog records
        // keep their order across retries without it: a checkpoint sends
        // them only once every earlier one was answered.
        for (key, value) in &config.producer_config {
            client.set(key, value);
        }
        if client
            .get("acks")
            .is_some_and(|acks| !["all", "-1"].contains(&acks))
        {
            log::warn!(
                "producer_config sets acks below all: a changelog record may then be lost \
                 with a broker, and recovery restore an older state"
            );
        }
        if config.processing_guarantee != ProcessingGuarantee::ExactlyOnce {
            // A producer with a transactional.id that never initialises
            // its transactions refuses every record.
            client.remove("transactional.id");
        }
        if config.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            let transactions = Transactions::configure(&mut client, config);
            let plain = Lane::create(&client)?;
            transactions.init(&plain.producer)?;
            return Ok(OutputProducer {
                plain,
                ordered: None,
                transactions: Some(transactions),
                patience: config.broker_availability_timeout,
            });
        }
        let plain = Lane::create(&client)?;
        let ordered = match ordered {
            // After the user's settings: these are not theirs to change.
            // librdkafka's gapless guarantee does not cover a record that
            // times out, so none does. One request in flight: with up to
            // five, librdkafka's broker thread spun while they waited on a
            // slow broker (tansu: 8.5 µs of CPU a record, BENCHMARKS.md).
            true => Some(Lane::create(
                client
                    .set("enable.idempotence", "true")
                    .set("enable.gapless.guarantee", "true")
                    .set("max.in.flight.requests.per.connection", "1")
                    .set("acks", "all")
                    .set("message.timeout.ms", "0"),
            )?),
            false => None,
        };
        Ok(OutputProducer {
            plain,
            ordered,
            transactions: None,
            patience: config.broker_availability_timeout,
        })
    }

    /// The lanes, the plain one first.
    fn lanes(&self) -> impl Iterator<Item = &Lane> {
        std::iter::once(&self.plain).chain(&self.ordered)
    }

    /// Hands one output to librdkafka; waits while its queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Produce`] (or [`Error::Send`] without an origin) when
    /// librdkafka refuses the record, [`Error::BrokerUnavailable`] when the
    /// queue stays full for longer than the broker availability timeout.
    pub(crate) fn send(&self, output: &Output<'_>, origin: Option<&Origin>) -> Result<()> {
        self.begin_transaction()?;
        let delivery = match origin {
            Some(origin) => Delivery::Output(origin.clone()),
            None => Delivery::Plain,
        };
        let headers = (!output.headers.is_empty()).then(|| {
            output
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |headers, (name, value)| {
                    headers.insert(Header {
                        key: name,
                        value: Some(value),
                    })
                })
        });
        let mut record =
            BaseRecord::with_opaque_to(output.topic, Box::new(delivery)).payload(output.value);
        if let Some(key) = output.key {
            record = record.key(key);
        }
        if let Some(timestamp) = output.timestamp {
            record = record.timestamp(timestamp);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        let lane = match &self.ordered {
            Some(ordered) if is_repartition_topic(output.topic) => ordered,
            _ => &self.plain,
        };
        match self.send_record(lane, record) {
            // Exactly once, a record the transaction cannot take (once one
            // is refused, librdkafka refuses the rest of the transaction)
            // fails the transaction: the checkpoint aborts it, and the
            // producer error callback decides then.
            Err(refused)
                if self.is_transactional()
                    && !matches!(refused, Error::BrokerUnavailable { .. }) =>
            {
                self.plain.context().failures.lock().push(refused);
                Ok(())
            }
            sent => sent,
        }
    }

    /// Sends a record of `store`'s changelog `topic` (`value` `None`: a
    /// tombstone) to `partition`, with its `stamp`, in the changelog format
    /// (`payload` is a buffer reused from record to record).
    ///
    /// # Errors
    ///
    /// [`Error::ChangelogProduce`] when librdkafka refuses the record,
    /// [`Error::BrokerUnavailable`] as for [`send`](Self::send).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_changelog(
        &self,
        topic: &str,
        partition: i32,
        store: &Arc<str>,
        key: &[u8],
        value: Option<&[u8]>,
        stamp: Stamp,
        payload: &mut Vec<u8>,
    ) -> Result<()> {
        self.begin_transaction()?;
        let delivery = Delivery::Changelog {
            store: store.clone(),
        };
        let record = BaseRecord::with_opaque_to(topic, Box::new(delivery))
            .partition(partition)
            .key(key);
        let record = match value {
            Some(value) => {
                changelog::encode_update(stamp, value, payload);
                record.payload(payload.as_slice())
            }
            None => record.headers(changelog::tombstone_headers(stamp)),
        };
        // Counted before it is sent: its report may come at once.
        let in_flight = &self.plain.context().changelog_in_flight;
        in_flight.fetch_add(1, Ordering::AcqRel);
        let sent = self.send_record(&self.plain, record);
        if sent.is_err() {
            in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// Whether a changelog record sent earlier is still unanswered (neither
    /// acknowledged nor refused): librdkafka may still retry it, so no
    /// newer record of its key may be sent before it.
    pub(crate) fn changelog_in_flight(&self) -> bool {
        self.plain
            .context()
            .changelog_in_flight
            .load(Ordering::Acquire)
            > 0
    }

    fn send_record(
        &self,
        lane: &Lane,
        mut record: BaseRecord<'_, [u8], [u8], Box<Delivery>>,
    ) -> Result<()> {
        // When the queue was first found full: the clock is read only then.
        let mut full_since = None;
        loop {
            match lane.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    let started = *full_since.get_or_insert_with(Instant::now);
                    if started.elapsed() > self.patience {
                        return Err(Error::BrokerUnavailable {
                            unavailable_for: started.elapsed(),
                        });
                    }
                    record = returned;
                    thread::sleep(Duration::from_millis(1));
                }
                Err((source, returned)) => {
                    let partition = returned.partition.unwrap_or(-1);
                    let delivery = returned.delivery_opaque;
                    return Err(delivery.failed(returned.topic, partition, source));
                }
            }
        }
    }

    /// Waits until every output sent so far is acknowledged or failed.
    /// `false` when `timeout` passed first.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.lanes().all(|lane| {
            let left = deadline.saturating_duration_since(Instant::now());
            delivery_reports::flush(&lane.producer, left)
        })
    }

    /// The highest acknowledged offset per changelog topic and partition
    /// since the last call.
    pub(crate) fn take_changelog_offsets(&self) -> ChangelogOffsets {
        std::mem::take(&mut *self.plain.context().changelog_offsets.lock())
    }

    /// The outputs that failed since the last call.
    pub(crate) fn take_failures(&self) -> Vec<Error> {
        let lanes = self.lanes();
        lanes
            .flat_map(|lane| std::mem::take(&mut *lane.context().failures.lock()))
            .collect()
    }

    /// Whether checkpoints are transactions (exactly once).
    pub(crate) fn is_transactional(&self) -> bool {
        self.transactions.is_some()
    }

    /// Exactly once: whether a transaction is open (records or offsets
    /// wait for its commit).
    pub(crate) fn has_open_transaction(&self) -> bool {
        self.transactions
            .as_ref()
            .is_some_and(Transactions::is_open)
    }

    /// Exactly once: begins the checkpoint's transaction unless it is open.
    fn begin_transaction(&self) -> Result<()> {
        match &self.transactions {
            Some(transactions) => transactions.begin(&self.plain.producer),
            None => Ok(()),
        }
    }

    /// Exactly once: commits the checkpoint's transaction with `offsets`
    /// of `group` (see [`Transactions::commit`]). At least once: nothing
    /// to do.
    pub(crate) fn commit_transaction(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<Ended> {
        match &self.transactions {
            Some(transactions) => transactions.commit(&self.plain.producer, offsets, group),
            None => Ok(Ended::Committed),
        }
    }

    /// Exactly once: aborts the open transaction, and forgets what was
    /// reported of its records (refusals and acknowledged offsets alike:
    /// none of them counts any more).
    pub(crate) fn abort_transaction(&self) -> Result<()> {
        let Some(transactions) = &self.transactions else {
            return Ok(());
        };
        let aborted = transactions.abort(&self.plain.producer);
        delivery_reports::flush(&self.plain.producer, DROP_FLUSH_TIMEOUT);
        self.forget_reports();
        aborted
    }

    /// Forgets the refusals and acknowledged changelog offsets reported.
    fn forget_reports(&self) {
        drop(std::mem::take(&mut *self.plain.context().failures.lock()));
        drop(self.take_changelog_offsets());
    }

    /// Drops every output and changelog record not acknowledged yet,
    /// queued or in flight, and forgets what was reported of them: for
    /// when none of them may reach the broker any more (their partitions
    /// belong to others now). A request already sent may still be written
    /// by the broker. Repartition records go on: a purge would break the
    /// ordered lane's gapless guarantee for good, and the steps after a
    /// `group_by` skip copies of what the new owners produce. Exactly
    /// once, the open transaction is aborted instead.
    ///
    /// # Errors
    ///
    /// Exactly once, the abort's error: the transaction's state is then
    /// unknown, and nothing more may be committed.
    pub(crate) fn purge(&self) -> Result<()> {
        if self.is_transactional() {
            return self.abort_transaction();
        }
        purge(&self.plain);
        self.forget_reports();
        Ok(())
    }
}

/// Drops what `lane` has not had acknowledged, and waits a little for the
/// reports of what it dropped.
fn purge(lane: &Lane) {
    let everything = PurgeConfig::default().queue().inflight();
    lane.producer.purge(everything);
    delivery_reports::flush(&lane.producer, DROP_FLUSH_TIMEOUT);
}

impl Drop for OutputProducer {
    /// What the producer's own drop does, purge and wait for the reports,
    /// while the reports thread still serves them.
    fn drop(&mut self) {
        self.lanes().for_each(purge);
    }
}

/// How long dropping a producer waits for the reports of purged messages.
const DROP_FLUSH_TIMEOUT: Duration = Duration::from_millis(500);
