//! What `check-config` and `status` print of [`crate::service::preflight`]'s findings.

use crate::model::config::Config;
use crate::service::preflight;

/// Prints the warnings and problems of `cfg` to stderr; false when a problem will make runs
/// fail (`check-config` then exits 2).
pub(crate) fn print_check(cfg: &Config) -> bool {
    let f = preflight::check(cfg);
    for w in &f.warnings {
        eprintln!("robotmk-daemon: warning: {w}");
    }
    for p in &f.problems {
        eprintln!("robotmk-daemon: error: {p}");
    }
    if !f.problems.is_empty() {
        eprintln!(
            "robotmk-daemon: {} parses, but {} will make runs fail; fix {} and run check-config again",
            cfg.path.display(),
            crate::model::plural(f.problems.len() as u64, "problem", "problems"),
            if f.problems.len() == 1 { "it" } else { "them" }
        );
    }
    f.problems.is_empty()
}

/// The warnings as notes under `status`'s table.
pub(crate) fn status_notes(cfg: &Config) -> String {
    preflight::warnings_of(cfg)
        .iter()
        .map(|w| format!("note: {w}\n"))
        .collect()
}
