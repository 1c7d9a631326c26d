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
//! after one last look ([`CONFIRM`]), by SIGKILL / TerminateProcess to a PID that
//! [`crate::service::sys::is_instance_daemon`] verified (never a PID from a file alone), waits until
//! that process (and with it its lock) is gone, and starts a new daemon as usual
//! (`ctrl.action` = `restarted`). Racing ctrls end it one at a time under `start.lock`, so
//! one ends it and the others find it gone.
//!
//! Not judged: a daemon that does not say it answers (older builds), and one that reports a
//! state error (it may be alive but unable to write the ack; the error is shown instead).

use crate::model::report;
use crate::model::status::DaemonInfo;
use crate::service::state::{self, StateDir};
use crate::service::{lock, sys};
use std::time::{Duration, Instant, SystemTime};

/// How long a beat may wait for its answer: the daemon answers when its watch reports the beat
/// (at once, or within its 30 s fallback look where no watch could be set up — the admin
/// sees why in its log), plus a busy pass of its loop and the scheduler's delays.
pub const ANSWER_GRACE: Duration = Duration::from_secs(5);
/// The last look before a daemon is ended: a daemon that was only slow answers within it.
const CONFIRM: Duration = Duration::from_secs(2);
/// How long ctrl waits for the daemon it ended to be gone.
const RELEASE_PATIENCE: Duration = Duration::from_secs(3);

/// The beat the daemon `d` has not answered (when ctrl wrote it) and its age; `None` when it
/// answered, has nothing to answer, or is not judged (`state_error`: it reports one).
pub fn unanswered(
    st: &StateDir,
    d: &DaemonInfo,
    state_error: bool,
) -> Option<(SystemTime, Duration)> {
    if !d.acks_heartbeat || state_error {
        return None;
    }
    let beat = st.heartbeat_mtime()?;
    if st.heartbeat_ack() == Some(beat) {
        return None;
    }
    // A beat dated in the future (the clock was set back) has no age yet.
    let age = SystemTime::now().duration_since(beat).unwrap_or_default();
    Some((beat, age))
}

/// When the beat the daemon leaves unanswered past [`ANSWER_GRACE`] was written.
pub fn not_responding_since(
    st: &StateDir,
    d: &DaemonInfo,
    state_error: bool,
) -> Option<chrono::DateTime<chrono::Utc>> {
    unanswered(st, d, state_error)
        .filter(|(_, age)| *age > ANSWER_GRACE)
        .map(|(beat, _)| utc(beat).unwrap_or(chrono::DateTime::UNIX_EPOCH))
}

/// `t` as a date, if chrono can hold it: a file's mtime may be anything, and chrono's own
/// conversion panics outside its range.
fn utc(t: SystemTime) -> Option<chrono::DateTime<chrono::Utc>> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    chrono::DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, d.subsec_nanos())
}

/// More daemon starts than this within [`restart_window`] make the daemon line CRIT (a daemon
/// that keeps restarting, whatever the reason: each crash, or each clean exit, restarted by
/// the next ctrl).
pub const MAX_STARTS: usize = 3;

/// A few heartbeat periods: how long a crash keeps the daemon line CRIT after the restart, and
/// the window in which starts are counted. Twice the dead man timeout in force (raised for the
/// agent's cached mode, so it scales with how often ctrl runs), at least 10 minutes.
pub fn restart_window(heartbeat_timeout_s: Option<f64>) -> Duration {
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
pub fn unstable(d: &DaemonInfo, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
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
    let window_text = crate::logic::agent::human_age(window.as_secs_f64());
    let crash = d.previous_crash.as_ref().map(|c| {
        let died = c
            .died
            .map(|t| format!(" at {}", state::record::ts(t)))
            .unwrap_or_default();
        format!(
            "the daemon before it (pid {}, started {}) died{died}: {}",
            c.pid,
            state::record::ts(c.started),
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

/// What ctrl found before its beat, and what it did about it.
#[derive(Debug)]
pub enum Judgement {
    /// Answered, no daemon, or nothing to judge: ctrl beats and goes on as usual.
    Answering,
    /// The previous beat is unanswered: ctrl does not beat. With a note for ctrl's section
    /// once the grace is over.
    Silent(Option<String>),
    /// Past `hang_timeout` the daemon was ended; ctrl beats and starts a new one. Why.
    Ended(String),
}

/// Judges the daemon before this ctrl's beat and, past `hang_timeout` (`None`: never, or the
/// config is unreadable), ends it.
pub fn judge(st: &StateDir, hang_timeout: Option<Duration>) -> Judgement {
    if !lock::is_held(&st.lock_file()).unwrap_or(false) {
        return Judgement::Answering;
    }
    let Some(status) = report::read_status(st) else {
        return Judgement::Answering;
    };
    let d = &status.daemon;
    let state_error = d.state_error.is_some() || state::read_alert(st).is_some();
    let Some((beat, age)) = unanswered(st, d, state_error) else {
        return Judgement::Answering;
    };
    if age <= ANSWER_GRACE {
        return Judgement::Silent(None);
    }
    let since = utc(beat).map_or_else(|| "an absurd time".into(), state::record::ts);
    let silent = format!(
        "the daemon (pid {}) has not answered the heartbeat of {since} for {}",
        d.pid,
        crate::logic::agent::human_age(age.as_secs_f64())
    );
    let Some(limit) = hang_timeout else {
        return Judgement::Silent(Some(format!(
            "{silent}; it is not ended (hang_timeout = \"0\" or no valid config)"
        )));
    };
    let limit_text = crate::model::duration::format(limit);
    if age < limit {
        return Judgement::Silent(Some(format!(
            "{silent}; ctrl ends it after {limit_text} (hang_timeout)"
        )));
    }
    match end(st, d, beat) {
        Ok(Ending::Answered | Ending::Gone) => Judgement::Answering,
        Ok(Ending::Ended) => {
            let why = format!(
                "the daemon (pid {}) did not answer the heartbeat of {since} for {} (hang_timeout {limit_text}); ctrl ended it",
                d.pid,
                crate::logic::agent::human_age(age.as_secs_f64())
            );
            // For the next daemon's log: the one that was ended could not write it.
            let _ = state::write_atomic(
                &st.restart_note_file(),
                why.as_bytes(),
                state::Durability::NoSync,
            );
            Judgement::Ended(why)
        }
        Err(e) => Judgement::Silent(Some(format!("{silent}; past hang_timeout, but {e}"))),
    }
}

/// What [`end`] found or did.
enum Ending {
    /// It answered at the last look and lives on.
    Answered,
    /// A ctrl racing this one ended it first; the next daemon is started as usual.
    Gone,
    /// Ended by this ctrl, and gone with its lock.
    Ended,
}

/// Ends the daemon `d` that leaves `beat` unanswered.
fn end(st: &StateDir, d: &DaemonInfo, beat: SystemTime) -> Result<Ending, String> {
    if poll(CONFIRM, || st.heartbeat_ack() == Some(beat)) {
        return Ok(Ending::Answered);
    }
    // One ctrl at a time, so that racing ctrls do not all end (and report) the same daemon:
    // the others find it gone. Released before the launch, which takes it again.
    let patience = CONFIRM + RELEASE_PATIENCE + Duration::from_secs(1);
    let guard = lock::acquire_within(&st.start_lock_file(), patience)
        .map_err(|e| format!("cannot take {}: {e}", st.start_lock_file().display()))?;
    if guard.is_none() {
        return Err("another ctrl holds start.lock; not ended".into());
    }
    let old = sys::ProcessId {
        pid: d.pid,
        start: d.pid_start,
    };
    if !old.is_alive() {
        return Ok(Ending::Gone);
    }
    if st.heartbeat_ack() == Some(beat) {
        return Ok(Ending::Answered);
    }
    if !sys::is_instance_daemon(d.pid, d.pid_start, &st.lock_file()) {
        return Err(format!(
            "pid {} is not verified as this instance's daemon (start time, program, lock); not ended",
            d.pid
        ));
    }
    sys::kill_process(d.pid, d.pid_start)
        .map_err(|e| format!("ending pid {} failed: {e}", d.pid))?;
    // Gone, and its lock free: the leader of a multi-threaded process is a zombie while
    // its other threads still hold the files. start.lock, held here, keeps any other ctrl
    // from starting the next daemon meanwhile, so a held lock is still the old one's.
    let gone = || !old.is_alive() && !lock::is_held(&st.lock_file()).unwrap_or(true);
    if !poll(RELEASE_PATIENCE, gone) {
        return Err(format!(
            "pid {} was sent the kill and still runs or holds the lock after {}s",
            d.pid,
            RELEASE_PATIENCE.as_secs()
        ));
    }
    Ok(Ending::Ended)
}

/// Polls `cond` every 20 ms until it holds (true) or `within` passes (false).
fn poll(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From JSON, as ctrl reads it: fields added later with defaults need no edit here.
    fn info(acks: bool) -> DaemonInfo {
        serde_json::from_value(serde_json::json!({
            "pid": 1, "started": chrono::Utc::now(), "build": crate::BUILD_ID,
            "config": "/c.toml", "route": "fork", "acks_heartbeat": acks, "phase": "running",
            "heartbeat_timeout_s": null,
        }))
        .unwrap()
    }

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

    #[test]
    fn an_answered_beat_is_fine_and_an_old_unanswered_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::create(st.heartbeat_file())
            .unwrap()
            .set_modified(old)
            .unwrap();
        let d = info(true);
        assert!(unanswered(&st, &d, false).is_some(), "no ack yet");
        let since = not_responding_since(&st, &d, false).expect("past the grace");
        assert_eq!(SystemTime::from(since), old);
        // Not judged: an older daemon, or one that reports it cannot write state.
        assert!(unanswered(&st, &info(false), false).is_none());
        assert!(unanswered(&st, &d, true).is_none());

        st.ack_heartbeat(st.heartbeat_mtime().unwrap()).unwrap();
        assert!(unanswered(&st, &d, false).is_none(), "answered");

        // An mtime older than any date chrono can hold is a beat long past, not a panic.
        // (tmpfs stores any mtime; ext4 and NTFS clamp it, and SystemTime may not reach it.)
        let shm = tempfile::tempdir_in("/dev/shm").ok();
        let st = shm.as_ref().map_or(st, |d| StateDir::new(d.path()));
        let ancient = SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(1 << 60));
        let set = ancient.filter(|t| {
            let f = crate::service::sys::file::open_or_create(&st.heartbeat_file());
            f.and_then(|f| f.set_modified(*t)).is_ok() && st.heartbeat_mtime() == Some(*t)
        });
        if set.is_some() {
            let since = not_responding_since(&st, &d, false).expect("long past");
            assert_eq!(since, chrono::DateTime::UNIX_EPOCH);
        } else {
            eprintln!("SKIP: this file system cannot store an mtime before year -262000");
        }

        st.touch_heartbeat().unwrap();
        let (_, age) = unanswered(&st, &d, false).expect("a new beat");
        assert!(age < ANSWER_GRACE);
        assert!(
            not_responding_since(&st, &d, false).is_none(),
            "within the grace"
        );
    }
}
