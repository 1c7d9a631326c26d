//! A run an admin stopped (`stop --now`, or run-once interrupted: outcome `killed`) is not a
//! result of the job: the job's latest result stays the last complete one, with a note that
//! says which run was stopped and when, so the job's service does not turn WARN (for up to a
//! day, for a daily job) for a stop that was asked for. Pure logic: the caller reads and
//! writes the files.

use crate::model::record::{Outcome, RunRecord};
use crate::model::status::LastRun;

/// What the stopped run's own record says.
pub(crate) const NOTE: &str = "stopped by an admin (stop --now) before it finished";

/// The note the latest result carries after `stopped`.
fn latest_note(stopped: &RunRecord) -> String {
    let at = stopped.finished.unwrap_or(stopped.due);
    format!(
        "a later run ({}) was stopped by an admin (stop --now) at {}",
        stopped.run_id,
        crate::model::record::ts(at)
    )
}

/// The job's latest result once `stopped` (outcome `killed`) ended: the previous complete
/// result `previous` with a note, or `stopped` itself (with its note) when there is none.
pub(crate) fn latest_after(previous: Option<RunRecord>, stopped: &RunRecord) -> RunRecord {
    match previous.filter(|p| p.outcome.is_some() && p.outcome != Some(Outcome::Killed)) {
        Some(mut p) => {
            p.note = Some(with_note(p.note.as_deref(), stopped));
            p
        }
        None => stopped.clone(),
    }
}

/// [`latest_after`] for the daemon's status: the last result it shows.
pub(crate) fn last_after(previous: Option<LastRun>, stopped: &RunRecord) -> LastRun {
    match previous.filter(|p| p.outcome.is_some() && p.outcome != Some(Outcome::Killed)) {
        Some(mut p) => {
            p.note = Some(with_note(p.note.as_deref(), stopped));
            p
        }
        None => stopped.into(),
    }
}

/// `note` with the note on `stopped`: one per stop, an earlier stop's gives way.
fn with_note(note: Option<&str>, stopped: &RunRecord) -> String {
    let kept: Vec<&str> = note
        .unwrap_or_default()
        .split("; ")
        .filter(|n| !n.is_empty() && !n.starts_with("a later run ("))
        .collect();
    let mut note = kept.join("; ");
    if !note.is_empty() {
        note.push_str("; ");
    }
    note.push_str(&latest_note(stopped));
    note
}

/// Adds [`NOTE`] to the stopped run's own record.
pub(crate) fn mark(rec: &mut RunRecord) {
    if rec.outcome == Some(Outcome::Killed)
        && !rec.note.as_deref().unwrap_or_default().contains(NOTE)
    {
        rec.note = Some(match rec.note.take() {
            Some(n) => format!("{NOTE}; {n}"),
            None => NOTE.to_string(),
        });
    }
}
