//! The [`Application`]: owns the broker connection settings, the declared
//! dataframes and the run loop.

use std::sync::Arc;

use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};

use crate::broker::Broker;
use crate::config::{ApplicationBuilder, Config};
use crate::dataframe::{Pipeline, Repartition, StreamingDataFrame, Topology};
use crate::error::{Error, Result};
use crate::outputs::Outputs;
use crate::producer::Producer;
use crate::runner::{self, Run};
use crate::state::{group_dir, StoreLayout};
use crate::stop::{SignalGuard, StopHandle};
use crate::topic::Topic;
use crate::until::Until;

/// A stream processing application: declare topics and dataframes on it,
/// then [`run`](Self::run) it.
///
/// # Examples
///
/// ```no_run
/// use kstreams::{Application, OffsetReset, Topic};
/// use serde_json::json;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Purchase { user: String, amount: f64 }
///
/// fn main() -> kstreams::Result<()> {
///     let app = Application::builder()
///         .broker_address("127.0.0.1:9092")
///         .consumer_group("purchases-filter")
///         .auto_offset_reset(OffsetReset::Earliest)
///         .build()?;
///     let purchases: Topic<Purchase> = app.topic("purchases");
///     let big: Topic<serde_json::Value> = app.topic("big-purchases");
///     app.dataframe(&purchases)
///         .filter(|p| p.amount > 100.0)
///         .apply(|p| json!({"user": p.user, "amount": p.amount}))
///         .to_topic(&big);
///     app.run() // until Ctrl-C or SIGTERM
/// }
/// ```
pub struct Application {
    config: Config,
    broker: Broker,
    topology: Arc<Mutex<Topology>>,
    /// The composed chains; `None` while a run or a test driver holds them.
    pipeline: Mutex<Option<Pipeline>>,
    stop: StopHandle,
}

impl Application {
    /// Starts configuring an application.
    pub fn builder() -> ApplicationBuilder {
        ApplicationBuilder::new()
    }

    pub(crate) fn new(config: Config) -> Result<Self> {
        let broker = Broker::start(&config.broker)?;
        let topology = Topology::new(&config.consumer_group);
        Ok(Application {
            config,
            broker,
            topology: Arc::new(Mutex::new(topology)),
            pipeline: Mutex::new(Some(Pipeline::default())),
            stop: StopHandle::default(),
        })
    }

    /// A topic with JSON values of type `V` and raw byte keys; the same as
    /// [`Topic::new`]. Change its codecs with
    /// [`Topic::value_codec`] and [`Topic::key_codec`].
    pub fn topic<V: Serialize + DeserializeOwned>(&self, name: impl Into<String>) -> Topic<V> {
        Topic::new(name)
    }

    /// Starts a dataframe over the messages of `topic`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::Application;
    /// let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let input = app.topic::<serde_json::Value>("input");
    /// let output = app.topic::<serde_json::Value>("output");
    /// app.dataframe(&input).to_topic(&output);
    /// ```
    pub fn dataframe<V: Send + 'static, K>(&self, topic: &Topic<V, K>) -> StreamingDataFrame<V> {
        Topology::add_input(&self.topology, topic)
    }

    /// Runs until stopped by [`StopHandle::stop`], SIGINT or SIGTERM, then
    /// checkpoints what was processed and leaves the consumer group.
    ///
    /// Creates missing topics first (unless auto-creation is off).
    ///
    /// # Errors
    ///
    /// The first error that a callback did not skip (see
    /// [`ApplicationBuilder::on_processing_error`]), [`Error::BrokerUnavailable`]
    /// after a long outage, or [`Error::AlreadyRunning`].
    pub fn run(&self) -> Result<()> {
        self.run_with(Until::never(), false).map(drop)
    }

    /// Runs until `until` (or a stop request) and returns what was produced:
    /// for tests and scripts, like Quix Streams' `run(count=, timeout=)`.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams::{Application, OffsetReset, Until};
    ///
    /// let app = Application::builder()
    ///     .use_embedded_broker()
    ///     .auto_offset_reset(OffsetReset::Earliest)
    ///     .build()?;
    /// let numbers = app.topic::<i64>("numbers");
    /// let doubled = app.topic::<i64>("doubled");
    /// app.dataframe(&numbers).apply(|n| n * 2).to_topic(&doubled);
    ///
    /// let producer = app.producer()?;
    /// for n in 1..=3 {
    ///     producer.send(&numbers, None, &n)?;
    /// }
    /// producer.flush()?;
    ///
    /// let outputs = app.run_until(Until::messages(3).or_timeout(Duration::from_secs(30)))?;
    /// assert_eq!(outputs.values(&doubled)?, [2, 4, 6]);
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn run_until(&self, until: Until) -> Result<Outputs> {
        self.run_with(until, true)
    }

    fn run_with(&self, until: Until, collect: bool) -> Result<Outputs> {
        let mut pipeline = self.take_pipeline()?;
        let (inputs, outputs, repartitions) = {
            let topology = self.topology.lock();
            let inputs = topology.inputs().to_vec();
            (
                inputs,
                topology.outputs().to_vec(),
                topology.repartitions().to_vec(),
            )
        };
        let stores = self.store_layout();
        let result = if inputs.is_empty() {
            Err(Error::Config {
                key: "dataframe".into(),
                reason: "nothing to run: declare one with Application::dataframe".into(),
            })
        } else {
            let signals = self
                .config
                .handle_signals
                .then(|| SignalGuard::install(&self.stop))
                .transpose()
                .map_err(|error| Error::Config {
                    key: "handle_signals".into(),
                    reason: format!("cannot install signal handlers: {error}"),
                });
            signals.and_then(|_signals| {
                let run = Run {
                    config: &self.config,
                    broker: &self.broker,
                    pipeline: &mut pipeline,
                    inputs,
                    outputs,
                    repartitions,
                    stores,
                    stop: &self.stop,
                };
                runner::run(run, until, collect)
            })
        };
        self.return_pipeline(pipeline);
        self.stop.reset();
        result
    }

    /// Deletes this consumer group's local state (`<state_dir>/<group>`),
    /// so the next run starts from empty stores (or from the changelog
    /// topics, which are left alone).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] while the application runs;
    /// [`Error::StateDir`] when the directory cannot be removed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::Application;
    /// let dir = tempfile::tempdir().unwrap();
    /// let app = Application::builder().use_embedded_broker().state_dir(dir.path()).build()?;
    /// app.clear_state()?;
    /// # Ok::<(), kstreams::Error>(())
    /// ```
    pub fn clear_state(&self) -> Result<()> {
        let guard = self.pipeline.lock();
        if guard.is_none() {
            return Err(Error::AlreadyRunning);
        }
        let dir = group_dir(&self.config.state_dir, &self.config.consumer_group);
        log::info!("clearing state at {}", dir.display());
        match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::StateDir {
                path: dir,
                source: error,
            }),
            _ => Ok(()),
        }
    }

    /// The stores the declared dataframes use, under `root` (default: the
    /// group's state directory).
    pub(crate) fn store_layout_at(&self, root: std::path::PathBuf) -> StoreLayout {
        let stores = self.topology.lock().stores().to_vec();
        let changelog_group =
            (self.config.use_changelog_topics).then_some(self.config.consumer_group.as_str());
        StoreLayout::new(root, &stores, changelog_group, self.config.rocksdb.clone())
    }

    fn store_layout(&self) -> StoreLayout {
        self.store_layout_at(group_dir(
            &self.config.state_dir,
            &self.config.consumer_group,
        ))
    }

    /// A producer for feeding topics: test data, or a script's input.
    ///
    /// # Errors
    ///
    /// [`Error::CreateClient`] when librdkafka refuses the configuration.
    pub fn producer(&self) -> Result<Producer<'_>> {
        Producer::new(self)
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The broker address clients connect to: the configured one, or the
    /// embedded broker's.
    pub fn bootstrap_servers(&self) -> &str {
        self.broker.bootstrap_servers()
    }

    /// The consumer group.
    pub fn consumer_group(&self) -> &str {
        &self.config.consumer_group
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Composes the dataframes declared so far and takes them for a run.
    pub(crate) fn take_pipeline(&self) -> Result<Pipeline> {
        let mut pipeline = self.pipeline.lock().take().ok_or(Error::AlreadyRunning)?;
        self.topology.lock().compose_into(&mut pipeline);
        Ok(pipeline)
    }

    /// The repartition topics of the declared `group_by`s.
    pub(crate) fn repartitions(&self) -> Vec<Repartition> {
        self.topology.lock().repartitions().to_vec()
    }

    pub(crate) fn return_pipeline(&self, pipeline: Pipeline) {
        *self.pipeline.lock() = Some(pipeline);
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("config", &self.config)
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish_non_exhaustive()
    }
}
