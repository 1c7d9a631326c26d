//! Liveness: does the daemon that holds the instance lock still answer?
//!
//! The lock proves that a daemon process exists, not that it works: a stopped (`SIGSTOP`) or
//! hung daemon keeps it, and ctrl would report it healthy forever. So each ctrl beat is a
//! question the daemon answers: its loop is woken by each change of the heartbeat (it watches
//! the file), and copies an mtime it has not answered yet to the mtime of `heartbeat-ack`
//! (`daemon::control`). No periodic work: one wake of the loop and one small write per ctrl
//! call.
//!
//! Before it beats, ctrl compares the two mtimes (two `stat`s):
//! - equal: the previous beat was answered; ctrl beats again;
//! - different: the previous beat is unanswered, and ctrl does **not** beat, so the heartbeat
//!   keeps the time of the first beat the daemon missed and its age is how long the daemon
//!   has been silent (however often ctrl runs). A daemon that comes back sees that beat and
//!   answers it; its dead man switch counts it as a beat like any other.
//!
//! An unanswered beat older than [`ANSWER_GRACE`] makes the daemon line CRIT, "not responding
//! since …". Older than `hang_timeout`, ctrl ends the daemon, as systemd's watchdog would:
//! after one last look (`app::hang`'s `CONFIRM`), by SIGKILL / TerminateProcess to a PID that
//! [`crate::service::sys::is_instance_daemon`] verified (never a PID from a file alone), waits until
//! that process (and with it its lock) is gone, and starts a new daemon as usual
//! (`ctrl.action` = `restarted`). Racing ctrls end it one at a time under `start.lock`, so
//! one ends it and the others find it gone.
//!
//! Not judged: a daemon that does not say it answers (older builds), and one that reports a
//! state error (it may be alive but unable to write the ack; the error is shown instead).

use crate::model::status::DaemonInfo;
use std::time::{Duration, SystemTime};

/// How long a beat may wait for its answer: the daemon answers when its watch reports the beat
/// (at once, or within its 30 s fallback look where no watch could be set up — the admin
/// sees why in its log), plus a busy pass of its loop and the scheduler's delays.
pub(crate) const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// The beat the daemon `d` has not answered (when ctrl wrote it: the heartbeat's mtime
/// `beat`) and its age at `now`, given the ack's mtime (read only when needed); `None` when it
/// answered, has nothing to answer, or is not judged (`state_error`: it reports one).
pub(crate) fn unanswered(
    d: &DaemonInfo,
    state_error: bool,
    beat: impl FnOnce() -> Option<SystemTime>,
    ack: impl FnOnce() -> Option<SystemTime>,
    now: SystemTime,
) -> Option<(SystemTime, Duration)> {
    if !d.acks_heartbeat || state_error {
        return None;
    }
    let beat = beat()?;
    if ack() == Some(beat) {
        return None;
    }
    // A beat dated in the future (the clock was set back) has no age yet.
    let age = now.duration_since(beat).unwrap_or_default();
    Some((beat, age))
}

/// When the beat left unanswered (see [`unanswered`]) past [`ANSWER_GRACE`] was written.
pub(crate) fn silent_since(
    unanswered: Option<(SystemTime, Duration)>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    unanswered
        .filter(|(_, age)| *age > ANSWER_GRACE)
        .map(|(beat, _)| utc(beat).unwrap_or(chrono::DateTime::UNIX_EPOCH))
}

/// `t` as a date, if chrono can hold it: a file's mtime may be anything, and chrono's own
/// conversion panics outside its range.
pub(crate) fn utc(t: SystemTime) -> Option<chrono::DateTime<chrono::Utc>> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    chrono::DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, d.subsec_nanos())
}

/// More daemon starts than this within [`restart_window`] make the daemon line CRIT (a daemon
/// that keeps restarting, whatever the reason: each crash, or each clean exit, restarted by
/// the next ctrl).
pub(crate) const MAX_STARTS: usize = 3;

/// A few heartbeat periods: how long a crash keeps the daemon line CRIT after the restart, and
/// the window in which starts are counted. Twice the dead man timeout in force (raised for the
/// agent's cached mode, so it scales with how often ctrl runs), at least 10 minutes.
pub(crate) fn restart_window(heartbeat_timeout_s: Option<f64>) -> Duration {
    let floor = Duration::from_secs(600);
    heartbeat_timeout_s
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(floor, |s| {
            floor.max(Duration::from_secs_f64((2.0 * s).min(1e9)))
        })
}

/// Why the daemon line is CRIT though the daemon `d` runs: it restarted after a crash within
/// [`restart_window`], or started more than [`MAX_STARTS`] times in it (see
/// `daemon::lifecycle`). `None` when neither.
pub(crate) fn unstable(d: &DaemonInfo, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let window = restart_window(d.heartbeat_timeout_s);
    let within =
        |t: chrono::DateTime<chrono::Utc>| (now - t).to_std().map_or(true, |age| age < window);
    let count = d.starts.iter().filter(|t| within(**t)).count();
    // A daemon ctrl ended for not answering was CRIT while silent and WARN when replaced.
    let crashed = d
        .previous_crash
        .as_ref()
        .filter(|c| !c.ended_by_ctrl && within(d.started));
    let too_many = count > MAX_STARTS;
    if crashed.is_none() && !too_many {
        return None;
    }
    let window_text = crate::model::duration::human_age(window.as_secs_f64());
    let crash = d.previous_crash.as_ref().map(|c| {
        let died = c
            .died
            .map(|t| format!(" at {}", crate::model::record::ts(t)))
            .unwrap_or_default();
        format!(
            "the daemon before it (pid {}, started {}) died{died}: {}",
            c.pid,
            crate::model::record::ts(c.started),
            c.cause
        )
    });
    Some(match (too_many, crash) {
        (true, Some(c)) => format!("started {count} times in the last {window_text}; {c}"),
        (true, None) => format!("started {count} times in the last {window_text}"),
        (false, Some(c)) => format!("restarted after a crash: {c}"),
        (false, None) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status::sample_daemon_info as info;

    #[test]
    fn a_recent_crash_or_too_many_starts_make_the_daemon_unstable() {
        use crate::model::status::Crash;
        let now = chrono::Utc::now();
        let min = |m: i64| now - chrono::Duration::minutes(m);
        let mut d = info(true);
        d.started = min(1);
        d.starts = vec![min(1)];
        assert_eq!(unstable(&d, now), None, "one clean start");
        d.previous_crash = Some(Crash {
            pid: 42,
            started: min(3),
            died: Some(min(2)),
            cause: "fatal signal 11 (SIGSEGV)".into(),
            ended_by_ctrl: false,
        });
        let text = unstable(&d, now).expect("a crash a minute ago");
        assert!(
            text.starts_with("restarted after a crash: the daemon before it (pid 42,")
                && text.ends_with("fatal signal 11 (SIGSEGV)"),
            "{text}"
        );
        // Ended by ctrl past hang_timeout: reported while silent and at the restart already.
        d.previous_crash.as_mut().unwrap().ended_by_ctrl = true;
        assert_eq!(unstable(&d, now), None);
        d.previous_crash.as_mut().unwrap().ended_by_ctrl = false;
        // Long after the restart, one crash no longer makes it CRIT.
        d.started = min(60);
        d.starts = vec![min(60)];
        assert_eq!(unstable(&d, now), None);
        // Four starts in the window, clean or not: CRIT.
        d.previous_crash = None;
        d.starts = vec![min(9), min(6), min(4), min(1)];
        d.started = min(1);
        assert_eq!(
            unstable(&d, now).as_deref(),
            Some("started 4 times in the last 10m")
        );
        // A cached agent (raised dead man timeout) widens the window.
        d.heartbeat_timeout_s = Some(3600.0);
        d.starts = vec![min(100), min(70), min(40), min(1)];
        assert!(unstable(&d, now).is_some_and(|t| t.contains("4 times in the last 2h")));
    }
}
