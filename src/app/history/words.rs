//! The words and marks both `history` and `show` use for a run: where it stands, its outcome
//! as a mark and a word, local times and seconds. Pure: values in, text out.

use crate::model::record::{Outcome, RunRecord};
use chrono::{DateTime, Local, Utc};

/// Where a run stands as its record tells: ended (its outcome), running, or prepared ahead of
/// its due time and not started yet (the daemon makes the folder early; it is no run yet).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Stands {
    Ended(Outcome),
    Running,
    Due,
}

pub(super) fn stands(rec: &RunRecord) -> Stands {
    match (rec.outcome, rec.started) {
        (Some(o), _) => Stands::Ended(o),
        (None, Some(_)) => Stands::Running,
        (None, None) => Stands::Due,
    }
}

/// Symbol, ASCII letter and colour of where a run stands.
pub(super) fn outcome_mark(o: Stands) -> (&'static str, &'static str, &'static str) {
    // The ASCII letters follow pytest's progress line: `.` passed, `F` failed.
    match o {
        Stands::Ended(Outcome::Success) => ("✔", ".", "32"),
        Stands::Ended(Outcome::Failure) => ("✘", "F", "31"),
        Stands::Ended(Outcome::Timeout) => ("⏱", "T", "31"),
        Stands::Ended(Outcome::Error) => ("!", "E", "31"),
        Stands::Ended(Outcome::Killed) => ("☠", "K", "33"),
        Stands::Ended(Outcome::Interrupted) => ("↯", "I", "33"),
        Stands::Ended(Outcome::Skipped) => ("·", "s", "2"),
        Stands::Running => ("▶", "R", "36"),
        Stands::Due => ("…", "D", "2"),
    }
}

pub(super) fn outcome_word(o: Stands) -> &'static str {
    match o {
        Stands::Ended(o) => o.as_str(),
        Stands::Running => "running",
        Stands::Due => "due",
    }
}

pub(super) fn local(t: DateTime<Utc>, fmt: &str) -> String {
    t.with_timezone(&Local).format(fmt).to_string()
}

pub(super) fn secs(d: f64) -> String {
    if d < 1.0 {
        format!("{d:.3}s")
    } else if d < 100.0 {
        format!("{d:.1}s")
    } else {
        crate::model::duration::human_age(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder prepared ahead of its due time (no start, no outcome) is "due", not "running".
    #[test]
    fn a_run_not_started_yet_is_due_not_running() {
        let mut rec: RunRecord = serde_json::from_value(serde_json::json!({
            "version": 1, "job": "j", "run_id": "20261206T011200Z-1", "run_dir": "/r",
            "due": "2026-12-06T01:12:00Z", "trigger": "schedule", "timeout_s": 60.0,
        }))
        .unwrap();
        assert_eq!(outcome_word(stands(&rec)), "due");
        rec.started = Some(rec.due);
        assert_eq!(outcome_word(stands(&rec)), "running");
        rec.outcome = Some(Outcome::Success);
        assert_eq!(outcome_word(stands(&rec)), "success");
    }
}
