//! Recovery: bringing a partition's stores up to date with their changelog
//! topics before its first message is processed.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::changelog::{changelog_topic, OFFSET_HEADER};
use super::manager::StateManager;
use crate::error::{Error, Result};

/// Records applied per RocksDB write batch during recovery.
const BATCH: usize = 10_000;
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);

/// Recovers the stores of `topic`/`partition` from their changelogs.
///
/// `committed` is the group's committed offset for the input partition:
/// changelog records stamped with an input offset at or past it belong to a
/// checkpoint that never finished and are skipped, so the state equals the
/// fold of exactly the input before `committed`. Local state that is ahead
/// of `committed` (a checkpoint written to RocksDB whose offset commit did
/// not happen) is kept when no other instance wrote to the changelog since,
/// and the returned offset says where to resume; otherwise it is discarded
/// and rebuilt.
pub(crate) fn recover(
    manager: &mut StateManager,
    reader: Option<&BaseConsumer>,
    group: &str,
    topic: &str,
    partition: i32,
    committed: Option<i64>,
    patience: Duration,
) -> Result<Option<i64>> {
    let stores = manager.stores_of(topic).to_vec();
    let state = manager.open(topic, partition)?;
    let local_next = state.store.input_offset()?;
    let mut plans = Vec::with_capacity(stores.len());
    let Some(reader) = reader else {
        // Without changelogs the local state is all there is.
        return Ok(local_next.filter(|next| Some(*next) > committed));
    };
    for (index, store) in stores.iter().enumerate() {
        let changelog = changelog_topic(group, topic, store, 0).name;
        let (low, high) = reader
            .fetch_watermarks(&changelog, partition, WATERMARK_TIMEOUT)
            .map_err(|source| Error::Metadata {
                topic: changelog.clone(),
                source: source.into(),
            })?;
        let stored = state.store.changelog_offset(index)?.unwrap_or(0);
        plans.push((index, changelog, stored, low, high));
    }
    let ahead = local_next.is_some_and(|next| Some(next) > committed);
    let others_wrote = plans.iter().any(|(_, _, stored, _, high)| high > stored);
    let state = if ahead && others_wrote {
        log::warn!(
            "local state of {topic}[{partition}] is ahead of the committed offset and the \
             changelog moved on: rebuilding it from the changelog"
        );
        for plan in &mut plans {
            plan.2 = 0;
        }
        manager.reset(topic, partition)?
    } else {
        manager.open(topic, partition)?
    };
    if ahead && !others_wrote {
        log::info!(
            "state of {topic}[{partition}] already absorbed up to offset {local_next:?}; \
             resuming there"
        );
        return Ok(local_next);
    }
    for (index, changelog, stored, low, high) in plans {
        let start = stored.max(low);
        if start >= high {
            continue;
        }
        let total = high - start;
        log::info!("recovering {changelog}[{partition}]: {total} record(s) from offset {start}");
        let started = Instant::now();
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&changelog, partition, Offset::Offset(start))
            .map_err(|source| Error::Consume {
                source: source.into(),
            })?;
        reader.assign(&list).map_err(|source| Error::Consume {
            source: source.into(),
        })?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut next = start;
        let mut applied = 0u64;
        let mut last_message = Instant::now();
        while next < high {
            let message = match reader.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    log::warn!("reading {changelog}[{partition}]: {error}");
                    continue;
                }
                None if last_message.elapsed() > patience => {
                    return Err(Error::BrokerUnavailable {
                        unavailable_for: last_message.elapsed(),
                    })
                }
                None => continue,
            };
            last_message = Instant::now();
            next = message.offset() + 1;
            let input_offset = message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|header| header.key == OFFSET_HEADER)
                    .and_then(|header| header.value)
                    .and_then(|value| value.try_into().ok())
                    .map(i64::from_be_bytes)
            });
            // A record of an unfinished checkpoint: its input will be processed again.
            let finished = match (input_offset, committed) {
                (Some(offset), Some(committed)) => offset < committed,
                (Some(_), None) => false,
                (None, _) => true,
            };
            if finished {
                let key = message.key().unwrap_or_default().to_vec();
                batch.push((key, message.payload().map(<[u8]>::to_vec)));
                applied += 1;
            }
            if batch.len() >= BATCH || next >= high {
                let input = (next >= high).then_some(committed).flatten();
                state.store.apply_changelog(index, &batch, next, input)?;
                batch.clear();
                let done = next - start;
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
                log::info!(
                    "recovering {changelog}[{partition}]: {done}/{total} records, {rate:.0}/s"
                );
            }
        }
        reader.unassign().map_err(|source| Error::Consume {
            source: source.into(),
        })?;
        log::info!(
            "recovered {changelog}[{partition}]: applied {applied} of {total} record(s) in {:?}",
            started.elapsed()
        );
    }
    Ok(None)
}
