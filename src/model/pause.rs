//! A pause for maintenance (`pause [--for DURATION] [JOB…]`, `resume`): which jobs start no
//! new runs, who asked, since and until when. Kept in the state dir as `pause.json`, so it
//! survives a daemon restart; written by root only (`pause` refuses other users).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The file's name in the state dir.
pub(crate) const PAUSE_FILE: &str = "pause.json";

/// One pause: of the whole instance or of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pause {
    /// Who paused (the login name behind sudo when there is one).
    pub(crate) by: String,
    pub(crate) since: DateTime<Utc>,
    /// `None`: until `resume`.
    pub(crate) until: Option<DateTime<Utc>>,
}

impl Pause {
    /// In force at `now`.
    pub(crate) fn holds(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| now < u)
    }

    /// "paused by alice until 2026-12-04 18:00:00 UTC" (or "until resumed").
    pub(crate) fn words(&self) -> String {
        match self.until {
            Some(u) => format!(
                "paused by {} until {}",
                self.by,
                u.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S %Z")
            ),
            None => format!("paused by {} until resumed", self.by),
        }
    }
}

/// `pause.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PauseState {
    /// The whole instance: no job starts a run.
    #[serde(default)]
    pub(crate) all: Option<Pause>,
    /// Single jobs, by name.
    #[serde(default)]
    pub(crate) jobs: BTreeMap<String, Pause>,
}

impl PauseState {
    /// The pause that keeps `job` from starting a run at `now`, if any (the instance's first).
    pub(crate) fn of(&self, job: &str, now: DateTime<Utc>) -> Option<&Pause> {
        self.all
            .as_ref()
            .filter(|p| p.holds(now))
            .or_else(|| self.jobs.get(job).filter(|p| p.holds(now)))
    }

    /// Nothing in force at `now`.
    pub(crate) fn is_empty_at(&self, now: DateTime<Utc>) -> bool {
        self.all.as_ref().is_none_or(|p| !p.holds(now)) && self.jobs.values().all(|p| !p.holds(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_ends_at_its_time_and_the_instance_covers_every_job() {
        let now = Utc::now();
        let p = |until: Option<DateTime<Utc>>| Pause {
            by: "alice".into(),
            since: now,
            until,
        };
        let mut s = PauseState::default();
        s.jobs
            .insert("a".into(), p(Some(now + chrono::Duration::minutes(5))));
        assert!(s.of("a", now).is_some());
        assert!(s.of("b", now).is_none());
        assert!(s.of("a", now + chrono::Duration::minutes(6)).is_none());
        s.all = Some(p(None));
        assert!(s.of("b", now + chrono::Duration::days(9)).is_some());
    }
}
