//! The boundary to the broker: a Kafka cluster reached through rdkafka, or
//! the embedded mock cluster. Everything above this module runs the same
//! code on both.

mod admin;
mod batch_consumer;
mod block_on;
mod delivery;
mod delivery_reports;
mod embedded;
mod headers;
mod input_queue;
mod native;
mod offsets;
mod transaction;

use rdkafka::ClientConfig;

use crate::config::BrokerChoice;
use crate::error::Result;

pub(crate) use admin::Admin;
pub(crate) use batch_consumer::{BatchConsumer, Fetched, FetchedRecord};
pub(crate) use delivery::{Origin, OutputProducer};
pub(crate) use embedded::{EmbeddedBroker, FETCH_WAIT_MS as EMBEDDED_FETCH_WAIT_MS};
pub(crate) use headers::read_headers;
pub(crate) use input_queue::InputQueue;
pub(crate) use offsets::{cached_high_watermark, committed_offsets};
pub(crate) use transaction::Ended;

/// The broker an application talks to.
pub(crate) enum Broker {
    Kafka { bootstrap_servers: String },
    Embedded(EmbeddedBroker),
}

impl Broker {
    pub(crate) fn start(choice: &BrokerChoice) -> Result<Broker> {
        Ok(match choice {
            BrokerChoice::Address(address) => Broker::Kafka {
                bootstrap_servers: address.clone(),
            },
            BrokerChoice::Embedded => Broker::Embedded(EmbeddedBroker::start()?),
        })
    }

    /// Whether this is the embedded broker.
    pub(crate) fn is_embedded(&self) -> bool {
        matches!(self, Broker::Embedded(_))
    }

    pub(crate) fn bootstrap_servers(&self) -> &str {
        match self {
            Broker::Kafka { bootstrap_servers } => bootstrap_servers,
            Broker::Embedded(embedded) => embedded.bootstrap_servers(),
        }
    }

    /// A librdkafka config for this broker with the user's extra settings.
    pub(crate) fn client_config(&self, extra: &[(String, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_servers());
        for (key, value) in extra {
            config.set(key, value);
        }
        config
    }
}
