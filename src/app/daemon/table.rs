//! The runs the daemon's loop holds: queued for a free slot, and in flight with their
//! deadlines.

use crate::model::config::Job;
use crate::model::record::{Outcome, RunRecord, Trigger};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Instant;

/// A run the daemon watches.
#[derive(Debug)]
pub struct ActiveRun {
    pub record: RunRecord,
    /// Process group id (= the runner's PID).
    pub pgid: u32,
    pub deadline: Instant,
    /// When SIGKILL follows the SIGTERM already sent.
    pub kill_at: Option<Instant>,
    /// Why the daemon ended it, if it did.
    pub ended_by: Option<Outcome>,
    /// Found running by a new daemon after a crash: not its child, so its end is seen by
    /// polling its PID and start time, and its exit code is unknown.
    pub adopted: bool,
}

/// A due run waiting for a free slot (`max_parallel`).
#[derive(Debug)]
pub struct Pending {
    pub job: Arc<Job>,
    pub due: DateTime<Utc>,
    pub trigger: Trigger,
    /// The run folder and journal, if prepared ahead of the due time.
    pub prepared: Option<RunRecord>,
    /// The `run-once` request it answers, if any.
    pub request: Option<String>,
}
