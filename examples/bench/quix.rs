//! Whether the Quix Streams workloads can run: the Python given with
//! `--quix` imports quixstreams, and the scripts they run are where the
//! bench looks for them. When anything is missing the bench says what and
//! how to install it, and runs everything else.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Flags;

/// How to get a Python that can run the comparison.
const INSTALL: &str = "\
to compare with Quix Streams, install it (once):
    python3 -m venv .venv-quix && .venv-quix/bin/pip install quixstreams
then pass --quix .venv-quix/bin/python";

/// A Quix Streams twin of a workload: `../shared/bench/<name>`, beside
/// this repository.
pub fn shared_script(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or(manifest)
        .join("shared/bench")
        .join(name)
}

/// The script that writes the changelog Quix Streams recovers from (in
/// this repository).
pub fn seed_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/quix_seed_changelog.py")
}

/// The Python to run the Quix Streams workloads with, or `None` when none
/// of them would run or they cannot: then it prints why, and how to
/// install Quix Streams.
pub fn python(flags: &Flags) -> Option<String> {
    let e2e = flags.runs("e2e");
    let recovery = flags.runs("recovery");
    let networked = flags.dev_broker || flags.tansu.is_some() || flags.broker.is_some();
    if !networked || !(e2e || recovery) {
        // Quix Streams runs on a broker on the network only (it cannot use
        // the embedded one, which lives in this process).
        return None;
    }
    let Some(python) = &flags.quix else {
        eprintln!("Quix Streams workloads skipped: no --quix PYTHON given;\n{INSTALL}");
        return None;
    };
    let mut scripts = Vec::new();
    if e2e {
        scripts.push(shared_script(match flags.quix_twin.as_str() {
            "window" => "quix_window.py",
            _ => "quix_count_per_key.py",
        }));
    }
    if recovery {
        scripts.extend([shared_script("quix_count_per_key.py"), seed_script()]);
    }
    scripts.dedup();
    let mut missing: Vec<String> = scripts
        .iter()
        .filter(|script| !script.exists())
        .map(|script| format!("{} is missing", script.display()))
        .collect();
    if let Some(problem) = import_problem(python) {
        missing.push(problem);
    }
    if missing.is_empty() {
        return Some(python.clone());
    }
    eprintln!(
        "Quix Streams workloads skipped:\n  {}\n(the Quix Streams twins of the workloads live in \
         {}, beside this repository);\n{INSTALL}",
        missing.join("\n  "),
        shared_script("").display()
    );
    None
}

/// Why `python` cannot import quixstreams, if it cannot.
fn import_problem(python: &str) -> Option<String> {
    let output = Command::new(python)
        .args(["-c", "import quixstreams"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output();
    match output {
        Err(error) => Some(format!("--quix {python} cannot be run: {error}")),
        Ok(output) if !output.status.success() => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or_default();
            Some(format!("--quix {python} cannot import quixstreams: {last}"))
        }
        Ok(_) => None,
    }
}
