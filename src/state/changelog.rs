//! Changelog topics: the durable copy of every store.

use crate::topic::TopicSpec;

/// Header carrying the input offset a changelog record belongs to.
pub(crate) const OFFSET_HEADER: &str = "__kstreams_input_offset";

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
}
