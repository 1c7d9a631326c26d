//! Caps on reading one run's results (the daemon's `result_max_size` and
//! `result_parse_timeout`; how they are enforced is `logic::robot::budget`'s).

use std::time::Duration;

/// Caps on reading the results of one run (the daemon's `result_max_size` and
/// `result_parse_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest result file read, in bytes.
    pub(crate) max_bytes: u64,
    /// Longest time all of a run's result files may take together.
    pub(crate) max_time: Duration,
}

impl Limits {
    /// No caps: for a person's `parse-result`, and the retry wrapper reading its own
    /// attempts (as the job's user, under the run's timeout).
    pub(crate) const NONE: Limits = Limits {
        max_bytes: u64::MAX,
        max_time: Duration::MAX,
    };
}
