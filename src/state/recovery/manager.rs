//! The poll loop's handle on the recovery thread: hands it assigned
//! partitions, cancels those revoked, and takes back those that are ready.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use rdkafka::consumer::BaseConsumer;

use super::batch_writer::BatchWriter;
use super::worker::{Active, Assigned, Worker};
use crate::broker::BatchConsumer;
use crate::error::{Error, Result};
use crate::state::manager::{PartitionState, StoreLayout};
use crate::thread;

/// A partition handed back by the recovery thread: ready, or why not.
pub(crate) struct Recovered {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) result: Result<Ready>,
}

/// A partition whose stores are up to date with their changelogs.
pub(crate) struct Ready {
    pub(crate) state: PartitionState,
    /// Where its processing resumes, when that is not where the consumer
    /// starts by itself (at the group's committed offset, or without one
    /// where the offset reset policy says): a seek costs a round trip.
    pub(crate) seek: Option<i64>,
    /// The group's committed offset of the partition, as recovery found
    /// it: what the next checkpoint stamps as committed.
    pub(crate) committed: Option<i64>,
}

/// Prepares assigned partitions on a thread of its own (opening their
/// stores and bringing them up to date with their changelogs), so that the
/// poll loop goes on processing the partitions that are ready.
///
/// Every submitted partition is reported back exactly once, cancelled or
/// not. A report of a partition that is ready holds its stores open until
/// it is received, so a revoked partition is [`release`](Self::release)d
/// before it is submitted again.
pub(crate) struct RecoveryManager {
    jobs: Option<Sender<Vec<Assigned>>>,
    done: Receiver<Recovered>,
    /// The partitions submitted and not yet reported, with their cancel flags.
    running: HashMap<(Arc<str>, i32), Arc<AtomicBool>>,
    /// The partitions cancelled and not yet reported.
    revoked: HashSet<(Arc<str>, i32)>,
    /// Reports received while [`release`](Self::release) waited, for the
    /// next [`collect`](Self::collect).
    ended: Vec<Recovered>,
    thread: Option<JoinHandle<()>>,
    /// Why the thread stopped, once it has.
    stopped: Option<String>,
}

impl RecoveryManager {
    /// Starts the thread. It opens stores by `layout`; `reader` asks the
    /// group's committed offsets (its `group.id` is the group's; it never
    /// joins) and reads the changelogs (it must have
    /// `enable.partition.eof=true`); `patience` is how long it waits for
    /// the broker before failing a recovery.
    pub(crate) fn start(
        layout: StoreLayout,
        reader: BaseConsumer,
        patience: Duration,
    ) -> Result<Self> {
        let reader = BatchConsumer::new(reader).map_err(|source| Error::CreateClient {
            client: "changelog reader",
            source: Box::new(source),
        })?;
        let (jobs, queue) = crossbeam_channel::unbounded::<Vec<Assigned>>();
        let (report, done) = crossbeam_channel::unbounded();
        let worker = Worker {
            reader,
            patience,
            active: Active {
                layout,
                recoveries: Vec::new(),
                writer: BatchWriter::start()?,
                report,
                known_topics: HashSet::new(),
                restarted: Vec::new(),
            },
        };
        let thread = thread::spawn("recovery", "kstreams-recov", move || worker.run(&queue))?;
        Ok(RecoveryManager {
            jobs: Some(jobs),
            done,
            running: HashMap::new(),
            revoked: HashSet::new(),
            ended: Vec::new(),
            thread: Some(thread),
            stopped: None,
        })
    }

    /// Hands over the partitions of one assignment; each is recovering
    /// until [`collect`](Self::collect) hands it back or it is cancelled.
    /// They start together, so that the group's committed offsets of all
    /// of them are asked in one request, and the first fetch of their
    /// changelogs asks for all of them.
    pub(crate) fn submit(&mut self, partitions: Vec<(Arc<str>, i32)>) {
        let mut assigned = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let cancelled = Arc::new(AtomicBool::new(false));
            self.running
                .insert((topic.clone(), partition), cancelled.clone());
            assigned.push(Assigned {
                topic,
                partition,
                committed: None,
                cancelled,
            });
        }
        if let Some(jobs) = &self.jobs {
            // A send fails only when the thread stopped (it panicked):
            // `collect` then fails these recoveries.
            let _ = jobs.send(assigned);
        }
    }

    /// Stops the recovery of a revoked partition; what it applied so far
    /// stays in its stores, which the thread closes.
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

    /// Whether a partition is being prepared.
    pub(crate) fn is_busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// The partitions reported since the last call (not those cancelled).
    /// When the thread stopped (it panicked), those still running end with
    /// [`Error::RecoveryStopped`].
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
                result: Err(error),
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

impl Drop for RecoveryManager {
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

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::ClientConfig;

    use super::*;
    use crate::state::changelog::{changelog_name, encode_update, Stamp};
    use crate::state::StateManager;

    const WAIT: Duration = Duration::from_secs(30);

    /// A manager whose thread runs `body` with the report sender and the
    /// job queue, instead of preparing partitions.
    fn manager_running(
        body: impl FnOnce(Sender<Recovered>, Receiver<Vec<Assigned>>) + Send + 'static,
    ) -> RecoveryManager {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (report, done) = crossbeam_channel::unbounded();
        RecoveryManager {
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
        let mut manager = manager_running(|_report, _queue| panic!("boom"));
        manager.running.insert((Arc::from("in"), 3), Arc::default());
        let deadline = Instant::now() + WAIT;
        let ended = loop {
            let ended = manager.collect();
            if !ended.is_empty() || Instant::now() > deadline {
                break ended;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let [Recovered {
            result: Err(error), ..
        }] = &ended[..]
        else {
            panic!("one failed recovery expected");
        };
        assert_eq!(
            error.to_string(),
            "recovery of topic in partition 3 stopped: the recovery thread panicked: boom"
        );
        assert!(!manager.is_busy());
    }

    #[test]
    fn a_cancelled_recovery_that_never_reports_fails_the_release_naming_the_partition() {
        // The thread lives, idle, until the manager is dropped.
        let mut manager = manager_running(|_report, queue| queue.iter().for_each(drop));
        manager.revoked.insert((Arc::from("in"), 3));
        let soon = Instant::now() + Duration::from_millis(50);
        let error = manager.release("in", 3, soon).unwrap_err();
        assert!(matches!(
            error,
            Error::RecoveryStopped { ref topic, partition: 3, .. } if topic == "in"
        ));
        assert!(
            manager.release("in", 4, soon).is_ok(),
            "nothing to wait for"
        );
    }

    fn reader(servers: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", servers)
            .set("group.id", "g")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap()
    }

    /// Commits `offset` of `topic`/0 for group "g", as kstreams does.
    fn commit(servers: &str, topic: &str, offset: i64) {
        use rdkafka::consumer::{CommitMode, Consumer};
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(topic, 0, rdkafka::Offset::Offset(offset))
            .unwrap();
        list.find_partition(topic, 0)
            .unwrap()
            .set_metadata(super::super::plan::COMMIT_METADATA);
        reader(servers).commit(&list, CommitMode::Sync).unwrap();
    }

    /// Waits for the next report of `manager`.
    fn next_report(manager: &mut RecoveryManager) -> Recovered {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(recovered) = manager.collect().pop() {
                return recovered;
            }
            assert!(Instant::now() < deadline, "no report");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_partition_is_restored_up_to_the_committed_offset_and_a_ready_one_lets_go_when_revoked() {
        let cluster = MockCluster::<DefaultProducerContext>::new(1).unwrap();
        let servers = cluster.bootstrap_servers();
        let changelog = changelog_name("g", "in", "default");
        cluster.create_topic(&changelog, 1, 1).unwrap();
        cluster.create_topic("in", 1, 1).unwrap();
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .create()
            .unwrap();
        let mut value = Vec::new();
        for offset in 0..3_i64 {
            let stamp = Stamp {
                input_offset: offset,
                committed_offset: Some(offset),
            };
            encode_update(stamp, format!("{offset}").as_bytes(), &mut value);
            let record = BaseRecord::to(&changelog).key("k").payload(&value);
            producer.send(record).map_err(|(error, _)| error).unwrap();
        }
        producer.flush(WAIT).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let layout = StoreLayout::for_tests(dir.path());
        let mut manager = RecoveryManager::start(layout.clone(), reader(&servers), WAIT).unwrap();

        // Committed offset 2: the record stamped with input offset 2 belongs
        // to a checkpoint that never committed.
        commit(&servers, "in", 2);
        manager.submit(vec![(Arc::from("in"), 0)]);
        let Recovered {
            result: Ok(ready), ..
        } = next_report(&mut manager)
        else {
            panic!("the partition recovers");
        };
        assert_eq!((ready.seek, ready.committed), (None, Some(2)));
        let stored = ready.state.store.read(0, b"k", |v| v.map(<[u8]>::to_vec));
        assert_eq!(stored.unwrap(), Some(b"1".to_vec()));
        assert_eq!(ready.state.store.changelog_offset(0).unwrap(), Some(3));
        drop(ready);

        // Ready again, and revoked before the poll loop collects it: once
        // released, its stores open at once.
        manager.submit(vec![(Arc::from("in"), 0)]);
        let deadline = Instant::now() + WAIT;
        while manager.done.is_empty() {
            assert!(Instant::now() < deadline, "the partition never got ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        manager.cancel("in", 0);
        assert!(!manager.is_busy());
        manager.release("in", 0, Instant::now() + WAIT).unwrap();
        let mut stores = StateManager::new(layout);
        stores.open("in", 0).unwrap();
        assert!(
            manager.collect().is_empty(),
            "a cancelled recovery is not handed back"
        );
    }
}
