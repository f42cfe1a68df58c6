//! The topics of the dev broker: created on librdkafka's mock cluster,
//! which has no CreateTopics or DescribeConfigs of its own, and the
//! configs they were created with, to describe them.

use std::collections::HashMap;
use std::ffi::CString;

use parking_lot::Mutex;
use rdkafka::bindings as rdsys;

/// Kafka error codes the dev broker answers with.
pub const NONE: i16 = 0;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_REQUEST: i16 = 42;

/// What a topic reports for a config it was not created with.
const DEFAULT_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("compression.type", "producer"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("min.insync.replicas", "1"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
];

/// A config of a topic, and whether it is the default.
pub struct Config {
    pub name: String,
    pub value: String,
    pub is_default: bool,
}

/// The mock cluster's topics, with their configs.
pub struct Topics {
    mock: MockHandle,
    /// Partitions of a topic created without a count (or auto-created).
    default_partitions: i32,
    /// Every topic known to exist, with the configs it was created with.
    known: Mutex<HashMap<String, Vec<(String, String)>>>,
}

/// The mock cluster's native handle. Its topic calls hand an operation to
/// the cluster's own thread and wait for it: safe from any thread.
#[derive(Clone, Copy)]
pub struct MockHandle(pub *mut rdsys::rd_kafka_mock_cluster_t);

// SAFETY: see above; the handle outlives the dev broker (main holds the
// client that owns the cluster until the process ends).
unsafe impl Send for MockHandle {}
unsafe impl Sync for MockHandle {}

impl Topics {
    pub fn new(mock: MockHandle, default_partitions: i32) -> Self {
        Topics {
            mock,
            default_partitions,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Creates `name` (`partitions` of -1: the default count) with
    /// `configs`; answers a Kafka error code and message.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: Vec<(String, String)>,
    ) -> (i16, Option<String>) {
        let partitions = if partitions > 0 {
            partitions
        } else {
            self.default_partitions
        };
        let Ok(c_name) = CString::new(name) else {
            return (INVALID_REQUEST, Some("topic name holds a NUL byte".into()));
        };
        // SAFETY: the handle is valid (see MockHandle); the name is a
        // NUL-terminated string that outlives the call. One broker: one
        // replica.
        let error = unsafe {
            rdsys::rd_kafka_mock_topic_create(self.mock.0, c_name.as_ptr(), partitions, 1)
        };
        let mut known = self.known.lock();
        match error {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                log::info!("created topic {name} ({partitions} partitions)");
                known.insert(name.to_string(), configs);
                (NONE, None)
            }
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS => {
                known.entry(name.to_string()).or_default();
                (
                    TOPIC_ALREADY_EXISTS,
                    Some(format!("Topic '{name}' already exists.")),
                )
            }
            other => {
                let code = other as i16;
                (code, Some(format!("cannot create topic {name}: {other:?}")))
            }
        }
    }

    /// Creates `name` with the default partition count unless it is known
    /// to exist: what the mock cluster would auto-create, with the dev
    /// broker's partition count rather than its fixed 4.
    pub fn auto_create(&self, name: &str) {
        if !self.known.lock().contains_key(name) {
            self.create(name, -1, Vec::new());
        }
    }

    /// The configs of topic `name` (those in `keys` only, unless `None`),
    /// or `None` when no such topic is known.
    pub fn configs(&self, name: &str, keys: Option<&[String]>) -> Option<Vec<Config>> {
        let known = self.known.lock();
        let set = known.get(name)?;
        let mut configs: Vec<Config> = DEFAULT_CONFIGS
            .iter()
            .filter(|(key, _)| !set.iter().any(|(name, _)| name == key))
            .map(|(key, value)| Config {
                name: key.to_string(),
                value: value.to_string(),
                is_default: true,
            })
            .chain(set.iter().map(|(key, value)| Config {
                name: key.clone(),
                value: value.clone(),
                is_default: false,
            }))
            .collect();
        if let Some(keys) = keys {
            configs.retain(|config| keys.contains(&config.name));
        }
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        Some(configs)
    }
}
