//! The daemon's own part of the status and the debt of a status write. Its own file so that
//! the daemon's state (`shell.rs`) can hold one without importing the changes that use it;
//! only its parent, the named changes, can change it or owe a write.

use crate::model::status::DaemonInfo;
use std::time::{Duration, Instant};

/// The daemon's own part of the status, and whether the status is owed a write.
#[derive(Debug)]
pub(in crate::app::daemon) struct Shown {
    /// Changed only by the named changes (`changes/mod.rs`).
    pub(super) info: DaemonInfo,
    owed: bool,
    last_flush: Option<Instant>,
}

impl Shown {
    /// A new daemon owes its first status at once.
    pub(in crate::app::daemon) fn new(info: DaemonInfo) -> Self {
        Shown {
            info,
            owed: true,
            last_flush: None,
        }
    }

    pub(in crate::app::daemon) fn info(&self) -> &DaemonInfo {
        &self.info
    }

    /// When the status is to be written: `None` while nothing is owed; not sooner than
    /// `gap` after the last write.
    pub(in crate::app::daemon) fn write_at(&self, now: Instant, gap: Duration) -> Option<Instant> {
        self.owed
            .then(|| self.last_flush.map_or(now, |f| (f + gap).max(now)))
    }

    /// Whether a write is owed (a change that only refreshes a detail rides along with it).
    pub(in crate::app::daemon) fn owed(&self) -> bool {
        self.owed
    }

    /// Takes the debt if the status is to be written now (at once when `force`d).
    pub(in crate::app::daemon) fn take_write(
        &mut self,
        now: Instant,
        gap: Duration,
        force: bool,
    ) -> bool {
        if !self.owed || (!force && self.last_flush.is_some_and(|l| now < l + gap)) {
            return false;
        }
        self.owed = false;
        self.last_flush = Some(now);
        true
    }

    /// Only the named changes (`changes/mod.rs`) owe a write.
    pub(super) fn owe(&mut self) {
        self.owed = true;
    }
}
