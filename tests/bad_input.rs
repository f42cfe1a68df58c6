//! A message that does not decode, or whose closure fails, is never dropped
//! silently: without a callback the app stops with an error naming topic,
//! partition and offset and commits nothing past it; with a skip callback it
//! goes on. On the test broker.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{committed_offset, kafka_app, kafka_broker, unique};
use kstreams::{codec::Bytes, Application, Error, ErrorAction, Field, Topic, Until};
use serde_json::{json, Value};

/// Produces `{"n":0}`, `{oops`, `{"n":2}` as raw bytes.
fn produce_with_bad_message(app: &Application, name: &str) {
    let raw = Topic::<Vec<u8>>::new(name).value_codec(Bytes);
    let producer = app.producer().unwrap();
    for value in [&br#"{"n":0}"#[..], b"{oops", br#"{"n":2}"#] {
        producer.send(&raw, None, &value.to_vec()).unwrap();
    }
    producer.flush().unwrap();
}

#[test]
fn undecodable_message_stops_the_app_and_its_offset_is_not_committed() {
    let group = unique("bad");
    let input = Topic::<Value>::new(unique("bad-in"));
    let output = Topic::<Value>::new(unique("bad-out"));

    for attempt in 0..2 {
        let app = kafka_app(&group).build().unwrap();
        app.dataframe(&input).to_topic(&output);
        if attempt == 0 {
            produce_with_bad_message(&app, input.name());
        }
        let error = app
            .run_until(Until::messages(3).or_timeout(Duration::from_secs(90)))
            .unwrap_err();
        match &error {
            Error::Deserialize {
                topic,
                partition,
                offset,
                field,
                ..
            } => {
                assert_eq!((topic.as_str(), *partition, *offset), (input.name(), 0, 1));
                assert_eq!(*field, Field::Value);
            }
            other => panic!("expected a deserialize error, got {other}"),
        }
        let text = error.to_string();
        assert!(
            text.contains(input.name()) && text.contains("offset 1"),
            "{text}"
        );
        // The good message before it is committed; the bad one is not, so
        // the next attempt stops on it again instead of losing it.
        assert_eq!(
            committed_offset(&kafka_broker(), &group, input.name(), 0),
            Some(1)
        );
    }
}

#[test]
fn skip_callback_skips_bad_messages_and_commits_past_them() {
    let group = unique("skip");
    let input = Topic::<Value>::new(unique("skip-in"));
    let output = Topic::<Value>::new(unique("skip-out"));
    let skipped = Arc::new(Mutex::new(Vec::new()));
    let seen = skipped.clone();
    let app = kafka_app(&group)
        .on_processing_error(move |error| {
            seen.lock().unwrap().push(error.offset());
            ErrorAction::Skip
        })
        .build()
        .unwrap();
    app.dataframe(&input).to_topic(&output);
    produce_with_bad_message(&app, input.name());
    let outputs = app
        .run_until(Until::messages(3).or_timeout(Duration::from_secs(90)))
        .unwrap();
    assert_eq!(
        outputs.values(&output).unwrap(),
        [json!({"n": 0}), json!({"n": 2})]
    );
    assert_eq!(*skipped.lock().unwrap(), [Some(1)]);
    assert_eq!(
        committed_offset(&kafka_broker(), &group, input.name(), 0),
        Some(3)
    );
}

#[test]
fn failing_closure_stops_the_app_with_the_message_coordinates() {
    let group = unique("closure");
    let input = Topic::<Value>::new(unique("closure-in"));
    let output = Topic::<Value>::new(unique("closure-out"));
    let app = kafka_app(&group).build().unwrap();
    app.dataframe(&input)
        .try_apply(|row| {
            let n = row["n"].as_i64().ok_or_else(|| anyhow::anyhow!("no n"))?;
            anyhow::ensure!(n != 1, "n must not be 1");
            Ok(row)
        })
        .to_topic(&output);
    let producer = app.producer().unwrap();
    for n in 0..3 {
        producer.send(&input, None, &json!({"n": n})).unwrap();
    }
    producer.flush().unwrap();
    let error = app
        .run_until(Until::messages(3).or_timeout(Duration::from_secs(90)))
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Process {
                offset: 1,
                partition: 0,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("n must not be 1"));
    assert_eq!(
        committed_offset(&kafka_broker(), &group, input.name(), 0),
        Some(1)
    );
}

/// Produces `{"n":0}`, then `{"n":1}` with a header whose name is not
/// UTF-8 (rust-rdkafka's producer takes only `&str` names: librdkafka's
/// own call does it), then `{"n":2}`, to `topic`.
fn produce_with_bad_header_name(app: &Application, topic: &Topic<Value>) {
    use rdkafka::bindings as rdsys;
    use rdkafka::producer::{BaseProducer, Producer as _};
    use std::ffi::CString;

    let producer = app.producer().unwrap();
    producer.send(topic, None, &json!({"n": 0})).unwrap();
    producer.flush().unwrap();
    let raw: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", app.bootstrap_servers())
        .create()
        .unwrap();
    let name = CString::new(topic.name()).unwrap();
    let header = CString::new(&b"trace-\xff\xfe"[..]).unwrap();
    let value = br#"{"n":1}"#;
    let part = |vtype, u| rdsys::rd_kafka_vu_t { vtype, u };
    let fields = [
        part(
            rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                cstr: name.as_ptr(),
            },
        ),
        part(
            rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                mem: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                    ptr: value.as_ptr().cast_mut().cast(),
                    size: value.len(),
                },
            },
        ),
        part(
            rdsys::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                header: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: header.as_ptr(),
                    val: b"1".as_ptr().cast(),
                    size: 1,
                },
            },
        ),
    ];
    // SAFETY: the fields point at live buffers; librdkafka copies them.
    let error = unsafe {
        rdsys::rd_kafka_produceva(raw.client().native_ptr(), fields.as_ptr(), fields.len())
    };
    assert!(error.is_null(), "librdkafka refused the message");
    raw.flush(Duration::from_secs(30)).unwrap();
    producer.send(topic, None, &json!({"n": 2})).unwrap();
    producer.flush().unwrap();
}

#[test]
fn a_header_name_that_is_not_utf8_is_a_decode_error_with_coordinates_not_a_panic() {
    let group = unique("bad-header");
    let input = Topic::<Value>::new(unique("bad-header-in"));
    let output = Topic::<Value>::new(unique("bad-header-out"));

    // Without a callback: the app stops on it, and its offset is not committed.
    let app = kafka_app(&group).build().unwrap();
    app.dataframe(&input).to_topic(&output);
    produce_with_bad_header_name(&app, &input);
    let error = app
        .run_until(Until::messages(3).or_timeout(Duration::from_secs(90)))
        .unwrap_err();
    match &error {
        Error::Deserialize {
            topic,
            partition,
            offset,
            field,
            ..
        } => {
            assert_eq!((topic.as_str(), *partition, *offset), (input.name(), 0, 1));
            assert_eq!(*field, Field::Header);
        }
        other => panic!("expected a deserialize error, got {other}"),
    }
    assert!(error.to_string().contains("not UTF-8"), "{error}");
    assert_eq!(
        committed_offset(&kafka_broker(), &group, input.name(), 0),
        Some(1)
    );
    drop(app);

    // With a skip callback: the app goes on past it.
    let app = kafka_app(&group)
        .on_processing_error(|_| ErrorAction::Skip)
        .build()
        .unwrap();
    app.dataframe(&input).to_topic(&output);
    let outputs = app
        .run_until(Until::messages(2).or_timeout(Duration::from_secs(90)))
        .unwrap();
    assert_eq!(outputs.values(&output).unwrap(), [json!({"n": 2})]);
}
