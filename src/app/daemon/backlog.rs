//! Whether the daemon keeps up with its schedule: past the rate of runs the machine sustains,
//! it must degrade visibly, never silently (issue 25). Two signs, counted over the last minute
//! or two: due times the loop woke too late for (each recorded as a skipped run by
//! `fire_due`), and scheduled runs that started later than their period (or than 10 s). While
//! either was seen, the status carries a line naming the backlog — the records waiting to be
//! written and the runs queued — and ctrl's daemon line turns WARN with it
//! ([`crate::logic::agent::daemon_line`]). It clears by itself a minute after the last sign.
//! The loop puts the line into the status each pass through the named change
//! `update_backlog` (`changes/mod.rs`). So too for a minute after the daemon last ran out of
//! file descriptors ([`descriptors_short`]): runs that could not get one are recorded as
//! errors naming the cause, and the line must not go back to OK as if none had been lost.

use std::time::{Duration, Instant};

/// How long a sign of falling behind keeps the daemon line at WARN.
const WINDOW: Duration = Duration::from_secs(60);
/// A start later than this (or than its period, if shorter, but at least a second) is late.
const LATE_CAP: Duration = Duration::from_secs(10);

/// Signs of falling behind in the current and the previous window.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    since: Option<Instant>,
    missed: u64,
    late: u64,
    /// The counts of the window before, shown for a minute after it closed.
    before: (u64, u64),
    /// When the last sign was seen.
    last: Option<Instant>,
}

impl Backlog {
    fn roll(&mut self, now: Instant) {
        match self.since {
            Some(s) if now.duration_since(s) < WINDOW => {}
            Some(s) if now.duration_since(s) < 2 * WINDOW => {
                self.before = (self.missed, self.late);
                (self.missed, self.late) = (0, 0);
                self.since = Some(s + WINDOW);
            }
            _ => {
                self.before = (0, 0);
                (self.missed, self.late) = (0, 0);
                self.since = Some(now);
            }
        }
    }

    /// A due time passed while the loop could not fire it (it runs the latest slot instead).
    pub(super) fn missed(&mut self) {
        let now = Instant::now();
        self.roll(now);
        self.missed += 1;
        self.last = Some(now);
    }

    /// A scheduled run started `late` after its due time; `period` is its schedule's.
    pub(super) fn started(&mut self, late: Duration, period: impl FnOnce() -> Duration) {
        if late <= Duration::from_secs(1) {
            return;
        }
        if late > LATE_CAP || late > period() {
            let now = Instant::now();
            self.roll(now);
            self.late += 1;
            self.last = Some(now);
        }
    }

    /// When the warning lapses, while it is shown.
    pub(super) fn expires(&self) -> Option<Instant> {
        self.last.map(|l| l + WINDOW)
    }

    /// The daemon line's text while behind, else `None`.
    pub(super) fn text(&mut self, finishing: usize, queued: usize) -> Option<String> {
        let now = Instant::now();
        if self.expires().is_none_or(|e| now >= e) {
            self.last = None;
            return None;
        }
        self.roll(now);
        let (missed, late) = (self.missed + self.before.0, self.late + self.before.1);
        let mut parts = Vec::new();
        if missed > 0 {
            parts.push(format!(
                "{missed} due times missed (the daemon woke too late for them; recorded as skipped)"
            ));
        }
        if late > 0 {
            parts.push(format!("{late} runs started later than their period"));
        }
        Some(format!(
            "behind schedule in the last {} s: {}; backlog: {finishing} records waiting to be written, {queued} runs queued",
            if self.before == (0, 0) { 60 } else { 120 },
            parts.join(", ")
        ))
    }
}

/// While the daemon ran out of file descriptors less than a minute ago (`sys::descriptors`,
/// noted by whichever step of a run met it): the daemon line's words, and when they lapse.
pub(super) fn descriptors_short(now: Instant) -> Option<(String, Instant)> {
    let (last, times) = crate::service::sys::descriptors::last_seen()?;
    let lapse = last + WINDOW;
    (now < lapse).then(|| {
        (
            format!(
                "{} (last {} s ago, {times} times since the daemon started; runs that could not get one are recorded as errors)",
                crate::service::sys::descriptors::words(),
                now.saturating_duration_since(last).as_secs()
            ),
            lapse,
        )
    })
}
