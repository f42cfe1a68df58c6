//! The bench binary starts and finishes on a tiny input: the test-driver,
//! memory and assignment workloads alone, and the end-to-end and recovery
//! workloads against the test broker and on a dev broker it starts itself.
//! (The benchmarks themselves are run by hand: see BENCHMARKS.md.)

mod common;

use std::path::PathBuf;
use std::process::Command;

/// The bench example, built by `cargo test` beside the test binaries.
fn bench_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile.join("examples").join("bench")
}

fn run_bench(args: &[&str]) -> String {
    let output = Command::new(bench_binary())
        .args(args)
        .output()
        .expect("the bench example, built by `cargo test`");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    stdout
}

#[test]
fn driver_workloads_finish_on_a_tiny_input() {
    let table = run_bench(&[
        "--driver-messages",
        "2000",
        "--driver-many-keys",
        "2000",
        "--runs",
        "1",
        "--workloads",
        "driver,windows,memory,assign",
        "--closing-keys",
        "200",
        "--memory-keys",
        "2000",
        "--assign-partitions",
        "4",
        "--assign-rtt-ms",
        "10",
    ]);
    assert!(table.contains("| driver stateless |"), "{table}");
    assert!(table.contains("| driver stateful |"), "{table}");
    assert!(table.contains("| closures alone stateful |"), "{table}");
    assert!(
        table.contains("| driver stateful ÷ its closures alone"),
        "{table}"
    );
    assert!(table.contains("memory: 2000 keys of state"), "{table}");
    assert!(table.contains("| assign: kstreams |"), "{table}");
    assert!(table.contains("| driver window hopping |"), "{table}");
    assert!(table.contains("| driver window session |"), "{table}");
    assert!(table.contains("| driver window count |"), "{table}");
    assert!(
        table.contains("| closures alone window tumbling |"),
        "{table}"
    );
    assert!(table.contains("closing per partition, 200 keys"), "{table}");
    assert!(table.contains("assignment of 4 partitions"), "{table}");
}

#[test]
fn end_to_end_workloads_finish_on_a_tiny_input() {
    let broker = common::kafka_broker();
    let table = run_bench(&[
        "--broker",
        &broker,
        "--messages",
        "2000",
        "--runs",
        "1",
        "--workloads",
        "e2e,recovery",
        "--recovery-keys",
        "1000",
        "--broker-recovery-keys",
        "500",
    ]);
    for workload in [
        "e2e rdkafka ceiling",
        "e2e kstreams stateless",
        "e2e kstreams stateful",
        "e2e kstreams window",
        "recovery plain consume",
        "recovery kstreams",
    ] {
        assert!(table.contains(&format!("| {workload} |")), "{table}");
    }
    for heading in [
        "#### Medians, embedded broker (commit ",
        "#### Medians, broker (commit ",
        "#### Stateful end to end, broker: kstreams beside the rdkafka ceiling",
    ] {
        assert!(table.contains(heading), "{table}");
    }
    assert!(
        table.contains("| broker: kstreams stateful ÷ ceiling, msg/s (per run) |"),
        "{table}"
    );
    assert!(
        table.contains("| broker: recovery, kstreams ÷ plain consume, records/s (per run) |"),
        "{table}"
    );
}

#[test]
fn broker_workloads_run_on_a_dev_broker_the_bench_starts() {
    let table = run_bench(&[
        "--dev-broker",
        "--messages",
        "2000",
        "--runs",
        "2",
        "--workloads",
        "e2e,recovery",
        "--recovery-keys",
        "1000",
        "--dev-broker-recovery-keys",
        "1000",
    ]);
    assert!(table.starts_with("kstreams bench: commit "), "{table}");
    for heading in [
        "#### Stateful end to end, dev broker: kstreams beside the rdkafka ceiling",
        "#### Stateless end to end, dev broker: kstreams beside the rdkafka ceiling",
        "#### Recovery, dev broker: run by run",
        "#### Medians, dev broker (commit ",
    ] {
        assert!(table.contains(heading), "{table}");
    }
    // Both orders of a pair ran: the baseline first, then kstreams.
    assert!(table.contains("| 2 (kstreams first) |"), "{table}");
    assert!(table.contains("| median (lowest-highest) |"), "{table}");
}

#[test]
fn help_names_every_flag() {
    let usage = run_bench(&["--help"]);
    for flag in [
        "--dev-broker",
        "--tansu",
        "--broker",
        "--messages",
        "--runs",
        "--quix",
        "--workloads",
    ] {
        assert!(usage.contains(flag), "{usage}");
    }
}
