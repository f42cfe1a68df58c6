//! The changelog format: how a store's updates are written to its
//! changelog topic, and how recovery reads them back. This module is the
//! format's one home; what follows is its specification.
//!
//! # Topics
//!
//! Each store of each stateful input topic has a changelog topic named
//! `changelog__<consumer group>--<input topic>--<store>`, with
//! `cleanup.policy=compact` and the input topic's partition count:
//! partition N holds the updates of the stores of input partition N.
//! Only kstreams writes to it; the application's start checks that the
//! partition counts agree.
//!
//! # Records
//!
//! A checkpoint writes, for each store key it changed, one record:
//!
//! - **key**: the store key, that is the message key, length-delimited,
//!   then the state key (see `key.rs`);
//! - **value of an update**: the version byte `1`, the [`Stamp`] (its
//!   `input_offset`, then its `committed_offset` or `-1` for none, each
//!   8 bytes big-endian), then the state value as the store holds it;
//! - **a delete**: a tombstone (no value), stamped in two headers,
//!   `__kstreams_input_offset` and `__kstreams_committed_offset`, 8 bytes
//!   big-endian each.
//!
//! The stamp rides in the value rather than in headers, as Kafka Streams'
//! timestamped stores carry their timestamp: recovery then reads it
//! without librdkafka parsing every record's headers, which was a third
//! of recovery's work. A tombstone has no value to carry it.
//!
//! Builds of kstreams before this version wrote the input offset alone
//! (8 bytes) before the state value. Such a value starts with a zero byte
//! (Kafka offsets stay below 2^56), so it is still read: its stamp has no
//! committed offset.
//!
//! # Stamps, and what recovery applies
//!
//! All records of a checkpoint carry the same [`Stamp`]. Recovery restores
//! a store up to an input offset `C` (the group's committed offset, as a
//! rule) by applying, in changelog order, every record whose
//! `input_offset` is below `C`: the records of checkpoints whose offsets
//! were committed. Those of a checkpoint that never committed (the
//! process died between writing the changelog and committing) are
//! skipped. A tombstone without a stamp is applied.
//!
//! The `committed_offset` is what lets recovery find such a `C` when the
//! group has none (its offsets expired): it is an offset known to be
//! committed, so the state of the records stamped below it and the input
//! from it agree, and no output before it was lost.

use rdkafka::message::{Header, OwnedHeaders};

use crate::topic::TopicSpec;

/// Header carrying a tombstone's input offset.
pub(crate) const INPUT_OFFSET_HEADER: &str = "__kstreams_input_offset";
/// Header carrying a tombstone's committed offset (`-1`: none).
pub(crate) const COMMITTED_OFFSET_HEADER: &str = "__kstreams_committed_offset";

/// The first byte of an update's value in the current format.
const VERSION: u8 = 1;
/// The first byte of an update written by builds before [`VERSION`]: the
/// high byte of its input offset.
const LEGACY: u8 = 0;
const OFFSET_BYTES: usize = 8;
/// Written for a committed offset that is not known.
const NONE: i64 = -1;

/// What a changelog record belongs to: the input its checkpoint absorbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The offset of the last input message its checkpoint absorbed.
    pub(crate) input_offset: i64,
    /// The group's committed offset of the input partition when its
    /// checkpoint began; for a partition that had none, the offset its
    /// processing started from.
    pub(crate) committed_offset: Option<i64>,
}

impl Stamp {
    /// Whether a record with this stamp belongs to input before
    /// `committed`: recovery up to `committed` applies it.
    pub(crate) fn is_before(&self, committed: i64) -> bool {
        self.input_offset < committed
    }
}

/// A changelog record as recovery reads it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// `None` only for a tombstone without stamp headers.
    pub(crate) stamp: Option<Stamp>,
    /// The state value; `None` for a delete.
    pub(crate) value: Option<&'a [u8]>,
}

impl Entry<'_> {
    /// Whether recovery up to `committed` applies this record.
    pub(crate) fn is_before(&self, committed: i64) -> bool {
        self.stamp.is_none_or(|stamp| stamp.is_before(committed))
    }
}

/// The name of the changelog topic of `store` for input `topic` in
/// consumer `group`.
pub(crate) fn changelog_name(group: &str, topic: &str, store: &str) -> String {
    format!("changelog__{group}--{topic}--{store}")
}

/// How to create that changelog topic: compacted, with the input topic's
/// `partitions`.
pub(crate) fn changelog_spec(group: &str, topic: &str, store: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: changelog_name(group, topic, store),
        partitions: Some(partitions),
        config: vec![("cleanup.policy".to_string(), "compact".to_string())],
    }
}

/// Writes the value of an update's record into `into`.
pub(crate) fn encode_update(stamp: Stamp, value: &[u8], into: &mut Vec<u8>) {
    into.clear();
    into.push(VERSION);
    into.extend_from_slice(&stamp.input_offset.to_be_bytes());
    into.extend_from_slice(&stamp.committed_offset.unwrap_or(NONE).to_be_bytes());
    into.extend_from_slice(value);
}

/// The headers of a delete's tombstone.
pub(crate) fn tombstone_headers(stamp: Stamp) -> OwnedHeaders {
    let committed = stamp.committed_offset.unwrap_or(NONE).to_be_bytes();
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: INPUT_OFFSET_HEADER,
            value: Some(&stamp.input_offset.to_be_bytes()),
        })
        .insert(Header {
            key: COMMITTED_OFFSET_HEADER,
            value: Some(&committed),
        })
}

/// Reads a record from its value (`None`: a tombstone) and, for a
/// tombstone only, its headers (`header` gives the value of a header by
/// name).
///
/// # Errors
///
/// What is wrong with a value kstreams did not write.
pub(crate) fn decode<'a>(
    payload: Option<&'a [u8]>,
    header: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<Entry<'a>, &'static str> {
    let Some(payload) = payload else {
        let offset = |name| match header(name) {
            Some(bytes) => offset_of(bytes)
                .map(Some)
                .ok_or("its stamp header is not 8 bytes"),
            None => Ok(None),
        };
        let committed_offset = offset(COMMITTED_OFFSET_HEADER)?.filter(|offset| *offset != NONE);
        let stamp = offset(INPUT_OFFSET_HEADER)?.map(|input_offset| Stamp {
            input_offset,
            committed_offset,
        });
        return Ok(Entry { stamp, value: None });
    };
    match payload.first() {
        Some(&VERSION) => {
            let rest = &payload[1..];
            let (input, rest) = rest
                .split_first_chunk::<OFFSET_BYTES>()
                .ok_or("its value is too short to hold its stamp")?;
            let (committed, value) = rest
                .split_first_chunk::<OFFSET_BYTES>()
                .ok_or("its value is too short to hold its stamp")?;
            let committed = i64::from_be_bytes(*committed);
            let stamp = Stamp {
                input_offset: i64::from_be_bytes(*input),
                committed_offset: (committed != NONE).then_some(committed),
            };
            Ok(Entry {
                stamp: Some(stamp),
                value: Some(value),
            })
        }
        Some(&LEGACY) => {
            let (input, value) = payload
                .split_first_chunk::<OFFSET_BYTES>()
                .ok_or("its value is too short to hold its input offset")?;
            let stamp = Stamp {
                input_offset: i64::from_be_bytes(*input),
                committed_offset: None,
            };
            Ok(Entry {
                stamp: Some(stamp),
                value: Some(value),
            })
        }
        Some(_) => Err("its value starts with an unknown format version"),
        None => Err("its value is empty, so it has no stamp"),
    }
}

fn offset_of(bytes: &[u8]) -> Option<i64> {
    bytes.try_into().ok().map(i64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;

    #[test]
    fn changelog_name_is_derived_from_group_topic_and_store() {
        let spec = changelog_spec("counts", "purchases", "default", 2);
        assert_eq!(spec.name, "changelog__counts--purchases--default");
        assert_eq!(spec.name, changelog_name("counts", "purchases", "default"));
        assert_eq!(spec.partitions, Some(2));
        assert!(spec
            .config
            .contains(&("cleanup.policy".into(), "compact".into())));
    }

    #[test]
    fn an_update_roundtrips_with_its_stamp() {
        let mut payload = Vec::new();
        for stamp in [
            Stamp {
                input_offset: 42,
                committed_offset: Some(40),
            },
            Stamp {
                input_offset: 0,
                committed_offset: None,
            },
        ] {
            for value in [&b"{\"count\":3}"[..], b""] {
                encode_update(stamp, value, &mut payload);
                let entry = decode(Some(&payload), |_| None).unwrap();
                assert_eq!(
                    entry,
                    Entry {
                        stamp: Some(stamp),
                        value: Some(value)
                    }
                );
            }
        }
    }

    #[test]
    fn a_tombstone_roundtrips_with_its_stamp_in_headers() {
        let stamp = Stamp {
            input_offset: 7,
            committed_offset: Some(3),
        };
        let headers = tombstone_headers(stamp);
        let header = |name: &str| {
            headers
                .iter()
                .filter(|header| header.key == name)
                .find_map(|header| header.value)
        };
        let entry = decode(None, header).unwrap();
        assert_eq!(
            entry,
            Entry {
                stamp: Some(stamp),
                value: None
            }
        );
        let unstamped = decode(None, |_| None).unwrap();
        assert_eq!(unstamped.stamp, None);
        assert!(unstamped.is_before(0), "an unstamped tombstone is applied");
    }

    #[test]
    fn a_value_of_the_legacy_format_is_read_without_committed_offset() {
        let mut legacy = 42_i64.to_be_bytes().to_vec();
        legacy.extend_from_slice(b"{}");
        let entry = decode(Some(&legacy), |_| None).unwrap();
        assert_eq!(
            entry.stamp,
            Some(Stamp {
                input_offset: 42,
                committed_offset: None
            })
        );
        assert_eq!(entry.value, Some(&b"{}"[..]));
    }

    #[test]
    fn a_value_kstreams_did_not_write_is_an_error() {
        for foreign in [&b""[..], b"x", b"\x01short", b"\x00short"] {
            assert!(decode(Some(foreign), |_| None).is_err(), "{foreign:?}");
        }
        let short_stamp = |_: &str| Some(&b"1234"[..]);
        assert!(
            decode(None, short_stamp).is_err(),
            "a stamp header of 4 bytes"
        );
    }

    #[test]
    fn recovery_applies_the_records_of_committed_checkpoints_only() {
        let stamp = Stamp {
            input_offset: 9,
            committed_offset: Some(5),
        };
        assert!(stamp.is_before(10));
        assert!(!stamp.is_before(9));
    }
}
