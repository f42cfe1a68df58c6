//! The recoverer: a thread of its own, with its own changelog reader, that
//! runs every pending [`Recovery`] at once (one reader fetching all their
//! changelog partitions), so that the poll loop goes on processing the
//! partitions that need none.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::TopicPartitionList;

use super::batch_writer::{BatchWriter, Written};
use super::manager::PartitionState;
use super::recovery::Recovery;
use crate::broker::{BatchConsumer, FetchedRecord};
use crate::error::{Error, Result};
use crate::thread;

/// A recovery that ended: the partition's stores, up to date, or why not.
pub(crate) struct Recovered {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) state: Result<PartitionState>,
}

/// Runs recoveries on a thread with its own changelog reader.
///
/// Every submitted recovery is reported back exactly once, cancelled or
/// not: a report holds the partition's stores open until it is received,
/// so a revoked partition is [`release`](Self::release)d before it is
/// opened again.
pub(crate) struct Recoverer {
    jobs: Option<Sender<Vec<Recovery>>>,
    done: Receiver<Recovered>,
    /// The recoveries submitted and not yet reported, with their cancel flags.
    running: HashMap<(Arc<str>, i32), Arc<AtomicBool>>,
    /// The recoveries cancelled and not yet reported.
    revoked: HashSet<(Arc<str>, i32)>,
    /// Recoveries reported while [`release`](Self::release) waited, for
    /// the next [`collect`](Self::collect).
    ended: Vec<Recovered>,
    thread: Option<JoinHandle<()>>,
    /// Why the thread stopped, once it has.
    stopped: Option<String>,
}

impl Recoverer {
    /// Starts the thread. `reader` reads the changelogs; `patience` is how
    /// long it waits for the broker before failing a recovery.
    pub(crate) fn start(reader: BaseConsumer, patience: Duration) -> Result<Self> {
        let reader = BatchConsumer::new(reader).map_err(|source| Error::CreateClient {
            client: "changelog reader",
            source: Box::new(source),
        })?;
        let (jobs, queue) = crossbeam_channel::unbounded::<Vec<Recovery>>();
        let (report, done) = crossbeam_channel::unbounded();
        let worker = Worker {
            reader,
            patience,
            active: Active {
                recoveries: Vec::new(),
                writer: BatchWriter::start()?,
                report,
                known_topics: HashSet::new(),
            },
        };
        let thread = thread::spawn("recovery", "kstreams-recov", move || worker.run(&queue))?;
        Ok(Recoverer {
            jobs: Some(jobs),
            done,
            running: HashMap::new(),
            revoked: HashSet::new(),
            ended: Vec::new(),
            thread: Some(thread),
            stopped: None,
        })
    }

    /// Queues the recoveries of one assignment; each partition is
    /// recovering until [`collect`](Self::collect) hands it back or it is
    /// cancelled. They start together, so that the first fetch of the
    /// changelogs asks for all of them.
    pub(crate) fn submit(&mut self, recoveries: Vec<Recovery>) {
        for recovery in &recoveries {
            log::info!(
                "{}[{}] needs recovery of {} changelog record(s); other partitions go on meanwhile",
                recovery.topic,
                recovery.partition,
                recovery.records()
            );
            let key = (recovery.topic.clone(), recovery.partition);
            self.running.insert(key, recovery.cancel_flag());
        }
        if let Some(jobs) = &self.jobs {
            // A send fails only when the thread stopped (it panicked):
            // `collect` then fails these recoveries.
            let _ = jobs.send(recoveries);
        }
    }

    /// Stops the recovery of a revoked partition; what it applied so far
    /// stays in its stores, which close once its report comes back.
    pub(crate) fn cancel(&mut self, topic: &str, partition: i32) {
        // Ended and not collected yet: its stores close here.
        self.ended
            .retain(|ended| !(*ended.topic == *topic && ended.partition == partition));
        let revoked = self
            .running
            .keys()
            .find(|(name, number)| **name == *topic && *number == partition)
            .cloned();
        if let Some(key) = revoked {
            if let Some(cancelled) = self.running.remove(&key) {
                cancelled.store(true, Ordering::Relaxed);
            }
            self.revoked.insert(key);
        }
    }

    /// Waits until a cancelled recovery of `topic`/`partition`, if any, is
    /// reported and its stores closed, so that they can be opened again.
    ///
    /// # Errors
    ///
    /// [`Error::RecoveryStopped`] when the report has not come by
    /// `deadline`: the stores are still held.
    pub(crate) fn release(&mut self, topic: &str, partition: i32, deadline: Instant) -> Result<()> {
        while self
            .revoked
            .iter()
            .any(|(name, number)| **name == *topic && *number == partition)
        {
            match self.done.recv_deadline(deadline) {
                Ok(recovered) => self.receive(recovered),
                // The thread is gone, and with it every store it held.
                Err(RecvTimeoutError::Disconnected) => self.revoked.clear(),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::RecoveryStopped {
                        topic: topic.to_string(),
                        partition,
                        reason: "did not let go of the partition's stores, held by the \
                                 recovery cancelled when it was last revoked"
                            .to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether a recovery is under way.
    pub(crate) fn is_busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// The recoveries that ended since the last call (not those cancelled).
    /// When the recovery thread stopped (it panicked), those still running
    /// end with [`Error::RecoveryStopped`].
    pub(crate) fn collect(&mut self) -> Vec<Recovered> {
        loop {
            match self.done.try_recv() {
                Ok(recovered) => self.receive(recovered),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.revoked.clear();
                    self.fail_running();
                    break;
                }
            }
        }
        std::mem::take(&mut self.ended)
    }

    /// Files a report: the stores of a cancelled recovery just close.
    fn receive(&mut self, recovered: Recovered) {
        let key = (recovered.topic.clone(), recovered.partition);
        if self.revoked.remove(&key) {
            return;
        }
        if self.running.remove(&key).is_some() {
            self.ended.push(recovered);
        }
    }

    /// Why the thread stopped (joined once, remembered after).
    fn stopped_because(&mut self) -> &str {
        if let Some(thread) = self.thread.take() {
            self.stopped = Some(match thread.join() {
                Err(panic) => panic_message(panic.as_ref()),
                Ok(()) => "ended".to_string(),
            });
        }
        self.stopped.as_deref().unwrap_or("ended")
    }

    /// Ends every running recovery with the reason the thread stopped.
    fn fail_running(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let reason = self.stopped_because().to_string();
        for ((topic, partition), _) in self.running.drain() {
            let error = Error::RecoveryStopped {
                topic: topic.to_string(),
                partition,
                reason: reason.clone(),
            };
            self.ended.push(Recovered {
                topic,
                partition,
                state: Err(error),
            });
        }
    }
}

/// What a panic said, when it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        format!("panicked: {message}")
    } else if let Some(message) = panic.downcast_ref::<String>() {
        format!("panicked: {message}")
    } else {
        "panicked".to_string()
    }
}

impl Drop for Recoverer {
    fn drop(&mut self) {
        for cancelled in self.running.values() {
            cancelled.store(true, Ordering::Relaxed);
        }
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How long one read of the changelog reader waits for a record: bounds
/// how late a new recovery or a cancellation is noticed.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often an idle reader's log lines are passed on.
const IDLE_LOGS_EVERY: Duration = Duration::from_secs(1);
/// How long the reader waits for a changelog topic's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The recoverer's thread: reads the changelogs of every active recovery
/// with one consumer and hands each record to its recovery.
struct Worker {
    reader: BatchConsumer<DefaultConsumerContext>,
    /// How long the broker may stay silent before every recovery fails.
    patience: Duration,
    active: Active,
}

impl Worker {
    /// Runs until the recoverer is dropped.
    fn run(mut self, queue: &Receiver<Vec<Recovery>>) {
        let reader = &self.reader;
        let consumer = reader.consumer();
        let mut last_record = Instant::now();
        loop {
            if self.active.recoveries.is_empty() {
                // Idle: wait for work, passing on the reader's log lines
                // meanwhile (a broker it lost, say).
                let recoveries = loop {
                    match queue.recv_timeout(IDLE_LOGS_EVERY) {
                        Ok(recoveries) => break recoveries,
                        Err(RecvTimeoutError::Timeout) => reader.serve_logs(),
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                };
                last_record = Instant::now();
                self.active.start(consumer, recoveries);
            }
            for recoveries in queue.try_iter() {
                self.active.start(consumer, recoveries);
            }
            self.active.drop_cancelled(consumer);
            if self.active.recoveries.is_empty() {
                continue;
            }
            let (active, mut records) = (&mut self.active, 0);
            reader.read(POLL_TIMEOUT, |record| match record {
                Ok(record) => {
                    records += 1;
                    active.apply(consumer, &record);
                }
                Err(error) => log::warn!("reading changelogs: {error}"),
            });
            if records > 0 {
                last_record = Instant::now();
            } else if last_record.elapsed() > self.patience {
                let unavailable_for = last_record.elapsed();
                while !self.active.recoveries.is_empty() {
                    let error = Error::BrokerUnavailable { unavailable_for };
                    self.active.finish(consumer, 0, Err(error));
                }
            }
        }
    }
}

/// The recoveries under way, the writer of their batches, and where to
/// report those that end.
struct Active {
    recoveries: Vec<Recovery>,
    writer: BatchWriter,
    report: Sender<Recovered>,
    /// Changelog topics whose metadata the reader has fetched.
    known_topics: HashSet<String>,
}

impl Active {
    /// Adds the changelog partitions of `recoveries` to what `reader`
    /// reads, in one assignment: librdkafka sends a fetch as soon as a
    /// partition is assigned, and one assigned a moment later waits for
    /// that fetch's answer (a third of a second on tansu) before its own.
    fn start(&mut self, reader: &BaseConsumer, recoveries: Vec<Recovery>) {
        // librdkafka looks up the leaders of a topic it has no metadata
        // for on a 1 s timer: asked up front, the first fetch goes out at once.
        // Asked once per topic: if it fails, the timer still finds them.
        for topic in recoveries.iter().flat_map(Recovery::changelog_topics) {
            if self.known_topics.insert(topic.to_string()) {
                if let Err(error) = reader.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
                    log::debug!("metadata of {topic}: {error}");
                }
            }
        }
        let mut list = TopicPartitionList::new();
        let assigned = recoveries
            .iter()
            .try_for_each(|recovery| recovery.add_assignment(&mut list))
            .and_then(|()| reader.incremental_assign(&list));
        match assigned {
            Ok(()) => self.recoveries.extend(recoveries),
            // Never assigned, nothing written: reported as they are.
            Err(error) => {
                for recovery in recoveries {
                    let reason = format!("could not assign the changelog partitions: {error}");
                    let error = Error::RecoveryStopped {
                        topic: recovery.topic.to_string(),
                        partition: recovery.partition,
                        reason,
                    };
                    self.report(recovery, Err(error));
                }
            }
        }
    }

    /// Hands a record to the recovery that reads its changelog partition,
    /// and a batch it filled to the writer.
    fn apply(&mut self, reader: &BaseConsumer, record: &FetchedRecord<'_>) {
        let (topic, partition) = (record.topic(), record.partition());
        let Some(index) = self
            .recoveries
            .iter()
            .position(|recovery| recovery.reads(topic, partition))
        else {
            // A record fetched before its recovery was cancelled.
            return;
        };
        let write = match self.recoveries[index].apply(topic, record) {
            Ok(Some(write)) => write,
            Ok(None) => return,
            Err(error) => return self.finish(reader, index, Err(error)),
        };
        let done = self.recoveries[index].is_done();
        let owner = (write.topic.clone(), write.partition);
        let written = self.writer.written();
        self.settle(reader, written);
        if !self.is_active(&owner) {
            return;
        }
        self.writer.write(write);
        if done {
            // Its last batch is the one just handed over.
            let written = self.writer.wait();
            self.settle(reader, written);
            if let Some(index) = self
                .recoveries
                .iter()
                .position(|recovery| recovery.reads(topic, partition))
            {
                self.finish(reader, index, Ok(()));
            }
        }
    }

    /// Whether the recovery of input partition `owner` is under way.
    fn is_active(&self, owner: &(Arc<str>, i32)) -> bool {
        self.position(owner).is_some()
    }

    fn position(&self, (topic, partition): &(Arc<str>, i32)) -> Option<usize> {
        self.recoveries
            .iter()
            .position(|recovery| recovery.topic == *topic && recovery.partition == *partition)
    }

    /// Fails the recoveries whose batches failed to be written.
    fn settle(&mut self, reader: &BaseConsumer, written: Vec<Written>) {
        for written in written {
            let Written {
                topic,
                partition,
                result: Err(error),
            } = written
            else {
                continue;
            };
            if let Some(index) = self.position(&(topic, partition)) {
                self.finish(reader, index, Err(error));
            }
        }
    }

    /// Ends a recovery: stops reading its changelogs and reports it, once
    /// no batch is being written into its stores.
    fn finish(&mut self, reader: &BaseConsumer, index: usize, result: Result<()>) {
        let pending = self.writer.wait();
        let recovery = self.recoveries.swap_remove(index);
        unassign_changelogs(reader, &recovery);
        self.report(recovery, result);
        self.settle(reader, pending);
    }

    /// Hands `recovery` back to the recoverer, with its stores on success.
    fn report(&self, recovery: Recovery, result: Result<()>) {
        let recovered = Recovered {
            topic: recovery.topic.clone(),
            partition: recovery.partition,
            state: result.map(|()| recovery.state),
        };
        // The recoverer is gone when nobody listens: nothing to report to.
        let _ = self.report.send(recovered);
    }

    /// Ends the recoveries of revoked partitions; the recoverer closes
    /// their stores when it receives their reports.
    fn drop_cancelled(&mut self, reader: &BaseConsumer) {
        if self.recoveries.iter().any(Recovery::is_cancelled) {
            let pending = self.writer.wait();
            self.settle(reader, pending);
        }
        let mut index = 0;
        while index < self.recoveries.len() {
            if self.recoveries[index].is_cancelled() {
                let recovery = &self.recoveries[index];
                log::info!(
                    "recovery of {}[{}] cancelled: the partition was revoked",
                    recovery.topic,
                    recovery.partition
                );
                self.finish(reader, index, Ok(()));
            } else {
                index += 1;
            }
        }
    }
}

/// Stops reading the changelogs of `recovery`.
fn unassign_changelogs(reader: &BaseConsumer, recovery: &Recovery) {
    let released = recovery.assignment().and_then(|list| {
        reader
            .incremental_unassign(&list)
            .map_err(|source| Error::Consume {
                source: source.into(),
            })
    });
    if let Err(error) = released {
        log::warn!(
            "releasing the changelogs of {}[{}]: {error}",
            recovery.topic,
            recovery.partition
        );
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::ClientConfig;

    use super::*;
    use crate::state::changelog::{changelog_topic, encode_value};
    use crate::state::{plan, Plan, RocksDbOptions, StateManager};

    const WAIT: Duration = Duration::from_secs(30);

    /// A recoverer whose thread runs `body` with the report sender and the
    /// job queue, instead of reading changelogs.
    fn recoverer_running(
        body: impl FnOnce(Sender<Recovered>, Receiver<Vec<Recovery>>) + Send + 'static,
    ) -> Recoverer {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (report, done) = crossbeam_channel::unbounded();
        Recoverer {
            jobs: Some(jobs),
            done,
            running: HashMap::new(),
            revoked: HashSet::new(),
            ended: Vec::new(),
            thread: Some(std::thread::spawn(move || body(report, queue))),
            stopped: None,
        }
    }

    #[test]
    fn a_recovery_thread_that_panicked_fails_the_running_recoveries_naming_the_panic() {
        let mut recoverer = recoverer_running(|_report, _queue| panic!("boom"));
        recoverer
            .running
            .insert((Arc::from("in"), 3), Arc::default());
        let deadline = Instant::now() + WAIT;
        let ended = loop {
            let ended = recoverer.collect();
            if !ended.is_empty() || Instant::now() > deadline {
                break ended;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let [Recovered {
            state: Err(error), ..
        }] = &ended[..]
        else {
            panic!("one failed recovery expected");
        };
        assert_eq!(
            error.to_string(),
            "recovery of topic in partition 3 stopped: the recovery thread panicked: boom"
        );
        assert!(!recoverer.is_busy());
    }

    #[test]
    fn a_cancelled_recovery_that_never_reports_fails_the_release_naming_the_partition() {
        // The thread lives, idle, until the recoverer is dropped.
        let mut recoverer = recoverer_running(|_report, queue| queue.iter().for_each(drop));
        recoverer.revoked.insert((Arc::from("in"), 3));
        let soon = Instant::now() + Duration::from_millis(50);
        let error = recoverer.release("in", 3, soon).unwrap_err();
        assert!(matches!(
            error,
            Error::RecoveryStopped { ref topic, partition: 3, .. } if topic == "in"
        ));
        assert!(
            recoverer.release("in", 4, soon).is_ok(),
            "nothing to wait for"
        );
    }

    #[test]
    fn a_recovery_that_ends_as_its_partition_is_revoked_lets_go_of_the_stores() {
        let cluster = MockCluster::<DefaultProducerContext>::new(1).unwrap();
        let servers = cluster.bootstrap_servers();
        let changelog = changelog_topic("g", "in", "default", 1).name;
        cluster.create_topic(&changelog, 1, 1).unwrap();
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .create()
            .unwrap();
        let mut value = Vec::new();
        for offset in 0..3_i64 {
            encode_value(offset, b"1", &mut value);
            let record = BaseRecord::to(&changelog).key("k").payload(&value);
            producer.send(record).map_err(|(error, _)| error).unwrap();
        }
        producer.flush(WAIT).unwrap();
        let consumer = || -> BaseConsumer {
            ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("group.id", "g-changelog-reader")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let stores = vec![(Arc::from("in"), vec!["default".to_string()])];
        let mut manager = StateManager::new(dir.path().into(), stores, RocksDbOptions::default());
        let Plan::Recover(recovery) =
            plan(&mut manager, &consumer(), Some("g"), "in", 0, None).unwrap()
        else {
            panic!("the changelog has records: the partition needs recovery");
        };
        let mut recoverer = Recoverer::start(consumer(), WAIT).unwrap();
        recoverer.submit(vec![*recovery]);

        // The recovery ends, and before the poll loop collects it the
        // partition is revoked, then assigned again.
        let deadline = Instant::now() + WAIT;
        while recoverer.done.is_empty() {
            assert!(Instant::now() < deadline, "the recovery did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
        recoverer.cancel("in", 0);
        assert!(!recoverer.is_busy());
        recoverer.release("in", 0, Instant::now() + WAIT).unwrap();

        // Its stores are closed: they open at once, with what was recovered.
        let state = manager.open("in", 0).unwrap();
        assert_eq!(state.store.changelog_offset(0).unwrap(), Some(3));
        assert!(
            recoverer.collect().is_empty(),
            "a cancelled recovery is not handed back"
        );
    }
}
