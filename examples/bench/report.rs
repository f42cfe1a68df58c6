//! What the runs measured, and the final report: Markdown tables, each
//! headed with the commit and date (`provenance.rs`), ready to paste into
//! BENCHMARKS.md. Medians per workload, per broker; the ratios the
//! targets are stated in; and the run-by-run comparisons (`paired.rs`):
//! kstreams beside the rdkafka ceiling, beside Quix Streams, and
//! recovery beside a plain consume and Quix Streams.

use std::collections::BTreeMap;

use crate::measure::Measure;
use crate::paired::{self, Pair, Spread};
use crate::provenance::heading;
use crate::{many_keys_names, Flags};

/// The section of the in-process workloads (test driver, and the mock
/// clusters of the guarantee and assignment workloads).
const IN_PROCESS: &str = "";

/// A run-by-run comparison on one broker.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Comparison {
    /// `count_per_key` beside the ceiling that copies every message.
    StatefulCeiling,
    /// The stateless pipeline beside the ceiling that filters the same half.
    StatelessCeiling,
    /// kstreams' twin of a Quix Streams workload beside it (CPU a message).
    Quix,
    /// kstreams' recovery beside a plain consume of the same changelog.
    RecoveryPlain,
    /// kstreams' recovery beside Quix Streams' of the same state.
    RecoveryQuix,
}

/// Every measured run.
#[derive(Default)]
pub struct Results {
    /// By section (a broker's label, or [`IN_PROCESS`]) and workload.
    runs: BTreeMap<(String, String), Vec<Measure>>,
    /// By broker label and comparison.
    pairs: BTreeMap<(String, Comparison), Vec<Pair>>,
    /// By broker label: what the comparisons ran, e.g. the Quix twin's
    /// workloads or the recovery's size.
    about: BTreeMap<(String, Comparison), String>,
}

impl Results {
    /// An in-process workload's run.
    pub fn add(&mut self, workload: &str, measure: Measure) {
        self.add_on(IN_PROCESS, workload, measure);
    }

    /// A run of `workload` on the broker labelled `broker`.
    pub fn add_on(&mut self, broker: &str, workload: &str, measure: Measure) {
        let name = match broker {
            IN_PROCESS => workload.to_string(),
            broker => format!("{broker}: {workload}"),
        };
        summary(&name, &measure);
        let key = (broker.to_string(), workload.to_string());
        self.runs.entry(key).or_default().push(measure);
    }

    /// One run of a comparison on `broker`, described by `about`.
    pub fn pair(&mut self, broker: &str, comparison: Comparison, about: &str, pair: Pair) {
        let key = (broker.to_string(), comparison);
        self.about.insert(key.clone(), about.to_string());
        self.pairs.entry(key).or_default().push(pair);
    }

    /// The run of median throughput of a workload.
    fn median(&self, section: &str, workload: &str) -> Option<Measure> {
        let mut runs = self
            .runs
            .get(&(section.to_string(), workload.to_string()))?
            .clone();
        runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        Some(runs[runs.len() / 2])
    }

    fn pairs(&self, broker: &str, comparison: Comparison) -> Option<(&[Pair], &str)> {
        let key = (broker.to_string(), comparison);
        let pairs = self.pairs.get(&key)?;
        Some((pairs, self.about.get(&key).map_or("", String::as_str)))
    }

    /// The brokers something was measured on, in label order.
    fn brokers(&self) -> Vec<String> {
        let mut brokers: Vec<String> = self
            .runs
            .keys()
            .map(|(section, _)| section.clone())
            .filter(|section| section != IN_PROCESS)
            .collect();
        brokers.dedup();
        brokers
    }
}

/// A workload's summary line (stderr, as it happens).
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

/// The report, on stdout: the run-by-run comparisons of each broker
/// first (the dev broker's stateful pipeline beside its ceiling is the
/// headline), then the medians of every workload, then the ratios the
/// targets are stated in.
pub fn report(results: &Results, flags: &Flags) {
    println!();
    for broker in results.brokers() {
        ceiling(results, &broker);
        quix(results, &broker);
        recovery(results, &broker);
    }
    let in_process = "Medians, without a broker and on in-process mock clusters";
    medians(results, IN_PROCESS, in_process);
    for broker in results.brokers() {
        medians(results, &broker, &format!("Medians, {broker}"));
    }
    targets(results, flags);
}

/// The median run of every workload of `section`.
fn medians(results: &Results, section: &str, title: &str) {
    let workloads: Vec<&String> = results
        .runs
        .keys()
        .filter(|(of, _)| of == section)
        .map(|(_, workload)| workload)
        .collect();
    if workloads.is_empty() {
        return;
    }
    println!("{}\n", heading(title));
    println!("| workload | runs | msg/s (median run) | CPU µs/msg (same run) |");
    println!("|---|---:|---:|---:|");
    for workload in workloads {
        let runs = results.runs[&(section.to_string(), workload.clone())].len();
        if let Some(measure) = results.median(section, workload) {
            println!(
                "| {workload} | {runs} | {} | {} |",
                thousands(measure.rate()),
                cpu(&measure)
            );
        }
    }
    println!();
}

/// The end-to-end headline: the stateful pipeline's throughput and CPU a
/// message beside the ceiling's in each run (on the dev broker, where the
/// broker is not the limit), and the stateless one's beside its own.
fn ceiling(results: &Results, broker: &str) {
    let comparisons = [
        (
            Comparison::StatefulCeiling,
            "Stateful",
            "ceiling (copies all)",
        ),
        (
            Comparison::StatelessCeiling,
            "Stateless",
            "ceiling (filters half)",
        ),
    ];
    for (comparison, kind, ceiling) in comparisons {
        let Some((pairs, about)) = results.pairs(broker, comparison) else {
            continue;
        };
        let title = format!(
            "{kind} end to end, {broker}: kstreams beside the rdkafka {ceiling}, run by run"
        );
        println!("{}\n\n{about}.\n", heading(&title));
        println!(
            "| run | kstreams msg/s | {ceiling} msg/s | kstreams ÷ ceiling | kstreams CPU µs/msg \
             | {ceiling} CPU µs/msg | kstreams ÷ ceiling, CPU |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for pair in pairs {
            println!(
                "| {}{} | {} | {} | {} | {} | {} | {} |",
                pair.run,
                if pair.baseline_first {
                    ""
                } else {
                    " (kstreams first)"
                },
                thousands(pair.kstreams.rate()),
                thousands(pair.baseline.rate()),
                ratio(paired::rate_ratio(pair)),
                cpu(&pair.kstreams),
                cpu(&pair.baseline),
                ratio(paired::cpu_ratio(pair)),
            );
        }
        let of = |figure: fn(&Measure) -> Option<f64>, side: fn(&Pair) -> Measure| {
            paired::spread(pairs, |pair| figure(&side(pair)))
        };
        let rate = |m: &Measure| Some(m.rate());
        let cpu_us = |m: &Measure| m.cpu_per_message_us();
        let (kstreams, baseline) = (|p: &Pair| p.kstreams, |p: &Pair| p.baseline);
        println!(
            "| median (lowest-highest) | {} | {} | **{}** | {} | {} | **{}** |\n",
            show(of(rate, kstreams), 0),
            show(of(rate, baseline), 0),
            show(paired::spread(pairs, paired::rate_ratio), 2),
            show(of(cpu_us, kstreams), 2),
            show(of(cpu_us, baseline), 2),
            show(paired::spread(pairs, paired::cpu_ratio), 2),
        );
    }
}

/// kstreams and Quix Streams alternating, the median of the pairs'
/// CPU ratios.
fn quix(results: &Results, broker: &str) {
    let Some((pairs, about)) = results.pairs(broker, Comparison::Quix) else {
        return;
    };
    let title = format!("kstreams and Quix Streams, {broker}: paired runs");
    println!("{}\n\n{about}.\n", heading(&title));
    println!(
        "| pair | first | kstreams CPU µs/msg | Quix CPU µs/msg | Quix ÷ kstreams, CPU a message \
         | kstreams msg/s | Quix msg/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for pair in pairs {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            pair.run,
            if pair.baseline_first {
                "Quix"
            } else {
                "kstreams"
            },
            cpu(&pair.kstreams),
            cpu(&pair.baseline),
            number(paired::cpu_times_less(pair), 1),
            thousands(pair.kstreams.rate()),
            thousands(pair.baseline.rate()),
        );
    }
    println!(
        "| median of the {} pairs (lowest-highest) | | | | **{}** | | |\n",
        pairs.len(),
        show(paired::spread(pairs, paired::cpu_times_less), 1)
    );
}

/// Recovery beside a plain consume and Quix Streams, run by run.
fn recovery(results: &Results, broker: &str) {
    let Some((plain, about)) = results.pairs(broker, Comparison::RecoveryPlain) else {
        return;
    };
    let quix = results
        .pairs(broker, Comparison::RecoveryQuix)
        .map_or(&[][..], |(pairs, _)| pairs);
    let title = format!("Recovery, {broker}: run by run");
    println!("{}\n\n{about}.\n", heading(&title));
    println!(
        "| run | plain consume, records/s | kstreams, records/s | kstreams ÷ plain consume \
         | kstreams, s | Quix Streams, s | Quix ÷ kstreams, time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for pair in plain {
        let with_quix = quix.iter().find(|quix| quix.run == pair.run);
        println!(
            "| {}{} | {} | {} | {} | {:.2} | {} | {} |",
            pair.run,
            if pair.baseline_first {
                " (plain first)"
            } else {
                " (kstreams first)"
            },
            thousands(pair.baseline.rate()),
            thousands(pair.kstreams.rate()),
            ratio(paired::rate_ratio(pair)),
            pair.kstreams.seconds,
            with_quix.map_or("-".into(), |quix| format!("{:.2}", quix.baseline.seconds)),
            number(with_quix.and_then(paired::time_times_less), 1),
        );
    }
    println!(
        "| median (lowest-highest) | | | **{}** | | | **{}** |\n",
        show(paired::spread(plain, paired::rate_ratio), 2),
        show(paired::spread(quix, paired::time_times_less), 1),
    );
}

/// The ratios the targets are stated in.
fn targets(results: &Results, flags: &Flags) {
    let mut rows: Vec<[String; 3]> = Vec::new();
    let mut row = |what: String, figure: String, target: &str| {
        rows.push([what, figure, target.to_string()]);
    };
    let medians = |a: &str, b: &str, of: fn(&Measure) -> Option<f64>| {
        let (a, b) = (
            results.median(IN_PROCESS, a)?,
            results.median(IN_PROCESS, b)?,
        );
        Some(of(&a)? / of(&b)?)
    };
    let rate = |m: &Measure| Some(m.rate());
    let cpu_us = |m: &Measure| m.cpu_per_message_us();
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
        if let Some(r) = medians(&driver, &alone, rate) {
            row(
                format!("driver {kind} ÷ its closures alone, msg/s (medians)"),
                format!("{r:.2}"),
                "",
            );
        }
    }
    if let Some(measure) = results.median(IN_PROCESS, &many_keys_driver) {
        row(
            format!("{many_keys_driver}, msg/s (median)"),
            thousands(measure.rate()),
            "≥ 700 000 at 1M keys",
        );
    }
    let (exactly, least) = (
        "embedded count: exactly once",
        "embedded count: at least once",
    );
    if let Some(r) = medians(exactly, least, rate) {
        row(
            "exactly once ÷ at least once, msg/s (medians)".into(),
            format!("{r:.2}"),
            "≥ 0.9",
        );
    }
    if let Some(r) = medians(exactly, least, cpu_us) {
        row(
            "exactly once ÷ at least once, CPU a message (medians)".into(),
            format!("{r:.2}"),
            "",
        );
    }
    for broker in results.brokers() {
        let pairs = |comparison| results.pairs(&broker, comparison).map(|(pairs, _)| pairs);
        let of_pairs = |comparison, figure: fn(&Pair) -> Option<f64>| {
            paired::spread(pairs(comparison)?, figure)
        };
        let twin = &flags.quix_twin;
        let rows: [TargetRow; 7] = [
            (
                Comparison::StatefulCeiling,
                paired::rate_ratio,
                "kstreams stateful ÷ ceiling, msg/s (per run)".into(),
                2,
                "≥ 0.8",
            ),
            (
                Comparison::StatefulCeiling,
                paired::cpu_ratio,
                "kstreams stateful ÷ ceiling, CPU a message (per run)".into(),
                2,
                "",
            ),
            (
                Comparison::StatelessCeiling,
                paired::rate_ratio,
                "kstreams stateless ÷ its ceiling, msg/s (per run)".into(),
                2,
                "",
            ),
            (
                Comparison::Quix,
                paired::cpu_times_less,
                format!("Quix ÷ kstreams ({twin} twin), CPU a message (pairs)"),
                1,
                "≥ 25",
            ),
            (
                Comparison::Quix,
                paired::rate_ratio,
                format!("kstreams ÷ Quix ({twin} twin), msg/s (pairs)"),
                1,
                "",
            ),
            (
                Comparison::RecoveryPlain,
                paired::rate_ratio,
                "recovery, kstreams ÷ plain consume, records/s (per run)".into(),
                2,
                "≥ 0.8",
            ),
            (
                Comparison::RecoveryQuix,
                paired::time_times_less,
                "recovery, Quix time ÷ kstreams time (per run)".into(),
                1,
                "≥ 10",
            ),
        ];
        for (comparison, figure, what, decimals, target) in rows {
            if let Some(s) = of_pairs(comparison, figure) {
                row(format!("{broker}: {what}"), s.show(decimals), target);
            }
        }
    }
    if let (Some(kstreams), Some(plain)) = (
        results.median(IN_PROCESS, "assign: kstreams"),
        results.median(IN_PROCESS, "assign: plain consumer"),
    ) {
        let more = kstreams.seconds - plain.seconds;
        let round_trips = match flags.assign_rtt_ms {
            0 => String::new(),
            rtt => format!(" ({:.1} round trips)", more * 1000.0 / rtt as f64),
        };
        row(
            format!(
                "assignment of {} partitions, 2 stores, {} ms a request: kstreams {:.2} s, plain \
                 consumer {:.2} s (medians)",
                flags.assign_partitions, flags.assign_rtt_ms, kstreams.seconds, plain.seconds
            ),
            format!("{more:.2} s more{round_trips}"),
            "",
        );
    }
    if rows.is_empty() {
        return;
    }
    println!("{}\n", heading("Against the targets"));
    println!("| comparison | figure: median (lowest-highest) | target |");
    println!("|---|---:|---|");
    for [what, figure, target] in rows {
        println!("| {what} | {figure} | {target} |");
    }
    println!();
}

/// `1 397 000`: a whole number with its thousands apart, as BENCHMARKS.md
/// writes them.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(' ');
        }
        grouped.push(digit);
    }
    match value < 0.0 {
        true => format!("-{grouped}"),
        false => grouped,
    }
}

fn cpu(measure: &Measure) -> String {
    measure
        .cpu_per_message_us()
        .map_or("-".into(), |us| format!("{us:.2}"))
}

fn ratio(value: Option<f64>) -> String {
    value.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn number(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |value| format!("{value:.decimals$}"))
}

fn show(spread: Option<Spread>, decimals: usize) -> String {
    spread.map_or("-".into(), |s| match decimals {
        0 => format!(
            "{} ({}-{})",
            thousands(s.median),
            thousands(s.min),
            thousands(s.max)
        ),
        _ => s.show(decimals),
    })
}

/// A row of the per-broker targets: what is compared, the figure of each
/// pair, what the row says, its decimals, the target.
type TargetRow = (
    Comparison,
    fn(&Pair) -> Option<f64>,
    String,
    usize,
    &'static str,
);
