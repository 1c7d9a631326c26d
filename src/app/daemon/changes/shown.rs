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
    /// The gap before the next write while writes fail (see [`Shown::wrote`]).
    backoff: Option<Duration>,
    /// Writes that succeeded in a row since the last failure.
    ok_in_a_row: u8,
}

/// The first gap after a failed write, doubled at each failure up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Short enough that space given back shows within seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Shown {
    /// A new daemon owes its first status at once.
    pub(in crate::app::daemon) fn new(info: DaemonInfo) -> Self {
        Shown {
            info,
            owed: true,
            last_flush: None,
            backoff: None,
            ok_in_a_row: 0,
        }
    }

    pub(in crate::app::daemon) fn info(&self) -> &DaemonInfo {
        &self.info
    }

    /// When the status is to be written: `None` while nothing is owed; not sooner than
    /// `gap` after the last write.
    pub(in crate::app::daemon) fn write_at(&self, now: Instant, gap: Duration) -> Option<Instant> {
        let gap = self.gap(gap);
        self.owed
            .then(|| self.last_flush.map_or(now, |f| (f + gap).max(now)))
    }

    fn gap(&self, gap: Duration) -> Duration {
        self.backoff.map_or(gap, |b| b.max(gap))
    }

    /// Whether the last write (status and view) succeeded. On a nearly full disk a write of
    /// the error succeeds (the view given up freed its pages), the error clears, and the
    /// next write fails again: each change owed the next write, ten writes and fifteen log
    /// lines a second for as long as the disk stayed full, evicting the log's history. So a
    /// failure backs off, and only two successes in a row end the backoff.
    pub(in crate::app::daemon) fn wrote(&mut self, ok: bool) {
        if ok {
            self.ok_in_a_row = self.ok_in_a_row.saturating_add(1);
            if self.ok_in_a_row >= 2 {
                self.backoff = None;
            }
        } else {
            self.ok_in_a_row = 0;
            self.backoff = Some(
                self.backoff
                    .map_or(BACKOFF_FIRST, |b| (b * 2).min(BACKOFF_MAX)),
            );
        }
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
        let gap = self.gap(gap);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shown() -> Shown {
        Shown::new(crate::model::status::sample_daemon_info(false))
    }

    /// Failing and succeeding in turn (a write of the error fits, the next does not) keeps
    /// backing off: the writes slow to one per [`BACKOFF_MAX`]; two successes end it.
    #[test]
    fn writes_that_fail_and_succeed_in_turn_back_off() {
        let gap = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut s = shown();
        let mut now = t0;
        let mut writes = 0;
        while now < t0 + Duration::from_secs(60) {
            if s.take_write(now, gap, false) {
                s.wrote(writes % 2 == 1);
                writes += 1;
            }
            s.owe();
            now = s.write_at(now, gap).unwrap();
        }
        assert!(writes <= 16, "{writes} writes in a minute");
        // Space back: two good writes, then the usual gap.
        for _ in 0..2 {
            now = s.write_at(now, gap).unwrap();
            assert!(s.take_write(now, gap, false));
            s.wrote(true);
            s.owe();
        }
        assert_eq!(s.write_at(now, gap), Some(now + gap));
    }
}
