//! The runs the daemon's loop holds: queued for a free slot, and in flight with their
//! deadlines.

use crate::model::config::Job;
use crate::model::record::{Outcome, RunRecord, Trigger};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Instant;

/// A run the daemon watches.
#[derive(Debug)]
pub(crate) struct ActiveRun {
    pub(crate) record: RunRecord,
    /// Process group id (= the runner's PID).
    pub(crate) pgid: u32,
    pub(crate) deadline: Instant,
    /// When SIGKILL follows the SIGTERM already sent.
    pub(crate) kill_at: Option<Instant>,
    /// Why the daemon ended it, if it did.
    pub(crate) ended_by: Option<Outcome>,
    /// Found running by a new daemon after a crash: not its child, so its end is seen by
    /// polling its PID and start time, and its exit code is unknown.
    pub(crate) adopted: bool,
}

/// A due run waiting for a free slot (`max_parallel`).
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) job: Arc<Job>,
    pub(crate) due: DateTime<Utc>,
    pub(crate) trigger: Trigger,
    /// The run folder and journal, if prepared ahead of the due time.
    pub(crate) prepared: Option<RunRecord>,
    /// The `run-once` request it answers, if any.
    pub(crate) request: Option<String>,
}
