//! The cost of exactly once: the `count_per_key` pipeline on the embedded
//! broker at least once, and the same exactly once (each checkpoint a Kafka
//! transaction), on the same input, at the default commit interval. Timed
//! from the first message to the last; CPU is the whole process's, the
//! in-process broker's included (the same for both).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use kstreams::codec::Bytes;
use kstreams::{Application, OffsetReset, ProcessingGuarantee, Topic, Until};

use crate::count::{count_and_sum, Purchase, Totals};
use crate::measure::{cpu_seconds, Measure, Who};
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

    let first = Arc::new(OnceLock::new());
    let seen = Arc::new(AtomicU64::new(0));
    let (first_seen, counter) = (Arc::clone(&first), Arc::clone(&seen));
    let totals = app.topic::<Totals>(fresh("guarantee-out"));
    app.dataframe(&app.topic::<Purchase>(&name))
        .apply_stateful(move |purchase, state| {
            first_seen.get_or_init(|| (Instant::now(), cpu_seconds(Who::Process)));
            counter.fetch_add(1, Ordering::Relaxed);
            count_and_sum(purchase, state)
        })
        .to_topic(&totals);
    app.run_until(Until::messages(flags.messages))?;
    let (started, cpu) = *first
        .get()
        .ok_or_else(|| anyhow::anyhow!("nothing consumed"))?;
    Ok(Measure {
        messages: seen.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        cpu: Some(cpu_seconds(Who::Process) - cpu),
    })
}
