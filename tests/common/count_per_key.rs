//! The `count_per_key` example (or another of the same flags, such as
//! `window_totals`) as a child process against the test broker: a job
//! (group, input, output), instances of it that can be killed or stopped,
//! a feeder that trickles input in and remembers the truth (for
//! `count_per_key` the count and sum per key), and the final check of the
//! emitted counts.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kstreams::Topic;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{json, Value};

use super::tansu::{self, free_port, Tansu};
use super::{app_at, committed_offset, example_binary, kafka_broker, read_topic, unique};

/// Per message key: how many messages, and the sum of their amounts.
pub type Counts = BTreeMap<String, (u64, u64)>;

/// What an instance logs when it opens a partition's state.
const OPENED_STATE: &str = "opening state of";

/// A broker a job runs of its own.
enum OwnBroker {
    Tansu(Tansu, tempfile::TempDir),
    /// librdkafka's mock cluster, in the test's process, listening on TCP.
    Mock(Box<super::mock::Mock>),
}

/// One deployment of `count_per_key`: its broker, group and topics.
pub struct Job {
    /// The broker address the job's instances use.
    pub broker: String,
    /// The broker of the job's own, when it has one.
    _own_broker: Option<OwnBroker>,
    pub group: String,
    pub input: Topic<Value>,
    pub output: String,
    /// How long the group waits for an instance that died without leaving.
    session_timeout_ms: u64,
    /// The repartition topic its instances also consume (`--group-by`).
    repartition: Option<String>,
    /// Whether a killed instance's session is waited out before the next
    /// one starts.
    settle_after_kill: bool,
    /// The example its instances run, and their flags besides the shared ones.
    example: &'static str,
    example_args: Vec<String>,
    watermarks: BaseConsumer,
}

impl Job {
    /// A job with fresh names; its input has two partitions. It runs on a
    /// tansu broker of its own when tansu is installed (the shared test
    /// broker serves fetches more slowly the more the suite wrote to it,
    /// and these jobs' short sessions do not ride that out), else on the
    /// test broker.
    pub fn new(prefix: &str) -> Job {
        let own_broker = tansu::installed().then(|| {
            let dir = tempfile::tempdir().expect("broker directory");
            OwnBroker::Tansu(Tansu::start(dir.path(), free_port()), dir)
        });
        Job::on(prefix, own_broker)
    }

    /// A job like [`Job::new`] on a mock cluster of its own (librdkafka's,
    /// listening on TCP), with its input, output and changelog created up
    /// front (the mock has no CreateTopics): for what tansu cannot run,
    /// such as transactions.
    pub fn on_mock(prefix: &str) -> Job {
        let mock = super::mock::Mock::new(1).expect("mock cluster");
        let job = Job::on(prefix, Some(OwnBroker::Mock(Box::new(mock))));
        if let Some(OwnBroker::Mock(mock)) = &job._own_broker {
            let (group, input) = (&job.group, job.input.name());
            let changelog = format!("changelog__{group}--{input}--default");
            for (topic, partitions) in [(input, 2), (&job.output, 1), (&changelog, 2)] {
                mock.create_topic(topic, partitions, 1).expect("topic");
            }
        }
        job
    }

    fn on(prefix: &str, own_broker: Option<OwnBroker>) -> Job {
        let group = unique(prefix);
        let broker = match &own_broker {
            Some(OwnBroker::Tansu(tansu, _)) => tansu.address.clone(),
            Some(OwnBroker::Mock(mock)) => mock.bootstrap_servers(),
            None => kafka_broker(),
        };
        let watermarks = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &broker)
            .create()
            .expect("consumer");
        Job {
            broker,
            _own_broker: own_broker,
            input: Topic::new(format!("{group}-in")).partitions(2),
            output: format!("{group}-out"),
            group,
            session_timeout_ms: 3_000,
            repartition: None,
            settle_after_kill: false,
            example: "count_per_key",
            example_args: Vec::new(),
            watermarks,
        }
    }

    /// The same job running `example` with `args` besides the shared flags.
    pub fn example(mut self, example: &'static str, args: &[&str]) -> Job {
        self.example = example;
        self.example_args = args.iter().map(|arg| arg.to_string()).collect();
        self
    }

    /// The same job counting per JSON field `field` of the input
    /// (`count_per_key --group-by FIELD`).
    pub fn group_by(mut self, field: &str) -> Job {
        self.example_args = vec!["--group-by".into(), field.into()];
        let (group, input) = (&self.group, self.input.name());
        self.repartition = Some(format!("repartition__{group}--{input}--{field}"));
        self
    }

    /// The same job with each checkpoint a Kafka transaction
    /// (`--exactly-once`).
    pub fn exactly_once(mut self) -> Job {
        self.example_args.push("--exactly-once".into());
        self
    }

    /// The same job, where a killed instance's session is waited out
    /// before the next one starts: beside an instance that stays up, tansu
    /// 0.6 does not rebalance a group of three whose killed member's
    /// session expired, and the next instance would never get partitions.
    pub fn settle_after_kill(mut self) -> Job {
        self.settle_after_kill = true;
        self
    }

    /// The same job on an input of one partition.
    pub fn one_partition(mut self) -> Job {
        self.input = Topic::new(self.input.name().to_string()).partitions(1);
        self
    }

    /// The same job with a longer session timeout: for tests whose instances
    /// leave gracefully, so that a broker stall under load does not expire
    /// their sessions (3 s by default, for tests that kill instances).
    pub fn session_timeout_ms(mut self, timeout: u64) -> Job {
        self.session_timeout_ms = timeout;
        self
    }

    /// Starts an instance on `state_dir`; its stderr goes to `log`.
    /// Checkpoints are frequent (every 100 ms or 25 messages) so that kills
    /// land inside their steps, and a killed instance leaves the group
    /// after the session timeout.
    pub fn spawn(&self, state_dir: &Path, log: &Path) -> Instance {
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(example_binary(self.example))
            .args(["--broker", &self.broker])
            .args(["--input", self.input.name()])
            .args(["--output", &self.output])
            .args(["--group", &self.group])
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--commit-interval-ms", "100", "--commit-every", "25"])
            .arg("--session-timeout-ms")
            .arg(self.session_timeout_ms.to_string())
            .args(&self.example_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the example, built by `cargo test`");
        Instance {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Runs `kills` instances on `state_dir` one after another, each killed
    /// with SIGKILL at a random instant (from `seed`) once it is processing
    /// (it opened a partition's state, and the outputs grow); every third
    /// starts on a lost disk, so that it rebuilds its state from the
    /// changelog first.
    pub fn kill_at_random_points(&self, state_dir: &Path, log: &Path, kills: u64, mut seed: u64) {
        let opened = || {
            let logged = std::fs::read_to_string(log).unwrap_or_default();
            logged.matches(OPENED_STATE).count()
        };
        for run in 0..kills {
            if run % 3 == 2 {
                std::fs::remove_dir_all(state_dir.join(&self.group)).expect("state dir");
            }
            let (before, opened_before) = (self.outputs(), opened());
            let mut instance = self.spawn(state_dir, log);
            instance.wait_for_log(OPENED_STATE, opened_before + 1);
            self.wait_for_outputs_beyond(before, &mut instance);
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            thread::sleep(Duration::from_millis(seed % 1_500));
            instance.kill();
            if self.settle_after_kill {
                thread::sleep(Duration::from_millis(self.session_timeout_ms + 1_000));
            }
        }
    }

    /// The high watermark of `topic`/`partition`.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> i64 {
        self.watermarks
            .fetch_watermarks(topic, partition, Duration::from_secs(30))
            .expect("watermarks")
            .1
    }

    /// How many outputs the job has produced so far (0 before its output
    /// topic exists).
    pub fn outputs(&self) -> usize {
        let metadata = self
            .watermarks
            .fetch_metadata(Some(&self.output), Duration::from_secs(30))
            .expect("metadata");
        metadata.topics()[0]
            .partitions()
            .iter()
            .map(|partition| self.high_watermark(&self.output, partition.id()) as usize)
            .sum()
    }

    /// Waits until the outputs grow past `before`, while `instance` runs.
    pub fn wait_for_outputs_beyond(&self, before: usize, instance: &mut Instance) {
        let deadline = Instant::now() + Duration::from_secs(60);
        instance.wait_until(
            deadline,
            Duration::from_millis(50),
            "no new outputs after 60 s",
            || self.outputs() > before,
        );
    }

    /// Waits until the group's committed offsets of both input partitions
    /// moved past where they are now, while `instance` runs: it processed
    /// and checkpointed messages of both (and wrote both changelogs).
    pub fn wait_for_commits_on_both_partitions(&self, instance: &mut Instance) {
        let committed =
            |partition| committed_offset(&self.broker, &self.group, self.input.name(), partition);
        let before = [committed(0), committed(1)];
        let deadline = Instant::now() + Duration::from_secs(60);
        for partition in 0..2 {
            let failure = format!("no commit on partition {partition} after 60 s");
            instance.wait_until(deadline, Duration::from_millis(200), &failure, || {
                committed(partition) > before[partition as usize]
            });
        }
    }

    /// Waits until the group has committed every input message (and,
    /// after that, every message of its repartition topic).
    pub fn wait_until_caught_up(&self, instance: &mut Instance) {
        let deadline = Instant::now() + Duration::from_secs(240);
        let topics = std::iter::once(self.input.name()).chain(self.repartition.as_deref());
        for topic in topics {
            for partition in 0..2 {
                let end = self.high_watermark(topic, partition);
                let failure = format!("never caught up to {end} on {topic}[{partition}]");
                instance.wait_until(deadline, Duration::from_millis(300), &failure, || {
                    committed_offset(&self.broker, &self.group, topic, partition) == Some(end)
                });
            }
        }
    }

    /// Every output row, as JSON.
    pub fn output_rows(&self) -> Vec<Value> {
        let rows = read_topic(
            &self.broker,
            &self.output,
            self.outputs(),
            Duration::from_secs(120),
        );
        rows.into_iter()
            .map(|(_, value)| serde_json::from_slice(&value).expect("JSON output"))
            .collect()
    }

    /// The last count and total the job emitted per key.
    pub fn last_counts(&self) -> Counts {
        let mut last = Counts::new();
        for row in self.output_rows() {
            let key = row["key"].as_str().expect("key").to_string();
            let count = row["count"].as_u64().expect("count");
            let total = row["total"].as_f64().expect("total") as u64;
            last.insert(key, (count, total));
        }
        last
    }
}

/// A running instance; killed when dropped, so a failing test leaves no
/// process behind.
pub struct Instance {
    child: Child,
    log: PathBuf,
}

impl Instance {
    /// Kills it with SIGKILL: no checkpoint, no leaving the group.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// Stops it with SIGTERM and asserts that it exits cleanly.
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "SIGTERM gave {exit}:\n{}", self.log());
    }

    /// Waits for the instance to exit on its own; returns its log.
    pub fn wait_for_failure(mut self) -> String {
        let started = Instant::now();
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "still running after 90 s:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
        let exit = self.child.wait().expect("wait");
        assert!(!exit.success(), "exited cleanly:\n{}", self.log());
        self.log()
    }

    /// Waits until the instance logged `needle` at least `times` times.
    pub fn wait_for_log(&mut self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let log = self.log.clone();
        let failure = format!("never logged {needle:?} {times} time(s)");
        self.wait_until(deadline, Duration::from_millis(100), &failure, || {
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            logged.matches(needle).count() >= times
        });
    }

    /// Polls `done` every `interval` until it holds, asserting meanwhile
    /// that the instance runs; past `deadline`, fails with `failure` and the
    /// instance's log.
    fn wait_until(
        &mut self,
        deadline: Instant,
        interval: Duration,
        failure: &str,
        mut done: impl FnMut() -> bool,
    ) {
        while !done() {
            self.assert_running();
            assert!(Instant::now() < deadline, "{failure}:\n{}", self.log());
            thread::sleep(interval);
        }
    }

    /// The instance's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(exit) = self.child.try_wait().expect("try_wait") {
            panic!("instance exited with {exit}:\n{}", self.log());
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Trickles input in (about 200 messages/s) on its own thread until
/// finished, keeping the truth of what it sent; stops when dropped.
pub struct Feeder<T = Counts> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<T>>,
}

impl Feeder<Counts> {
    /// Starts feeding `job`'s input with `count_per_key`'s purchases over
    /// `keys` keys; returns once the input topic exists.
    pub fn start(job: &Job, keys: u64) -> Feeder {
        Feeder::start_with(job, Counts::new(), move |i, truth| {
            let key = format!("k{}", i % keys);
            let amount = i % 17;
            let entry = truth.entry(key.clone()).or_default();
            entry.0 += 1;
            entry.1 += amount;
            (key, json!({"amount": amount}))
        })
    }
}

impl Feeder<Counts> {
    /// Starts feeding `job`'s input with purchases of `users` users, each
    /// keyed by its own order id, the user in field `user`: the input of
    /// `count_per_key --group-by user`.
    pub fn start_by_user(job: &Job, users: u64) -> Feeder {
        Feeder::start_with(job, Counts::new(), move |i, truth| {
            let user = format!("u{}", i % users);
            let amount = i % 17;
            let entry = truth.entry(user.clone()).or_default();
            entry.0 += 1;
            entry.1 += amount;
            (
                format!("order-{i}"),
                json!({"user": user, "amount": amount}),
            )
        })
    }
}

impl<T: Send + 'static> Feeder<T> {
    /// Starts feeding `job`'s input with what `next` makes of the message
    /// number (and notes in `truth`); returns once the input topic exists.
    pub fn start_with(
        job: &Job,
        mut truth: T,
        mut next: impl FnMut(u64, &mut T) -> (String, Value) + Send + 'static,
    ) -> Feeder<T> {
        let (input, broker) = (job.input.clone(), job.broker.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, started) = std::sync::mpsc::channel();
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let app = app_at(&broker, &unique("feeder"))
                .build()
                .expect("feeder app");
            let producer = app.producer().expect("producer");
            let mut i = 0_u64;
            while !stopping.load(Ordering::Relaxed) {
                let (key, value) = next(i, &mut truth);
                producer
                    .send(&input, Some(&key.into_bytes()), &value)
                    .expect("send");
                if i.is_multiple_of(50) {
                    producer.flush().expect("flush");
                    let _ = ready.send(());
                    thread::sleep(Duration::from_millis(250));
                }
                i += 1;
            }
            producer.flush().expect("flush");
            truth
        });
        started.recv().expect("the feeder started");
        Feeder {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops feeding; returns the truth of all input.
    pub fn finish(mut self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("running");
        thread.join().expect("the feeder failed")
    }
}

impl<T> Drop for Feeder<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Kills `kills` runs of `job` at random points (from `seed`), every third on a
/// lost disk, while `feeder` feeds it; then a last run catches up and
/// stops cleanly, and every key's last count and total are the truth.
/// Returns the log of every run.
pub fn assert_counts_exact_after_random_kills(
    job: &Job,
    feeder: Feeder<Counts>,
    kills: u64,
    seed: u64,
) -> String {
    let state_dir = tempfile::tempdir().unwrap();
    let log = state_dir.path().join("count_per_key.log");
    job.kill_at_random_points(state_dir.path(), &log, kills, seed);
    let truth = feeder.finish();

    // A last run processes the rest and stops cleanly on SIGTERM.
    let mut instance = job.spawn(state_dir.path(), &log);
    job.wait_until_caught_up(&mut instance);
    let log = instance.log();
    instance.terminate();
    assert!(log.contains("recovered"), "no run recovered:\n{log}");
    assert_eq!(job.last_counts(), truth);
    log
}
