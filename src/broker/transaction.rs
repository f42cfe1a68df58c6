//! Exactly once: each checkpoint is one Kafka transaction of the output
//! producer, holding its outputs, repartition and changelog records and
//! the consumer offsets.
//!
//! librdkafka's rules, followed here: a step that timed out is called
//! again until it succeeds or says the transaction must be aborted (never
//! an abort while a commit may still be in flight); an abortable error
//! aborts; a fatal one (fencing above all) stops the producer for good.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientConfig, TopicPartitionList};

use super::delivery::DeliveryContext;
use crate::config::Config;
use crate::error::{Error, Result};

/// How long one call of a transaction step may take before it is called
/// again (each call resumes the step where the last one left it).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// How a transaction ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Committed: its records are visible and its offsets committed.
    Committed,
    /// The broker or librdkafka said it must be aborted (a refused record,
    /// a transaction the broker timed out, a lost group generation).
    MustAbort(KafkaError),
}

/// The transactional side of the output producer.
pub(crate) struct Transactions {
    id: String,
    /// Whether a transaction was begun and not yet ended.
    open: AtomicBool,
    /// Set when a commit failed without an answer that ends it (fatal, or
    /// still timing out): librdkafka then holds the commit as in progress
    /// and refuses an abort ("Conflicting commit_transaction API call is
    /// already in progress"), so none is tried. The broker aborts the
    /// transaction after `transaction.timeout.ms`, or the next start of
    /// this instance does.
    unended: AtomicBool,
    /// How long a step may keep timing out (the broker is away).
    patience: Duration,
}

impl Transactions {
    /// The settings of a transactional producer for `config`, on top of
    /// `client`; returns the producer's `transactional.id`.
    pub(crate) fn configure(client: &mut ClientConfig, config: &Config) -> Self {
        let id = match client.get("transactional.id") {
            Some(id) => id.to_string(),
            None => default_transactional_id(&config.consumer_group, &config.state_dir),
        };
        client
            .set("transactional.id", &id)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        // A transaction the broker times out fences its producer for good:
        // it must outlast a broker outage the application rides out, and
        // a checkpoint interval (unless the user chose).
        if client.get("transaction.timeout.ms").is_none() {
            let outlast = config.broker_availability_timeout + config.commit_interval;
            let millis = outlast.as_millis().clamp(60_000, 900_000);
            client.set("transaction.timeout.ms", millis.to_string());
        }
        Transactions {
            id,
            open: AtomicBool::new(false),
            unended: AtomicBool::new(false),
            patience: config.broker_availability_timeout,
        }
    }

    /// Registers the producer with the transaction coordinator: fences an
    /// older producer of the same id and aborts what it left open.
    pub(crate) fn init(&self, producer: &BaseProducer<DeliveryContext>) -> Result<()> {
        match self.retry("init", || producer.init_transactions(STEP_TIMEOUT))? {
            None => Ok(()),
            Some(source) => Err(self.failed("init", source)),
        }
    }

    /// Begins a transaction unless one is open: before the first record or
    /// offset of a checkpoint.
    pub(crate) fn begin(&self, producer: &BaseProducer<DeliveryContext>) -> Result<()> {
        if self.open.load(Ordering::Acquire) {
            return Ok(());
        }
        producer
            .begin_transaction()
            .map_err(|source| self.failed("begin", source))?;
        self.open.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether a transaction is open.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Adds `offsets` of the group `group` to the open transaction (one is
    /// begun if none is), then commits it.
    ///
    /// # Errors
    ///
    /// [`Error::ProducerFenced`], [`Error::Transaction`] for a fatal error,
    /// [`Error::BrokerUnavailable`] when a step keeps timing out for longer
    /// than the broker availability timeout (the transaction stays open:
    /// the broker aborts it after `transaction.timeout.ms`, or the next
    /// start of this instance does).
    pub(crate) fn commit(
        &self,
        producer: &BaseProducer<DeliveryContext>,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<Ended> {
        self.begin(producer)?;
        if offsets.count() > 0 {
            let sent = self.retry("send offsets to", || {
                producer.send_offsets_to_transaction(offsets, group, STEP_TIMEOUT)
            })?;
            if let Some(source) = sent {
                return Ok(Ended::MustAbort(source));
            }
        }
        let committed = self
            .retry("commit", || producer.commit_transaction(STEP_TIMEOUT))
            .inspect_err(|_| self.unended.store(true, Ordering::Release))?;
        match committed {
            None => {
                self.open.store(false, Ordering::Release);
                Ok(Ended::Committed)
            }
            Some(source) => Ok(Ended::MustAbort(source)),
        }
    }

    /// Aborts the open transaction, if any: the broker drops its records
    /// for read-committed consumers and its offsets.
    pub(crate) fn abort(&self, producer: &BaseProducer<DeliveryContext>) -> Result<()> {
        if !self.is_open() {
            return Ok(());
        }
        if self.unended.load(Ordering::Acquire) {
            log::warn!(
                "the transaction of {} is left to the broker: its commit did not end",
                self.id
            );
            return Ok(());
        }
        match self.retry("abort", || producer.abort_transaction(STEP_TIMEOUT))? {
            None => {
                self.open.store(false, Ordering::Release);
                Ok(())
            }
            Some(source) => Err(self.failed("abort", source)),
        }
    }

    /// Calls `step` until it succeeds (`None`), says the transaction must
    /// be aborted (`Some` of why), or fails for good; a step that timed out
    /// is called again.
    fn retry(
        &self,
        operation: &'static str,
        mut step: impl FnMut() -> rdkafka::error::KafkaResult<()>,
    ) -> Result<Option<KafkaError>> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            let source = match step() {
                Ok(()) => return Ok(None),
                Err(source) => source,
            };
            match classify(&source) {
                Step::Retry if started.elapsed() < self.patience => {
                    log::warn!(
                        "{operation} the transaction of {} did not finish yet ({source}); \
                         calling it again in {backoff:?}",
                        self.id
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Step::Retry => {
                    return Err(Error::BrokerUnavailable {
                        unavailable_for: started.elapsed(),
                    })
                }
                Step::Abort => return Ok(Some(source)),
                Step::Fenced => {
                    return Err(Error::ProducerFenced {
                        transactional_id: self.id.clone(),
                    })
                }
                Step::Fatal => return Err(self.failed(operation, source)),
            }
        }
    }

    fn failed(&self, operation: &'static str, source: KafkaError) -> Error {
        if let Step::Fenced = classify(&source) {
            return Error::ProducerFenced {
                transactional_id: self.id.clone(),
            };
        }
        Error::Transaction {
            operation,
            transactional_id: self.id.clone(),
            source: Box::new(source),
        }
    }
}

/// What to do after a transaction step failed with an error.
enum Step {
    Retry,
    Abort,
    Fenced,
    Fatal,
}

fn classify(error: &KafkaError) -> Step {
    use RDKafkaErrorCode::*;
    let fenced = |code| matches!(code, Fenced | ProducerFenced | InvalidProducerEpoch);
    // A broker without a transaction API (tansu 0.6 has no EndTxn):
    // librdkafka calls that retriable, but no retry helps.
    let unsupported = |code| matches!(code, UnsupportedFeature | UnsupportedVersion);
    match error {
        KafkaError::Transaction(error) if fenced(error.code()) => Step::Fenced,
        KafkaError::Transaction(error) if unsupported(error.code()) => Step::Fatal,
        KafkaError::Transaction(error) if error.is_fatal() => Step::Fatal,
        KafkaError::Transaction(error) if error.txn_requires_abort() => Step::Abort,
        KafkaError::Transaction(error) if error.is_retriable() => Step::Retry,
        // rust-rdkafka flushes before it commits: its timeout is a retry.
        KafkaError::Flush(_) => Step::Retry,
        _ => Step::Fatal,
    }
}

/// `kstreams-<group>-<instance>`: the instance is a hash of the host name
/// and the state directory's absolute path, stable across restarts and
/// distinct between instances (each has a state directory of its own).
fn default_transactional_id(group: &str, state_dir: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    // FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
    let mut hasher = Fnv1a::default();
    host.trim().hash(&mut hasher);
    dir.hash(&mut hasher);
    format!("kstreams-{group}-{:016x}", hasher.finish())
}

/// The 64-bit FNV-1a hash.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_id_is_stable_and_differs_between_state_dirs() {
        let a = default_transactional_id("counts", "/tmp/a".as_ref());
        assert_eq!(a, default_transactional_id("counts", "/tmp/a".as_ref()));
        assert!(a.starts_with("kstreams-counts-"), "{a}");
        assert_ne!(a, default_transactional_id("counts", "/tmp/b".as_ref()));
        assert_ne!(a, default_transactional_id("totals", "/tmp/a".as_ref()));
    }
}
