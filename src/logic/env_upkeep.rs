//! The environment worker's bookkeeping, as decisions over values: how long it may sleep
//! before a build's deadline, when a build has outlived its timeout, what a build's exit
//! means, which environments are kept, and when one that no job uses may go (only once the
//! loop has seen an update without it). No files, no processes, no clock read: the caller
//! passes `now` (the worker in `app/daemon/envs/worker/`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One build's deadline, and whether it was passed already (its tree is ended once).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    passed: bool,
}

impl Deadline {
    pub(crate) fn new(at: Instant) -> Deadline {
        Deadline { at, passed: false }
    }

    /// Whether the build ran into its deadline.
    pub(crate) fn passed(&self) -> bool {
        self.passed
    }

    /// True once, at the first look at or after the deadline: then the build's tree is ended.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        if self.passed || now < self.at {
            return false;
        }
        self.passed = true;
        true
    }
}

/// How long the worker may wait for a message: until the nearest deadline not passed yet, at
/// most `cap` (its look at the source files' stamps).
pub(crate) fn wait<'a>(
    deadlines: impl IntoIterator<Item = &'a Deadline>,
    now: Instant,
    cap: Duration,
) -> Duration {
    deadlines
        .into_iter()
        .filter(|d| !d.passed)
        .map(|d| d.at.saturating_duration_since(now))
        .fold(cap, Duration::min)
}

/// What a build's exit says: `Ok` for a build that ended well in time, else why not (the
/// words the environment's error starts with).
pub(crate) fn outcome(
    timed_out: bool,
    timeout: Duration,
    code: Option<i32>,
    signal: Option<i32>,
) -> Result<(), String> {
    if timed_out {
        Err(format!(
            "the build did not finish within env_build_timeout ({})",
            crate::model::duration::format(timeout)
        ))
    } else if code != Some(0) {
        Err(match (code, signal) {
            (Some(c), _) => format!("the build failed (exit code {c})"),
            (None, Some(s)) => format!("the build was ended by signal {s}"),
            _ => "the build failed".into(),
        })
    } else {
        Ok(())
    }
}

/// The environments kept: those runs in flight use, each job's current one and the one it
/// uses until that is ready, and those being built.
pub(crate) fn kept<'a>(
    runs: &BTreeSet<String>,
    jobs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
    building: impl IntoIterator<Item = &'a String>,
) -> BTreeSet<String> {
    let mut keep = runs.clone();
    for (current, in_use) in jobs {
        keep.extend(current.map(str::to_string));
        keep.extend(in_use.map(str::to_string));
    }
    keep.extend(building.into_iter().cloned());
    keep
}

/// What to do now with an environment no job uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retire {
    /// This is the first look at it unused: the next update must go out even if nothing else
    /// changed, so that the loop sees it without this environment.
    pub(crate) publish: bool,
    /// The loop has seen an update without it (no run can be started in it any more): it goes.
    pub(crate) remove: bool,
}

/// Environments no job uses, each by the first update that said so.
#[derive(Debug, Default)]
pub(crate) struct Retired(BTreeMap<String, u64>);

impl Retired {
    /// Forgets those used again.
    pub(crate) fn keep(&mut self, kept: &BTreeSet<String>) {
        self.0.retain(|k, _| !kept.contains(k));
    }

    /// Whether `name`, unused, may go now: `sent` is the last update sent, `seen` the last the
    /// loop has seen; the next update is the first without it.
    pub(crate) fn judge(&mut self, name: &str, sent: u64, seen: u64) -> Retire {
        let next = sent + 1;
        let since = *self.0.entry(name.to_string()).or_insert(next);
        let remove = seen >= since;
        if remove {
            self.0.remove(name);
        }
        Retire {
            publish: since == next,
            remove,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_expires_once_and_bounds_the_wait_until_then() {
        let t0 = Instant::now();
        let cap = Duration::from_secs(600);
        let mut d = Deadline::new(t0 + Duration::from_secs(5));
        assert_eq!(wait([&d], t0, cap), Duration::from_secs(5));
        assert!(!d.expire(t0 + Duration::from_secs(4)));
        assert!(d.expire(t0 + Duration::from_secs(5)));
        assert!(!d.expire(t0 + Duration::from_secs(6)), "once");
        assert!(d.passed());
        assert_eq!(wait([&d], t0, cap), cap, "a passed deadline bounds nothing");
    }

    #[test]
    fn an_exit_is_told_in_words() {
        let t = Duration::from_secs(60);
        assert_eq!(outcome(false, t, Some(0), None), Ok(()));
        assert_eq!(
            outcome(false, t, Some(2), None).unwrap_err(),
            "the build failed (exit code 2)"
        );
        assert_eq!(
            outcome(false, t, None, Some(9)).unwrap_err(),
            "the build was ended by signal 9"
        );
        assert!(outcome(true, t, Some(0), None)
            .unwrap_err()
            .starts_with("the build did not finish within env_build_timeout"));
    }

    #[test]
    fn kept_are_the_runs_and_jobs_environments_and_those_being_built() {
        let runs = BTreeSet::from(["r".to_string()]);
        let building = ["b".to_string()];
        let keep = kept(&runs, [(Some("new"), Some("old")), (None, None)], &building);
        assert_eq!(
            keep.into_iter().collect::<Vec<_>>(),
            ["b", "new", "old", "r"]
        );
    }

    const WAIT_PUBLISH: Retire = Retire {
        publish: true,
        remove: false,
    };
    const WAIT: Retire = Retire {
        publish: false,
        remove: false,
    };
    const REMOVE: Retire = Retire {
        publish: false,
        remove: true,
    };

    /// An environment goes only once the loop has seen an update that no longer names it.
    #[test]
    fn an_unused_environment_waits_for_the_loop_to_see_it_retired() {
        let mut r = Retired::default();
        assert_eq!(r.judge("e", 3, 3), WAIT_PUBLISH);
        assert_eq!(r.judge("e", 4, 3), WAIT);
        assert_eq!(r.judge("e", 4, 4), REMOVE);
        // Used again meanwhile: the count starts anew.
        assert_eq!(r.judge("f", 4, 4), WAIT_PUBLISH);
        r.keep(&BTreeSet::from(["f".to_string()]));
        assert_eq!(r.judge("f", 6, 6), WAIT_PUBLISH);
    }
}
