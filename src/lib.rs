//! # kstreams
//!
//! Stateful stream processing on Kafka with a DataFrame-style fluent API, in
//! the spirit of Python's [Quix Streams], with Rust's speed and safety.
//!
//! Declare topics, build a [`StreamingDataFrame`] of chained closures
//! (`apply`, `update`, `filter`, `expand`, `to_topic`), then call
//! [`Application::run`]. One synchronous loop polls a message, runs it
//! through the chain, produces its outputs and, at every checkpoint, commits
//! the consumer offsets only after the broker has acknowledged every output:
//! nothing is committed past a message that was not processed.
//!
//! The same pipeline runs three ways, without knowing which:
//!
//! 1. against **Kafka** (or any Kafka-compatible broker) through rdkafka;
//! 2. on the **embedded broker**, librdkafka's in-process mock cluster, when
//!    no broker address is configured: examples work on a fresh machine
//!    (development and tests only; it keeps everything in memory);
//! 3. through the [`TestDriver`], with no broker at all, for unit tests.
//!
//! ## Quickstart
//!
//! ```
//! use kstreams::{Application, TestDriver, TestMessage};
//! use serde::{Deserialize, Serialize};
//! use serde_json::{json, Value};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Purchase { user: String, amount: f64 }
//!
//! let app = Application::builder().consumer_group("purchases-filter").build()?;
//! let purchases = app.topic::<Purchase>("purchases");
//! let big = app.topic::<Value>("big-purchases");
//! app.dataframe(&purchases)
//!     .filter(|p| p.amount > 100.0)
//!     .apply(|p| json!({"user": p.user, "amount": p.amount}))
//!     .to_topic(&big);
//!
//! // `app.run()` would now process the topic until Ctrl-C; here, a unit test:
//! let mut driver = TestDriver::new(&app)?;
//! driver.push(&purchases, TestMessage::new(Purchase { user: "ada".into(), amount: 250.0 }))?;
//! driver.push(&purchases, TestMessage::new(Purchase { user: "bob".into(), amount: 5.0 }))?;
//! assert_eq!(driver.values(&big)?, [json!({"user": "ada", "amount": 250.0})]);
//! # Ok::<(), kstreams::Error>(())
//! ```
//!
//! ## Errors
//!
//! A message that does not decode, a closure that fails, an output the
//! broker refuses: each becomes an [`Error`] naming the topic, partition and
//! offset of the input message, and goes to the matching callback
//! ([`ApplicationBuilder::on_processing_error`],
//! [`on_consumer_error`](ApplicationBuilder::on_consumer_error),
//! [`on_producer_error`](ApplicationBuilder::on_producer_error)). Without a
//! callback the application stops with that error and its offset is not
//! committed. Skipping a message is always an explicit choice.
//!
//! ## Delivery guarantee
//!
//! At least once: after a crash, the messages processed since the last
//! checkpoint are processed again, so outputs can be duplicated downstream,
//! never lost.
//!
//! [Quix Streams]: https://github.com/quixio/quix-streams

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod app;
mod broker;
mod checkpoint;
mod checkpoint_schedule;
pub mod codec;
mod config;
mod dataframe;
mod error;
mod message;
mod on_error;
mod outputs;
mod producer;
mod rebalance;
mod retriable;
mod runner;
mod state;
mod stop;
mod test_driver;
mod thread;
mod topic;
mod until;
pub mod windows;

pub use app::Application;
pub use config::{
    ApplicationBuilder, OffsetReset, ProcessingGuarantee, BROKER_ENV, CONSUMER_GROUP_ENV,
};
pub use dataframe::{GroupBy, GroupKey, StreamingDataFrame};
pub use error::{Cause, Error, Field, Result};
pub use message::{Headers, Metadata, Record};
pub use on_error::ErrorAction;
pub use outputs::Outputs;
pub use producer::Producer;
pub use state::{Compression, RocksDbOptions, State, DEFAULT_STORE};
pub use stop::StopHandle;
pub use test_driver::{TestDriver, TestMessage};
pub use topic::Topic;
pub use until::Until;
