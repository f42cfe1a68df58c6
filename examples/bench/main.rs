//! The benchmark suite: kstreams against its baselines, measured in one run.
//! See BENCHMARKS.md for the workloads, the targets and the last figures.
//!
//! ```text
//! cargo run --release --example bench -- [--broker 127.0.0.1:9092] \
//!     [--messages 300000] [--driver-messages 1000000] [--keys 10000] \
//!     [--driver-many-keys 1000000] \
//!     [--runs 3] [--quix PYTHON] \
//!     [--recovery-keys 500000] [--broker-recovery-keys 2500] \
//!     [--memory-keys 10000000] [--assign-partitions 64] [--assign-rtt-ms 50] \
//!     [--workloads driver,e2e,recovery,memory,assign,guarantee]
//! ```
//!
//! Without `--broker` only the test-driver, memory and embedded-broker
//! recovery workloads run (no network). With it, the input is produced once into a fresh topic (two
//! partitions) and every end-to-end workload reads it with a fresh consumer
//! group: the plain rdkafka ceiling, kstreams stateless, kstreams stateful
//! (the `count_per_key` example as a child process) and, with `--quix` (a
//! Python that has quixstreams), Quix Streams on the same input. The
//! ceilings are in `ceiling.rs`; `quix.rs` checks that the Quix Streams
//! workloads can run (else they are skipped, saying why). The stateful
//! test-driver workload also runs at `--driver-many-keys` keys, beside its
//! closures alone at as many. The recovery workload seeds a changelog and
//! times its rebuild (see `recovery.rs`; its plain consume baseline is in
//! `plain_consume.rs`): `--recovery-keys` on the embedded broker, and
//! `--broker-recovery-keys` on the broker (tansu serves records with
//! headers slowly: see BENCHMARKS.md). The assignment workload (see
//! `assign.rs`) times a stateful app's start on a mock cluster with a
//! delay on every request, against a plain consumer. The guarantee
//! workload (see `guarantee.rs`) runs `count_per_key`'s pipeline on the
//! embedded broker at least once and exactly once, alternating.

mod assign;
mod ceiling;
mod driver;
mod e2e;
mod guarantee;
mod measure;
mod memory;
mod plain_consume;
mod quix;
mod recovery;
mod windows;

#[path = "../common/count.rs"]
mod count;
#[path = "../common/window.rs"]
mod window;

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use driver::{
    closures_group_by, closures_stateful, closures_stateful_many_keys, closures_stateless,
    closures_stateless_typed, driver_group_by, driver_stateful, driver_stateful_many_keys,
    driver_stateless, driver_stateless_typed,
};
use e2e::{
    e2e_group_by, e2e_stateful, e2e_stateless, e2e_window, produce_input, quix, quix_window,
};
use measure::Measure;

#[derive(Clone)]
pub struct Flags {
    pub broker: Option<String>,
    pub messages: u64,
    /// Messages of each test-driver run (no broker: many more are cheap).
    pub driver_messages: u64,
    pub keys: u64,
    /// Keys of the second stateful test-driver workload, whose state
    /// outgrows the in-memory cache (0: not run).
    pub driver_many_keys: u64,
    pub runs: usize,
    /// A Python with quixstreams; `None` when not given, or when
    /// [`quix::python`] found it or the Quix scripts missing (the Quix
    /// workloads are then skipped).
    pub quix: Option<String>,
    pub recovery_keys: u64,
    pub broker_recovery_keys: u64,
    pub memory_keys: u64,
    pub assign_partitions: i32,
    pub assign_rtt_ms: u64,
    /// Which Quix Streams twin the end-to-end workload runs: `count`
    /// (`quix_count_per_key.py`), `group_by` (the same with `--group-by
    /// user`) or `window` (`quix_window.py`).
    pub quix_twin: String,
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
usage: bench [--broker HOST:PORT] [--messages N] [--driver-messages N] [--keys N]
             [--driver-many-keys N]
             [--runs N] [--quix PYTHON] [--quix-twin count|window|group_by]
             [--recovery-keys N] [--broker-recovery-keys N]
             [--memory-keys N] [--assign-partitions N] [--assign-rtt-ms N]
             [--closing-keys N,N,..]
             [--workloads driver,windows,e2e,recovery,memory,assign,guarantee]
Without --broker only the workloads that need no network run. --driver-many-keys
(default 1000000, 0 to skip) is the key count of the second stateful driver workload.
--quix needs a Python with quixstreams and the scripts in ../shared/bench:
    python3 -m venv .venv-quix && .venv-quix/bin/pip install quixstreams
    bench ... --quix .venv-quix/bin/python
See BENCHMARKS.md.";

fn flags() -> anyhow::Result<Flags> {
    let mut flags = Flags {
        broker: None,
        messages: 300_000,
        driver_messages: 1_000_000,
        keys: 10_000,
        driver_many_keys: 1_000_000,
        runs: 3,
        quix: None,
        recovery_keys: 500_000,
        broker_recovery_keys: 2_500,
        memory_keys: 10_000_000,
        assign_partitions: 64,
        assign_rtt_ms: 50,
        quix_twin: "count".into(),
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
            _ => {}
        }
        let Some(value) = args.next() else {
            anyhow::bail!("{flag} needs a value\n{USAGE}");
        };
        match flag.as_str() {
            "--broker" => flags.broker = Some(value),
            "--messages" => flags.messages = value.parse()?,
            "--driver-messages" => flags.driver_messages = value.parse()?,
            "--keys" => flags.keys = value.parse()?,
            "--driver-many-keys" => flags.driver_many_keys = value.parse()?,
            "--runs" => flags.runs = value.parse()?,
            "--quix" => flags.quix = Some(value),
            "--quix-twin" => flags.quix_twin = value,
            "--recovery-keys" => flags.recovery_keys = value.parse()?,
            "--broker-recovery-keys" => flags.broker_recovery_keys = value.parse()?,
            "--memory-keys" => flags.memory_keys = value.parse()?,
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
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, keys] = args.as_slice() {
        if flag == memory::CHILD_FLAG {
            return memory::child(keys.parse()?);
        }
    }
    let mut flags = flags()?;
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
    if let Some(broker) = &flags.broker {
        if flags.runs("e2e") {
            let input = produce_input(broker, &flags)?;
            for run in 1..=flags.runs {
                eprintln!("== end-to-end run {run} of {}", flags.runs);
                let copy_all = ceiling::copy_all(broker, &input, &flags)?;
                results.add("e2e rdkafka ceiling", copy_all);
                let filter = ceiling::filter(broker, &input, &flags)?;
                results.add("e2e rdkafka ceiling stateless", filter);
                results.add(
                    "e2e kstreams stateless",
                    e2e_stateless(broker, &input, &flags)?,
                );
                results.add(
                    "e2e kstreams stateful",
                    e2e_stateful(broker, &input, &flags)?,
                );
                results.add("e2e kstreams window", e2e_window(broker, &input, &flags)?);
                let grouped = e2e_group_by(broker, &input, &flags)?;
                results.add("e2e kstreams group_by", grouped);
                // One Quix Streams twin a run: on tansu 0.6 a Quix Streams
                // run that follows another on one broker stalls.
                match (&flags.quix, flags.quix_twin.as_str()) {
                    (Some(python), "window") => {
                        let measure = quix_window(python, broker, &input, &flags)?;
                        results.add("e2e quix window", measure);
                    }
                    (Some(python), "group_by") => {
                        let script = "quix_count_per_key.py";
                        let args = ["--group-by", "user"];
                        let measure = quix(python, script, broker, &input, &args, &flags)?;
                        results.add("e2e quix group_by", measure);
                    }
                    (Some(python), _) => {
                        let script = "quix_count_per_key.py";
                        let measure = quix(python, script, broker, &input, &[], &flags)?;
                        results.add("e2e quix stateful", measure);
                    }
                    (None, _) => {}
                }
            }
        }
    }
    if flags.runs("recovery") {
        for run in 1..=flags.runs {
            eprintln!("== recovery run {run} of {}", flags.runs);
            let measured = recovery::run(None, flags.recovery_keys, None, run)?;
            results.add("recovery embedded: plain consume", measured.plain);
            results.add("recovery embedded: kstreams", measured.kstreams);
            if let Some(broker) = &flags.broker {
                let keys = flags.broker_recovery_keys;
                let measured = recovery::run(Some(broker), keys, flags.quix.as_deref(), run)?;
                results.add("recovery broker: plain consume", measured.plain);
                results.add("recovery broker: kstreams", measured.kstreams);
                if let Some(quix) = measured.quix {
                    results.add("recovery broker: quix", quix);
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
    report(&results.runs, &flags);
    if flags.runs("memory") {
        eprintln!("== memory: {} keys", flags.memory_keys);
        let memory = memory::run(flags.memory_keys)?;
        println!(
            "memory: {} keys of state in {:.1} s, peak RSS {:.0} MB (target <= 200 MB)",
            memory.keys, memory.seconds, memory.peak_rss_mb
        );
    }
    Ok(())
}

/// Every measured run, per workload.
#[derive(Default)]
struct Results {
    runs: BTreeMap<String, Vec<Measure>>,
}

impl Results {
    fn add(&mut self, workload: &str, measure: Measure) {
        summary(workload, &measure);
        let runs = self.runs.entry(workload.to_string()).or_default();
        runs.push(measure);
    }
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

fn summary(name: &str, measure: &Measure) {
    let cpu = measure
        .cpu_per_message_us()
        .map_or(String::new(), |us| format!(", {us:.2} µs CPU/msg"));
    eprintln!(
        "{name}: {} messages in {:.2} s = {:.0} msg/s{cpu}",
        measure.messages,
        measure.seconds,
        measure.rate()
    );
}

/// Medians of the runs, and the ratios the targets are stated in.
fn report(results: &BTreeMap<String, Vec<Measure>>, flags: &Flags) {
    let median = |name: &str| -> Option<Measure> {
        let mut runs = results.get(name)?.clone();
        runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        Some(runs[runs.len() / 2])
    };
    println!("| workload | msg/s (median) | CPU µs/msg |");
    println!("|---|---:|---:|");
    for name in results.keys() {
        if let Some(measure) = median(name) {
            let cpu = measure
                .cpu_per_message_us()
                .map_or("-".to_string(), |us| format!("{us:.2}"));
            println!("| {name} | {:.0} | {cpu} |", measure.rate());
        }
    }
    let ratio = |a: &str, b: &str, of: fn(&Measure) -> Option<f64>| {
        let (a, b) = (median(a)?, median(b)?);
        Some(of(&a)? / of(&b)?)
    };
    let rate = |m: &Measure| Some(m.rate());
    let cpu = |m: &Measure| m.cpu_per_message_us();
    let many_keys_driver = many_keys_names(flags.driver_many_keys).0;
    let many_keys = many_keys_driver.trim_start_matches("driver ");
    let kinds = [
        "stateless",
        "stateless typed",
        "stateful",
        many_keys,
        "window tumbling",
        "window hopping",
        "window session",
        "window count",
        "group_by",
    ];
    for kind in kinds {
        let (driver, alone) = (format!("driver {kind}"), format!("closures alone {kind}"));
        if let Some(r) = ratio(&driver, &alone, rate) {
            println!("driver {kind} vs its closures alone: {r:.2}x");
        }
    }
    if let Some(measure) = median(&many_keys_driver) {
        println!(
            "{many_keys_driver}: {:.0} msg/s (target at 1M keys: >= 700 000 msg/s)",
            measure.rate()
        );
    }
    if let Some(r) = ratio("e2e kstreams stateful", "e2e rdkafka ceiling", rate) {
        println!(
            "stateful throughput vs ceiling (every message produced by both): {r:.2}x \
             (target >= 0.8x)"
        );
    }
    let stateless_ceiling = "e2e rdkafka ceiling stateless";
    if let Some(r) = ratio("e2e kstreams stateless", stateless_ceiling, rate) {
        println!(
            "stateless throughput vs its ceiling (both decode, filter, produce half): {r:.2}x"
        );
    }
    if let Some(r) = ratio("e2e kstreams stateless", stateless_ceiling, cpu) {
        println!("stateless CPU per message vs its ceiling: {r:.2}x");
    }
    if let Some(r) = ratio("e2e quix window", "e2e kstreams window", cpu) {
        println!("window: Quix CPU per message / kstreams CPU per message: {r:.1} (target >= 25)");
    }
    if let Some(r) = ratio("e2e quix group_by", "e2e kstreams group_by", cpu) {
        println!(
            "group_by: Quix CPU per message / kstreams CPU per message: {r:.1} (target >= 25)"
        );
    }
    if let Some(r) = ratio("e2e quix stateful", "e2e kstreams stateful", cpu) {
        println!("Quix CPU per message / kstreams CPU per message: {r:.1} (target >= 25)");
    }
    if let Some(r) = ratio("e2e kstreams stateful", "e2e quix stateful", rate) {
        println!("stateful throughput vs Quix Streams: {r:.1}x");
    }
    let (exactly, least) = (
        "embedded count: exactly once",
        "embedded count: at least once",
    );
    if let Some(r) = ratio(exactly, least, rate) {
        println!("exactly once throughput vs at least once: {r:.2}x (target >= 0.9x)");
    }
    if let Some(r) = ratio(exactly, least, cpu) {
        println!("exactly once CPU per message vs at least once: {r:.2}x");
    }
    for broker in ["embedded", "broker"] {
        let (kstreams, plain) = (
            format!("recovery {broker}: kstreams"),
            format!("recovery {broker}: plain consume"),
        );
        if let Some(r) = ratio(&kstreams, &plain, rate) {
            println!("recovery rate vs plain consume ({broker}): {r:.2}x (target >= 0.8x)");
        }
    }
    let seconds = |m: &Measure| Some(m.seconds);
    if let Some(r) = ratio(
        "recovery broker: quix",
        "recovery broker: kstreams",
        seconds,
    ) {
        println!("Quix recovery time / kstreams recovery time: {r:.1} (target >= 10)");
    }
    if let (Some(kstreams), Some(plain)) =
        (median("assign: kstreams"), median("assign: plain consumer"))
    {
        let more = kstreams.seconds - plain.seconds;
        let round_trips = match flags.assign_rtt_ms {
            0 => String::new(),
            rtt => format!(
                " (as long as {:.1} round trips)",
                more * 1000.0 / rtt as f64
            ),
        };
        println!(
            "assignment of {} partitions with 2 stores at {} ms a request: kstreams {:.2} s, \
             plain consumer {:.2} s: {more:.2} s more{round_trips}",
            flags.assign_partitions, flags.assign_rtt_ms, kstreams.seconds, plain.seconds,
        );
    }
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
