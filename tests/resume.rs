//! Commits and restarts: an app that stops and starts again resumes right
//! after the last committed offset, on the test broker.

mod common;

use std::time::Duration;

use common::{committed_offset, kafka_app, kafka_broker, unique};
use kstreams::{Application, Topic, Until};

fn declare(app: &Application, input: &Topic<i64>, output: &Topic<i64>) {
    app.dataframe(input).apply(|n| n * 10).to_topic(output);
}

fn produce(app: &Application, topic: &Topic<i64>, values: std::ops::Range<i64>) {
    let producer = app.producer().unwrap();
    for n in values {
        producer.send(topic, None, &n).unwrap();
    }
    producer.flush().unwrap();
}

/// Runs an instance of `group` that first produces `values` to `input`,
/// until it processed `count` messages; returns its outputs.
fn run_instance(
    group: &str,
    (input, output): (&Topic<i64>, &Topic<i64>),
    values: std::ops::Range<i64>,
    count: u64,
) -> Vec<i64> {
    let app = kafka_app(group).build().unwrap();
    declare(&app, input, output);
    produce(&app, input, values);
    let outputs = app
        .run_until(Until::messages(count).or_timeout(Duration::from_secs(90)))
        .unwrap();
    outputs.values(output).unwrap()
}

fn tens(values: std::ops::Range<i64>) -> Vec<i64> {
    values.map(|n| n * 10).collect()
}

/// The poll loop takes messages a batch at a time: a run asked for three
/// takes three though one fetch brings all ten, and commits three; the
/// seven it fetched and did not process come to the next run.
#[test]
fn a_run_bounded_by_a_count_stops_there_and_the_next_takes_the_rest() {
    let group = unique("bounded");
    let input = Topic::<i64>::new(unique("bounded-in"));
    let output = Topic::<i64>::new(unique("bounded-out"));
    let topics = (&input, &output);

    assert_eq!(run_instance(&group, topics, 0..10, 3), tens(0..3));
    let committed = committed_offset(&kafka_broker(), &group, input.name(), 0);
    assert_eq!(committed, Some(3));
    assert_eq!(run_instance(&group, topics, 0..0, 7), tens(3..10));
}

#[test]
fn restarted_app_resumes_after_the_last_committed_offset() {
    let group = unique("resume");
    let input = Topic::<i64>::new(unique("resume-in"));
    let output = Topic::<i64>::new(unique("resume-out"));
    let topics = (&input, &output);

    assert_eq!(run_instance(&group, topics, 0..10, 10), tens(0..10));
    let committed = committed_offset(&kafka_broker(), &group, input.name(), 0);
    assert_eq!(committed, Some(10));

    // A new instance of the same group sees only what came after.
    assert_eq!(run_instance(&group, topics, 10..15, 5), tens(10..15));
    let committed = committed_offset(&kafka_broker(), &group, input.name(), 0);
    assert_eq!(committed, Some(15));
}

#[test]
fn commit_every_checkpoints_by_message_count() {
    let group = unique("commit-every");
    let input = Topic::<i64>::new(unique("every-in"));
    let output = Topic::<i64>::new(unique("every-out"));
    let app = kafka_app(&group)
        .commit_interval(Duration::from_secs(3600))
        .commit_every(4)
        .build()
        .unwrap();
    declare(&app, &input, &output);
    produce(&app, &input, 0..8);
    let stop = app.stop_handle();
    // Stop once the second checkpoint (after 8 messages) is visible: the
    // hour-long interval cannot have triggered it.
    let broker = kafka_broker();
    let (group2, topic) = (group.clone(), input.name().to_string());
    let watcher = std::thread::spawn(move || {
        for _ in 0..300 {
            if committed_offset(&broker, &group2, &topic, 0) == Some(8) {
                stop.stop();
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        stop.stop();
        false
    });
    app.run().unwrap();
    assert!(watcher.join().unwrap(), "offset 8 was never committed");
}
