//! The state a drain keeps (see `drain`): whether it hands over, and the due times it missed.

use crate::model::record::Trigger;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The drain's own state.
#[derive(Debug, Default)]
pub(super) struct Drained {
    /// The drain hands the instance over to another (the config names another instance or
    /// state dir): undone when the config names this one again.
    pub(super) handing_over: bool,
    /// Another daemon holds the instance now (its lock file was replaced): the due times are
    /// its to run and record, not this one's.
    pub(super) another_runs_them: bool,
    /// Each job's latest due time passed while draining, not recorded yet.
    pub(super) missed: BTreeMap<String, Missed>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Missed {
    pub(super) due: DateTime<Utc>,
    pub(super) trigger: Trigger,
    /// A due time of the job was taken before this one: the next daemon finds a record on
    /// disk and catches this one up (a job that never ran waits for its next slot instead).
    pub(super) after_another: bool,
}
