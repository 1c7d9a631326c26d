//! What the daemon tracks per configured job: its place in its schedule (the pure
//! [`crate::logic::scheduler`] decides what it means), its runs in flight and queued, its
//! latest result, and the run folder prepared ahead of its next due time.

use crate::logic::scheduler::Slots;
use crate::model::config::Job;
use crate::model::record::RunRecord;
use crate::model::status::LastRun;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// What the daemon tracks per configured job.
///
/// One per job for the daemon's whole life, so kept small (10,000 jobs are 10,000 of these):
/// what most jobs lack most of the time (a prepared run, a result) is boxed, and the latest
/// result is kept as the summary the status shows, not as the whole record.
#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) job: Arc<Job>,
    /// The next firing and the latest due time taken (see `logic::scheduler`).
    pub(crate) slots: Slots,
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
    /// The run folder and journal for the next firing, created ahead of its due time.
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
            slots: Slots::new(last_due),
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

    /// True while the next firing still wants its folder made ahead: none made yet, and
    /// making one did not fail for this due time.
    pub(crate) fn wants_folder(&self) -> bool {
        self.prepared.is_none()
            && self
                .slots
                .next
                .is_some_and(|n| self.prepare_failed != Some(n.due))
    }

    /// True while a run of the job is in flight or queued (what `overlap` looks at).
    pub(crate) fn busy(&self) -> bool {
        !self.running.is_empty() || self.queued > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
