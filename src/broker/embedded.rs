//! The embedded broker: librdkafka's in-process mock cluster on a thread of its own.
//!
//! The mock cluster is not `Send`, so one thread owns it for its whole life
//! and serves requests over a channel; dropping [`EmbeddedBroker`] stops it.

use std::thread::{self, JoinHandle};

use crossbeam_channel::{bounded, unbounded, Sender};
use rdkafka::mocking::MockCluster;

use crate::error::{Error, Result};

/// How long a consumer's fetch may wait on the embedded broker. The mock
/// cluster answers a fetch that found nothing after its whole wait (500 ms
/// by default), even when records arrive meanwhile: a consumer right
/// behind a producer (a `group_by`'s repartition topic) would see them in
/// bursts half a second apart.
pub(crate) const FETCH_WAIT_MS: &str = "20";

enum Request {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: Sender<Result<(), String>>,
    },
}

/// A running mock cluster with one broker.
pub(crate) struct EmbeddedBroker {
    bootstrap_servers: String,
    requests: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    pub(crate) fn start() -> Result<Self> {
        let (requests, inbox) = unbounded::<Request>();
        let (ready, started) = bounded(1);
        let thread = thread::Builder::new()
            .name("kstreams-embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        let _ = ready.send(Err(error.to_string()));
                        return;
                    }
                };
                let _ = ready.send(Ok(cluster.bootstrap_servers()));
                for request in inbox {
                    match request {
                        Request::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let result = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|error| error.to_string());
                            let _ = reply.send(result);
                        }
                    }
                }
            })
            .map_err(|error| Error::EmbeddedBroker {
                reason: format!("cannot start its thread: {error}"),
            })?;
        let bootstrap_servers = started
            .recv()
            .map_err(|_| "its thread ended before it started".to_string())
            .and_then(|started| started)
            .map_err(|reason| Error::EmbeddedBroker { reason })?;
        log::info!("embedded broker listening on {bootstrap_servers}");
        Ok(EmbeddedBroker {
            bootstrap_servers,
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    pub(crate) fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Creates a topic: the mock cluster has no CreateTopics API of its own.
    pub(crate) fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let (reply, answer) = bounded(1);
        let request = Request::CreateTopic {
            name: name.to_string(),
            partitions,
            reply,
        };
        let failed = |reason: String| Error::CreateTopic {
            topic: name.to_string(),
            reason,
        };
        self.requests
            .as_ref()
            .and_then(|requests| requests.send(request).ok())
            .ok_or_else(|| failed("the embedded broker has stopped".into()))?;
        answer
            .recv()
            .map_err(|_| failed("the embedded broker has stopped".into()))?
            .map_err(failed)
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // Closing the channel ends the broker thread's loop.
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
