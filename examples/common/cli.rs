//! The command line shared by the `count_per_key` and `window_totals`
//! examples: broker, topics, group, state directory, checkpoints, a message
//! count, the session timeout and the processing guarantee, and the
//! application they describe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kstreams::{Application, ApplicationBuilder, OffsetReset, ProcessingGuarantee};

/// The flags both examples take.
pub struct Flags {
    pub broker: Option<String>,
    pub input: String,
    pub output: String,
    pub group: String,
    pub state_dir: String,
    pub commit_interval_ms: u64,
    pub commit_every: u64,
    pub count: Option<u64>,
    pub session_timeout_ms: Option<u64>,
    /// `--exactly-once` (a flag without a value).
    pub exactly_once: bool,
}

impl Flags {
    /// Flags with these topic and group defaults.
    pub fn defaults(input: &str, output: &str, group: &str) -> Self {
        Flags {
            broker: None,
            input: input.into(),
            output: output.into(),
            group: group.into(),
            state_dir: "state".into(),
            commit_interval_ms: 5_000,
            commit_every: 0,
            count: None,
            session_timeout_ms: None,
            exactly_once: false,
        }
    }

    /// Reads the command line: the shared flags, and through `more` (which
    /// returns whether it knew the flag) an example's own.
    pub fn parse(
        mut self,
        mut more: impl FnMut(&str, &str) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Self> {
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "--exactly-once" {
                self.exactly_once = true;
                continue;
            }
            let Some(value) = args.next() else {
                anyhow::bail!("{flag} needs a value");
            };
            match flag.as_str() {
                "--broker" => self.broker = Some(value),
                "--input" => self.input = value,
                "--output" => self.output = value,
                "--group" => self.group = value,
                "--state-dir" => self.state_dir = value,
                "--commit-interval-ms" => self.commit_interval_ms = value.parse()?,
                "--commit-every" => self.commit_every = value.parse()?,
                "--count" => self.count = Some(value.parse()?),
                "--session-timeout-ms" => self.session_timeout_ms = Some(value.parse()?),
                other => {
                    if !more(other, &value)? {
                        anyhow::bail!("unknown flag {other}");
                    }
                }
            }
        }
        Ok(self)
    }

    /// The application: a new group starts at the earliest offset; on the
    /// embedded broker without `--broker`.
    pub fn application(&self) -> kstreams::Result<Application> {
        let mut builder: ApplicationBuilder = Application::builder()
            .consumer_group(&self.group)
            .auto_offset_reset(OffsetReset::Earliest)
            .commit_interval(Duration::from_millis(self.commit_interval_ms))
            .commit_every(self.commit_every)
            .state_dir(&self.state_dir);
        if self.exactly_once {
            builder = builder.processing_guarantee(ProcessingGuarantee::ExactlyOnce);
        }
        if let Some(timeout) = self.session_timeout_ms {
            // How long the group waits for a member that died without
            // leaving; a rebalance waits for its members up to
            // `max.poll.interval.ms`, so that one is kept short too (tansu
            // waits it out for a member killed during a rebalance).
            builder = builder
                .consumer_config("session.timeout.ms", timeout.to_string())
                .consumer_config("heartbeat.interval.ms", (timeout / 6).max(100).to_string())
                .consumer_config("max.poll.interval.ms", (timeout * 3).to_string());
        }
        builder = match &self.broker {
            Some(broker) => builder.broker_address(broker),
            None => builder.use_embedded_broker(),
        };
        builder.build()
    }
}

/// Messages seen, and when the first one came.
#[derive(Default)]
pub struct Progress {
    first: OnceLock<Instant>,
    seen: AtomicU64,
}

impl Progress {
    /// Counts a message; returns how many were seen, this one included.
    pub fn tick(&self) -> u64 {
        self.first.get_or_init(Instant::now);
        self.seen.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Prints `<name>: N messages in S s = R msg/s`.
    pub fn report(&self, name: &str) {
        if let Some(first) = self.first.get() {
            let seconds = first.elapsed().as_secs_f64();
            let seen = self.seen.load(Ordering::Relaxed);
            let rate = seen as f64 / seconds;
            println!("{name}: {seen} messages in {seconds:.2} s = {rate:.0} msg/s");
        }
    }
}
