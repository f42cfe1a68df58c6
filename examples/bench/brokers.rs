//! The brokers the broker workloads run on, each named in every figure
//! it gives:
//!
//! - the embedded broker (librdkafka's mock cluster in the bench's own
//!   process): recovery only, as kstreams' own tests use it;
//! - the dev broker (`--dev-broker`): the same mock cluster on a TCP port,
//!   in a child process the bench starts (see `dev_broker.rs`). Any Kafka
//!   client can use it, Quix Streams included, and it is not the
//!   bottleneck: the end-to-end headline figures come from it. Fresh for
//!   each workload too, as tansu;
//! - tansu (`--tansu HOST:PORT`): a fresh one the bench starts there for
//!   each workload (see `tansu.rs`);
//! - a broker of the user's (`--broker HOST:PORT`, named by
//!   `--broker-name`), as it is, the same for every run.

use crate::dev_broker::DevBroker;
use crate::tansu::Tansu;
use crate::Flags;

/// Partitions the dev broker gives a topic created without a count (the
/// workloads create theirs with one).
const DEV_DEFAULT_PARTITIONS: i32 = 2;

#[derive(Clone)]
pub enum Broker {
    Embedded,
    Dev,
    Tansu { address: String },
    Given { address: String, name: String },
}

/// A broker ready for clients; one the bench started is stopped when this
/// drops.
pub struct Running {
    /// `None`: the embedded broker, which each application starts itself.
    pub address: Option<String>,
    _dev: Option<DevBroker>,
    _tansu: Option<Tansu>,
}

impl Broker {
    /// The name every figure measured on it carries.
    pub fn label(&self) -> &str {
        match self {
            Broker::Embedded => "embedded broker",
            Broker::Dev => "dev broker",
            Broker::Tansu { .. } => "tansu",
            Broker::Given { name, .. } => name,
        }
    }

    /// Whether the bench starts it afresh for each workload of each run
    /// (else it is the same broker, with the same input, for all).
    pub fn fresh_each_workload(&self) -> bool {
        matches!(self, Broker::Dev | Broker::Tansu { .. })
    }

    /// The broker ready for clients: a fresh dev broker or tansu, else the
    /// broker as it is.
    pub fn start(&self) -> anyhow::Result<Running> {
        let mut running = Running {
            address: None,
            _dev: None,
            _tansu: None,
        };
        match self {
            Broker::Embedded => {}
            Broker::Dev => {
                let dev = DevBroker::start(DEV_DEFAULT_PARTITIONS)?;
                eprintln!("started a dev broker on {}", dev.address);
                running.address = Some(dev.address.clone());
                running._dev = Some(dev);
            }
            Broker::Tansu { address } => {
                running._tansu = Some(Tansu::start(address)?);
                eprintln!("started a fresh tansu on {address}");
                running.address = Some(address.clone());
            }
            Broker::Given { address, .. } => running.address = Some(address.clone()),
        }
        Ok(running)
    }
}

/// The brokers the end-to-end workloads run on, in order: the dev broker,
/// tansu, then `--broker`.
pub fn networked(flags: &Flags) -> Vec<Broker> {
    let mut brokers = Vec::new();
    if flags.dev_broker {
        brokers.push(Broker::Dev);
    }
    if let Some(address) = &flags.tansu {
        brokers.push(Broker::Tansu {
            address: address.clone(),
        });
    }
    if let Some(address) = &flags.broker {
        brokers.push(Broker::Given {
            address: address.clone(),
            name: flags.broker_name.clone(),
        });
    }
    brokers
}

/// The brokers recovery runs on: the embedded broker, then
/// [`networked`]'s.
pub fn for_recovery(flags: &Flags) -> Vec<Broker> {
    let mut brokers = vec![Broker::Embedded];
    brokers.extend(networked(flags));
    brokers
}
