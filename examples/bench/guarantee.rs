//! The cost of exactly once: the `count_per_key` pipeline on the embedded
//! broker at least once, and the same exactly once (each checkpoint a Kafka
//! transaction), on the same input, at the default commit interval. Timed
//! from the first message to the last; CPU is the whole process's, the
//! in-process broker's included (the same for both).

use kstreams::codec::Bytes;
use kstreams::{Application, OffsetReset, ProcessingGuarantee, Topic, Until};

use crate::count::{count_and_sum, Purchase, Totals};
use crate::measure::{FirstMessageClock, Measure};
use crate::{fresh, purchase, Flags};

/// Input partitions, as in the end-to-end workloads.
const PARTITIONS: i32 = 2;

/// Runs the pipeline with `guarantee` over `--messages` purchases of
/// `--keys` keys, produced first into a fresh topic.
pub fn run(guarantee: ProcessingGuarantee, flags: &Flags) -> anyhow::Result<Measure> {
    let state_dir = tempfile::tempdir()?;
    let app = Application::builder()
        .use_embedded_broker()
        .consumer_group(fresh("guarantee"))
        .auto_offset_reset(OffsetReset::Earliest)
        .state_dir(state_dir.path())
        .handle_signals(false)
        .processing_guarantee(guarantee)
        .build()?;
    let name = fresh("guarantee-in");
    let raw = Topic::<Vec<u8>>::new(name.clone())
        .partitions(PARTITIONS)
        .value_codec(Bytes);
    let producer = app.producer()?;
    for i in 0..flags.messages {
        let (key, value) = purchase(i, flags.keys);
        producer.send(&raw, Some(&key.into_bytes()), &value)?;
    }
    producer.flush()?;

    let clock = FirstMessageClock::default();
    let ticks = clock.clone();
    let totals = app.topic::<Totals>(fresh("guarantee-out"));
    app.dataframe(&app.topic::<Purchase>(&name))
        .apply_stateful(move |purchase, state| {
            ticks.tick();
            count_and_sum(purchase, state)
        })
        .to_topic(&totals);
    app.run_until(Until::messages(flags.messages))?;
    clock.measure()
}
