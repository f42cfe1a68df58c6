//! With topic auto-creation off, a missing output topic is a clear error
//! before anything is consumed. On the test broker.

mod common;

use std::time::Duration;

use common::{committed_offset, kafka_app, kafka_broker, unique};
use kstreams::{Error, Topic, Until};

#[test]
fn missing_output_topic_with_auto_create_off_is_a_clear_error() {
    let group = unique("missing");
    let input = Topic::<i64>::new(unique("missing-in"));
    let output = Topic::<i64>::new(unique("never-created"));

    // The input exists (made by an app that may create topics).
    let feeder = kafka_app(&group).build().unwrap();
    let producer = feeder.producer().unwrap();
    producer.send(&input, None, &1).unwrap();
    producer.flush().unwrap();

    let app = kafka_app(&group).auto_create_topics(false).build().unwrap();
    app.dataframe(&input).to_topic(&output);
    let error = app
        .run_until(Until::messages(1).or_timeout(Duration::from_secs(60)))
        .unwrap_err();
    match &error {
        Error::TopicNotFound { topic } => assert_eq!(topic, output.name()),
        other => panic!("expected TopicNotFound, got {other}"),
    }
    assert!(error.to_string().contains("auto-creation is off"));
    assert_eq!(
        committed_offset(&kafka_broker(), &group, input.name(), 0),
        None
    );
}
