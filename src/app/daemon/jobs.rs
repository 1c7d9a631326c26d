//! Per-job scheduling state and the rules for the next due time: regular slots, catch-up after
//! downtime, and never the same due time twice.

use crate::model::config::{CatchUp, Job};
use crate::model::record::{RunRecord, Trigger};
use crate::model::status::LastRun;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// The next time a job fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Next {
    /// The due time the run stands for (recorded, and part of the run id).
    pub(crate) due: DateTime<Utc>,
    /// When to start it: `due`, or later for a jittered catch-up.
    pub(crate) fire_at: DateTime<Utc>,
    pub(crate) trigger: Trigger,
}

/// What the daemon tracks per configured job.
///
/// One per job for the daemon's whole life, so kept small (10,000 jobs are 10,000 of these):
/// what most jobs lack most of the time (a prepared run, a result) is boxed, and the latest
/// result is kept as the summary the status shows, not as the whole record.
#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) job: Arc<Job>,
    pub(crate) next: Option<Next>,
    /// The latest due time that was started, skipped or recorded: never fired again.
    pub(crate) last_due: Option<DateTime<Utc>>,
    /// PIDs of this job's runs in flight.
    pub(crate) running: Vec<u32>,
    pub(crate) queued: usize,
    /// Latest finished, not skipped run.
    pub(crate) last: Option<Box<LastRun>>,
    /// The final record of the run a one-shot instance (`run-once` without a daemon) was
    /// started for; `run_oneshot` returns it. Never set in a daemon.
    pub(crate) answered: Option<Box<RunRecord>>,
    pub(crate) last_skipped: Option<DateTime<Utc>>,
    pub(crate) skipped_total: u64,
    /// The run folder and journal for `next`, created ahead of its due time.
    pub(crate) prepared: Option<Box<RunRecord>>,
    /// A due time whose preparation failed (full disk): not retried before it fires.
    pub(crate) prepare_failed: Option<DateTime<Utc>>,
}

impl JobState {
    pub(crate) fn new(
        job: Arc<Job>,
        last_due: Option<DateTime<Utc>>,
        last: Option<RunRecord>,
    ) -> Self {
        JobState {
            job,
            next: None,
            last_due,
            running: Vec::new(),
            queued: 0,
            last: last.as_ref().map(|r| Box::new(LastRun::from(r))),
            answered: None,
            last_skipped: None,
            skipped_total: 0,
            prepared: None,
            prepare_failed: None,
        }
    }

    /// The first firing after the daemon (re)starts or the job is (re)defined.
    ///
    /// A due time that passed since the last recorded one is run once soon (`catch_up =
    /// "once"`), jittered so that many jobs do not fork in the same millisecond; a job that
    /// never ran waits for its first regular slot.
    pub(crate) fn plan_initial(&mut self, now: DateTime<Utc>) {
        let sched = &self.job.schedule;
        if let (Some(last_due), Some(slot), CatchUp::Once) = (
            self.last_due,
            sched.last_at_or_before(now),
            self.job.catch_up,
        ) {
            if slot > last_due {
                let jitter = catch_up_jitter(&self.job.name, sched.nominal_interval(now));
                self.next = Some(Next {
                    due: slot,
                    fire_at: now + chrono::Duration::from_std(jitter).unwrap_or_default(),
                    trigger: Trigger::CatchUp,
                });
                return;
            }
        }
        self.plan_after(now);
    }

    /// The next regular slot after `t` (and after the last due time, so a wall clock set back
    /// never repeats a due time).
    pub(crate) fn plan_after(&mut self, t: DateTime<Utc>) {
        let base = match self.last_due {
            Some(ld) if ld > t => ld,
            _ => t,
        };
        self.next = self.job.schedule.next_after(base).map(|due| Next {
            due,
            fire_at: due,
            trigger: Trigger::Schedule,
        });
    }
}

/// A deterministic per-job delay in [0, min(interval/4, 10s)): spreads catch-up starts of many
/// jobs, and the same job always gets the same delay (predictable for the admin).
pub(crate) fn catch_up_jitter(name: &str, interval: Duration) -> Duration {
    let span = (interval / 4).min(Duration::from_secs(10)).as_millis() as u64;
    if span == 0 {
        return Duration::ZERO;
    }
    // FNV-1a: tiny, stable across builds and platforms.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    Duration::from_millis(h % span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Overlap;
    use crate::model::schedule::Schedule;
    use chrono::TimeZone;

    fn job(catch_up: CatchUp) -> Arc<Job> {
        Arc::new(Job {
            name: "j".into(),
            command: vec!["true".into()],
            robot: false,
            schedule: Schedule::Every {
                interval: Duration::from_secs(60),
                offset: Duration::ZERO,
            },
            timeout: Duration::from_secs(30),
            overlap: Overlap::Skip,
            catch_up,
            env: Default::default(),
            working_dir: None,
            argument_file: None,
            result: None,
            attempts: 1,
            services: crate::model::config::Services::Job,
            test_runtime_warn: None,
            test_runtime_crit: None,
            host: None,
            runtime_warn: None,
            runtime_crit: None,
            pyenv: None,
            user: None,
            user_deferred: false,
            plugin: None,
        })
    }

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, s).unwrap()
    }

    #[test]
    fn a_new_job_waits_for_its_first_slot() {
        let mut js = JobState::new(job(CatchUp::Once), None, None);
        js.plan_initial(t(10, 0, 30));
        assert_eq!(js.next.unwrap().due, t(10, 1, 0));
        assert_eq!(js.next.unwrap().trigger, Trigger::Schedule);
    }

    #[test]
    fn missed_slots_run_once_for_the_latest() {
        let mut js = JobState::new(job(CatchUp::Once), Some(t(9, 0, 0)), None);
        js.plan_initial(t(10, 0, 30));
        let n = js.next.unwrap();
        assert_eq!(n.due, t(10, 0, 0));
        assert_eq!(n.trigger, Trigger::CatchUp);
        assert!(n.fire_at >= t(10, 0, 30) && n.fire_at < t(10, 0, 45));

        let mut js = JobState::new(job(CatchUp::Skip), Some(t(9, 0, 0)), None);
        js.plan_initial(t(10, 0, 30));
        assert_eq!(js.next.unwrap().due, t(10, 1, 0));
    }

    #[test]
    fn nothing_missed_means_no_catch_up_and_no_repeat() {
        let mut js = JobState::new(job(CatchUp::Once), Some(t(10, 0, 0)), None);
        js.plan_initial(t(10, 0, 30));
        assert_eq!(js.next.unwrap().due, t(10, 1, 0));
        // Clock set back an hour: the next due time is still after the last one run.
        js.plan_after(t(9, 0, 30));
        assert_eq!(js.next.unwrap().due, t(10, 1, 0));
    }

    /// The daemon holds one `Job` and one `JobState` per configured job for its whole life:
    /// what most jobs lack most of the time (a prepared run, a result, an environment, a user)
    /// must stay boxed, or 10,000 jobs no longer fit in 12 MiB (issue 14). Counted in bytes,
    /// not timed; both were over 400 bytes more before.
    #[test]
    fn the_per_job_state_stays_small() {
        use std::mem::size_of;
        assert!(
            size_of::<JobState>() <= 192,
            "JobState is {} bytes",
            size_of::<JobState>()
        );
        assert!(size_of::<Job>() <= 320, "Job is {} bytes", size_of::<Job>());
    }

    #[test]
    fn jitter_is_bounded_and_stable() {
        let i = Duration::from_secs(3600);
        assert_eq!(catch_up_jitter("a", i), catch_up_jitter("a", i));
        for n in 0..100 {
            assert!(catch_up_jitter(&format!("job{n}"), i) < Duration::from_secs(10));
        }
        assert!(catch_up_jitter("a", Duration::from_secs(1)) < Duration::from_millis(250));
    }
}
