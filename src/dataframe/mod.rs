//! The [`StreamingDataFrame`]: a chain of closures over the messages of a topic.
//!
//! Each method appends one step and returns the frame for the next, so a
//! pipeline reads top to bottom. Nothing runs while the chain is built: when
//! the application starts, each input topic's chain is fused into one closure
//! per branch, and every message goes through it once. The operators live one
//! per file in this module.

mod apply;
mod columns;
mod expand;
mod filter;
mod group_by;
mod print;
mod repartition;
mod stateful;
mod timestamp;
mod to_topic;
mod topology;
mod update;

use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Field;
use crate::message::Metadata;
use crate::outputs::Outputs;
use crate::state::{PartitionState, State};

pub use group_by::{GroupBy, GroupKey};
pub(crate) use repartition::is_repartition_topic;
pub(crate) use topology::{Pipeline, Repartition, Tick, Ticker, Topology};

/// A lazily built chain of operations over the values of a topic.
///
/// Get one from [`Application::dataframe`](crate::Application::dataframe).
/// Each operation consumes the frame and returns the next one:
///
/// | operation | does |
/// |---|---|
/// | [`apply`](Self::apply), [`try_apply`](Self::try_apply), [`apply_with_metadata`](Self::apply_with_metadata) | map each value to a new one, maybe of a new type |
/// | [`update`](Self::update), [`try_update`](Self::try_update) | mutate the value in place, or run a side effect |
/// | [`filter`](Self::filter), [`try_filter`](Self::try_filter) | keep values for which the predicate holds |
/// | [`expand`](Self::expand), [`try_expand`](Self::try_expand) | turn one value into zero or more |
/// | [`to_topic`](Self::to_topic), [`to_topic_keyed`](Self::to_topic_keyed) | produce the value to a topic, and pass it on |
/// | [`group_by`](Self::group_by), [`group_by_column`](Self::group_by_column) | re-key the stream through a repartition topic |
/// | [`set_timestamp`](Self::set_timestamp) | change the timestamp of what follows |
/// | [`print`](Self::print), [`print_with_metadata`](Self::print_with_metadata) | print each value to stdout |
/// | [`column`](Self::column), [`set_column`](Self::set_column), [`filter_column`](Self::filter_column), [`select`](Self::select), [`drop_columns`](Self::drop_columns) | JSON rows: read, write, filter on a field |
///
/// The `try_` variants take closures that return [`anyhow::Result`]; an
/// error goes to the application's
/// [processing error callback](crate::ApplicationBuilder::on_processing_error)
/// with the topic, partition and offset of the message.
///
/// # Branches
///
/// A frame whose values are `Clone` can be cloned to feed several branches.
/// The steps before the branch point run once per message; each branch then
/// gets its own copy of the value:
///
/// ```
/// # use kstreams::{Application, Topic, TestDriver, TestMessage};
/// # let app = Application::builder().use_embedded_broker().build().unwrap();
/// let numbers = Topic::<i64>::new("numbers");
/// let (even, odd) = (Topic::<i64>::new("even"), Topic::<i64>::new("odd"));
/// let sdf = app.dataframe(&numbers).apply(|n| n + 1);
/// sdf.clone().filter(|n| n % 2 == 0).to_topic(&even);
/// sdf.filter(|n| n % 2 == 1).to_topic(&odd);
///
/// let mut driver = TestDriver::new(&app).unwrap();
/// for n in 0..5 {
///     driver.push(&numbers, TestMessage::new(n)).unwrap();
/// }
/// assert_eq!(driver.values(&even).unwrap(), [2, 4]);
/// assert_eq!(driver.values(&odd).unwrap(), [1, 3, 5]);
/// ```
///
/// # Panics
///
/// Adding a step to a frame after the application has started running it
/// (or a [`TestDriver`](crate::TestDriver) has been built on it) panics:
/// the chain is fixed once it runs.
pub struct StreamingDataFrame<V> {
    node: Arc<Mutex<Node<V>>>,
    topology: Arc<Mutex<Topology>>,
    /// The input topic this frame reads.
    topic: Arc<str>,
}

/// One step of a composed chain: takes a value and the message context.
pub(crate) type Step<V> = Box<dyn FnMut(V, &mut Context<'_>) -> Result<(), StepError> + Send>;

/// What a step sees of the message besides its value.
pub(crate) struct Context<'a> {
    pub(crate) meta: &'a mut Metadata,
    pub(crate) outputs: &'a mut Outputs,
    /// The stores of the message's partition, when its topic has any.
    pub(crate) state: Option<&'a mut PartitionState>,
    /// The message key's store key prefix, when there are stores.
    pub(crate) key_prefix: &'a [u8],
    /// How many repartition records the message produced so far.
    pub(crate) repartition_records: u32,
}

impl Context<'_> {
    /// The state of store number `store`, scoped to the message key.
    pub(crate) fn state(&mut self, store: usize) -> Result<State<'_>, StepError> {
        let partition = self.state.as_deref_mut().ok_or_else(|| {
            StepError::User(anyhow::anyhow!(
                "no state store is open for this partition (is it still assigned?)"
            ))
        })?;
        Ok(State::new(partition, store, self.key_prefix))
    }

    /// The index of the message's next repartition record (see
    /// `repartition::SourceStamp`).
    pub(crate) fn next_stamp_index(&mut self) -> u32 {
        self.repartition_records += 1;
        self.repartition_records - 1
    }
}

/// Why a step failed.
#[derive(Debug)]
pub(crate) enum StepError {
    /// A user closure returned an error.
    User(anyhow::Error),
    /// An output could not be encoded.
    Encode {
        output_topic: Arc<str>,
        field: Field,
        source: anyhow::Error,
    },
}

impl From<anyhow::Error> for StepError {
    fn from(error: anyhow::Error) -> Self {
        StepError::User(error)
    }
}

/// A store error in a built-in stateful step (a window) fails the message
/// as a closure's error would.
impl From<crate::error::Error> for StepError {
    fn from(error: crate::error::Error) -> Self {
        StepError::User(error.into())
    }
}

/// A point in the chain: the steps that follow it, not yet composed.
struct Node<V> {
    children: Vec<Box<dyn FnOnce() -> Step<V> + Send>>,
    /// Set when the frame was cloned: copies the value for each branch.
    fork: Option<fn(&V) -> V>,
    composed: bool,
}

impl<V: Send + 'static> Node<V> {
    fn new() -> Self {
        Node {
            children: Vec::new(),
            fork: None,
            composed: false,
        }
    }

    /// Fuses this node's branches into one step.
    fn compose(&mut self) -> Step<V> {
        self.composed = true;
        let mut steps: Vec<Step<V>> = self.children.drain(..).map(|build| build()).collect();
        let Some(mut last) = steps.pop() else {
            return Box::new(|_, _| Ok(()));
        };
        if steps.is_empty() {
            return last;
        }
        let fork = self
            .fork
            .expect("only a cloned StreamingDataFrame has several branches");
        Box::new(move |value, ctx| {
            for step in &mut steps {
                step(fork(&value), ctx)?;
            }
            last(value, ctx)
        })
    }
}

impl<V: Send + 'static> StreamingDataFrame<V> {
    pub(crate) fn root(
        topology: Arc<Mutex<Topology>>,
        topic: Arc<str>,
    ) -> (Self, impl FnOnce() -> Step<V> + Send) {
        let node = Arc::new(Mutex::new(Node::new()));
        let composer = {
            let node = node.clone();
            move || node.lock().compose()
        };
        let sdf = StreamingDataFrame {
            node,
            topology,
            topic,
        };
        (sdf, composer)
    }

    /// Appends a step: `make` receives the composed rest of the chain and
    /// returns the step that feeds it.
    pub(crate) fn then<U: Send + 'static>(
        self,
        make: impl FnOnce(Step<U>) -> Step<V> + Send + 'static,
    ) -> StreamingDataFrame<U> {
        let next = Arc::new(Mutex::new(Node::<U>::new()));
        let downstream = next.clone();
        let mut node = self.node.lock();
        assert!(
            !node.composed,
            "cannot add a step to a StreamingDataFrame that is already running"
        );
        node.children
            .push(Box::new(move || make(downstream.lock().compose())));
        drop(node);
        StreamingDataFrame {
            node: next,
            topology: self.topology,
            topic: self.topic,
        }
    }

    pub(crate) fn topology(&self) -> &Arc<Mutex<Topology>> {
        &self.topology
    }

    /// Registers a step's `ticker` for the partitions of this frame's
    /// input topic.
    pub(crate) fn register_ticker(&self, ticker: Ticker) {
        self.topology.lock().add_ticker(&self.topic, ticker);
    }

    /// Registers `store` for this frame's input topic; returns its index.
    pub(crate) fn register_store(&self, store: &str) -> usize {
        self.topology.lock().add_store(&self.topic, store)
    }

    /// Registers the store of a window, which no other step may share.
    ///
    /// # Panics
    ///
    /// When the topic has a store of that name already.
    pub(crate) fn register_window_store(&self, store: &str) -> usize {
        let mut topology = self.topology.lock();
        assert!(
            !topology.has_store(&self.topic, store),
            "topic {} has a store named {store:?} already: give the window a .name() of its own",
            self.topic
        );
        topology.add_store(&self.topic, store)
    }
}

impl<V: Clone + Send + 'static> Clone for StreamingDataFrame<V> {
    /// A second handle on the same point of the chain: steps added through
    /// each handle form separate branches.
    fn clone(&self) -> Self {
        self.node.lock().fork = Some(V::clone);
        StreamingDataFrame {
            node: self.node.clone(),
            topology: self.topology.clone(),
            topic: self.topic.clone(),
        }
    }
}

impl<V> std::fmt::Debug for StreamingDataFrame<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingDataFrame")
            .field("value_type", &std::any::type_name::<V>())
            .finish()
    }
}
