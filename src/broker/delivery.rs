//! Producing outputs and collecting the broker's delivery reports.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::Broker;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::message::Output;

/// The input message an output was produced for.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// Records the outputs the broker did not accept, for the next checkpoint.
#[derive(Default)]
pub(crate) struct DeliveryContext {
    failures: Mutex<Vec<Error>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Option<Origin>>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Self::DeliveryOpaque) {
        if let Err((source, message)) = result {
            let output_topic = message.topic().to_string();
            let error = match *origin {
                Some(origin) => Error::Produce {
                    output_topic,
                    topic: origin.topic.to_string(),
                    partition: origin.partition,
                    offset: origin.offset,
                    source: Box::new(source.clone()),
                },
                None => Error::Send {
                    topic: output_topic,
                    source: Box::new(source.clone()),
                },
            };
            self.failures.lock().push(error);
        }
    }
}

/// The producer of an application's outputs.
pub(crate) struct OutputProducer {
    producer: ThreadedProducer<DeliveryContext>,
    /// How long a full local queue may block a send (the broker is away).
    patience: Duration,
}

impl OutputProducer {
    pub(crate) fn create(broker: &Broker, config: &Config) -> Result<Self> {
        let mut client = broker.client_config(&[]);
        // librdkafka's default of 5 ms trades a little latency for batches.
        client.set("linger.ms", "5");
        for (key, value) in &config.producer_config {
            client.set(key, value);
        }
        let producer = client
            .create_with_context(DeliveryContext::default())
            .map_err(|source| Error::CreateClient {
                client: "producer",
                source: source.into(),
            })?;
        Ok(OutputProducer {
            producer,
            patience: config.broker_availability_timeout,
        })
    }

    /// Hands one output to librdkafka; waits while its queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Produce`] (or [`Error::Send`] without an origin) when
    /// librdkafka refuses the record, [`Error::BrokerUnavailable`] when the
    /// queue stays full for longer than the broker availability timeout.
    pub(crate) fn send(&self, output: &Output, origin: Option<&Origin>) -> Result<()> {
        let headers = (!output.headers.is_empty()).then(|| {
            output
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |headers, (name, value)| {
                    headers.insert(Header {
                        key: name,
                        value: Some(value),
                    })
                })
        });
        let mut record = BaseRecord::with_opaque_to(&output.topic, Box::new(origin.cloned()))
            .payload(&output.value);
        if let Some(key) = &output.key {
            record = record.key(key);
        }
        if let Some(timestamp) = output.timestamp {
            record = record.timestamp(timestamp);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        let started = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    if started.elapsed() > self.patience {
                        return Err(Error::BrokerUnavailable {
                            unavailable_for: started.elapsed(),
                        });
                    }
                    record = returned;
                    thread::sleep(Duration::from_millis(1));
                }
                Err((source, _)) => {
                    return Err(match origin {
                        Some(origin) => Error::Produce {
                            output_topic: output.topic.to_string(),
                            topic: origin.topic.to_string(),
                            partition: origin.partition,
                            offset: origin.offset,
                            source: source.into(),
                        },
                        None => Error::Send {
                            topic: output.topic.to_string(),
                            source: source.into(),
                        },
                    })
                }
            }
        }
    }

    /// Waits until every output sent so far is acknowledged or failed.
    /// `false` when `timeout` passed first.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.producer.flush(timeout).is_ok()
    }

    /// The outputs that failed since the last call.
    pub(crate) fn take_failures(&self) -> Vec<Error> {
        std::mem::take(&mut *self.producer.context().failures.lock())
    }
}
