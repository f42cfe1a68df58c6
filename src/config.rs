//! The application's settings and their builder.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::app::Application;
use crate::error::{Error, Result};
use crate::on_error::{ErrorAction, ErrorPolicy};
use crate::state::RocksDbOptions;

/// Environment variable naming the broker when the builder is not told one.
pub const BROKER_ENV: &str = "KSTREAMS_BROKER";
/// Environment variable naming the consumer group when the builder is not told one.
pub const CONSUMER_GROUP_ENV: &str = "KSTREAMS_CONSUMER_GROUP";

/// Where a consumer group without committed offsets starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// From the oldest message still in the partition.
    Earliest,
    /// From the next message produced (the default, as in Quix Streams).
    #[default]
    Latest,
}

impl OffsetReset {
    pub(crate) fn as_librdkafka(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// What the application promises about each input's effect on outputs and
/// state, across crashes and rebalances.
///
/// # Examples
///
/// ```
/// use kstreams::{Application, ProcessingGuarantee};
///
/// let app = Application::builder()
///     .use_embedded_broker()
///     .processing_guarantee(ProcessingGuarantee::ExactlyOnce)
///     .build()
///     .unwrap();
/// # drop(app);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Every input affects state exactly once (the state is stamped with
    /// the input offsets it absorbed) and outputs at least once: after a
    /// crash, the outputs of the messages since the last checkpoint are
    /// produced again. No transactions: the cheapest guarantee.
    #[default]
    AtLeastOnce,
    /// Every input affects state and outputs exactly once, for consumers
    /// that read with `isolation.level=read_committed` (librdkafka's
    /// default): each checkpoint is one Kafka transaction holding its
    /// outputs, repartition records, changelog records and input offsets.
    /// Outputs become visible when their checkpoint commits, so
    /// [`commit_interval`](ApplicationBuilder::commit_interval) trades
    /// their latency for throughput.
    ExactlyOnce,
}

/// Which broker the application talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BrokerChoice {
    /// A Kafka-compatible broker at this `bootstrap.servers` address.
    Address(String),
    /// librdkafka's in-process mock cluster.
    Embedded,
}

/// The settings of an [`Application`], fixed when it is built.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) broker: BrokerChoice,
    pub(crate) consumer_group: String,
    pub(crate) auto_offset_reset: OffsetReset,
    pub(crate) commit_interval: Duration,
    pub(crate) commit_every: u64,
    pub(crate) commit_state_bytes: usize,
    pub(crate) state_dir: PathBuf,
    pub(crate) consumer_config: Vec<(String, String)>,
    pub(crate) producer_config: Vec<(String, String)>,
    pub(crate) auto_create_topics: bool,
    pub(crate) topic_partitions: i32,
    pub(crate) topic_replication_factor: i32,
    pub(crate) broker_availability_timeout: Duration,
    pub(crate) handle_signals: bool,
    pub(crate) use_changelog_topics: bool,
    pub(crate) rocksdb: RocksDbOptions,
    pub(crate) on_error: ErrorPolicy,
    pub(crate) processing_guarantee: ProcessingGuarantee,
}

/// Builds an [`Application`]; get one from [`Application::builder`].
///
/// Every setting has a default, so `Application::builder().build()` works:
/// with no broker address (and no `KSTREAMS_BROKER` in the environment) the
/// application runs on the embedded broker.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kstreams::{Application, OffsetReset};
///
/// let app = Application::builder()
///     .use_embedded_broker()
///     .consumer_group("purchases-filter")
///     .auto_offset_reset(OffsetReset::Earliest)
///     .commit_interval(Duration::from_secs(1))
///     .commit_every(10_000)
///     .consumer_config("fetch.min.bytes", "1024")
///     .producer_config("linger.ms", "20")
///     .build()
///     .unwrap();
/// assert_eq!(app.consumer_group(), "purchases-filter");
/// ```
#[must_use]
pub struct ApplicationBuilder {
    broker: Option<BrokerChoice>,
    consumer_group: Option<String>,
    config: Config,
}

/// librdkafka settings whose values must never reach logs.
const SENSITIVE_KEYS: [&str; 4] = ["password", "secret", "sasl.oauthbearer.config", "ssl.key"];

impl ApplicationBuilder {
    pub(crate) fn new() -> Self {
        ApplicationBuilder {
            broker: None,
            consumer_group: None,
            config: Config {
                broker: BrokerChoice::Embedded,
                consumer_group: String::new(),
                auto_offset_reset: OffsetReset::Latest,
                commit_interval: Duration::from_secs(5),
                commit_every: 0,
                commit_state_bytes: 32 << 20,
                state_dir: PathBuf::from("state"),
                consumer_config: Vec::new(),
                producer_config: Vec::new(),
                auto_create_topics: true,
                topic_partitions: 1,
                topic_replication_factor: 1,
                broker_availability_timeout: Duration::from_secs(120),
                handle_signals: true,
                use_changelog_topics: true,
                rocksdb: RocksDbOptions::default(),
                on_error: ErrorPolicy::default(),
                processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            },
        }
    }

    /// The Kafka broker to connect to (librdkafka's `bootstrap.servers`),
    /// e.g. `"127.0.0.1:9092"`.
    ///
    /// Default: the `KSTREAMS_BROKER` environment variable; without it, the
    /// embedded broker.
    pub fn broker_address(mut self, address: impl Into<String>) -> Self {
        self.broker = Some(BrokerChoice::Address(address.into()));
        self
    }

    /// Runs on the embedded broker (librdkafka's in-process mock cluster)
    /// even when `KSTREAMS_BROKER` is set.
    ///
    /// The embedded broker keeps everything in memory and disappears with
    /// the application: it is for development, examples and tests, not for
    /// production.
    pub fn use_embedded_broker(mut self) -> Self {
        self.broker = Some(BrokerChoice::Embedded);
        self
    }

    /// The consumer group (librdkafka's `group.id`). Instances with the same
    /// group share the input partitions.
    ///
    /// Default: the `KSTREAMS_CONSUMER_GROUP` environment variable; without
    /// it, `"kstreams-default"`.
    pub fn consumer_group(mut self, group: impl Into<String>) -> Self {
        self.consumer_group = Some(group.into());
        self
    }

    /// Where a group without committed offsets starts (`auto.offset.reset`).
    ///
    /// Default: [`OffsetReset::Latest`].
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.config.auto_offset_reset = reset;
        self
    }

    /// How often to checkpoint: flush outputs, then commit offsets.
    ///
    /// Default: 5 seconds.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.config.commit_interval = interval;
        self
    }

    /// Also checkpoint after this many messages; 0 turns it off.
    ///
    /// Default: 0.
    pub fn commit_every(mut self, messages: u64) -> Self {
        self.config.commit_every = messages;
        self
    }

    /// Also checkpoint once the state updates held in memory since the last
    /// checkpoint take about this many bytes, so that memory stays bounded
    /// however many keys a checkpoint touches (state lives on disk; only a
    /// checkpoint's updates wait in memory).
    ///
    /// Default: 32 MiB (Kafka Streams caches 10 MB by default).
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::Application;
    /// let app = Application::builder()
    ///     .use_embedded_broker()
    ///     .commit_state_bytes(16 << 20)
    ///     .build()?;
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn commit_state_bytes(mut self, bytes: usize) -> Self {
        self.config.commit_state_bytes = bytes;
        self
    }

    /// The directory for local state.
    ///
    /// Default: `state`, relative to the working directory.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.state_dir = dir.into();
        self
    }

    /// Passes a librdkafka setting to the consumer, e.g.
    /// `("session.timeout.ms", "6000")`. It overrides kstreams' own choice,
    /// except `enable.auto.commit` and `enable.auto.offset.store`, which
    /// kstreams keeps off to commit only what it processed.
    pub fn consumer_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.consumer_config.push((key.into(), value.into()));
        self
    }

    /// Passes a librdkafka setting to the producer, e.g. `("linger.ms", "20")`.
    pub fn producer_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.producer_config.push((key.into(), value.into()));
        self
    }

    /// Whether missing input and output topics are created at start.
    ///
    /// Default: `true`. When `false`, a missing topic stops the application
    /// with [`Error::TopicNotFound`].
    pub fn auto_create_topics(mut self, create: bool) -> Self {
        self.config.auto_create_topics = create;
        self
    }

    /// The partition count of created topics that do not set their own
    /// with [`Topic::partitions`](crate::Topic::partitions).
    ///
    /// Default: 1.
    pub fn topic_partitions(mut self, partitions: i32) -> Self {
        self.config.topic_partitions = partitions;
        self
    }

    /// The replication factor of created topics.
    ///
    /// Default: 1.
    pub fn topic_replication_factor(mut self, factor: i32) -> Self {
        self.config.topic_replication_factor = factor;
        self
    }

    /// How long the broker may stay unreachable before `run` gives up with
    /// [`Error::BrokerUnavailable`]. Until then the application keeps
    /// retrying and resumes when the broker is back.
    ///
    /// Default: 120 seconds.
    pub fn broker_availability_timeout(mut self, timeout: Duration) -> Self {
        self.config.broker_availability_timeout = timeout;
        self
    }

    /// Whether `run` stops cleanly on SIGINT and SIGTERM (a second SIGINT
    /// exits at once).
    ///
    /// Default: `true`.
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.config.handle_signals = handle;
        self
    }

    /// Whether state is backed up to changelog topics.
    ///
    /// Default: `true`. Without changelogs, state lost with its directory
    /// (a new machine, a deleted disk, a partition moving to another
    /// instance) is gone for good: turn them off only for state you can
    /// afford to lose.
    pub fn use_changelog_topics(mut self, use_them: bool) -> Self {
        self.config.use_changelog_topics = use_them;
        self
    }

    /// At least once (the default) or exactly once: see
    /// [`ProcessingGuarantee`].
    ///
    /// Exactly once makes each checkpoint a Kafka transaction, with
    /// librdkafka's `transactional.id` set to
    /// `kstreams-<consumer group>-<instance>`, where `<instance>` is derived
    /// from the host name and the state directory: stable across restarts
    /// of one instance (a restarted instance fences its predecessor and
    /// aborts what it left open), distinct between instances (each has a
    /// state directory of its own). Set `transactional.id` with
    /// [`producer_config`](Self::producer_config) to choose it yourself: it
    /// must be unique per instance and stable across its restarts.
    /// `transaction.timeout.ms` defaults to the broker availability timeout
    /// plus the commit interval (at least 60 s, at most 15 min): a
    /// transaction the broker times out fences its producer for good.
    /// Exactly once needs changelog topics.
    /// Inputs and changelogs are then read with
    /// `isolation.level=read_committed`.
    ///
    /// Default: [`ProcessingGuarantee::AtLeastOnce`].
    pub fn processing_guarantee(mut self, guarantee: ProcessingGuarantee) -> Self {
        self.config.processing_guarantee = guarantee;
        self
    }

    /// RocksDB settings of the state stores.
    ///
    /// Default: [`RocksDbOptions::default`].
    pub fn rocksdb_options(mut self, options: RocksDbOptions) -> Self {
        self.config.rocksdb = options;
        self
    }

    /// Decides what to do when a message cannot be decoded or a closure
    /// fails. Without a callback the application stops.
    pub fn on_processing_error(
        mut self,
        callback: impl Fn(&Error) -> ErrorAction + Send + Sync + 'static,
    ) -> Self {
        self.config.on_error.processing = Some(Arc::new(callback));
        self
    }

    /// Decides what to do when the consumer reports an error that is not a
    /// passing broker outage. Without a callback the application stops.
    pub fn on_consumer_error(
        mut self,
        callback: impl Fn(&Error) -> ErrorAction + Send + Sync + 'static,
    ) -> Self {
        self.config.on_error.consumer = Some(Arc::new(callback));
        self
    }

    /// Decides what to do when the broker does not accept an output. With
    /// [`ErrorAction::Skip`] that output is lost and the checkpoint goes on.
    /// Without a callback the application stops and commits nothing past
    /// the last acknowledged checkpoint.
    pub fn on_producer_error(
        mut self,
        callback: impl Fn(&Error) -> ErrorAction + Send + Sync + 'static,
    ) -> Self {
        self.config.on_error.producer = Some(Arc::new(callback));
        self
    }

    /// Builds the application; starts the embedded broker if it is the one
    /// chosen.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting, [`Error::EmbeddedBroker`]
    /// when the embedded broker cannot start.
    pub fn build(self) -> Result<Application> {
        let mut config = self.config;
        config.broker = match self.broker {
            Some(choice) => choice,
            None => match std::env::var(BROKER_ENV) {
                Ok(address) if !address.trim().is_empty() => BrokerChoice::Address(address),
                _ => BrokerChoice::Embedded,
            },
        };
        config.consumer_group = match self.consumer_group {
            Some(group) => group,
            None => std::env::var(CONSUMER_GROUP_ENV)
                .ok()
                .filter(|group| !group.trim().is_empty())
                .unwrap_or_else(|| "kstreams-default".to_string()),
        };
        validate(&config)?;
        Application::new(config)
    }
}

fn validate(config: &Config) -> Result<()> {
    let invalid = |key: &str, reason: &str| {
        Err(Error::Config {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if config.consumer_group.trim().is_empty() {
        return invalid("consumer_group", "must not be empty");
    }
    if config.processing_guarantee == ProcessingGuarantee::ExactlyOnce
        && !config.use_changelog_topics
    {
        // RocksDB is written after the transaction commits; a crash in
        // between is caught up from the changelog, and without one the
        // committed checkpoint's state would be lost.
        return invalid(
            "use_changelog_topics",
            "exactly once needs changelog topics (state written after each transaction \
             commits is caught up from them after a crash)",
        );
    }
    if let BrokerChoice::Address(address) = &config.broker {
        if address.trim().is_empty() {
            return invalid("broker_address", "must not be empty");
        }
    }
    if config.topic_partitions < 1 {
        return invalid("topic_partitions", "must be at least 1");
    }
    if let Some((key, reason)) = config.rocksdb.size_error() {
        return invalid(&format!("rocksdb_options.{key}"), &reason);
    }
    if config.topic_replication_factor < 1 {
        return invalid("topic_replication_factor", "must be at least 1");
    }
    Ok(())
}

fn redacted(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(key, value)| {
            let secret = SENSITIVE_KEYS.iter().any(|s| key.contains(s));
            (
                key.as_str(),
                if secret { "<redacted>" } else { value.as_str() },
            )
        })
        .collect()
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("broker", &self.broker)
            .field("consumer_group", &self.consumer_group)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("commit_interval", &self.commit_interval)
            .field("commit_every", &self.commit_every)
            .field("commit_state_bytes", &self.commit_state_bytes)
            .field("state_dir", &self.state_dir)
            .field("consumer_config", &redacted(&self.consumer_config))
            .field("producer_config", &redacted(&self.producer_config))
            .field("auto_create_topics", &self.auto_create_topics)
            .field("topic_partitions", &self.topic_partitions)
            .field("topic_replication_factor", &self.topic_replication_factor)
            .field(
                "broker_availability_timeout",
                &self.broker_availability_timeout,
            )
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ApplicationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationBuilder")
            .field("broker", &self.broker)
            .field("consumer_group", &self.consumer_group)
            .field("config", &self.config)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let builder = ApplicationBuilder::new()
            .consumer_config("sasl.password", "hunter2")
            .producer_config("linger.ms", "7");
        let text = format!("{builder:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("<redacted>") && text.contains("\"7\""),
            "{text}"
        );
    }

    #[test]
    fn write_buffers_as_big_as_the_block_cache_are_a_config_error() {
        let rocksdb = RocksDbOptions::default()
            .block_cache_size(64 << 20)
            .total_write_buffer_size(64 << 20);
        let err = ApplicationBuilder::new()
            .use_embedded_broker()
            .rocksdb_options(rocksdb)
            .build()
            .unwrap_err();
        let Error::Config { key, reason } = err else {
            panic!("not a config error: {err}");
        };
        assert_eq!(key, "rocksdb_options.total_write_buffer_size");
        assert!(reason.contains("block_cache_size"), "{reason}");

        let rocksdb = RocksDbOptions::default().write_buffer_size(64 << 20);
        let err = ApplicationBuilder::new()
            .use_embedded_broker()
            .rocksdb_options(rocksdb)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, Error::Config { ref key, .. } if key == "rocksdb_options.write_buffer_size")
        );
    }

    #[test]
    fn zero_partitions_is_a_config_error() {
        let err = ApplicationBuilder::new()
            .use_embedded_broker()
            .topic_partitions(0)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config { ref key, .. } if key == "topic_partitions"));
    }
}
