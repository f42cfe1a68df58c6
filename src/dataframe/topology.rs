//! The dataframes declared on an application, before and after composition.

use std::sync::Arc;

use anyhow::anyhow;
use parking_lot::Mutex;

use super::repartition;
use super::{Context, StepError, StreamingDataFrame};
use crate::error::{Error, Field, Result};
use crate::message::Metadata;
use crate::outputs::Outputs;
use crate::state::{key, PartitionState};
use crate::topic::{same_name, Topic, TopicSpec};

/// Decodes a message value and runs the chain of one input dataframe.
type RootStep = Box<dyn FnMut(Option<&[u8]>, &mut Context<'_>) -> Result<(), RootError> + Send>;

/// Builds a [`RootStep`] when the application starts.
type BuildRoot = Box<dyn FnOnce() -> RootStep + Send>;

/// What a step does between messages, called by the poll loop (and the
/// test driver) for each open partition of its topic: a window that closes
/// on an idle stream.
pub(crate) type Ticker = Box<dyn FnMut(Tick, &mut Context<'_>) -> Result<bool, StepError> + Send>;

/// One round of ticks, in two phases with a checkpoint between them when
/// the first one wrote anything (see `windows::step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// The partition has been caught up, with no message, for this long:
    /// note what that decides (a later stream time) in state. Returns
    /// whether it wrote.
    Idle(std::time::Duration),
    /// The checkpoint after `Idle` was not committed: take back what it
    /// wrote, so that nothing acts on it.
    Undo,
    /// Act on what state says now (close the windows the stream time
    /// passed), emitting down the chain.
    Act,
}

/// Why a message failed at the root of a chain.
#[derive(Debug)]
pub(crate) enum RootError {
    Decode(anyhow::Error),
    Timestamp(anyhow::Error),
    Step(StepError),
}

/// The repartition topic of a `group_by`.
#[derive(Debug, Clone)]
pub(crate) struct Repartition {
    pub(crate) topic: Arc<str>,
    /// The topic of the frame it re-keys.
    pub(crate) source: Arc<str>,
    /// `None`: the source's partition count.
    pub(crate) partitions: Option<i32>,
}

/// Every dataframe declared on an application, and the topics they read and write.
#[derive(Default)]
pub(crate) struct Topology {
    /// The consumer group: repartition topics are named after it.
    group: String,
    /// In declaration order: a nested one after the one it reads.
    repartitions: Vec<Repartition>,
    /// Chains declared since the last composition.
    pending: Vec<(Arc<str>, BuildRoot)>,
    inputs: Vec<TopicSpec>,
    outputs: Vec<TopicSpec>,
    /// Per input topic, the stores its stateful steps use.
    stores: Vec<(Arc<str>, Vec<String>)>,
    /// Tickers declared since the last composition.
    tickers: Vec<(Arc<str>, Ticker)>,
}

impl Topology {
    /// The topology of an application of consumer group `group`.
    pub(crate) fn new(group: &str) -> Self {
        Topology {
            group: group.to_string(),
            ..Topology::default()
        }
    }

    /// Starts a dataframe over `topic`.
    pub(crate) fn add_input<V: Send + 'static, K>(
        topology: &Arc<Mutex<Topology>>,
        topic: &Topic<V, K>,
    ) -> StreamingDataFrame<V> {
        Self::add_root(topology, topic, false)
    }

    /// Starts the dataframe after a `group_by`, over its repartition
    /// topic (see [`repartition`]).
    pub(crate) fn add_repartition_input<V: Send + 'static>(
        topology: &Arc<Mutex<Topology>>,
        topic: &Topic<V>,
    ) -> StreamingDataFrame<V> {
        Self::add_root(topology, topic, true)
    }

    /// Registers the repartition topic of the `group_by` called `name` on
    /// `source`; returns its name.
    ///
    /// # Panics
    ///
    /// When `source` has a `group_by` of that name already.
    pub(crate) fn add_repartition(
        &mut self,
        source: &Arc<str>,
        name: &str,
        partitions: Option<i32>,
    ) -> Arc<str> {
        let topic: Arc<str> = repartition::topic_name(&self.group, source, name).into();
        assert!(
            !self.repartitions.iter().any(|known| known.topic == topic),
            "topic {source} has a group_by named {name:?} already: give each one a name of its own"
        );
        self.repartitions.push(Repartition {
            topic: topic.clone(),
            source: source.clone(),
            partitions,
        });
        topic
    }

    /// The repartition topics, a nested one after the one it reads.
    pub(crate) fn repartitions(&self) -> &[Repartition] {
        &self.repartitions
    }

    /// Starts a dataframe over `topic`; the messages of a repartition
    /// topic are absorbed once each (see [`repartition`]).
    fn add_root<V: Send + 'static, K>(
        topology: &Arc<Mutex<Topology>>,
        topic: &Topic<V, K>,
        repartitioned: bool,
    ) -> StreamingDataFrame<V> {
        let (sdf, compose) =
            StreamingDataFrame::root(topology.clone(), topic.shared_name().clone());
        let codec = topic.value_codec_ref().clone();
        let extractor = topic.timestamp_extractor().cloned();
        let build = move || -> RootStep {
            let mut chain = compose();
            Box::new(move |bytes, ctx| {
                let bytes =
                    bytes.ok_or_else(|| RootError::Decode(anyhow!("the message has no value")))?;
                let bytes = match repartitioned {
                    true => match is_first_copy(ctx, bytes)? {
                        Some(value) => value,
                        None => return Ok(()),
                    },
                    false => bytes,
                };
                let value = codec.decode(bytes).map_err(RootError::Decode)?;
                if let Some(extract) = &extractor {
                    let timestamp = extract(&value, ctx.meta).map_err(RootError::Timestamp)?;
                    ctx.meta.timestamp = Some(timestamp);
                }
                chain(value, ctx).map_err(RootError::Step)
            })
        };
        let mut this = topology.lock();
        this.pending
            .push((topic.shared_name().clone(), Box::new(build)));
        push_unique(&mut this.inputs, topic.spec());
        if repartitioned {
            push_unique(&mut this.outputs, topic.spec());
        }
        drop(this);
        sdf
    }

    /// Notes that the chain produces to `spec`.
    pub(crate) fn add_output(&mut self, spec: &TopicSpec) {
        push_unique(&mut self.outputs, spec);
    }

    /// Registers `store` for `topic`; returns its index among the topic's stores.
    pub(crate) fn add_store(&mut self, topic: &Arc<str>, store: &str) -> usize {
        let position = self.stores.iter().position(|(name, _)| name == topic);
        let index = position.unwrap_or_else(|| {
            self.stores.push((topic.clone(), Vec::new()));
            self.stores.len() - 1
        });
        let names = &mut self.stores[index].1;
        names
            .iter()
            .position(|name| name == store)
            .unwrap_or_else(|| {
                names.push(store.to_string());
                names.len() - 1
            })
    }

    /// Adds a step's [`Ticker`] for the partitions of `topic`.
    pub(crate) fn add_ticker(&mut self, topic: &Arc<str>, ticker: Ticker) {
        self.tickers.push((topic.clone(), ticker));
    }

    /// Whether `topic` has any store.
    pub(crate) fn has_stores(&self, topic: &str) -> bool {
        self.stores.iter().any(|(name, _)| **name == *topic)
    }

    /// Whether `topic` has a store called `store`.
    pub(crate) fn has_store(&self, topic: &str, store: &str) -> bool {
        self.stores
            .iter()
            .any(|(name, stores)| **name == *topic && stores.iter().any(|known| known == store))
    }

    /// Per input topic, its store names.
    pub(crate) fn stores(&self) -> &[(Arc<str>, Vec<String>)] {
        &self.stores
    }

    pub(crate) fn inputs(&self) -> &[TopicSpec] {
        &self.inputs
    }

    pub(crate) fn outputs(&self) -> &[TopicSpec] {
        &self.outputs
    }

    /// Fuses the chains declared since the last call into `pipeline`.
    pub(crate) fn compose_into(&mut self, pipeline: &mut Pipeline) {
        pipeline.tickers.append(&mut self.tickers);
        for (topic, build) in self.pending.drain(..) {
            let root = build();
            match pipeline.roots.iter_mut().find(|(name, _)| *name == topic) {
                Some((_, roots)) => roots.push(root),
                None => pipeline.roots.push((topic, vec![root])),
            }
        }
    }
}

/// The value after its envelope when the message of a repartition topic
/// in `ctx` is the first copy of its record that its partition's state
/// absorbs (always, without state or stamp), `None` for a copy; gives the
/// message back the timestamp of its source message.
fn is_first_copy<'b>(
    ctx: &mut Context<'_>,
    bytes: &'b [u8],
) -> Result<Option<&'b [u8]>, RootError> {
    let (timestamp, stamp, value) = repartition::read_envelope(bytes).map_err(RootError::Decode)?;
    ctx.meta.timestamp = timestamp;
    let first = match (stamp, ctx.state.as_deref_mut()) {
        (Some(stamp), Some(state)) => repartition::first_copy(state, stamp)
            .map_err(|error| RootError::Step(StepError::from(error)))?,
        _ => true,
    };
    Ok(first.then_some(value))
}

fn push_unique(specs: &mut Vec<TopicSpec>, spec: &TopicSpec) {
    if !specs.iter().any(|known| known.name == spec.name) {
        specs.push(spec.clone());
    }
}

/// The composed chains, one list per input topic: what runs for each message.
#[derive(Default)]
pub(crate) struct Pipeline {
    roots: Vec<(Arc<str>, Vec<RootStep>)>,
    tickers: Vec<(Arc<str>, Ticker)>,
    /// The current message key's store key prefix (reused between messages).
    key_prefix: Vec<u8>,
}

impl Pipeline {
    /// Runs one message through every chain of its topic, appending what it
    /// produces to `outputs`. On failure nothing of this message is kept in
    /// `outputs`, and the error names the message.
    pub(crate) fn process(
        &mut self,
        meta: &mut Metadata,
        value: Option<&[u8]>,
        outputs: &mut Outputs,
        state: Option<&mut PartitionState>,
    ) -> Result<()> {
        let Some((_, roots)) = self
            .roots
            .iter_mut()
            .find(|(name, _)| same_name(name, &meta.topic))
        else {
            return Ok(());
        };
        let before = outputs.len();
        if state.is_some() {
            key::write_prefix(&mut self.key_prefix, meta.key().unwrap_or_default());
        }
        let mut ctx = Context {
            meta: &mut *meta,
            outputs: &mut *outputs,
            state,
            key_prefix: &self.key_prefix,
            repartition_records: 0,
        };
        let result = roots.iter_mut().try_for_each(|root| root(value, &mut ctx));
        result.map_err(|error| {
            outputs.truncate(before);
            describe(error, meta)
        })
    }
}

impl Pipeline {
    /// Whether any step ticks.
    pub(crate) fn has_tickers(&self) -> bool {
        !self.tickers.is_empty()
    }

    /// Whether any step of `topic` ticks.
    pub(crate) fn ticks(&self, topic: &Arc<str>) -> bool {
        self.tickers.iter().any(|(name, _)| same_name(name, topic))
    }

    /// Runs `tick` on every ticker of `meta`'s topic and partition (`meta`
    /// of no message: no key, no timestamp, offset -1), appending what
    /// they emit to `outputs`; returns whether any wrote state. On failure
    /// nothing of this tick is kept in `outputs`.
    pub(crate) fn tick(
        &mut self,
        tick: Tick,
        meta: &mut Metadata,
        outputs: &mut Outputs,
        state: &mut PartitionState,
    ) -> Result<bool> {
        let before = outputs.len();
        let mut ctx = Context {
            meta: &mut *meta,
            outputs: &mut *outputs,
            state: Some(state),
            key_prefix: &[],
            repartition_records: 0,
        };
        let mut wrote = false;
        for (topic, ticker) in &mut self.tickers {
            if !same_name(topic, &ctx.meta.topic) {
                continue;
            }
            match ticker(tick, &mut ctx) {
                Ok(written) => wrote |= written,
                Err(error) => {
                    outputs.truncate(before);
                    return Err(describe(RootError::Step(error), meta));
                }
            }
        }
        Ok(wrote)
    }
}

/// Turns a chain failure into an [`Error`] naming the message.
fn describe(error: RootError, meta: &Metadata) -> Error {
    let (topic, partition, offset) = (meta.topic.to_string(), meta.partition, meta.offset);
    match error {
        RootError::Decode(source) => Error::Deserialize {
            topic,
            partition,
            offset,
            field: Field::Value,
            source: source.into(),
        },
        RootError::Timestamp(source) => Error::Deserialize {
            topic,
            partition,
            offset,
            field: Field::Timestamp,
            source: source.into(),
        },
        RootError::Step(StepError::User(source)) => Error::Process {
            topic,
            partition,
            offset,
            source: source.into(),
        },
        RootError::Step(StepError::Encode {
            output_topic,
            field,
            source,
        }) => Error::Serialize {
            output_topic: output_topic.to_string(),
            field,
            topic,
            partition,
            offset,
            source: source.into(),
        },
    }
}
