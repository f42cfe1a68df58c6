//! Making sure the topics an application reads and writes exist.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::block_on::block_on;
use super::Broker;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::topic::TopicSpec;

/// How long one metadata request may take before it is retried.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a created topic may take to appear in the metadata.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);

/// An admin client of an application's broker: one for all the topic
/// checks of a start (each librdkafka client costs threads, connections
/// and a metadata request).
pub(crate) struct Admin<'a> {
    broker: &'a Broker,
    config: &'a Config,
    client: AdminClient<DefaultClientContext>,
}

impl<'a> Admin<'a> {
    /// An admin client of `broker`, with the producer settings of `config`.
    pub(crate) fn connect(broker: &'a Broker, config: &'a Config) -> Result<Self> {
        let client = broker
            .client_config(&config.producer_config)
            .create()
            .map_err(|source| Error::CreateClient {
                client: "admin client",
                source: source.into(),
            })?;
        Ok(Admin {
            broker,
            config,
            client,
        })
    }

    /// Creates the missing topics among `specs`, or fails with
    /// [`Error::TopicNotFound`] when auto-creation is off.
    pub(crate) fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        let existing = existing_topics(&self.client, self.config)?;
        let missing: Vec<&TopicSpec> = specs
            .iter()
            .filter(|spec| !existing.contains_key(&spec.name))
            .collect();
        let Some(first) = missing.first() else {
            return Ok(());
        };
        if !self.config.auto_create_topics {
            return Err(Error::TopicNotFound {
                topic: first.name.clone(),
            });
        }
        for spec in &missing {
            log::info!(
                "creating topic {} with {} partition(s)",
                spec.name,
                partitions(spec, self.config)
            );
        }
        match self.broker {
            Broker::Embedded(embedded) => {
                for spec in &missing {
                    embedded.create_topic(&spec.name, partitions(spec, self.config))?;
                }
            }
            Broker::Kafka { .. } => create_on_kafka(&self.client, self.config, &missing)?,
        }
        wait_until_visible(&self.client, self.config, &missing)
    }

    /// The partition count of every topic in `names` that exists.
    pub(crate) fn partition_counts(&self, names: &[&str]) -> Result<HashMap<String, i32>> {
        let mut counts = existing_topics(&self.client, self.config)?;
        counts.retain(|name, _| names.contains(&name.as_str()));
        Ok(counts)
    }
}

fn partitions(spec: &TopicSpec, config: &Config) -> i32 {
    spec.partitions.unwrap_or(config.topic_partitions)
}

fn create_on_kafka(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
    missing: &[&TopicSpec],
) -> Result<()> {
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|spec| {
            let replication = TopicReplication::Fixed(config.topic_replication_factor);
            let topic = NewTopic::new(&spec.name, partitions(spec, config), replication);
            spec.config
                .iter()
                .fold(topic, |topic, (key, value)| topic.set(key, value))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(PROPAGATION_TIMEOUT));
    let results = block_on(admin.create_topics(&new_topics, &options)).map_err(|error| {
        Error::CreateTopic {
            topic: missing
                .iter()
                .map(|spec| spec.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            reason: error.to_string(),
        }
    })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::CreateTopic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// The topics the broker knows with their partition counts, retried while
/// it is unreachable.
fn existing_topics(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
) -> Result<HashMap<String, i32>> {
    let started = Instant::now();
    loop {
        match admin.inner().fetch_metadata(None, METADATA_TIMEOUT) {
            Ok(metadata) => {
                return Ok(metadata
                    .topics()
                    .iter()
                    .filter(|topic| topic.error().is_none() && !topic.partitions().is_empty())
                    .map(|topic| (topic.name().to_string(), topic.partitions().len() as i32))
                    .collect())
            }
            Err(error) if started.elapsed() < config.broker_availability_timeout => {
                log::warn!("cannot read topic metadata, retrying: {error}");
                thread::sleep(Duration::from_secs(1));
            }
            Err(_) => {
                return Err(Error::BrokerUnavailable {
                    unavailable_for: started.elapsed(),
                })
            }
        }
    }
}

fn wait_until_visible(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
    created: &[&TopicSpec],
) -> Result<()> {
    let started = Instant::now();
    loop {
        let existing = existing_topics(admin, config)?;
        let Some(pending) = created
            .iter()
            .find(|spec| !existing.contains_key(&spec.name))
        else {
            return Ok(());
        };
        if started.elapsed() > PROPAGATION_TIMEOUT {
            return Err(Error::CreateTopic {
                topic: pending.name.clone(),
                reason: format!("created, but not in the metadata after {PROPAGATION_TIMEOUT:?}"),
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
}
