//! `group_by`: re-keying through a repartition topic, through the test
//! driver (both passes) and on the embedded broker.

use std::collections::BTreeMap;
use std::time::Duration;

use kstreams::{
    Application, Error, GroupBy, OffsetReset, State, TestDriver, TestMessage, Topic, Until,
};
use serde_json::{json, Value};

/// Counts rows per key (the state's key) in the default store, and emits
/// `{"key", "count", "total"}` with the key as text.
fn count(row: Value, state: &mut State) -> anyhow::Result<Value> {
    let count = state.get::<u64>("count")?.unwrap_or(0) + 1;
    let total = state.get::<f64>("total")?.unwrap_or(0.0) + row["amount"].as_f64().unwrap_or(0.0);
    state.set("count", &count)?;
    state.set("total", &total)?;
    let key = String::from_utf8_lossy(state.message_key()).into_owned();
    Ok(json!({"key": key, "count": count, "total": total}))
}

/// The last row emitted per key.
fn last_per_key(rows: Vec<Value>) -> BTreeMap<String, (u64, f64)> {
    rows.into_iter()
        .map(|row| {
            let key = row["key"].as_str().unwrap().to_string();
            (
                key,
                (
                    row["count"].as_u64().unwrap(),
                    row["total"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

/// A repartition record's value: its envelope (a flags byte: 0xa0, bit 1 for a
/// stamp; no timestamp; the stamp of source `partition` and `offset`, the
/// `index`th of its message: offset, index, partition, big-endian), then
/// `row` as JSON.
fn enveloped(row: Value, stamp: Option<(i32, i64, u32)>) -> Vec<u8> {
    let mut bytes = vec![if stamp.is_some() { 0xa2 } else { 0xa0 }];
    bytes.extend_from_slice(&0i64.to_be_bytes());
    let (partition, offset, index) = stamp.unwrap_or_default();
    bytes.extend_from_slice(&offset.to_be_bytes());
    bytes.extend_from_slice(&index.to_be_bytes());
    bytes.extend_from_slice(&partition.to_be_bytes());
    bytes.extend_from_slice(&serde_json::to_vec(&row).unwrap());
    bytes
}

fn app() -> Application {
    Application::builder()
        .use_embedded_broker()
        .consumer_group("shop")
        .build()
        .unwrap()
}

#[test]
fn counts_per_user_over_input_keyed_by_order() {
    let app = app();
    let purchases = app.topic::<Value>("purchases");
    let counts = app.topic::<Value>("counts");
    app.dataframe(&purchases)
        .group_by(GroupBy::new("user").partitions(3), |row: &Value, _| {
            Ok(row["user"].as_str().unwrap_or_default().to_string())
        })
        .apply_stateful(count)
        .to_topic(&counts);

    let mut driver = TestDriver::new(&app).unwrap();
    let mut truth: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for i in 0..300_u64 {
        let user = format!("u{}", (i * 7) % 11);
        let amount = (i % 13) as f64;
        let entry = truth.entry(user.clone()).or_default();
        entry.0 += 1;
        entry.1 += amount;
        let message = TestMessage::new(json!({"user": user, "amount": amount}))
            .key(format!("order-{i}").into_bytes())
            .partition((i % 2) as i32);
        driver.push(&purchases, message).unwrap();
    }
    assert_eq!(last_per_key(driver.values(&counts).unwrap()), truth);

    // The repartition topic holds the re-keyed purchases, spread over its
    // three partitions by key.
    let repartition = "repartition__shop--purchases--user";
    let records: Vec<_> = driver.outputs().records_to(repartition).cloned().collect();
    assert_eq!(records.len(), 300);
    assert_eq!(records[0].key.as_deref(), Some(&b"u0"[..]));
    let first = enveloped(json!({"amount": 0.0, "user": "u0"}), Some((0, 0, 0)));
    assert_eq!(records[0].value, first);
}

#[test]
fn the_steps_after_group_by_see_the_repartition_message() {
    let app = app();
    let purchases = app.topic::<Value>("purchases");
    let seen = app.topic::<Value>("seen");
    app.dataframe(&purchases)
        .group_by_column("user")
        .apply_with_metadata(|row, meta| {
            Ok(json!({
                "topic": meta.topic(),
                "key": meta.key_str(),
                "timestamp": meta.timestamp(),
                "headers": meta.headers().len(),
                "user": row["user"],
            }))
        })
        .to_topic(&seen);

    let mut driver = TestDriver::new(&app).unwrap();
    let message = TestMessage::new(json!({"user": "ada"}))
        .key(b"o1".to_vec())
        .timestamp(1_000)
        .header("trace", "t1");
    driver.push(&purchases, message).unwrap();
    let expected = json!({
        "topic": "repartition__shop--purchases--user",
        "key": "ada",
        "timestamp": 1_000,
        // The trace header, not the repartition stamp.
        "headers": 1,
        "user": "ada",
    });
    assert_eq!(driver.values(&seen).unwrap(), [expected]);
}

/// What a restarted source would do: the same repartition record (same
/// stamp) arrives again at a later offset. The stateful step absorbs it
/// once; a record of a later source offset counts.
#[test]
fn a_copy_of_a_repartition_record_is_absorbed_once() {
    let app = app();
    let purchases = app.topic::<Value>("purchases");
    let counts = app.topic::<Value>("counts");
    app.dataframe(&purchases)
        .group_by_column("user")
        .apply_stateful(count)
        .to_topic(&counts);
    let repartition = Topic::<Value>::new("repartition__shop--purchases--user");
    let ada = || json!({"user": "ada", "amount": 1});

    let mut driver = TestDriver::new(&app).unwrap();
    for stamp in [(0, 5, 0), (0, 5, 0), (1, 5, 0), (0, 4, 0), (0, 5, 1)] {
        let value = enveloped(ada(), Some(stamp));
        driver
            .push_bytes(&repartition, Some(b"ada"), Some(&value))
            .unwrap();
    }
    // Without a stamp (a tick's record): always absorbed.
    let unstamped = enveloped(ada(), None);
    driver
        .push_bytes(&repartition, Some(b"ada"), Some(&unstamped))
        .unwrap();
    let counted: Vec<u64> = driver
        .values(&counts)
        .unwrap()
        .iter()
        .map(|row| row["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counted, [1, 2, 3, 4]);

    // A value without its envelope names the repartition message.
    let error = driver
        .push_bytes(&repartition, Some(b"ada"), Some(b"{}"))
        .unwrap_err();
    assert!(
        matches!(&error, Error::Deserialize { topic, offset: 6, .. } if topic == repartition.name()),
        "{error}"
    );
}

/// A frame between two `group_by`s with no state of its own still skips
/// copies of its records: else each copy would go on to the second
/// `group_by` as a new record, with a stamp of its own.
#[test]
fn a_stateless_frame_between_two_group_bys_absorbs_each_record_once() {
    let app = app();
    let purchases = app.topic::<Value>("purchases");
    let per_country = app.topic::<Value>("per-country");
    app.dataframe(&purchases)
        .group_by_column("city")
        .group_by_column("country")
        .apply_stateful(count)
        .to_topic(&per_country);
    let by_city = Topic::<Value>::new("repartition__shop--purchases--city");
    let copy = enveloped(
        json!({"city": "paris", "country": "fr", "amount": 1}),
        Some((0, 7, 0)),
    );

    let mut driver = TestDriver::new(&app).unwrap();
    for _ in 0..2 {
        driver
            .push_bytes(&by_city, Some(b"paris"), Some(&copy))
            .unwrap();
    }
    let counts = last_per_key(driver.values(&per_country).unwrap());
    assert_eq!(counts["fr"].0, 1);
}

#[test]
fn an_empty_key_is_refused() {
    let app = app();
    let purchases = app.topic::<Value>("purchases");
    app.dataframe(&purchases)
        .group_by_column("user")
        .to_topic(&app.topic::<Value>("out"));
    let mut driver = TestDriver::new(&app).unwrap();
    let error = driver
        .push(&purchases, TestMessage::new(json!({"user": ""})))
        .unwrap_err();
    assert!(
        error.to_string().contains("key to group by is empty"),
        "{error}"
    );
}

#[test]
fn nested_and_several_group_bys() {
    let app = app();
    let purchases = app.topic::<Value>("purchases");
    let (per_city, per_country) = (
        app.topic::<Value>("per-city"),
        app.topic::<Value>("per-country"),
    );
    let per_user_country = app.topic::<Value>("per-user-country");
    let sdf = app.dataframe(&purchases);
    // Two group_bys of one frame, and a group_by after a group_by.
    let by_city = sdf.clone().group_by_column("city");
    by_city.clone().apply_stateful(count).to_topic(&per_city);
    by_city
        .group_by_column("country")
        .apply_stateful(count)
        .to_topic(&per_country);
    sdf.group_by("user", |row: &Value, _| Ok(row["user"].clone()))
        .apply_stateful_in("per-user-country", |row: Value, state: &mut State| {
            let key = format!("{}", row["country"]);
            let seen = state.get::<u64>(&key)?.unwrap_or(0) + 1;
            state.set(&key, &seen)?;
            Ok(json!({"user": String::from_utf8_lossy(state.message_key()), "n": seen}))
        })
        .to_topic(&per_user_country);

    let mut driver = TestDriver::new(&app).unwrap();
    let rows = [
        ("ada", "paris", "fr"),
        ("bob", "lyon", "fr"),
        ("ada", "paris", "fr"),
        ("cy", "rome", "it"),
    ];
    for (user, city, country) in rows {
        let row = json!({"user": user, "city": city, "country": country, "amount": 1});
        driver.push(&purchases, TestMessage::new(row)).unwrap();
    }
    let counts = |topic: &Topic<Value>| {
        last_per_key(driver.values(topic).unwrap())
            .into_iter()
            .map(|(key, (count, _))| (key, count))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts(&per_city),
        [("lyon".into(), 1), ("paris".into(), 2), ("rome".into(), 1)]
    );
    assert_eq!(counts(&per_country), [("fr".into(), 3), ("it".into(), 1)]);
    // A JSON key: the user's JSON text.
    let users: Vec<Value> = driver.values(&per_user_country).unwrap();
    assert_eq!(users[2], json!({"user": "\"ada\"", "n": 2}));
    let nested = "repartition__shop--repartition__shop--purchases--city--country";
    assert_eq!(driver.outputs().records_to(nested).count(), 4);
}

#[test]
fn a_bad_message_after_group_by_names_the_repartition_topic() {
    let app = app();
    let purchases = app.topic::<Value>("purchases");
    app.dataframe(&purchases)
        .group_by_column("user")
        .try_apply(|row| match row["amount"].as_f64() {
            Some(amount) => Ok(amount),
            None => Err(anyhow::anyhow!("no amount")),
        })
        .to_topic(&app.topic::<f64>("amounts"));

    let mut driver = TestDriver::new(&app).unwrap();
    driver
        .push(
            &purchases,
            TestMessage::new(json!({"user": "ada", "amount": 2})),
        )
        .unwrap();
    let error = driver
        .push(&purchases, TestMessage::new(json!({"user": "ada"})))
        .unwrap_err();
    let Error::Process {
        topic,
        partition,
        offset,
        ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(
        (topic.as_str(), *partition, *offset),
        ("repartition__shop--purchases--user", 0, 1)
    );
    // The key itself failing names the source message.
    let error = driver
        .push(&purchases, TestMessage::new(json!({"amount": 2})))
        .unwrap_err();
    assert!(
        matches!(&error, Error::Process { topic, offset: 2, .. } if topic == "purchases"),
        "{error}"
    );
    assert!(error.to_string().contains("no field \"user\""), "{error}");
}

#[test]
#[should_panic(expected = "has a group_by named \"user\" already")]
fn two_group_bys_of_one_name_on_one_topic_are_refused() {
    let app = app();
    let purchases = app.topic::<Value>("purchases");
    let sdf = app.dataframe(&purchases);
    let _ = sdf.clone().group_by_column("user");
    let _ = sdf.group_by_column("user");
}

/// The whole run on the embedded broker: the repartition topic is created
/// with the source's partition count, the application consumes it in the
/// same group, and the counts are exact.
#[test]
fn counts_per_user_on_the_embedded_broker() {
    let state = tempfile::tempdir().unwrap();
    let app = Application::builder()
        .use_embedded_broker()
        .consumer_group("shop")
        .state_dir(state.path())
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .unwrap();
    let purchases = app.topic::<Value>("purchases").partitions(3);
    let counts = app.topic::<Value>("counts");
    app.dataframe(&purchases)
        .group_by_column("user")
        .apply_stateful(count)
        .to_topic(&counts);

    let producer = app.producer().unwrap();
    producer.ensure_topic(&purchases).unwrap();
    let mut truth: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let messages = 400_u64;
    for i in 0..messages {
        let user = format!("u{}", i % 9);
        let entry = truth.entry(user.clone()).or_default();
        entry.0 += 1;
        entry.1 += 1.0;
        let row = json!({"user": user, "amount": 1});
        producer
            .send(&purchases, Some(&format!("o{i}").into_bytes()), &row)
            .unwrap();
    }
    producer.flush().unwrap();
    let until = Until::messages(2 * messages).or_timeout(Duration::from_secs(60));
    let outputs = app.run_until(until).unwrap();
    assert_eq!(last_per_key(outputs.values(&counts).unwrap()), truth);
    let partitions = partition_count(&app, "repartition__shop--purchases--user");
    assert_eq!(partitions, 3);
}

#[test]
fn a_repartition_topic_of_another_partition_count_is_refused() {
    let app = Application::builder()
        .use_embedded_broker()
        .consumer_group("shop")
        .build()
        .unwrap();
    let purchases = app.topic::<Value>("purchases").partitions(2);
    let existing = Topic::<Value>::new("repartition__shop--purchases--user").partitions(1);
    let producer = app.producer().unwrap();
    producer.ensure_topic(&purchases).unwrap();
    producer.ensure_topic(&existing).unwrap();
    app.dataframe(&purchases)
        .group_by_column("user")
        .to_topic(&app.topic::<Value>("out"));
    let error = app
        .run_until(Until::timeout(Duration::from_secs(5)))
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::RepartitionPartitions {
                existing: 1,
                partitions: 2,
                ..
            }
        ),
        "{error}"
    );
}

/// The partition count of `topic` on `app`'s broker.
fn partition_count(app: &Application, topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", app.bootstrap_servers())
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0].partitions().len()
}

/// Whatever `auto_offset_reset` says (here the default, latest), a
/// repartition partition that the group never committed is read from its
/// beginning: its records were produced for this group, maybe before its
/// partition was assigned.
#[test]
fn a_repartition_partition_never_committed_starts_at_its_beginning() {
    let state = tempfile::tempdir().unwrap();
    let app = Application::builder()
        .use_embedded_broker()
        .consumer_group("shop")
        .state_dir(state.path())
        .build()
        .unwrap();
    let purchases = app.topic::<Value>("purchases");
    let counts = app.topic::<Value>("counts");
    app.dataframe(&purchases)
        .group_by_column("user")
        .apply_stateful(count)
        .to_topic(&counts);
    let repartition = Topic::<Value>::new("repartition__shop--purchases--user")
        .value_codec(kstreams::codec::Bytes);
    let producer = app.producer().unwrap();
    producer.ensure_topic(&purchases).unwrap();
    producer.ensure_topic(&repartition).unwrap();
    for offset in 0..3 {
        let row = enveloped(json!({"user": "ada", "amount": 1}), Some((0, offset, 0)));
        producer
            .send(&repartition, Some(&b"ada".to_vec()), &row)
            .unwrap();
    }
    producer.flush().unwrap();

    let until = Until::messages(3).or_timeout(Duration::from_secs(30));
    let outputs = app.run_until(until).unwrap();
    assert_eq!(last_per_key(outputs.values(&counts).unwrap())["ada"].0, 3);
}

/// What a window closing on an idle stream emits into a `group_by` goes
/// on through the steps after it, in the test driver as in a run.
#[test]
fn windows_closed_on_an_idle_stream_go_on_through_a_group_by() {
    use kstreams::windows::WindowResult;
    let app = app();
    let clicks = app.topic::<u32>("clicks");
    let per_start = app.topic::<Value>("per-start");
    app.dataframe(&clicks)
        .tumbling_window(Duration::from_millis(10))
        .close_when_idle(Duration::from_millis(1_000))
        .count()
        .closed()
        .group_by("start", |window: &WindowResult<u64>, _| Ok(window.start))
        .apply_stateful(|window: WindowResult<u64>, state: &mut State| {
            let clicks = state.get::<u64>("clicks")?.unwrap_or(0) + window.value;
            state.set("clicks", &clicks)?;
            Ok(json!({ "clicks": clicks }))
        })
        .to_topic(&per_start);

    let mut driver = TestDriver::new(&app).unwrap();
    for key in ["a", "b"] {
        let click = TestMessage::new(1)
            .key(key.as_bytes().to_vec())
            .timestamp(3);
        driver.push(&clicks, click).unwrap();
    }
    assert!(driver.values(&per_start).unwrap().is_empty());
    driver.idle(Duration::from_millis(1_000)).unwrap();
    // Both keys' windows [0, 10) closed; re-keyed by start, counted together.
    let totals = driver.values(&per_start).unwrap();
    assert_eq!(totals.last(), Some(&json!({ "clicks": 2 })));
}
