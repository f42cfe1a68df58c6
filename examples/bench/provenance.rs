//! Where the figures come from: the commit the source tree is at (and
//! whether it holds uncommitted changes) and when the bench ran. Printed
//! first, and in the heading of every table, so that a table pasted into
//! BENCHMARKS.md says what it measured. `benches/run` builds the bench
//! from that tree right before it runs it.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// `commit 495c9d8, 2026-12-03 14:05 UTC`, or `commit 495c9d8 with
/// uncommitted changes, ...`: asked of git and `date` once, at the start.
pub fn label() -> &'static str {
    static LABEL: OnceLock<String> = OnceLock::new();
    LABEL.get_or_init(|| {
        let tree = Path::new(env!("CARGO_MANIFEST_DIR"));
        let commit = output(
            "git",
            &[
                "-C",
                &tree.to_string_lossy(),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        );
        // Tracked files only: an untracked scratch file changes no figure.
        let changes = output(
            "git",
            &[
                "-C",
                &tree.to_string_lossy(),
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
        );
        let date = output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
        let commit = match (commit, changes) {
            (Some(commit), Some(changes)) if changes.is_empty() => format!("commit {commit}"),
            (Some(commit), _) => format!("commit {commit} with uncommitted changes"),
            (None, _) => "commit unknown (no git)".to_string(),
        };
        format!("{commit}, {}", date.as_deref().unwrap_or("date unknown"))
    })
}

/// A Markdown heading for a table: its title and [`label`].
pub fn heading(title: &str) -> String {
    format!("#### {title} ({})", label())
}

/// What `program args` printed, trimmed; `None` if it could not run or
/// failed.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
