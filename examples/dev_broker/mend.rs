//! What the dev broker changes in the requests and answers it passes
//! between clients and the mock cluster, in the versions it advertises
//! (non-flexible ones, which it parses): ApiVersions' answer lists the
//! APIs it answers itself; Metadata requests have it auto-create topics
//! with its own partition count, and their answers name a controller;
//! Fetch requests wait less.

use anyhow::{bail, Result};

use crate::admin_api::{CREATE_TOPICS, CREATE_TOPICS_MAX, DESCRIBE_CONFIGS, DESCRIBE_CONFIGS_MAX};
use crate::topics::NONE;
use crate::wire::{Reader, Writer};

pub const FETCH: i16 = 1;
pub const METADATA: i16 = 3;
pub const API_VERSIONS: i16 = 18;

/// The highest versions the dev broker parses.
const FETCH_MAX: i16 = 11;
const METADATA_MAX: i16 = 8;

/// The longest a Fetch waits for records. The mock cluster answers a
/// fetch that found nothing after its full wait (500 ms by default), even
/// when records arrive meanwhile: a consumer right behind a producer then
/// sees them in bursts half a second apart. A broker answers as soon as
/// records arrive; capping the wait comes close.
const FETCH_WAIT_MS: i32 = 20;

/// The topics a Metadata request would have the broker auto-create: the
/// named ones, when the request allows it (always before version 4).
pub fn auto_created_topics(version: i16, body: &mut Reader<'_>) -> Result<Vec<String>> {
    if version > METADATA_MAX {
        bail!("Metadata version {version} was not advertised");
    }
    let names = match body.array_len()? {
        Some(count) => (0..count)
            .map(|_| body.string())
            .collect::<Result<Vec<_>>>()?,
        None => return Ok(Vec::new()),
    };
    let allowed = version < 4 || body.bool()?;
    Ok(if allowed { names } else { Vec::new() })
}

/// The mock cluster's answer to ApiVersions (versions 0-2: the ones it
/// speaks), with CreateTopics and DescribeConfigs added and Metadata
/// capped at the versions the dev broker parses. An error answer is left
/// as it is.
pub fn extend_api_versions(body: &[u8]) -> Result<Vec<u8>> {
    let mut reader = Reader::new(body);
    let error = reader.i16()?;
    if error != NONE {
        return Ok(body.to_vec());
    }
    let mut apis = Vec::new();
    for _ in 0..reader.array_len()?.unwrap_or(0) {
        let (key, min, max) = (reader.i16()?, reader.i16()?, reader.i16()?);
        let max = match key {
            METADATA => max.min(METADATA_MAX),
            FETCH => max.min(FETCH_MAX),
            _ => max,
        };
        apis.push((key, min, max));
    }
    for (key, max) in [
        (CREATE_TOPICS, CREATE_TOPICS_MAX),
        (DESCRIBE_CONFIGS, DESCRIBE_CONFIGS_MAX),
    ] {
        apis.retain(|(known, _, _)| *known != key);
        apis.push((key, 0, max));
    }
    let mut answer = Writer::default();
    answer.i16(error).array_len(apis.len());
    for (key, min, max) in apis {
        answer.i16(key).i16(min).i16(max);
    }
    // The throttle time (version 1 and later).
    answer.bytes.extend_from_slice(reader.rest());
    Ok(answer.bytes)
}

/// The mock cluster's answer to Metadata (version 1-8), naming its broker
/// as the controller: it names broker 0, which does not exist, and admin
/// clients then wait for a controller forever.
pub fn name_controller(version: i16, body: &mut [u8]) -> Result<()> {
    if version < 1 {
        return Ok(());
    }
    let mut reader = Reader::new(body);
    if version >= 3 {
        reader.i32()?; // throttle time
    }
    let mut first_broker = None;
    for _ in 0..reader.array_len()?.unwrap_or(0) {
        let node_id = reader.i32()?;
        first_broker.get_or_insert(node_id);
        reader.string()?; // host
        reader.i32()?; // port
        reader.nullable_string()?; // rack
    }
    if version >= 2 {
        reader.nullable_string()?; // cluster id
    }
    let at = body.len() - reader.rest().len();
    if let (Some(broker), Some(controller)) = (first_broker, body.get_mut(at..at + 4)) {
        controller.copy_from_slice(&broker.to_be_bytes());
    }
    Ok(())
}

/// Caps the wait of a Fetch request (version 0-11) whose body starts at
/// `body` in `request`: see [`FETCH_WAIT_MS`].
pub fn cap_fetch_wait(version: i16, request: &mut [u8], body: usize) -> Result<()> {
    if version > FETCH_MAX {
        bail!("Fetch version {version} was not advertised");
    }
    // After the replica id.
    let Some(wait) = request.get_mut(body + 4..body + 8) else {
        bail!("a Fetch request too short for its wait");
    };
    let asked = i32::from_be_bytes([wait[0], wait[1], wait[2], wait[3]]);
    wait.copy_from_slice(&asked.min(FETCH_WAIT_MS).to_be_bytes());
    Ok(())
}
