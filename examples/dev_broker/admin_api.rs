//! The requests the dev broker answers itself, in the versions it
//! advertises: CreateTopics (0-4) and DescribeConfigs (0-2), which the mock
//! cluster lacks.

use anyhow::{bail, Result};

use crate::topics::{Topics, INVALID_REQUEST, NONE, UNKNOWN_TOPIC_OR_PARTITION};
use crate::wire::{Reader, Writer};

pub const CREATE_TOPICS: i16 = 19;
pub const DESCRIBE_CONFIGS: i16 = 32;

/// The highest version of each API the dev broker answers.
pub const CREATE_TOPICS_MAX: i16 = 4;
pub const DESCRIBE_CONFIGS_MAX: i16 = 2;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// DescribeConfigs' config sources (version 1 and later).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;

/// Whether the dev broker answers requests of `api_key` itself.
pub fn answers(api_key: i16) -> bool {
    matches!(api_key, CREATE_TOPICS | DESCRIBE_CONFIGS)
}

/// The body of the answer to a CreateTopics or DescribeConfigs request.
pub fn answer(
    topics: &Topics,
    api_key: i16,
    version: i16,
    body: &mut Reader<'_>,
) -> Result<Vec<u8>> {
    match api_key {
        CREATE_TOPICS if version <= CREATE_TOPICS_MAX => create_topics(topics, version, body),
        DESCRIBE_CONFIGS if version <= DESCRIBE_CONFIGS_MAX => {
            describe_configs(topics, version, body)
        }
        _ => bail!("version {version} of API {api_key} is not supported"),
    }
}

fn create_topics(topics: &Topics, version: i16, body: &mut Reader<'_>) -> Result<Vec<u8>> {
    struct Requested {
        name: String,
        partitions: i32,
        configs: Vec<(String, String)>,
    }
    let mut requested = Vec::new();
    for _ in 0..body.array_len()?.unwrap_or(0) {
        let name = body.string()?;
        let mut partitions = body.i32()?;
        let _replication_factor = body.i16()?;
        let assignments = body.array_len()?.unwrap_or(0);
        for _ in 0..assignments {
            let _partition = body.i32()?;
            for _ in 0..body.array_len()?.unwrap_or(0) {
                let _broker = body.i32()?;
            }
        }
        if partitions <= 0 && assignments > 0 {
            partitions = assignments as i32;
        }
        let mut configs = Vec::new();
        for _ in 0..body.array_len()?.unwrap_or(0) {
            let key = body.string()?;
            if let Some(value) = body.nullable_string()? {
                configs.push((key, value));
            }
        }
        requested.push(Requested {
            name,
            partitions,
            configs,
        });
    }
    let _timeout_ms = body.i32()?;
    let validate_only = version >= 1 && body.bool()?;

    let mut answer = Writer::default();
    if version >= 2 {
        answer.i32(0); // throttle time
    }
    answer.array_len(requested.len());
    for topic in requested {
        let (code, message) = if validate_only {
            (NONE, None)
        } else {
            topics.create(&topic.name, topic.partitions, topic.configs)
        };
        answer.string(&topic.name).i16(code);
        if version >= 1 {
            answer.nullable_string(message.as_deref());
        }
    }
    Ok(answer.bytes)
}

fn describe_configs(topics: &Topics, version: i16, body: &mut Reader<'_>) -> Result<Vec<u8>> {
    let mut answer = Writer::default();
    answer.i32(0); // throttle time
    let resources = body.array_len()?.unwrap_or(0);
    answer.array_len(resources);
    for _ in 0..resources {
        let kind = body.i8()?;
        let name = body.string()?;
        let keys = match body.array_len()? {
            Some(count) => Some(
                (0..count)
                    .map(|_| body.string())
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let (code, message, configs) = match kind {
            TOPIC => match topics.configs(&name, keys.as_deref()) {
                Some(configs) => (NONE, None, configs),
                None => (
                    UNKNOWN_TOPIC_OR_PARTITION,
                    Some(format!("topic {name} does not exist")),
                    Vec::new(),
                ),
            },
            BROKER => (NONE, None, Vec::new()),
            other => (
                INVALID_REQUEST,
                Some(format!("resource type {other} is not described")),
                Vec::new(),
            ),
        };
        answer
            .i16(code)
            .nullable_string(message.as_deref())
            .i8(kind)
            .string(&name)
            .array_len(configs.len());
        for config in configs {
            answer
                .string(&config.name)
                .string(&config.value)
                .bool(false); // read only
            if version == 0 {
                answer.bool(config.is_default);
            } else {
                let source = if config.is_default {
                    DEFAULT_CONFIG
                } else {
                    DYNAMIC_TOPIC_CONFIG
                };
                answer.i8(source);
            }
            answer.bool(false); // sensitive
            if version >= 1 {
                answer.array_len(0); // synonyms
            }
        }
    }
    Ok(answer.bytes)
}
