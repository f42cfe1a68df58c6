//! A Kafka broker for development, in one command and without Docker:
//! librdkafka's mock cluster (the embedded broker of kstreams) on a TCP
//! port that any Kafka client can use, Quix Streams and Kafka's own tools
//! included. It keeps everything in memory and runs until Ctrl-C.
//!
//! ```text
//! cargo run --release --example dev_broker -- --port 9092 --partitions 2
//! ```
//!
//! The mock cluster has no CreateTopics or DescribeConfigs: the dev broker
//! answers those itself, in front of it, and gives topics created without
//! a partition count (or auto-created) `--partitions` partitions (default
//! 1). It runs transactions, idempotent producers and consumer groups as
//! the mock does: transaction markers are not written, aborted records are
//! not filtered, offsets committed in a transaction are not kept, and each
//! partition keeps its newest 5 MB (or 100 000 batches) only. A fetch
//! waits at most 20 ms for records (the mock answers an empty fetch after
//! its whole wait even when records arrive meanwhile).
//!
//! Flags: `--host H` (default 127.0.0.1) and `--port P` (default 9092; 0
//! picks a free one) to listen on; `--partitions N`.

mod admin_api;
mod mend;
mod proxy;
mod topics;
mod wire;

use std::ffi::{CStr, CString};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread;

use anyhow::{bail, Context, Result};
use rdkafka::bindings as rdsys;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

use topics::{MockHandle, Topics};

struct Flags {
    host: String,
    port: u16,
    partitions: i32,
}

fn flags() -> Result<Flags> {
    let mut flags = Flags {
        host: "127.0.0.1".into(),
        port: 9092,
        partitions: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--host" => flags.host = value,
            "--port" => flags.port = value.parse().context("--port")?,
            "--partitions" => {
                flags.partitions = value.parse().context("--partitions")?;
                if flags.partitions < 1 {
                    bail!("--partitions must be at least 1");
                }
            }
            other => bail!("unknown flag {other} (flags: --host, --port, --partitions)"),
        }
    }
    Ok(flags)
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let flags = flags()?;
    let listener = TcpListener::bind((flags.host.as_str(), flags.port))
        .with_context(|| format!("cannot listen on {}:{}", flags.host, flags.port))?;
    let address = listener.local_addr()?;

    // A client that owns a mock cluster of one broker; it lives as long
    // as the process.
    let owner: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .context("cannot start the mock cluster")?;
    // SAFETY: the client is valid; the mock cluster lives as long as it.
    let mock = unsafe { rdsys::rd_kafka_handle_mock_cluster(owner.client().native_ptr()) };
    if mock.is_null() {
        bail!("librdkafka started no mock cluster");
    }
    // SAFETY: as above; the string belongs to the cluster.
    let upstream = unsafe { CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(mock)) }
        .to_string_lossy()
        .into_owned();
    let upstream: SocketAddr = upstream
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("mock cluster address {upstream}"))?;
    // Clients learn brokers' addresses from metadata: the mock cluster's
    // broker must name the dev broker's, not its own.
    let host = CString::new(address.ip().to_string())?;
    // SAFETY: as above; the host string outlives the call (it is copied).
    unsafe {
        rdsys::rd_kafka_mock_broker_set_host_port(mock, 1, host.as_ptr(), address.port().into())
    };

    let topics = Arc::new(Topics::new(MockHandle(mock), flags.partitions));
    println!("dev broker listening on {address} (bootstrap.servers={address}); Ctrl-C stops it");
    for client in listener.incoming() {
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                log::warn!("accepting a connection: {error}");
                continue;
            }
        };
        let topics = topics.clone();
        thread::Builder::new()
            .name("dev-broker-requests".into())
            .spawn(move || {
                if let Err(error) = proxy::serve(client, upstream, topics) {
                    log::warn!("connection ended: {error:#}");
                }
            })?;
    }
    drop(owner);
    Ok(())
}
