//! The poll loop: one thread, synchronous. While running: checkpoint when
//! due, serve the consumer's events (rebalances, errors), then take the
//! messages fetched so far, a batch at a time; for each, process it, hand
//! its outputs to the producer and only then record its offset.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::broker::{
    cached_high_watermark, read_headers, Admin, Broker, Fetched, FetchedRecord, InputQueue, Origin,
    OutputProducer, EMBEDDED_FETCH_WAIT_MS,
};
use crate::checkpoint::{Checkpoint, Outcome};
use crate::config::{Config, ProcessingGuarantee};
use crate::dataframe::{is_repartition_topic, Pipeline, Repartition, Tick};
use crate::error::{Error, Field, Result};
use crate::message::Metadata;
use crate::on_error::ErrorPolicy;
use crate::outputs::Outputs;
use crate::rebalance::{LoopState, RebalanceContext};
use crate::retriable::is_retriable;
use crate::state::changelog::changelog_spec;
use crate::state::{Lookup, PartitionState, RecoveryManager, StateManager, StoreLayout};
use crate::stop::StopHandle;
use crate::topic::TopicSpec;
use crate::until::Until;

/// How long one poll waits for a message: bounds how late a stop request,
/// a due checkpoint or a run limit is noticed.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// The same while partitions recover: bounds how late a partition whose
/// recovery ended starts to be processed.
const RECOVERY_POLL_TIMEOUT: Duration = Duration::from_millis(5);
/// While the broker is away, how often to ask it for metadata to see
/// whether it is back.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the last checkpoint of a clean stop keeps trying.
const FINAL_CHECKPOINT_PATIENCE: Duration = Duration::from_secs(30);

/// What a run needs from the application.
pub(crate) struct Run<'a> {
    pub(crate) config: &'a Config,
    pub(crate) broker: &'a Broker,
    pub(crate) pipeline: &'a mut Pipeline,
    pub(crate) inputs: Vec<TopicSpec>,
    pub(crate) outputs: Vec<TopicSpec>,
    /// The repartition topics of `group_by`s, among inputs and outputs.
    pub(crate) repartitions: Vec<Repartition>,
    pub(crate) stores: StoreLayout,
    pub(crate) stop: &'a StopHandle,
}

/// Runs the pipeline until `until` or a stop request, then checkpoints and
/// leaves the group. With `collect`, returns what was produced.
pub(crate) fn run(run: Run<'_>, until: Until, collect: bool) -> Result<Outputs> {
    let Run {
        config,
        broker,
        pipeline,
        inputs,
        outputs,
        repartitions,
        stores: layout,
        stop,
    } = run;
    let topics: Vec<TopicSpec> = inputs
        .iter()
        .chain(&outputs)
        .filter(|spec| !is_repartition_topic(&spec.name))
        .cloned()
        .collect();
    let admin = Admin::connect(broker, config)?;
    admin.ensure_topics(&topics)?;
    ensure_repartitions(&admin, &repartitions)?;
    let stores = StateManager::new(layout);
    if stores.is_stateful() && config.use_changelog_topics {
        ensure_changelogs(&admin, config, &inputs, &stores)?;
    }
    drop(admin);
    let recovery = if stores.is_stateful() {
        let reader = create_changelog_reader(broker, config)?;
        Some(RecoveryManager::start(
            stores.layout().clone(),
            reader,
            config.broker_availability_timeout,
        )?)
    } else {
        None
    };

    // Repartition records keep their order (see `group_by`).
    let ordered = !repartitions.is_empty();
    let producer = Arc::new(OutputProducer::create(broker, config, ordered)?);
    let state = Arc::new(Mutex::new(LoopState::new(
        Checkpoint::new(config),
        producer.clone(),
        config.on_error.clone(),
        stores,
        recovery,
    )));
    let consumer = create_consumer(broker, config, state.clone())?;
    let input_queue = InputQueue::new(&consumer).map_err(|source| Error::CreateClient {
        client: "consumer",
        source: source.into(),
    })?;
    let names: Vec<&str> = inputs.iter().map(|spec| spec.name.as_str()).collect();
    consumer
        .subscribe(&names)
        .map_err(|source| Error::Subscribe {
            topics: names.iter().map(|name| name.to_string()).collect(),
            source: source.into(),
        })?;
    log::info!(
        "consuming {names:?} as group {} from {}",
        config.consumer_group,
        broker.bootstrap_servers()
    );

    let mut poll_loop = PollLoop {
        state,
        producer,
        pipeline,
        topics: inputs
            .iter()
            .map(|spec| Arc::from(spec.name.as_str()))
            .collect(),
        meta: Metadata::new(),
        outputs: Outputs::default(),
        collected: collect.then(Outputs::default),
        processed: 0,
        availability: Availability::new(config.broker_availability_timeout),
        idle: IdlePartitions::default(),
    };
    let result = poll_loop.run(&consumer, &input_queue, until, stop);
    let result = poll_loop.finish(&consumer, result);
    // Dropping the consumer leaves the group; its revoke callback finds
    // nothing left to commit, and closes the stores.
    drop(input_queue);
    drop(consumer);
    poll_loop.state.lock().stores.close_all();
    log::info!("stopped after {} message(s)", poll_loop.processed);
    result.map(|()| {
        let mut outputs = poll_loop.collected.unwrap_or_default();
        outputs.processed = poll_loop.processed;
        outputs
    })
}

/// Creates each missing repartition topic with its source's partition
/// count (or the one its `group_by` asks for), in declaration order: the
/// source of a nested one exists by then.
///
/// # Errors
///
/// [`Error::RepartitionPartitions`] when one exists with another count.
fn ensure_repartitions(admin: &Admin<'_>, repartitions: &[Repartition]) -> Result<()> {
    for repartition in repartitions {
        let (topic, source) = (&*repartition.topic, &*repartition.source);
        let counts = admin.partition_counts(&[topic, source])?;
        let Some(&source_partitions) = counts.get(source) else {
            return Err(Error::TopicNotFound {
                topic: source.to_string(),
            });
        };
        let partitions = repartition.partitions.unwrap_or(source_partitions);
        match counts.get(topic) {
            Some(&existing) if existing != partitions => {
                return Err(Error::RepartitionPartitions {
                    repartition: topic.to_string(),
                    existing,
                    partitions,
                })
            }
            Some(_) => {}
            None => {
                let spec = TopicSpec {
                    name: topic.to_string(),
                    partitions: Some(partitions),
                    config: vec![("cleanup.policy".into(), "delete".into())],
                };
                admin.ensure_topics(&[spec])?;
            }
        }
    }
    Ok(())
}

/// Creates each stateful input's changelog topics, with its partition
/// count.
///
/// # Errors
///
/// [`Error::ChangelogPartitions`] when a changelog exists with another
/// partition count than its input.
fn ensure_changelogs(
    admin: &Admin<'_>,
    config: &Config,
    inputs: &[TopicSpec],
    stores: &StateManager,
) -> Result<()> {
    let mut changelogs = Vec::new();
    for input in inputs {
        for store in stores.layout().stores_of(&input.name) {
            let spec = changelog_spec(&config.consumer_group, &input.name, &store.name, 0);
            changelogs.push((input, spec));
        }
    }
    let names: Vec<&str> = inputs
        .iter()
        .map(|spec| spec.name.as_str())
        .chain(changelogs.iter().map(|(_, spec)| spec.name.as_str()))
        .collect();
    let counts = admin.partition_counts(&names)?;
    let mut missing = Vec::new();
    for (input, mut spec) in changelogs {
        let partitions = counts.get(&input.name).copied().unwrap_or(1);
        match counts.get(&spec.name) {
            Some(&existing) if existing != partitions => {
                return Err(Error::ChangelogPartitions {
                    changelog: spec.name,
                    changelog_partitions: existing,
                    topic: input.name.clone(),
                    partitions,
                })
            }
            Some(_) => {}
            None => {
                spec.partitions = Some(partitions);
                missing.push(spec);
            }
        }
    }
    admin.ensure_topics(&missing)
}

/// How long librdkafka postpones fetching a partition whose local queue is
/// full (its default is 1 s, which throttles a consumer that keeps its queue
/// near the threshold, as recovery does, to a third of what it can read).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// The settings every kstreams consumer starts from; the user's
/// `consumer_config` comes after them, so it can override them.
fn consumer_client(broker: &Broker, config: &Config) -> ClientConfig {
    let mut client = broker.client_config(&[]);
    client.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    if broker.is_embedded() {
        client.set("fetch.wait.max.ms", EMBEDDED_FETCH_WAIT_MS);
    }
    for (key, value) in &config.consumer_config {
        client.set(key, value);
    }
    if config.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
        // Inputs and changelogs without aborted transactions' records:
        // not the user's to change.
        client.set("isolation.level", "read_committed");
    }
    client
}

/// How long the broker may hold a fetch of the changelog reader that
/// finds nothing new.
const CHANGELOG_FETCH_WAIT_MS: &str = "20";

fn create_changelog_reader(broker: &Broker, config: &Config) -> Result<BaseConsumer> {
    let mut client = consumer_client(broker, config);
    // The reader asks the group's committed offsets (a consumer of the
    // group, it never joins it: no subscribe, and it never commits). A
    // changelog is read until the end-of-partition event; a start offset
    // that compaction or retention removed means its beginning.
    client
        .set("group.id", &config.consumer_group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // The end of a changelog partition is known from a fetch answered
        // at its end, which the broker holds this long when it has nothing
        // (librdkafka's default, 500 ms, delayed every assignment by that).
        .set("fetch.wait.max.ms", CHANGELOG_FETCH_WAIT_MS);
    client.create().map_err(|source| Error::CreateClient {
        client: "changelog reader",
        source: Box::new(source),
    })
}

/// Kilobytes of payloads the main consumer prefetches at most
/// (`queued.max.messages.kbytes`) unless the user sets it: librdkafka's
/// 64 MiB (each message's own bookkeeping besides) would be as much again
/// as RocksDB's whole default budget. Small messages stop at 100 000 first
/// (`queued.min.messages`).
const MAIN_QUEUE_KBYTES: &str = "16384";

fn create_consumer(
    broker: &Broker,
    config: &Config,
    state: Arc<Mutex<LoopState>>,
) -> Result<BaseConsumer<RebalanceContext>> {
    let mut client = consumer_client(broker, config);
    if client.get("queued.max.messages.kbytes").is_none() {
        client.set("queued.max.messages.kbytes", MAIN_QUEUE_KBYTES);
    }
    client
        .set("group.id", &config.consumer_group)
        .set(
            "auto.offset.reset",
            config.auto_offset_reset.as_librdkafka(),
        )
        // kstreams commits itself, and only what it processed.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    client
        .create_with_context(RebalanceContext { state })
        .map_err(|source| Error::CreateClient {
            client: "consumer",
            source: source.into(),
        })
}

struct PollLoop<'a> {
    state: Arc<Mutex<LoopState>>,
    producer: Arc<OutputProducer>,
    pipeline: &'a mut Pipeline,
    /// The input topic names, shared by every message's metadata.
    topics: Vec<Arc<str>>,
    /// The message being processed: its metadata and its outputs (both
    /// reused from message to message).
    meta: Metadata,
    outputs: Outputs,
    collected: Option<Outputs>,
    processed: u64,
    availability: Availability,
    idle: IdlePartitions,
}

/// How often the poll loop ticks the partitions of windows that close on
/// an idle stream.
const TICK_INTERVAL: Duration = Duration::from_millis(100);

/// Since when each open partition of a ticking topic has been idle: its
/// last message, or when it was last behind the high watermark or first
/// seen open; and when the partitions were last ticked.
#[derive(Default)]
struct IdlePartitions {
    last_message: foldhash::HashMap<(Arc<str>, i32), Instant>,
    last_tick: Option<Instant>,
}

impl PollLoop<'_> {
    fn run(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
        inputs: &InputQueue<'_, RebalanceContext>,
        until: Until,
        stop: &StopHandle,
    ) -> Result<()> {
        let started = Instant::now();
        let mut last_message = started;
        while !stop.is_stopped() && !until.reached(self.processed, started, last_message) {
            let timeout = {
                let mut state = self.state.lock();
                state.start_recoveries()?;
                state.resume_recovered(consumer)?;
                match state.is_recovering() {
                    true => RECOVERY_POLL_TIMEOUT,
                    false => POLL_TIMEOUT,
                }
            };
            self.checkpoint_if_due(consumer)?;
            self.serve_events(consumer, inputs, &until)?;
            let mut received = false;
            let mut interrupted = Interrupted::default();
            inputs.read(timeout, |fetched| match fetched {
                Fetched::Record(record) => {
                    received = true;
                    self.take(consumer, &record, &until, &mut interrupted)
                }
                Fetched::Error { error, .. } => self.on_consumer_error(error),
                // Only when the user asked for end-of-partition events.
                Fetched::End { .. } => Ok(()),
            })?;
            if received {
                self.availability.up();
                if until.watches_idle() {
                    last_message = Instant::now();
                }
            }
            self.availability.check(consumer)?;
            self.tick_idle_partitions(consumer)?;
        }
        Ok(())
    }

    /// Serves the consumer's events (rebalances, errors, log lines) until
    /// none wait, and sends the messages of the partitions they assigned
    /// to the input queue. A message fetched before that comes here, and is
    /// processed in its order.
    fn serve_events(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
        inputs: &InputQueue<'_, RebalanceContext>,
        until: &Until,
    ) -> Result<()> {
        loop {
            match consumer.poll(Duration::ZERO) {
                None => {}
                Some(Ok(message)) => {
                    self.availability.up();
                    let record = FetchedRecord::borrowed(&message);
                    self.take(consumer, &record, until, &mut Interrupted::default())?;
                }
                Some(Err(error)) => self.on_consumer_error(error)?,
            }
            let mut state = self.state.lock();
            // A rebalance callback inside `poll` failed (a store could not
            // be opened or recovered): stop before processing anything more.
            if let Some(error) = state.failure.take() {
                return Err(error);
            }
            // Rewound inside `poll` (a revocation aborted the open
            // transaction): librdkafka drops the messages it still holds
            // of those, and none were taken yet.
            state.take_sought_back();
            for (topic, partition) in state.take_new_partitions() {
                inputs
                    .take_partition(&topic, partition)
                    .map_err(|source| Error::Consume {
                        source: source.into(),
                    })?;
            }
            drop(state);
            if !inputs.has_events() {
                return Ok(());
            }
        }
    }

    /// Takes one fetched message: checkpoints first when due (as between
    /// any two messages), then processes it, unless the run took all it
    /// was asked to or a checkpoint in the same batch left it out.
    fn take(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
        record: &FetchedRecord<'_>,
        until: &Until,
        interrupted: &mut Interrupted,
    ) -> Result<()> {
        if until.reached_messages(self.processed) || interrupted.lost {
            return Ok(());
        }
        match self.checkpoint_if_due(consumer)? {
            Some(Outcome::Aborted) => {
                let sought_back = self.state.lock().take_sought_back();
                interrupted.sought_back.extend(sought_back);
            }
            Some(Outcome::Lost) => {
                interrupted.lost = true;
                return Ok(());
            }
            _ => {}
        }
        if interrupted.left_out(record) {
            return Ok(());
        }
        self.process(record)
    }

    /// Runs one message through the pipeline and sends its outputs; its
    /// offset is stored only after that.
    fn process(&mut self, message: &FetchedRecord<'_>) -> Result<()> {
        let topic = self.topic_name(message.topic());
        let meta = &mut self.meta;
        let (partition, offset) = (message.partition(), message.offset());
        let timestamp = message.timestamp();
        meta.set_message(&topic, partition, offset, message.key(), timestamp);
        self.outputs.truncate(0);
        // One lock for the whole message: the rebalance callbacks that share
        // this state only run inside `poll`, on this thread.
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let mut partition_state = match state.stores.lookup(&meta.topic, meta.partition) {
            Lookup::Open(partition_state) => Some(partition_state),
            Lookup::Stateless => None,
            Lookup::NotReady => {
                // Fetched before its partition was paused for recovery.
                state.hold_early(&topic, partition, offset);
                return Ok(());
            }
        };
        let result = match read_headers(message) {
            Ok(headers) => {
                meta.headers = headers;
                self.pipeline.process(
                    meta,
                    message.payload(),
                    &mut self.outputs,
                    partition_state.as_deref_mut(),
                )
            }
            Err(bad) => Err(Error::Deserialize {
                topic: topic.to_string(),
                partition,
                offset,
                field: Field::Header,
                source: bad.into(),
            }),
        };
        let LoopState {
            checkpoint, policy, ..
        } = state;
        if let Err(error) = result {
            // A skipped message leaves the state as it was before it.
            if let Some(partition_state) = partition_state.as_deref_mut() {
                partition_state.discard_message_writes();
            }
            policy.processing(error)?;
        }
        let origin = Origin {
            topic,
            partition: meta.partition,
            offset: meta.offset,
        };
        let sink = (&*self.producer, &mut self.collected);
        send_outputs(&self.outputs, &origin, sink, policy, checkpoint)?;
        checkpoint.store_offset(&origin);
        if let Some(partition_state) = partition_state {
            partition_state.absorb(origin.offset);
        }
        drop(guard);
        if let Some(since) = self
            .idle
            .last_message
            .get_mut(&(origin.topic, origin.partition))
        {
            *since = Instant::now();
        }
        self.processed += 1;
        Ok(())
    }

    /// Every [`TICK_INTERVAL`], ticks the open partitions of topics whose
    /// windows close on an idle stream (see [`Tick`]): each notes in state
    /// what its idle time decides; a checkpoint commits that (else it is
    /// taken back); then each closes what its state says is closed and the
    /// results are sent. A partition is idle while it is processed up to
    /// the high watermark the consumer last saw and no message comes; no
    /// partition is while the broker is unreachable.
    fn tick_idle_partitions(&mut self, consumer: &BaseConsumer<RebalanceContext>) -> Result<()> {
        if !self.pipeline.has_tickers() {
            return Ok(());
        }
        let now = Instant::now();
        let recently = |last: Instant| now < last + TICK_INTERVAL;
        if self.idle.last_tick.is_some_and(recently) {
            return Ok(());
        }
        self.idle.last_tick = Some(now);
        if self.availability.is_down() {
            return Ok(());
        }
        let mut wrote = false;
        let mut open = HashSet::new();
        let positions = consumer.position().ok();
        for_each_ticking(self, |poll_loop, partition| {
            let key = (partition.topic.clone(), partition.partition);
            let caught_up = is_caught_up(consumer, positions.as_ref(), &key, partition.state);
            let since = poll_loop
                .idle
                .last_message
                .entry(key.clone())
                .or_insert(now);
            // Not idle while behind (a stall, a backlog, a seek).
            if !caught_up {
                *since = now;
            }
            let idle = Tick::Idle(now.saturating_duration_since(*since));
            open.insert(key);
            wrote |= poll_loop.tick(idle, partition)?;
            Ok(())
        })?;
        self.idle.last_message.retain(|key, _| open.contains(key));
        if wrote && self.checkpoint(consumer)? != Outcome::Committed {
            // Nothing acts on what is not committed.
            return for_each_ticking(self, |poll_loop, partition| {
                poll_loop.tick(Tick::Undo, partition)?;
                Ok(())
            });
        }
        for_each_ticking(self, |poll_loop, partition| {
            poll_loop.tick(Tick::Act, partition)?;
            Ok(())
        })?;
        // Exactly once, what the windows emitted is visible only once
        // committed; on an idle stream no message would get it there.
        if self.producer.has_open_transaction() {
            self.checkpoint(consumer)?;
        }
        Ok(())
    }

    /// Runs `tick` on one partition and sends what it emits; its writes
    /// are kept (undone on failure, which goes to the error policy).
    fn tick(&mut self, tick: Tick, partition: Ticking<'_>) -> Result<bool> {
        let Ticking {
            topic,
            partition,
            state,
            policy,
            checkpoint,
        } = partition;
        self.meta.set_message(topic, partition, -1, None, None);
        self.meta.headers.clear();
        self.outputs.truncate(0);
        let result = self
            .pipeline
            .tick(tick, &mut self.meta, &mut self.outputs, state);
        let wrote = match result {
            Ok(wrote) => wrote,
            Err(error) => {
                state.discard_message_writes();
                policy.processing(error)?;
                return Ok(false);
            }
        };
        state.keep_writes();
        let origin = Origin {
            topic: topic.clone(),
            partition,
            offset: -1,
        };
        let sink = (&*self.producer, &mut self.collected);
        send_outputs(&self.outputs, &origin, sink, policy, checkpoint)?;
        Ok(wrote)
    }

    /// Runs the checkpoint when it is due (see [`Checkpoint::is_due`]),
    /// before the next message: returns its outcome.
    fn checkpoint_if_due(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
    ) -> Result<Option<Outcome>> {
        let mut state = self.state.lock();
        let LoopState {
            checkpoint, stores, ..
        } = &mut *state;
        if !checkpoint.is_due(|| stores.pending_bytes()) {
            return Ok(None);
        }
        drop(state);
        self.checkpoint(consumer).map(Some)
    }

    fn checkpoint(&mut self, consumer: &BaseConsumer<RebalanceContext>) -> Result<Outcome> {
        let outcome = self.state.lock().commit_checkpoint(consumer)?;
        match outcome {
            Outcome::Committed => self.availability.up(),
            Outcome::Deferred => self.availability.down(),
            Outcome::Empty | Outcome::Lost | Outcome::Aborted => {}
        }
        Ok(outcome)
    }

    /// The last checkpoint: after a clean stop, retried for a while; after
    /// an error, tried once for the messages processed before it.
    fn finish(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
        result: Result<()>,
    ) -> Result<()> {
        if let Err(error) = result {
            if let Err(checkpoint_error) = self.checkpoint(consumer) {
                log::warn!("last checkpoint failed: {checkpoint_error}");
            }
            return Err(error);
        }
        let started = Instant::now();
        loop {
            match self.checkpoint(consumer)? {
                Outcome::Deferred => {}
                Outcome::Aborted => {
                    log::warn!(
                        "the last checkpoint's transaction was aborted; its messages will be \
                         processed again on restart"
                    );
                    break;
                }
                Outcome::Committed | Outcome::Empty | Outcome::Lost => break,
            }
            if started.elapsed() > FINAL_CHECKPOINT_PATIENCE {
                log::warn!(
                    "could not commit the last checkpoint within {FINAL_CHECKPOINT_PATIENCE:?}; \
                     its messages will be processed again on restart"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }

    fn on_consumer_error(&mut self, error: KafkaError) -> Result<()> {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::PollExceeded) => {
                // librdkafka left the group and lost the assignment: the
                // next poll drops the partitions and rejoins.
                log::warn!(
                    "the poll loop was blocked for longer than max.poll.interval.ms (a slow \
                     closure?): the group moved this instance's partitions; rejoining"
                );
                Ok(())
            }
            Some(code) if is_retriable(code) => {
                log::warn!("broker unreachable, retrying: {error}");
                self.availability.down();
                Ok(())
            }
            _ => {
                let policy = self.state.lock().policy.clone();
                policy.consumer(Error::Consume {
                    source: error.into(),
                })
            }
        }
    }

    fn topic_name(&self, name: &[u8]) -> Arc<str> {
        self.topics
            .iter()
            .find(|topic| topic.as_bytes() == name)
            .cloned()
            .unwrap_or_else(|| Arc::from(String::from_utf8_lossy(name)))
    }
}

/// Sends `outputs` of the input at `origin` to the producer (and to the
/// collected outputs, when a run collects them). A refused output the
/// error policy does not skip poisons the checkpoint, so that no offset
/// is committed past it.
fn send_outputs(
    outputs: &Outputs,
    origin: &Origin,
    (producer, collected): (&OutputProducer, &mut Option<Outputs>),
    policy: &ErrorPolicy,
    checkpoint: &mut Checkpoint,
) -> Result<()> {
    for output in outputs.iter() {
        if let Err(error) = producer.send(&output, Some(origin)) {
            let refused = match error {
                Error::BrokerUnavailable { .. } => Err(error),
                error => policy.producer(error),
            };
            if refused.is_err() {
                checkpoint.poison();
                return refused;
            }
        }
        if let Some(collected) = collected {
            collected.push(output);
        }
    }
    Ok(())
}

/// What a checkpoint between the messages of one batch leaves out of the
/// rest of the batch.
#[derive(Default)]
struct Interrupted {
    /// Partitions without state that an aborted checkpoint sought back to
    /// their last commit: their messages come again.
    sought_back: Vec<(Arc<str>, i32)>,
    /// The assignment was lost: nothing more of it may be written (its new
    /// owner fetches it again from the last commit).
    lost: bool,
}

impl Interrupted {
    /// Whether `record` is of a partition sought back (its topic read only
    /// then: on every message of a batch otherwise).
    fn left_out(&self, record: &FetchedRecord<'_>) -> bool {
        self.sought_back
            .iter()
            .any(|(t, p)| *p == record.partition() && t.as_bytes() == record.topic())
    }
}

/// An open partition of a topic with a ticking step, and what its tick
/// needs of the loop's state.
struct Ticking<'a> {
    topic: &'a Arc<str>,
    partition: i32,
    state: &'a mut PartitionState,
    policy: &'a ErrorPolicy,
    checkpoint: &'a mut Checkpoint,
}

/// Whether partition `key` is processed up to the high watermark the
/// consumer last saw (librdkafka's cached figure: no request). The
/// consumer's position counts too: it moves past the commit markers of a
/// transactional input, which no message processed ever reaches (the last
/// record of a committed transaction is its marker).
fn is_caught_up(
    consumer: &BaseConsumer<RebalanceContext>,
    positions: Option<&TopicPartitionList>,
    (topic, partition): &(Arc<str>, i32),
    state: &PartitionState,
) -> bool {
    let position = positions
        .and_then(|positions| positions.find_partition(topic, *partition))
        .and_then(|position| match position.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        });
    let high = cached_high_watermark(consumer, topic, *partition);
    reached(state.next_offset(), position, high)
}

/// Whether a partition processed up to `next` (exclusive), whose consumer
/// `position` is where its next message comes from, has reached `high`.
fn reached(next: Option<i64>, position: Option<i64>, high: Option<i64>) -> bool {
    match (next.max(position), high) {
        (Some(next), Some(high)) => next >= high,
        _ => false,
    }
}

/// Runs `each` on every open partition of a topic with a ticking step,
/// except those waiting for the seek to where they resume.
fn for_each_ticking(
    poll_loop: &mut PollLoop<'_>,
    mut each: impl FnMut(&mut PollLoop<'_>, Ticking<'_>) -> Result<()>,
) -> Result<()> {
    let state = poll_loop.state.clone();
    let mut guard = state.lock();
    // Not before it resumes where its processing continues.
    let seeking = guard.seeking();
    let LoopState {
        stores,
        policy,
        checkpoint,
        ..
    } = &mut *guard;
    for (topic, partition, state) in stores.partitions_mut() {
        let paused = seeking.iter().any(|(t, p)| t == topic && *p == partition);
        if poll_loop.pipeline.ticks(topic) && !paused {
            let ticking = Ticking {
                topic,
                partition,
                state,
                policy,
                checkpoint,
            };
            each(poll_loop, ticking)?;
        }
    }
    Ok(())
}

/// Tracks how long the broker has been unreachable.
struct Availability {
    down_since: Option<Instant>,
    last_probe: Instant,
    timeout: Duration,
}

impl Availability {
    fn new(timeout: Duration) -> Self {
        Availability {
            down_since: None,
            last_probe: Instant::now(),
            timeout,
        }
    }

    fn down(&mut self) {
        self.down_since.get_or_insert_with(Instant::now);
    }

    fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    fn up(&mut self) {
        if let Some(since) = self.down_since.take() {
            log::info!("broker reachable again after {:?}", since.elapsed());
        }
    }

    /// Probes a missing broker now and then; fails once it has been away
    /// for longer than the timeout.
    fn check(&mut self, consumer: &BaseConsumer<RebalanceContext>) -> Result<()> {
        let Some(since) = self.down_since else {
            return Ok(());
        };
        if self.last_probe.elapsed() >= PROBE_INTERVAL {
            self.last_probe = Instant::now();
            if consumer.fetch_metadata(None, PROBE_TIMEOUT).is_ok() {
                self.up();
                return Ok(());
            }
        }
        if since.elapsed() > self.timeout {
            return Err(Error::BrokerUnavailable {
                unavailable_for: since.elapsed(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::reached;

    #[test]
    fn a_partition_is_caught_up_at_the_high_watermark() {
        assert!(reached(Some(10), None, Some(10)));
        assert!(!reached(Some(9), None, Some(10)));
        assert!(!reached(Some(10), None, None), "no high watermark yet");
        assert!(!reached(None, None, Some(0)), "nothing known of it");
    }

    /// The last record of a committed transaction is its commit marker:
    /// no message processed reaches the high watermark, the consumer's
    /// position (past the marker) does.
    #[test]
    fn the_position_past_a_commit_marker_counts() {
        assert!(reached(Some(9), Some(10), Some(10)));
        assert!(reached(None, Some(10), Some(10)));
        assert!(!reached(Some(9), Some(9), Some(10)), "an open transaction");
    }
}
