//! Changelog topics: the durable copy of every store.

use crate::topic::TopicSpec;

/// Header carrying the input offset a tombstone belongs to (a tombstone
/// has no value to carry it in).
pub(crate) const OFFSET_HEADER: &str = "__kstreams_input_offset";

/// Bytes of the input offset at the start of a changelog record's value.
const OFFSET_BYTES: usize = 8;

/// Writes the value of a changelog record into `into`: the input offset the
/// update belongs to (8 bytes, big-endian), then the state value.
///
/// The offset rides in the value, as Kafka Streams' timestamped stores
/// carry their timestamp, rather than in a header: recovery then reads it
/// without librdkafka parsing every record's headers, which was a third of
/// recovery's work.
pub(crate) fn encode_value(input_offset: i64, value: &[u8], into: &mut Vec<u8>) {
    into.clear();
    into.extend_from_slice(&input_offset.to_be_bytes());
    into.extend_from_slice(value);
}

/// The input offset and the state value in a changelog record's value;
/// `None` when it is too short to hold the offset.
pub(crate) fn decode_value(payload: &[u8]) -> Option<(i64, &[u8])> {
    let (offset, value) = payload.split_first_chunk::<OFFSET_BYTES>()?;
    Some((i64::from_be_bytes(*offset), value))
}

/// The changelog topic of `store` for input `topic` in consumer `group`:
/// compacted, with the input's partition count, partition N backing input
/// partition N.
pub(crate) fn changelog_topic(group: &str, topic: &str, store: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: format!("changelog__{group}--{topic}--{store}"),
        partitions: Some(partitions),
        config: vec![("cleanup.policy".to_string(), "compact".to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_name_is_derived_from_group_topic_and_store() {
        let spec = changelog_topic("counts", "purchases", "default", 2);
        assert_eq!(spec.name, "changelog__counts--purchases--default");
        assert_eq!(spec.partitions, Some(2));
        assert!(spec
            .config
            .contains(&("cleanup.policy".into(), "compact".into())));
    }

    #[test]
    fn a_value_carries_its_input_offset() {
        let mut payload = Vec::new();
        encode_value(42, b"{\"count\":3}", &mut payload);
        assert_eq!(decode_value(&payload), Some((42, &b"{\"count\":3}"[..])));
        encode_value(-1, b"", &mut payload);
        assert_eq!(decode_value(&payload), Some((-1, &b""[..])));
        assert_eq!(decode_value(b"short"), None);
    }
}
