//! Exactly once (`ProcessingGuarantee::ExactlyOnce`): each checkpoint is one
//! Kafka transaction. On librdkafka's mock cluster, which runs the
//! transaction protocol: a refused record aborts the checkpoint, its state
//! is taken back and its messages are processed again, once; a second
//! producer with the same `transactional.id` fences the first. On the test
//! broker: a broker without the transaction API stops the application
//! with an error that says so.

mod common;

use std::time::Duration;

use common::{app_at, committed_offset, kafka_app, kafka_broker, read_topic, unique};
use kstreams::{Error, ErrorAction, ProcessingGuarantee, StreamingDataFrame, Topic, Until};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

const EXACTLY_ONCE: ProcessingGuarantee = ProcessingGuarantee::ExactlyOnce;

/// A mock cluster with the input (holding `numbers`, all of key `k`), the
/// output and the changelog of the default store (it has no CreateTopics).
fn cluster(group: &str, input: &Topic<i64>, output: &Topic<i64>, numbers: &[i64]) -> Mock {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(input.name(), 1, 1).unwrap();
    mock.create_topic(output.name(), 1, 1).unwrap();
    let changelog = format!("changelog__{group}--{}--default", input.name());
    mock.create_topic(&changelog, 1, 1).unwrap();
    let feeder = app_at(&mock.bootstrap_servers(), group).build().unwrap();
    let producer = feeder.producer().unwrap();
    for n in numbers {
        producer.send(input, Some(&b"k".to_vec()), n).unwrap();
    }
    producer.flush().unwrap();
    mock
}

/// The running total per key of `input`, to `output`.
fn running_total(app: &kstreams::Application, input: &Topic<i64>, output: &Topic<i64>) {
    running_total_of(app.dataframe(input), output);
}

/// The running total per key of `frame`, to `output`.
fn running_total_of(frame: StreamingDataFrame<i64>, output: &Topic<i64>) {
    frame
        .apply_stateful(|n, state| {
            let total = state.get::<i64>("total")?.unwrap_or(0) + n;
            state.set("total", &total)?;
            Ok(total)
        })
        .to_topic(output);
}

/// The values of `topic`, in order (every record the mock holds: it does
/// not filter aborted transactions).
fn values(mock: &Mock, topic: &str, count: usize) -> Vec<i64> {
    read_topic(
        &mock.bootstrap_servers(),
        topic,
        count,
        Duration::from_secs(10),
    )
    .into_iter()
    .map(|(_, value)| serde_json::from_slice(&value).unwrap())
    .collect()
}

#[test]
fn a_refused_output_aborts_the_checkpoint_and_its_messages_are_processed_again_once() {
    let group = unique("eos-abort");
    let input = Topic::<i64>::new(unique("eos-abort-in"));
    let output = Topic::<i64>::new(unique("eos-abort-out"));
    let mock = cluster(&group, &input, &output, &[1, 2, 3]);

    let app = app_at(&mock.bootstrap_servers(), &group)
        .processing_guarantee(EXACTLY_ONCE)
        // Skip, under exactly once: abort and process the messages again.
        .on_producer_error(|_| ErrorAction::Skip)
        .build()
        .unwrap();
    running_total(&app, &input, &output);
    // The first produce request fails for good: the checkpoint's
    // transaction must be aborted.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    app.run_until(Until::idle(Duration::from_secs(8)).or_timeout(Duration::from_secs(60)))
        .unwrap();

    // The refused outputs never landed; the retried ones start from the
    // state of the last commit (none), not from the aborted totals.
    assert_eq!(values(&mock, output.name(), 3), [1, 3, 6]);
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        Some(3)
    );
    // And the state kept is the retried one: one more message adds to 6.
    let app = app_at(&mock.bootstrap_servers(), &group)
        .processing_guarantee(EXACTLY_ONCE)
        .build()
        .unwrap();
    running_total(&app, &input, &output);
    let producer = app.producer().unwrap();
    producer.send(&input, Some(&b"k".to_vec()), &4).unwrap();
    producer.flush().unwrap();
    app.run_until(Until::messages(1).or_timeout(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(values(&mock, output.name(), 4), [1, 3, 6, 10]);
}

/// An aborted checkpoint after the steps behind a `group_by` absorbed
/// repartition records: their state, the deduplication marks included,
/// goes back to the last commit, so the records (and their copies, which
/// the retried source messages produce again) are counted once, not
/// skipped as already absorbed.
#[test]
fn an_aborted_checkpoint_after_a_group_by_counts_each_message_once() {
    let group = unique("eos-group-by");
    let input = Topic::<i64>::new(unique("eos-group-by-in"));
    let output = Topic::<i64>::new(unique("eos-group-by-out"));
    let mock = cluster(&group, &input, &output, &[1, 2, 3]);
    // The mock has no CreateTopics: the repartition topic and its store's
    // changelog are made here.
    let repartition = format!("repartition__{group}--{}--all", input.name());
    let changelog = format!("changelog__{group}--{repartition}--default");
    for topic in [&repartition, &changelog] {
        mock.create_topic(topic, 1, 1).unwrap();
    }
    let build = || {
        let app = app_at(&mock.bootstrap_servers(), &group)
            .processing_guarantee(EXACTLY_ONCE)
            .on_producer_error(|_| ErrorAction::Skip)
            .build()
            .unwrap();
        let grouped = app
            .dataframe(&input)
            .group_by("all", |_: &i64, _| Ok("all".to_string()));
        running_total_of(grouped, &output);
        app
    };
    // The repartition records land; the next produce request (the totals
    // of the steps after the group_by, which the mock serves before the
    // commit) is refused: the checkpoint aborts after they were absorbed.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        ],
    );
    build()
        .run_until(Until::idle(Duration::from_secs(8)).or_timeout(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        Some(3)
    );

    // The state committed holds each message once: one more adds to 6.
    let feeder = app_at(&mock.bootstrap_servers(), &group).build().unwrap();
    let producer = feeder.producer().unwrap();
    producer.send(&input, Some(&b"k".to_vec()), &4).unwrap();
    producer.flush().unwrap();
    let before = read_topic(
        &mock.bootstrap_servers(),
        output.name(),
        100,
        Duration::from_secs(5),
    );
    build()
        .run_until(Until::idle(Duration::from_secs(8)).or_timeout(Duration::from_secs(60)))
        .unwrap();
    let after = read_topic(
        &mock.bootstrap_servers(),
        output.name(),
        100,
        Duration::from_secs(5),
    );
    let last: Vec<i64> = after[before.len()..]
        .iter()
        .map(|(_, value)| serde_json::from_slice(value).unwrap())
        .collect();
    assert_eq!(last, [10], "before: {before:?}");
}

/// An aborted checkpoint in the middle of a batch of fetched messages: a
/// partition without state goes back to its last commit, so the rest of
/// the batch (taken already, and fetched again) is not processed twice.
#[test]
fn an_abort_between_messages_of_one_fetch_processes_each_message_once() {
    let group = unique("eos-mid-batch");
    let input = Topic::<i64>::new(unique("eos-mid-batch-in"));
    let output = Topic::<i64>::new(unique("eos-mid-batch-out"));
    let mock = cluster(&group, &input, &output, &[1, 2, 3, 4]);

    let app = app_at(&mock.bootstrap_servers(), &group)
        .processing_guarantee(EXACTLY_ONCE)
        // A checkpoint after two of the four messages the first fetch
        // brings; the outputs of the first two are refused, and skipping
        // means processing them again.
        .commit_every(2)
        .on_producer_error(|_| ErrorAction::Skip)
        .build()
        .unwrap();
    app.dataframe(&input).apply(|n| n * 10).to_topic(&output);
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    app.run_until(Until::idle(Duration::from_secs(8)).or_timeout(Duration::from_secs(60)))
        .unwrap();

    // Every record that landed (the mock keeps them all): each once.
    assert_eq!(values(&mock, output.name(), 6), [10, 20, 30, 40]);
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        Some(4)
    );
}

/// Runs the running total exactly once over three messages on a fresh
/// mock cluster (names from `prefix`), with the settings `configure` adds,
/// while the broker answers requests of `api` with `errors`; returns the
/// error the run stopped with (it must stop), after checking that it
/// committed nothing.
fn run_failing(
    prefix: &str,
    configure: impl FnOnce(kstreams::ApplicationBuilder) -> kstreams::ApplicationBuilder,
    api: RDKafkaApiKey,
    errors: &[RDKafkaRespErr],
) -> Error {
    let group = unique(prefix);
    let input = Topic::<i64>::new(unique(&format!("{prefix}-in")));
    let output = Topic::<i64>::new(unique(&format!("{prefix}-out")));
    let mock = cluster(&group, &input, &output, &[1, 2, 3]);
    let builder = configure(app_at(&mock.bootstrap_servers(), &group));
    let app = builder.processing_guarantee(EXACTLY_ONCE).build().unwrap();
    running_total(&app, &input, &output);
    mock.request_errors(api, errors);
    let error = app
        .run_until(Until::messages(1_000).or_timeout(Duration::from_secs(60)))
        .unwrap_err();
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        None
    );
    error
}

#[test]
fn a_refused_output_stops_the_app_without_a_callback_and_commits_nothing() {
    let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 8];
    // The first checkpoint comes well after the outputs were refused (the
    // group join alone takes the mock 3 s, more on a loaded machine): its
    // changelog records, refused too, must not be the first refusal seen.
    let later = |app: kstreams::ApplicationBuilder| app.commit_interval(Duration::from_secs(10));
    let error = run_failing("eos-stop", later, RDKafkaApiKey::Produce, &refused);
    assert!(
        matches!(error, Error::Produce { .. }),
        "expected a produce error, got {error:?}"
    );
}

/// librdkafka's mock cluster gives a second producer of one
/// `transactional.id` a new producer id instead of fencing the first, so
/// the broker's answer to a fenced producer is injected.
#[test]
fn a_fenced_producer_stops_the_app_with_an_error_that_says_so() {
    let id = unique("eos-fenced-id");
    let fenced = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED];
    let with_id = |app: kstreams::ApplicationBuilder| app.producer_config("transactional.id", &id);
    match run_failing("eos-fenced", with_id, RDKafkaApiKey::EndTxn, &fenced) {
        Error::ProducerFenced { transactional_id } => assert_eq!(transactional_id, id),
        other => panic!("expected the app to be fenced, got {other}"),
    }
}

/// tansu 0.6 answers the other transaction requests but has no EndTxn: the
/// first checkpoint cannot commit, and the application says why. (On a
/// broker with transactions, the run commits instead.)
#[test]
fn a_broker_without_transactions_stops_the_app_with_an_error_that_says_so() {
    let group = unique("eos-broker");
    let input = Topic::<i64>::new(unique("eos-broker-in"));
    let output = Topic::<i64>::new(unique("eos-broker-out"));
    let app = kafka_app(&group)
        .processing_guarantee(EXACTLY_ONCE)
        .build()
        .unwrap();
    running_total(&app, &input, &output);
    let producer = app.producer().unwrap();
    for n in [1, 2, 3] {
        producer.send(&input, Some(&b"k".to_vec()), &n).unwrap();
    }
    producer.flush().unwrap();
    match app.run_until(Until::messages(3).or_timeout(Duration::from_secs(120))) {
        Err(Error::Transaction {
            operation, source, ..
        }) => {
            assert_eq!(operation, "commit");
            assert!(source.to_string().contains("EndTxn"), "{source}");
            assert_eq!(
                committed_offset(&kafka_broker(), &group, input.name(), 0),
                None
            );
        }
        Ok(_) => assert_eq!(
            committed_offset(&kafka_broker(), &group, input.name(), 0),
            Some(3)
        ),
        Err(other) => panic!("expected a transaction error, got {other}"),
    }
}

/// Skip cannot get past a record the broker refuses every time: the app
/// stops (after three aborted checkpoints in a row at the latest) instead
/// of processing the same messages forever.
#[test]
fn a_record_refused_every_time_stops_the_app_even_when_skipped() {
    let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 64];
    let skip = |app: kstreams::ApplicationBuilder| app.on_producer_error(|_| ErrorAction::Skip);
    let error = run_failing("eos-again", skip, RDKafkaApiKey::Produce, &refused);
    // The changelog record of a retried checkpoint may be the one refused.
    assert!(
        matches!(
            error,
            Error::Produce { .. } | Error::ChangelogProduce { .. }
        ),
        "expected a produce error, got {error:?}"
    );
}

#[test]
fn exactly_once_without_changelogs_is_refused() {
    let built = kstreams::Application::builder()
        .use_embedded_broker()
        .processing_guarantee(EXACTLY_ONCE)
        .use_changelog_topics(false)
        .build();
    match built {
        Err(Error::Config { key, .. }) => assert_eq!(key, "use_changelog_topics"),
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("exactly once without changelogs was accepted"),
    }
}

/// A `transactional.id` in `producer_config` is for the application's
/// transactions: the public producer (never transactional) still sends.
#[test]
fn a_transactional_id_setting_leaves_the_public_producer_working() {
    let app = kstreams::Application::builder()
        .use_embedded_broker()
        .processing_guarantee(EXACTLY_ONCE)
        .producer_config("transactional.id", unique("eos-public"))
        .build()
        .unwrap();
    let topic = Topic::<i64>::new(unique("eos-public-out"));
    let producer = app.producer().unwrap();
    producer.send(&topic, None, &1).unwrap();
    producer.flush().unwrap();
}

/// A slow broker is normal: an EndTxn answered after 15 s makes
/// `commit_transaction` time out (its step timeout is 10 s), and the commit
/// is called again until it succeeds, never aborted (Quix Streams aborts
/// there, and librdkafka refuses: "Conflicting commit_transaction API call
/// is already in progress"). The outputs are there once: an abort and a
/// retry would have written them twice (the mock keeps aborted records).
#[test]
fn a_slow_commit_is_called_again_until_it_succeeds() {
    use rdkafka::bindings as rdsys;
    use rdkafka::producer::{BaseProducer, Producer};

    // A mock cluster whose native handle the test keeps, to delay one
    // answer (rust-rdkafka's MockCluster does not offer it).
    let holder: BaseProducer = rdkafka::ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .unwrap();
    // SAFETY: the mock cluster lives as long as `holder`, which outlives
    // every use below; the strings are NUL-terminated.
    let (mock, bootstrap) = unsafe {
        let mock = rdsys::rd_kafka_handle_mock_cluster(holder.client().native_ptr());
        assert!(!mock.is_null());
        let servers = std::ffi::CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(mock));
        (mock, servers.to_string_lossy().into_owned())
    };
    let group = unique("eos-slow");
    let input = Topic::<i64>::new(unique("eos-slow-in"));
    let output = Topic::<i64>::new(unique("eos-slow-out"));
    let changelog = format!("changelog__{group}--{}--default", input.name());
    for topic in [input.name(), output.name(), changelog.as_str()] {
        let name = std::ffi::CString::new(topic).unwrap();
        // SAFETY: as above.
        let created = unsafe { rdsys::rd_kafka_mock_topic_create(mock, name.as_ptr(), 1, 1) };
        assert_eq!(
            created,
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        );
    }
    let feeder = app_at(&bootstrap, &group).build().unwrap();
    let producer = feeder.producer().unwrap();
    for n in [1, 2, 3] {
        producer.send(&input, Some(&b"k".to_vec()), &n).unwrap();
    }
    producer.flush().unwrap();
    // SAFETY: as above; the variadic arguments are (error, round-trip
    // time in ms) pairs, `cnt` of them.
    unsafe {
        rdsys::rd_kafka_mock_broker_push_request_error_rtts(
            mock,
            1,
            rdkafka::types::RDKafkaApiKey::EndTxn as i16,
            1,
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
            15_000i32,
        );
    }

    let state_dir = tempfile::tempdir().unwrap();
    let app = app_at(&bootstrap, &group)
        .state_dir(state_dir.path())
        .processing_guarantee(EXACTLY_ONCE)
        .build()
        .unwrap();
    running_total(&app, &input, &output);
    let store = state_dir.path().join(&group).join(input.name()).join("0");
    std::thread::scope(|scope| {
        let run =
            scope.spawn(|| app.run_until(Until::messages(3).or_timeout(Duration::from_secs(120))));
        // The outputs are in the transaction (the mock shows them before
        // its commit); while the commit is pending, the store holds nothing.
        let outputs = read_topic(&bootstrap, output.name(), 3, Duration::from_secs(10));
        assert_eq!(outputs.len(), 3, "the checkpoint's outputs were produced");
        // Well inside the 15 s the commit takes.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            stored_entries(&store),
            0,
            "RocksDB written before the commit"
        );
        assert_eq!(committed_offset(&bootstrap, &group, input.name(), 0), None);
        run.join().unwrap().unwrap();
    });
    assert!(
        stored_entries(&store) > 0,
        "RocksDB written after the commit"
    );
    let outputs = read_topic(&bootstrap, output.name(), 6, Duration::from_secs(10));
    let values: Vec<i64> = outputs
        .iter()
        .map(|(_, value)| serde_json::from_slice(value).unwrap())
        .collect();
    assert_eq!(values, [1, 3, 6]);
    assert_eq!(
        committed_offset(&bootstrap, &group, input.name(), 0),
        Some(3)
    );
    drop(holder);
}

/// How many entries the RocksDB store at `path` holds, read from a
/// read-only instance beside the application's.
fn stored_entries(path: &std::path::Path) -> usize {
    let options = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&options, path).unwrap();
    let db = rocksdb::DB::open_cf_for_read_only(&options, path, &families, false).unwrap();
    families
        .iter()
        .map(|family| {
            let handle = db.cf_handle(family).unwrap();
            db.iterator_cf(handle, rocksdb::IteratorMode::Start).count()
        })
        .sum()
}

/// The mock cluster, like tansu 0.6, hands aborted transactions' records
/// to read-committed consumers (its fetch answers no aborted transactions).
/// Recovery must still never restore them: an aborted checkpoint's
/// changelog records are stamped with input the group never committed.
#[test]
fn recovery_never_restores_an_aborted_checkpoints_changelog_records() {
    let group = unique("eos-recover");
    let input = Topic::<i64>::new(unique("eos-recover-in"));
    let output = Topic::<i64>::new(unique("eos-recover-out"));
    let mock = cluster(&group, &input, &output, &[1, 2, 3]);
    let app_in = |dir: &tempfile::TempDir| {
        let app = app_at(&mock.bootstrap_servers(), &group)
            .state_dir(dir.path())
            .processing_guarantee(EXACTLY_ONCE)
            .build()
            .unwrap();
        running_total(&app, &input, &output);
        app
    };
    let (first_dir, fresh_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    app_in(&first_dir)
        .run_until(Until::messages(3).or_timeout(Duration::from_secs(60)))
        .unwrap();

    // The checkpoint of one more message (total 16) is aborted by the
    // broker at its commit, and the run ends there.
    let aborted = app_in(&first_dir);
    let producer = aborted.producer().unwrap();
    producer.send(&input, Some(&b"k".to_vec()), &10).unwrap();
    producer.flush().unwrap();
    let not_enough_replicas = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS;
    mock.request_errors(RDKafkaApiKey::EndTxn, &[not_enough_replicas]);
    aborted
        .run_until(Until::messages(1).or_timeout(Duration::from_secs(60)))
        .unwrap();
    mock.clear_request_errors(RDKafkaApiKey::EndTxn);
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        Some(3)
    );
    let changelog = format!("changelog__{group}--{}--default", input.name());
    let records = read_topic(
        &mock.bootstrap_servers(),
        &changelog,
        100,
        Duration::from_secs(5),
    );
    let last = records.last().map(|(_, value)| value.as_slice());
    assert!(
        last.is_some_and(|value| value.ends_with(b"16")),
        "the aborted total is in the changelog: {records:?}"
    );

    // An instance on an empty state directory recovers 6, not 16.
    app_in(&fresh_dir)
        .run_until(Until::messages(1).or_timeout(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(values(&mock, output.name(), 5).last(), Some(&16));
    assert_eq!(
        committed_offset(&mock.bootstrap_servers(), &group, input.name(), 0),
        Some(4)
    );
}
