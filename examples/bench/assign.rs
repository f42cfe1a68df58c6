//! The assignment workload: how long a stateful application takes from its
//! start until it has processed one message of each partition of an input
//! with `--assign-partitions` partitions and two stores (so twice as many
//! changelog partitions), on a mock cluster that answers every request
//! `--assign-rtt-ms` late, none of the partitions needing any recovery.
//! The baseline is a plain rdkafka consumer of a fresh group reading the
//! same messages from the same cluster: joining a group there and fetching
//! cost it the same round trips. What kstreams takes beyond it is its
//! start (topic checks, clients) and its assignment: committed offsets,
//! opening the stores, reading to the end of each changelog partition.
//! Its last checkpoint and shutdown come after the clock stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kstreams::{Application, OffsetReset, State, Topic, Until};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::fresh;
use crate::measure::Measure;

/// The two measured runs of one assignment.
pub struct Measured {
    pub plain: Measure,
    pub kstreams: Measure,
}

/// Counts into store `store`.
fn count_in(store: &'static str) -> impl Fn(Value, &mut State) -> anyhow::Result<Value> {
    move |value, state| {
        let count = state.get::<u64>(store)?.unwrap_or(0) + 1;
        state.set(store, &count)?;
        Ok(value)
    }
}

pub fn run(partitions: i32, rtt: Duration) -> anyhow::Result<Measured> {
    let cluster = MockCluster::<DefaultProducerContext>::new(1)?;
    let servers = cluster.bootstrap_servers();
    let group = fresh("assign");
    let input = fresh("assign-in");
    let output = fresh("assign-out");
    for topic in [&input, &output] {
        cluster.create_topic(topic, partitions, 1)?;
    }
    for store in ["a", "b"] {
        let changelog = format!("changelog__{group}--{input}--{store}");
        cluster.create_topic(&changelog, partitions, 1)?;
    }
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()?;
    for partition in 0..partitions {
        let record = BaseRecord::to(&input)
            .partition(partition)
            .key("k")
            .payload("{}");
        producer.send(record).map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(30))?;
    cluster.broker_round_trip_time(1, rtt)?;
    let messages = u64::try_from(partitions)?;

    let started = Instant::now();
    let plain: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", fresh("assign-plain"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()?;
    plain.subscribe(&[&input])?;
    let mut read = 0;
    while read < messages {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "plain consumer stalled"
        );
        if let Some(message) = plain.poll(Duration::from_millis(100)) {
            message?;
            read += 1;
        }
    }
    let plain_seconds = started.elapsed().as_secs_f64();
    drop(plain);

    let state_dir = tempfile::tempdir()?;
    let app = Application::builder()
        .broker_address(&servers)
        .consumer_group(&group)
        .auto_offset_reset(OffsetReset::Earliest)
        .state_dir(state_dir.path())
        .handle_signals(false)
        .auto_create_topics(false)
        .consumer_config("session.timeout.ms", "6000")
        .build()?;
    let input = Topic::<Value>::new(&input);
    // When the message of the last partition to be processed was.
    let (processed, all_processed) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(None)));
    let count_partitions = {
        let (processed, all_processed) = (processed.clone(), all_processed.clone());
        move |value: &mut Value| {
            if processed.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                *all_processed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            }
            let _ = value;
        }
    };
    app.dataframe(&input)
        .apply_stateful_in("a", count_in("a"))
        .apply_stateful_in("b", count_in("b"))
        .update(count_partitions)
        .to_topic(&Topic::<Value>::new(&output));
    let started = Instant::now();
    let outputs = app.run_until(Until::messages(messages).or_timeout(Duration::from_secs(300)))?;
    let finished = all_processed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let kstreams_seconds = finished.map_or(f64::NAN, |at| (at - started).as_secs_f64());
    anyhow::ensure!(
        outputs.processed() == messages,
        "kstreams processed {} of {messages} messages",
        outputs.processed()
    );
    let measure = |seconds| Measure {
        messages,
        seconds,
        cpu: None,
    };
    Ok(Measured {
        plain: measure(plain_seconds),
        kstreams: measure(kstreams_seconds),
    })
}
