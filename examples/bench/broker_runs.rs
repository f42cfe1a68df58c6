//! The workloads that need a broker, on one broker (see `brokers.rs`),
//! every figure named after it: end to end (`e2e.rs`, `ceiling.rs`) and
//! recovery (`recovery.rs`).
//!
//! End to end, each run measures every workload once, on the same input
//! (on a fresh broker each, when the bench starts the broker), each with
//! a fresh consumer group. The order is reversed from one run to the
//! next, and each kstreams workload sits right beside its baseline: the
//! stateless pipeline beside the ceiling that filters the same half,
//! `count_per_key` beside the ceiling that copies every message, and the
//! kstreams twin of the Quix Streams workload (`--quix-twin`) beside it.
//! So every comparison is a pair measured in the same moment of the
//! machine, half the pairs with kstreams first (see `paired.rs`).

use crate::brokers::{Broker, Running};
use crate::e2e::{
    e2e_group_by, e2e_stateful, e2e_stateless, e2e_window, input_partitions, produce_input, quix,
    quix_window,
};
use crate::measure::Measure;
use crate::paired::Pair;
use crate::report::{thousands, Comparison, Results};
use crate::{ceiling, recovery, Flags};

/// One workload of an end-to-end run.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    /// `ceiling::filter`, the stateless pipeline's baseline.
    CeilingFilter,
    Stateless,
    /// `ceiling::copy_all`, the stateful pipeline's baseline.
    CeilingCopyAll,
    Stateful,
    Window,
    GroupBy,
    /// The Quix Streams twin (`--quix-twin`).
    Quix,
}

impl Step {
    fn name(self, twin: &str) -> String {
        match self {
            Step::CeilingFilter => "e2e rdkafka ceiling stateless".into(),
            Step::Stateless => "e2e kstreams stateless".into(),
            Step::CeilingCopyAll => "e2e rdkafka ceiling".into(),
            Step::Stateful => "e2e kstreams stateful".into(),
            Step::Window => "e2e kstreams window".into(),
            Step::GroupBy => "e2e kstreams group_by".into(),
            Step::Quix => match twin {
                "window" | "group_by" => format!("e2e quix {twin}"),
                _ => "e2e quix stateful".into(),
            },
        }
    }
}

/// The kstreams workload that the Quix Streams twin `twin` is compared with.
fn quix_partner(twin: &str) -> Step {
    match twin {
        "window" => Step::Window,
        "group_by" => Step::GroupBy,
        _ => Step::Stateful,
    }
}

/// The steps of run `run`: each pair side by side, the Quix Streams twin's
/// partner last before it (and `count_per_key` right after its ceiling,
/// when it is the partner), reversed in even runs. With `flags.quix_only`,
/// the Quix Streams pair alone.
fn steps(run: usize, flags: &Flags) -> Vec<Step> {
    let (twin, with_quix) = (flags.quix_twin.as_str(), flags.quix.is_some());
    let partner = quix_partner(twin);
    let mut steps = if flags.quix_only && with_quix {
        vec![partner, Step::Quix]
    } else {
        all_steps(partner, with_quix)
    };
    if run.is_multiple_of(2) {
        steps.reverse();
    }
    steps
}

/// Every end-to-end step, in the order of odd runs.
fn all_steps(partner: Step, with_quix: bool) -> Vec<Step> {
    let mut steps = vec![Step::CeilingFilter, Step::Stateless];
    let others = [Step::Window, Step::GroupBy];
    steps.extend(others.iter().filter(|step| **step != partner));
    if partner != Step::Stateful {
        steps.extend([Step::CeilingCopyAll, Step::Stateful, partner]);
    } else {
        steps.extend([Step::CeilingCopyAll, Step::Stateful]);
    }
    if with_quix {
        steps.push(Step::Quix);
    }
    steps
}

/// The end-to-end runs on `broker`, `flags.e2e_runs` of them. A broker
/// the bench starts is fresh for every workload, holding only the input
/// (the same purchases each time): tansu 0.6 stalls after a Quix Streams
/// run and its fetches slow down with everything it holds, so on one
/// broker the workloads that come later would measure what the earlier
/// ones left. `--broker` gets the input once, for every workload.
pub fn e2e(broker: &Broker, flags: &Flags, results: &mut Results) -> anyhow::Result<()> {
    let label = broker.label();
    let mut shared: Option<(Running, String)> = None;
    let twin = flags.quix_twin.as_str();
    let partitions = input_partitions(broker, flags.messages);
    let (script, args): (&str, &[&str]) = match twin {
        "window" => ("quix_window.py", &[]),
        "group_by" => ("quix_count_per_key.py", &["--group-by", "user"]),
        _ => ("quix_count_per_key.py", &[]),
    };
    for run in 1..=flags.e2e_runs {
        eprintln!("== end-to-end run {run} of {}, {label}", flags.e2e_runs);
        let mut measured: Vec<(Step, Measure)> = Vec::new();
        for step in steps(run, flags) {
            if broker.fresh_each_workload() || shared.is_none() {
                // The last broker stops before the next one starts (tansu
                // comes back on the same address).
                drop(shared.take());
                let running = broker.start()?;
                let address = running
                    .address
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("end to end needs a broker on the network"))?;
                shared = Some((running, produce_input(&address, partitions, flags)?));
            }
            let Some((running, input)) = &shared else {
                unreachable!("started above");
            };
            let address = running.address.as_deref().unwrap_or_default();
            let measure = match (step, &flags.quix) {
                (Step::CeilingFilter, _) => ceiling::filter(address, input, flags)?,
                (Step::Stateless, _) => e2e_stateless(address, input, flags)?,
                (Step::CeilingCopyAll, _) => ceiling::copy_all(address, input, flags)?,
                (Step::Stateful, _) => e2e_stateful(address, input, flags)?,
                (Step::Window, _) => e2e_window(address, input, flags)?,
                (Step::GroupBy, _) => e2e_group_by(address, input, flags)?,
                (Step::Quix, Some(python)) if twin == "window" => {
                    quix_window(python, address, input, flags)?
                }
                (Step::Quix, Some(python)) => quix(python, script, address, input, args, flags)?,
                (Step::Quix, None) => continue,
            };
            results.add_on(label, &step.name(twin), measure);
            measured.push((step, measure));
        }
        let of = |step| measured.iter().find(|(s, _)| *s == step).map(|(_, m)| *m);
        // Odd runs run each baseline first (the order above), even ones
        // kstreams first; the Quix Streams twin comes last in odd runs.
        let pairs = [
            (
                Comparison::StatefulCeiling,
                Step::Stateful,
                Step::CeilingCopyAll,
            ),
            (
                Comparison::StatelessCeiling,
                Step::Stateless,
                Step::CeilingFilter,
            ),
            (Comparison::Quix, quix_partner(twin), Step::Quix),
        ];
        for (comparison, kstreams, baseline) in pairs {
            let (Some(kstreams_measure), Some(baseline_measure)) = (of(kstreams), of(baseline))
            else {
                continue;
            };
            let about = about(comparison, twin, partitions, flags);
            let pair = Pair {
                run,
                kstreams: kstreams_measure,
                baseline: baseline_measure,
                baseline_first: (run % 2 == 1) != (baseline == Step::Quix),
            };
            results.pair(label, comparison, &about, pair);
        }
    }
    Ok(())
}

/// What an end-to-end comparison ran, and how its CPU is counted.
fn about(comparison: Comparison, twin: &str, partitions: i32, flags: &Flags) -> String {
    let input = format!(
        "{} purchases of {} keys, {partitions} partitions, a fresh consumer group each",
        thousands(flags.messages as f64),
        thousands(flags.keys as f64)
    );
    match comparison {
        Comparison::StatefulCeiling => format!(
            "{input}. kstreams: `count_per_key` as a child process, CPU of its whole life \
             (start-up, group join and last checkpoint included); ceiling: a plain rdkafka \
             consume-and-produce loop in the bench's process, CPU from its first message"
        ),
        Comparison::StatelessCeiling => format!(
            "{input}. kstreams: the stateless pipeline in the bench's process; ceiling: the \
             same closures in a plain rdkafka loop; CPU of both from the first message"
        ),
        _ => {
            let (quix, kstreams) = match twin {
                "window" => ("quix_window.py", "window_totals"),
                "group_by" => (
                    "quix_count_per_key.py --group-by user",
                    "count_per_key --group-by user",
                ),
                _ => ("quix_count_per_key.py", "count_per_key"),
            };
            format!(
                "{input}. Quix Streams `{quix}` beside kstreams `{kstreams}`, both child \
                 processes, CPU of each one's whole life (start-up and group join included)"
            )
        }
    }
}

/// The keys recovery seeds on `broker`.
pub fn recovery_keys(broker: &Broker, flags: &Flags) -> u64 {
    match broker {
        Broker::Embedded => flags.recovery_keys,
        Broker::Dev => flags.dev_broker_recovery_keys,
        Broker::Tansu { .. } | Broker::Given { .. } => flags.broker_recovery_keys,
    }
}

/// Why tansu (and `--broker`) recover fewer keys by default than the dev
/// broker.
const TANSU_LIMIT: &str = "--broker-recovery-keys' default is sized for tansu 0.6 (sqlite), \
    which serves records with headers slowly (Quix Streams' changelog records carry two: 10 000 \
    such records took 6.3 s to consume) and stalls under a big fetch (a Quix Streams recovery of \
    25 000 keys did not finish within 5 minutes; the first fetch of a 500 000-record partition \
    did not return within 5 minutes); pass --broker-recovery-keys to try more";

/// Says how many keys recovery seeds on each broker, and why fewer on
/// tansu.
pub fn say_recovery_sizes(brokers: &[Broker], flags: &Flags) {
    for broker in brokers {
        let keys = recovery_keys(broker, flags);
        let partitions = recovery::partitions(broker, keys);
        eprintln!(
            "recovery, {}: {keys} keys, {partitions} partitions",
            broker.label()
        );
        if let Some(limit) = limit(broker, flags) {
            eprintln!("  {limit}");
        }
    }
}

/// What keeps recovery on `broker` below the dev broker's size, if it is.
fn limit(broker: &Broker, flags: &Flags) -> Option<String> {
    let fewer = recovery_keys(broker, flags) < flags.dev_broker_recovery_keys;
    match broker {
        Broker::Tansu { .. } | Broker::Given { .. } if fewer => Some(format!(
            "fewer keys than on the dev broker ({}): {TANSU_LIMIT}",
            flags.dev_broker_recovery_keys
        )),
        _ => None,
    }
}

/// Recovery run `run` on `broker` (a fresh dev broker or tansu for each
/// run, holding only this run's topics).
pub fn recovery(
    run: usize,
    broker: &Broker,
    flags: &Flags,
    results: &mut Results,
) -> anyhow::Result<()> {
    let keys = recovery_keys(broker, flags);
    let partitions = recovery::partitions(broker, keys);
    let label = broker.label();
    eprintln!(
        "== recovery run {run} of {}, {label}: {keys} keys, {partitions} partitions",
        flags.runs
    );
    let running = broker.start()?;
    // Quix Streams cannot use the embedded broker (it is in this process).
    let quix = running.address.as_ref().and(flags.quix.as_deref());
    let measured = recovery::run(running.address.as_deref(), partitions, keys, quix, run)?;
    results.add_on(label, "recovery plain consume", measured.plain);
    results.add_on(label, "recovery kstreams", measured.kstreams);
    let about = format!(
        "{} keys ({} changelog records), {partitions} partitions{}",
        thousands(keys as f64),
        thousands((keys * 2) as f64),
        limit(broker, flags).map_or(String::new(), |limit| format!("; {limit}"))
    );
    let pair = Pair {
        run,
        kstreams: measured.kstreams,
        baseline: measured.plain,
        baseline_first: run % 2 == 1,
    };
    results.pair(label, Comparison::RecoveryPlain, &about, pair);
    if let Some(quix) = measured.quix {
        results.add_on(label, "recovery quix", quix);
        let pair = Pair {
            run,
            kstreams: measured.kstreams,
            baseline: quix,
            baseline_first: false,
        };
        results.pair(label, Comparison::RecoveryQuix, &about, pair);
    }
    Ok(())
}
