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
pub(crate) fn status_notes(warnings: &[String]) -> String {
    warnings.iter().map(|w| format!("note: {w}\n")).collect()
}

/// A setting as the config spells it (`skip`, not `Skip`).
pub(crate) fn word(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The daemon's phase when it is not simply running (`, draining (stop requested)`).
pub(crate) fn phase_words(d: &crate::model::report::DaemonReport) -> String {
    match &d.phase {
        Some(p) if *p != crate::model::status::Phase::Running => match &d.reason {
            Some(why) => format!(", {p} ({why})"),
            None => format!(", {p}"),
        },
        _ => String::new(),
    }
}

/// The colour of an outcome in `status`, as `history` paints it (an SGR number).
pub(crate) fn outcome_colour(o: Option<crate::model::record::Outcome>) -> Option<&'static str> {
    use crate::model::record::Outcome;
    Some(match o? {
        Outcome::Success => "32",
        Outcome::Failure | Outcome::Timeout | Outcome::Error => "31",
        Outcome::Killed | Outcome::Interrupted => "33",
        Outcome::Skipped => "2",
    })
}

/// `status` exits with this when it cannot tell whether a daemon runs (the config or state
/// dir cannot be read by this user).
pub(crate) const CANNOT_TELL: i32 = 4;

/// Why `status` cannot tell whether the daemon runs, if it cannot: never "not running" when
/// that is not known (a user who may not read root's state dir).
pub(crate) fn cannot_tell(
    path: &std::path::Path,
    cfg_ok: bool,
    located: Option<&(String, std::path::PathBuf)>,
) -> Option<String> {
    use std::io::ErrorKind::PermissionDenied;
    if !cfg_ok {
        if let Err(e) = std::fs::File::open(path) {
            if e.kind() == PermissionDenied {
                return Some(format!("cannot read the config {}: {e}", path.display()));
            }
        }
    }
    let (_, dir) = located?;
    let st = crate::service::state::StateDir::new(dir);
    match crate::service::lock::is_held(&st.lock_file()) {
        Err(e) if e.kind() == PermissionDenied => {
            Some(format!("cannot read the state dir {}: {e}", dir.display()))
        }
        _ => None,
    }
}
