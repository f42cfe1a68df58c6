//! The benchmark suite: kstreams against its baselines, measured in one run.
//! See BENCHMARKS.md for the workloads, the targets and the last figures.
//!
//! ```text
//! cargo run --release --example bench -- [--dev-broker] \
//!     [--tansu 127.0.0.1:9092] [--broker HOST:PORT [--broker-name NAME]] \
//!     [--messages 300000] [--driver-messages 1000000] [--keys 10000] \
//!     [--driver-many-keys 1000000] \
//!     [--runs 3] [--quix PYTHON] \
//!     [--recovery-keys 500000] [--dev-broker-recovery-keys 1000000] \
//!     [--broker-recovery-keys 2500] \
//!     [--memory-keys 10000000] [--memory-partitions 8] \
//!     [--assign-partitions 64] [--assign-rtt-ms 50] \
//!     [--workloads driver,e2e,recovery,memory,assign,guarantee]
//! ```
//!
//! It prints the commit and date first (`provenance.rs`), and ends with
//! Markdown tables headed with both (`report.rs`). Without a broker only
//! the test-driver, memory and embedded-broker recovery workloads run (no
//! network). The broker workloads (end to end, recovery) run on each
//! broker given (`brokers.rs`, `broker_runs.rs`), every figure named after
//! it: `--dev-broker` has the bench start the dev broker
//! (`examples/dev_broker`, librdkafka's mock cluster on a TCP port, built
//! beside the bench), and `--tansu HOST:PORT` a tansu there, a fresh one
//! for each workload (tansu 0.6 stalls after a Quix Streams run);
//! `--broker HOST:PORT` is a broker of yours, the same for all
//! (`--broker-name` names it in the figures). Any of them may be given
//! together. The input is produced into a fresh topic (two partitions;
//! once for all on `--broker`) and every end-to-end workload reads it
//! with a fresh consumer group: the plain rdkafka ceilings, kstreams
//! stateless, kstreams stateful (the `count_per_key` example as a child
//! process) and, with `--quix` (a Python that has quixstreams), Quix
//! Streams on the same input, each comparison a pair measured side by
//! side in each run (`paired.rs`; `--runs`, default 5 end to end and 3
//! elsewhere). The
//! ceilings are in `ceiling.rs`; `quix.rs` checks that the Quix Streams
//! workloads can run (else they are skipped, saying why). The stateful
//! test-driver workload also runs at `--driver-many-keys` keys, beside its
//! closures alone at as many. The recovery workload seeds a changelog and
//! times its rebuild (see `recovery.rs`; its plain consume baseline is in
//! `plain_consume.rs`): `--recovery-keys` on the embedded broker,
//! `--dev-broker-recovery-keys` on the dev broker (with Quix Streams),
//! and `--broker-recovery-keys` on tansu and `--broker` (by default few:
//! tansu serves records with headers slowly, see BENCHMARKS.md). The
//! assignment workload (see `assign.rs`) times a stateful app's start on
//! a mock cluster with a delay on every request, against a plain
//! consumer. The guarantee
//! workload (see `guarantee.rs`) runs `count_per_key`'s pipeline on the
//! embedded broker at least once and exactly once, alternating.

mod assign;
mod broker_runs;
mod brokers;
mod ceiling;
mod dev_broker;
mod driver;
mod e2e;
mod guarantee;
mod measure;
mod memory;
mod paired;
mod plain_consume;
mod provenance;
mod quix;
mod recovery;
mod report;
mod tansu;
mod windows;

#[path = "../common/count.rs"]
mod count;
#[path = "../common/window.rs"]
mod window;

use std::time::Instant;

use serde_json::json;

use driver::{
    closures_group_by, closures_stateful, closures_stateful_many_keys, closures_stateless,
    closures_stateless_typed, driver_group_by, driver_stateful, driver_stateful_many_keys,
    driver_stateless, driver_stateless_typed,
};
use report::Results;

#[derive(Clone)]
pub struct Flags {
    /// Whether the broker workloads also run on a dev broker that the
    /// bench starts (`--dev-broker`).
    pub dev_broker: bool,
    /// Where the bench starts a fresh tansu for each workload (`--tansu`).
    pub tansu: Option<String>,
    pub broker: Option<String>,
    /// What the figures measured on `--broker` are named after.
    pub broker_name: String,
    pub messages: u64,
    /// Messages of each test-driver run (no broker: many more are cheap).
    pub driver_messages: u64,
    pub keys: u64,
    /// Keys of the second stateful test-driver workload, whose state
    /// outgrows the in-memory cache (0: not run).
    pub driver_many_keys: u64,
    pub runs: usize,
    /// End-to-end runs, each a pair of kstreams and each baseline: `--runs`
    /// if given, else 5 (the Quix Streams comparison needs at least 5).
    pub e2e_runs: usize,
    /// A Python with quixstreams; `None` when not given, or when
    /// [`quix::python`] found it or the Quix scripts missing (the Quix
    /// workloads are then skipped).
    pub quix: Option<String>,
    pub recovery_keys: u64,
    pub dev_broker_recovery_keys: u64,
    pub broker_recovery_keys: u64,
    pub memory_keys: u64,
    /// Partitions of the memory workload's input topic.
    pub memory_partitions: i32,
    pub assign_partitions: i32,
    pub assign_rtt_ms: u64,
    /// Which Quix Streams twin the end-to-end workload runs: `count`
    /// (`quix_count_per_key.py`), `group_by` (the same with `--group-by
    /// user`) or `window` (`quix_window.py`).
    pub quix_twin: String,
    /// End to end, only the Quix Streams twin and its kstreams partner run
    /// (`--quix-only`; `benches/run` compares the other twins so).
    pub quix_only: bool,
    /// The key counts of the closing-cost workload.
    pub closing_keys: Vec<u64>,
    pub workloads: Vec<String>,
}

impl Flags {
    fn runs(&self, workload: &str) -> bool {
        self.workloads.iter().any(|name| name == workload)
    }
}

/// What `--help` prints.
const USAGE: &str = "\
usage: bench [--dev-broker] [--tansu HOST:PORT] [--broker HOST:PORT [--broker-name NAME]]
             [--messages N] [--driver-messages N] [--keys N]
             [--driver-many-keys N]
             [--runs N] [--quix PYTHON] [--quix-twin count|window|group_by] [--quix-only]
             [--recovery-keys N] [--dev-broker-recovery-keys N] [--broker-recovery-keys N]
             [--memory-keys N] [--memory-partitions N]
             [--assign-partitions N] [--assign-rtt-ms N]
             [--closing-keys N,N,..]
             [--workloads driver,windows,e2e,recovery,memory,assign,guarantee]
Without --dev-broker, --tansu or --broker only the workloads that need no network
run; the broker workloads run on each broker given. --dev-broker and --tansu start
a fresh broker (dev_broker beside the bench, tansu from PATH) for each workload.
--runs: default 5 end to end (pairs of kstreams and each baseline), 3 elsewhere.
--quix-only: end to end, only the Quix Streams twin and its kstreams partner.
--driver-many-keys
(default 1000000, 0 to skip) is the key count of the second stateful driver workload.
--quix needs a Python with quixstreams and the scripts in ../shared/bench:
    python3 -m venv .venv-quix && .venv-quix/bin/pip install quixstreams
    bench ... --quix .venv-quix/bin/python
See BENCHMARKS.md.";

fn flags() -> anyhow::Result<Flags> {
    let mut flags = Flags {
        dev_broker: false,
        tansu: None,
        broker: None,
        broker_name: "broker".into(),
        messages: 300_000,
        driver_messages: 1_000_000,
        keys: 10_000,
        driver_many_keys: 1_000_000,
        runs: 3,
        e2e_runs: 5,
        quix: None,
        recovery_keys: 500_000,
        dev_broker_recovery_keys: 1_000_000,
        broker_recovery_keys: 2_500,
        memory_keys: 10_000_000,
        memory_partitions: 8,
        assign_partitions: 64,
        assign_rtt_ms: 50,
        quix_twin: "count".into(),
        quix_only: false,
        closing_keys: vec![10_000, 100_000, 1_000_000],
        workloads: [
            "driver",
            "windows",
            "e2e",
            "recovery",
            "memory",
            "assign",
            "guarantee",
        ]
        .map(String::from)
        .to_vec(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            // `cargo bench` passes this to every bench target.
            "--bench" => continue,
            "--dev-broker" => {
                flags.dev_broker = true;
                continue;
            }
            "--quix-only" => {
                flags.quix_only = true;
                continue;
            }
            _ => {}
        }
        let Some(value) = args.next() else {
            anyhow::bail!("{flag} needs a value\n{USAGE}");
        };
        match flag.as_str() {
            "--tansu" => flags.tansu = Some(value),
            "--broker" => flags.broker = Some(value),
            "--broker-name" => flags.broker_name = value,
            "--messages" => flags.messages = value.parse()?,
            "--driver-messages" => flags.driver_messages = value.parse()?,
            "--keys" => flags.keys = value.parse()?,
            "--driver-many-keys" => flags.driver_many_keys = value.parse()?,
            "--runs" => {
                flags.runs = value.parse()?;
                flags.e2e_runs = flags.runs;
            }
            "--quix" => flags.quix = Some(value),
            "--quix-twin" => flags.quix_twin = value,
            "--recovery-keys" => flags.recovery_keys = value.parse()?,
            "--dev-broker-recovery-keys" => flags.dev_broker_recovery_keys = value.parse()?,
            "--broker-recovery-keys" => flags.broker_recovery_keys = value.parse()?,
            "--memory-keys" => flags.memory_keys = value.parse()?,
            "--memory-partitions" => flags.memory_partitions = value.parse()?,
            "--assign-partitions" => flags.assign_partitions = value.parse()?,
            "--assign-rtt-ms" => flags.assign_rtt_ms = value.parse()?,
            "--closing-keys" => {
                let keys: Result<Vec<u64>, _> = value.split(',').map(str::parse).collect();
                flags.closing_keys = keys?;
            }
            "--workloads" => flags.workloads = value.split(',').map(String::from).collect(),
            other => anyhow::bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    anyhow::ensure!(
        flags.messages > 0 && flags.driver_messages > 0 && flags.runs > 0,
        "--messages, --driver-messages and --runs must be > 0"
    );
    Ok(flags)
}

/// The purchases of `../shared/bench/produce_purchases.py`: event time
/// moves on 10 ms a message.
pub fn purchase(i: u64, keys: u64) -> (String, Vec<u8>) {
    let key = format!("user-{}", i % keys);
    let ts = 1_700_000_000_000_u64 + 10 * i;
    let value = json!({"user": key, "amount": i % 100, "seq": i, "ts": ts});
    (key, value.to_string().into_bytes())
}

fn main() -> anyhow::Result<()> {
    let mut flags = flags()?;
    // Every figure below is of this commit, on this day.
    println!("kstreams bench: {}", provenance::label());
    flags.quix = quix::python(&flags);
    recovery::install_logger();
    let mut results = Results::default();
    for run in 1..=flags.runs {
        eprintln!("== run {run} of {}", flags.runs);
        if flags.runs("driver") {
            results.add("driver stateless", driver_stateless(&flags)?);
            let typed = driver_stateless_typed(&flags)?;
            results.add("driver stateless typed", typed);
            results.add("driver stateful", driver_stateful(&flags)?);
            results.add("closures alone stateless", closures_stateless(&flags)?);
            let typed = closures_stateless_typed(&flags)?;
            results.add("closures alone stateless typed", typed);
            results.add("closures alone stateful", closures_stateful(&flags)?);
            if flags.driver_many_keys > 0 {
                let (driver, alone) = many_keys_names(flags.driver_many_keys);
                results.add(&driver, driver_stateful_many_keys(&driver, &flags)?);
                results.add(&alone, closures_stateful_many_keys(&alone, &flags)?);
            }
            results.add("driver group_by", driver_group_by(&flags)?);
            results.add("closures alone group_by", closures_group_by(&flags)?);
        }
        if flags.runs("windows") {
            results.add("driver window tumbling", windows::driver_tumbling(&flags)?);
            results.add("driver window hopping", windows::driver_hopping(&flags)?);
            let tumbling = windows::closures_tumbling(&flags)?;
            results.add("closures alone window tumbling", tumbling);
            let hopping = windows::closures_hopping(&flags)?;
            results.add("closures alone window hopping", hopping);
            results.add("driver window session", windows::driver_session(&flags)?);
            let session = windows::closures_session(&flags)?;
            results.add("closures alone window session", session);
            results.add("driver window count", windows::driver_count(&flags)?);
            let count = windows::closures_count(&flags)?;
            results.add("closures alone window count", count);
            for keys in &flags.closing_keys {
                let cost = windows::closing_cost(*keys)?;
                println!(
                    "closing per partition, {} keys with an open window, 1 % active: {} windows \
                     closed in {:.3} s = {:.2} µs a window (message included); all {} at \
                     once: {:.3} s = {:.2} µs a window",
                    cost.keys,
                    cost.closed,
                    cost.seconds,
                    cost.seconds * 1e6 / cost.closed as f64,
                    cost.keys,
                    cost.all_at_once_seconds,
                    cost.all_at_once_seconds * 1e6 / cost.keys as f64
                );
            }
        }
    }
    if flags.runs("e2e") {
        for broker in brokers::networked(&flags) {
            // A broker that fails (tansu may stall) stops its own runs
            // only; what it measured before stays in the report.
            if let Err(error) = broker_runs::e2e(&broker, &flags, &mut results) {
                eprintln!("end to end, {}: stopped: {error:#}", broker.label());
            }
        }
    }
    if flags.runs("recovery") {
        let brokers = brokers::for_recovery(&flags);
        broker_runs::say_recovery_sizes(&brokers, &flags);
        for run in 1..=flags.runs {
            for broker in &brokers {
                if let Err(error) = broker_runs::recovery(run, broker, &flags, &mut results) {
                    let label = broker.label();
                    eprintln!("recovery, {label}: run {run} failed: {error:#}");
                }
            }
        }
    }
    if flags.runs("guarantee") {
        use kstreams::ProcessingGuarantee::{AtLeastOnce, ExactlyOnce};
        for run in 1..=flags.runs {
            eprintln!("== guarantee run {run} of {}", flags.runs);
            // Alternating which goes first: the machine drifts.
            let order = match run % 2 {
                1 => [AtLeastOnce, ExactlyOnce],
                _ => [ExactlyOnce, AtLeastOnce],
            };
            for guarantee in order {
                let name = match guarantee {
                    AtLeastOnce => "embedded count: at least once",
                    ExactlyOnce => "embedded count: exactly once",
                };
                results.add(name, guarantee::run(guarantee, &flags)?);
            }
        }
    }
    if flags.runs("assign") {
        let rtt = std::time::Duration::from_millis(flags.assign_rtt_ms);
        for run in 1..=flags.runs {
            eprintln!("== assignment run {run} of {}", flags.runs);
            let measured = assign::run(flags.assign_partitions, rtt)?;
            results.add("assign: plain consumer", measured.plain);
            results.add("assign: kstreams", measured.kstreams);
        }
    }
    report::report(&results, &flags);
    if flags.runs("memory") {
        let (keys, partitions) = (flags.memory_keys, flags.memory_partitions);
        eprintln!("== memory: count_per_key, {keys} keys, {partitions} partitions");
        let memory = memory::run(keys, partitions)?;
        println!(
            "memory: {} keys of state, {} partitions, count_per_key on a dev broker: \
             peak RSS {:.0} MB (target <= 300 MB); {} messages in {:.1} s = {:.0} msg/s, \
             {:.2} µs CPU/msg",
            memory.keys,
            memory.partitions,
            memory.peak_rss_mb,
            memory.messages,
            memory.seconds,
            memory.rate(),
            memory.cpu * 1e6 / memory.messages as f64
        );
    }
    Ok(())
}

/// The names of the stateful test-driver workload at `keys` keys and of
/// its closures alone, e.g. `driver stateful 1M keys`.
fn many_keys_names(keys: u64) -> (String, String) {
    let keys = match keys {
        k if k >= 1_000_000 && k.is_multiple_of(1_000_000) => format!("{}M", k / 1_000_000),
        k if k >= 1_000 && k.is_multiple_of(1_000) => format!("{}k", k / 1_000),
        k => k.to_string(),
    };
    (
        format!("driver stateful {keys} keys"),
        format!("closures alone stateful {keys} keys"),
    )
}

/// Progress on long runs: a line every million messages.
pub fn progress(name: &str, done: u64, started: Instant) {
    if done.is_multiple_of(1_000_000) {
        let rate = done as f64 / started.elapsed().as_secs_f64();
        eprintln!("  {name}: {done} messages, {rate:.0} msg/s");
    }
}

/// A fresh name for topics and groups of this run.
pub fn fresh(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("bench-{prefix}-{nanos}")
}
