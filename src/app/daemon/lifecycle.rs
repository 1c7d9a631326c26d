//! The daemons of an instance, one after another: when each started and how it ended, so that a
//! daemon that died — or that restarts again and again — shows in ctrl's daemon line and in
//! `status`, naming the cause it can know (issue 19.4: a crash-looping daemon read OK).
//!
//! At start, holding the instance lock, the daemon
//! 1. reads what its predecessor left in `daemon.stderr` (the lines after that daemon's start
//!    marker): a panic's message (the panic hook writes it there), Rust's own report of a stack
//!    overflow or an allocation failure (written to stderr, never through the panic hook), the
//!    note of a fatal signal (`sys::fatal`, with the time);
//! 2. reads `starts.json`: a predecessor of this boot with no recorded end did not exit
//!    cleanly (one with a recorded non-zero exit code did not either) — the cause is what it
//!    left in 1., else that it left nothing (SIGKILL: the OOM killer, `kill -9`);
//! 3. appends its own start, sends its stderr to `daemon.stderr` after a marker line, and
//!    notes fatal signals there.
//!
//! It records its end (with the exit code) when it exits by itself. [`Begun`] carries the
//! predecessor's crash and the recent starts into the status; `liveness::unstable` judges
//! them when ctrl or `status` renders the daemon line.
//!
//! A daemon of another boot is not judged (the host restarted). `start --foreground` keeps
//! its terminal as stderr: a crash there is seen on the terminal, and the next daemon says the
//! cause is unknown. One-shot instances (`run-once` without a daemon) are not recorded.

use crate::model::status::{Crash, MAX_STARTS_KEPT};
use crate::service::state::{self, Durability, StateDir};
use crate::service::sys;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use tracing::warn;

/// `starts.json` keeps the starts of the last day.
const KEEP_FOR: chrono::Duration = chrono::Duration::days(1);
/// The most of `daemon.stderr` read; past [`STDERR_TRIM`] it starts over at a daemon's start.
const STDERR_CAP: u64 = 4 * 1024 * 1024;
const STDERR_TRIM: u64 = 256 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Starts {
    starts: Vec<Start>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Start {
    pid: u32,
    started: DateTime<Utc>,
    /// `/proc/sys/kernel/random/boot_id` (Linux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot: Option<String>,
    /// When the host booted (wall clock minus uptime), where there is no boot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    booted: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended: Option<End>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct End {
    at: DateTime<Utc>,
    code: i32,
}

/// What a starting daemon learnt about its predecessors.
#[derive(Debug, Default)]
pub(super) struct Begun {
    /// The instance's daemon starts in the last day, this one's last.
    pub(crate) starts: Vec<DateTime<Utc>>,
    /// How the previous daemon ended, when not cleanly.
    pub(crate) previous_crash: Option<Crash>,
    /// When and why the previous daemon stopped, when it stopped by itself (set by the
    /// caller from `status.json`, which this daemon is about to overwrite).
    pub(crate) previous_stop: Option<crate::model::status::LastStop>,
    /// Since when the previous daemon (or `run-once`) saw the wall clock behind a due time
    /// taken, from its last status (see `Daemon::clock_behind_since`).
    pub(crate) clock_set_back_since: Option<DateTime<Utc>>,
}

/// Records this daemon's start (see the module doc); `redirect`: send stderr to
/// `daemon.stderr` (not for `start --foreground`, whose stderr is a terminal). `ended_by_ctrl`:
/// why ctrl ended the previous daemon (`restart-note`: it did not answer past
/// `hang_timeout`), the cause of its end.
pub(super) fn begin(st: &StateDir, redirect: bool, ended_by_ctrl: Option<String>) -> Begun {
    let now = Utc::now();
    let me = std::process::id();
    let mut starts = match state::read_json::<Starts>(&st.starts_file()) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            warn!("{e}; the daemons before this one are not judged");
            Starts::default()
        }
    };
    let (boot, booted) = (sys::fatal::boot_id(), booted(now));
    let stderr_path = st.daemon_stderr_file();
    let stderr = state::open_append(&stderr_path);
    let previous_crash = starts
        .starts
        .last()
        .and_then(|prev| judge(prev, (&boot, booted), &stderr_path, ended_by_ctrl));
    if let Some(c) = &previous_crash {
        warn!(
            pid = c.pid, started = %crate::model::record::ts(c.started),
            "the previous daemon did not exit cleanly: {}", c.cause
        );
    }
    starts.starts.push(Start {
        pid: me,
        started: now,
        boot,
        booted,
        ended: None,
    });
    starts.starts.retain(|s| now - s.started < KEEP_FOR);
    let excess = starts.starts.len().saturating_sub(MAX_STARTS_KEPT);
    starts.starts.drain(..excess);
    if let Err(e) = state::write_json(&st.starts_file(), &starts, Durability::NoSync) {
        warn!("cannot record this daemon's start: {e}");
    }
    mark_stderr(stderr, &stderr_path, now, redirect);
    Begun {
        starts: starts.starts.iter().map(|s| s.started).collect(),
        previous_crash,
        previous_stop: None,
        clock_set_back_since: None,
    }
}

/// How the previous daemon `prev` ended, if not cleanly: what it left in `daemon.stderr`, or
/// why ctrl ended it; nothing for a daemon of another boot.
fn judge(
    prev: &Start,
    (boot, booted): (&Option<String>, Option<DateTime<Utc>>),
    stderr_path: &std::path::Path,
    ended_by_ctrl: Option<String>,
) -> Option<Crash> {
    let left = |pid: u32| {
        crate::service::sys::file::read(
            stderr_path,
            STDERR_CAP,
            crate::service::sys::file::Links::Refuse,
        )
        .ok()
        .map(|b| left_by(&String::from_utf8_lossy(&b), pid))
        .unwrap_or_default()
    };
    let same_boot = match (&prev.boot, boot, prev.booted, booted) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => (a - b).num_seconds().abs() < 30,
        _ => true,
    };
    if !same_boot {
        return None;
    }
    let crash = |cause: String, died, ended_by_ctrl| Crash {
        pid: prev.pid,
        started: prev.started,
        died,
        cause,
        ended_by_ctrl,
    };
    match &prev.ended {
        Some(e) if e.code == 0 => None,
        // A daemon that gave up says why on stderr (`cannot install signal handlers: …`).
        Some(e) => {
            let mut cause = match left(prev.pid).last {
                Some(l) => format!(
                    "exited with code {}: {}",
                    e.code,
                    l.strip_prefix("robotmk-daemon: ").unwrap_or(&l)
                ),
                None => format!("exited with code {}", e.code),
            };
            crate::model::clip::clip(&mut cause, 600);
            Some(crash(cause, Some(e.at), false))
        }
        None => {
            let l = left(prev.pid);
            Some(
                match (&ended_by_ctrl, l.report.is_some() || l.signal.is_some()) {
                    (Some(why), false) => crash(why.clone(), None, true),
                    _ => crash(l.cause(), l.died, false),
                },
            )
        }
    }
}

/// Marks this daemon's start in `daemon.stderr` (trimmed when large) and, with `redirect`,
/// sends stderr and the notes of fatal signals there.
fn mark_stderr(
    stderr: std::io::Result<std::fs::File>,
    stderr_path: &std::path::Path,
    now: DateTime<Utc>,
    redirect: bool,
) {
    let me = std::process::id();
    match stderr {
        Ok(mut f) => {
            if f.metadata().is_ok_and(|m| m.len() > STDERR_TRIM) {
                let _ = f.set_len(0);
            }
            let _ = writeln!(
                f,
                "--- robotmk-daemon pid {me} started {} ---",
                crate::model::record::ts(now)
            );
            if redirect {
                if let Err(e) = sys::fatal::redirect_stderr(f) {
                    warn!("cannot send stderr to {}: {e}", stderr_path.display());
                }
                let _ = sys::fatal::note_fatal_signals(
                    sys::fatal::Stream::Stderr,
                    format!("robotmk-daemon: pid {me}: ").into_bytes(),
                    true,
                );
            }
        }
        Err(e) => warn!(
            "cannot open {}: {e}; a crash of this daemon leaves no cause",
            stderr_path.display()
        ),
    }
}

/// Records that this daemon exits by itself with `code`.
pub(super) fn end(st: &StateDir, code: i32) {
    let me = std::process::id();
    let Ok(Some(mut starts)) = state::read_json::<Starts>(&st.starts_file()) else {
        return;
    };
    let Some(mine) = starts.starts.iter_mut().rev().find(|s| s.pid == me) else {
        return;
    };
    mine.ended = Some(End {
        at: Utc::now(),
        code,
    });
    if let Err(e) = state::write_json(&st.starts_file(), &starts, Durability::NoSync) {
        warn!("cannot record this daemon's end: {e}");
    }
}

/// The panic hook: the message goes to the log and to stderr (`daemon.stderr`), where the next
/// daemon finds it whether or not the log could be written.
pub(super) fn note_panic(p: &std::panic::PanicHookInfo) {
    let text = p.to_string().replace(['\n', '\r'], " ");
    // stderr first: it needs no lock that the panicking code might hold.
    eprintln!(
        "robotmk-daemon: pid {}: {} {text}",
        std::process::id(),
        crate::model::record::ts(Utc::now())
    );
    tracing::error!("daemon panicked: {text}");
}

fn booted(now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let up = chrono::Duration::from_std(sys::uptime()?).ok()?;
    now.checked_sub_signed(up)
}

/// What a daemon left in `daemon.stderr` after its start marker.
#[derive(Debug, Default, PartialEq)]
struct Left {
    /// A panic, a stack overflow, an allocation failure, a runtime abort.
    report: Option<String>,
    /// `fatal signal 11 (SIGSEGV)`.
    signal: Option<String>,
    /// The last other line.
    last: Option<String>,
    died: Option<DateTime<Utc>>,
    /// Its marker was found.
    seen: bool,
}

impl Left {
    fn cause(&self) -> String {
        let mut cause = match (&self.report, &self.signal) {
            (Some(r), Some(s)) => format!("{r} ({s})"),
            (Some(r), None) => r.clone(),
            (None, Some(s)) => s.clone(),
            (None, None) => match &self.last {
                Some(l) => format!("it ended without a clean exit; its last words: {l}"),
                None if self.seen => "it ended without a clean exit and left no cause: killed by SIGKILL (the OOM killer, kill -9) or by an unhandled signal".into(),
                None => "it ended without a clean exit and left no cause (its stderr was not captured)".into(),
            },
        };
        crate::model::clip::clip(&mut cause, 600);
        cause
    }
}

/// Reads the lines after `pid`'s start marker in the text of `daemon.stderr`.
fn left_by(text: &str, pid: u32) -> Left {
    let marker = format!("--- robotmk-daemon pid {pid} started ");
    let Some(at) = text.rfind(&marker) else {
        return Left::default();
    };
    let mut left = Left {
        seen: true,
        ..Left::default()
    };
    let prefix = format!("robotmk-daemon: pid {pid}: ");
    for line in text[at..].lines().skip(1) {
        if line.starts_with("--- robotmk-daemon pid ") {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let line = line.strip_prefix(&prefix).unwrap_or(line);
        if let Some(rest) = line.strip_prefix("fatal signal ") {
            let (sig, time) = match rest.split_once(" at ") {
                Some((s, t)) => (s, t.parse::<i64>().ok()),
                None => (rest, None),
            };
            if left.signal.is_none() {
                left.signal = Some(format!("fatal signal {sig}"));
                left.died = left
                    .died
                    .or(time.and_then(|t| DateTime::from_timestamp(t, 0)));
            }
            continue;
        }
        let reported = [
            "panicked at",
            "has overflowed its stack",
            "memory allocation of",
            "fatal runtime error",
        ]
        .iter()
        .any(|k| line.contains(k));
        if reported {
            if left.report.is_none() {
                // The panic hook's line starts with its time.
                let (time, rest) = line.split_once(' ').unwrap_or(("", line));
                match DateTime::parse_from_rfc3339(time) {
                    Ok(t) => {
                        left.died = Some(t.with_timezone(&Utc));
                        left.report = Some(rest.to_string());
                    }
                    Err(_) => left.report = Some(line.to_string()),
                }
            }
            continue;
        }
        left.last = Some(line.to_string());
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_read_from_the_lines_after_the_daemons_marker() {
        let text = "--- robotmk-daemon pid 7 started 2026-01-01T00:00:00Z ---\n\
                    robotmk-daemon: pid 7: fatal signal 11 (SIGSEGV) at 1767225600\n\
                    --- robotmk-daemon pid 8 started 2026-01-01T00:01:00Z ---\n\
                    robotmk-daemon: pid 8: 2026-01-01T00:02:00Z panicked at src/x.rs:1:2: boom\n\
                    robotmk-daemon: pid 8: fatal signal 6 (SIGABRT) at 1767225721\n\
                    --- robotmk-daemon pid 9 started 2026-01-01T00:03:00Z ---\n\
                    thread 'finisher' has overflowed its stack\n\
                    fatal runtime error: stack overflow, aborting\n\
                    robotmk-daemon: pid 9: fatal signal 11 (SIGSEGV) at 1767225800\n\
                    --- robotmk-daemon pid 10 started 2026-01-01T00:04:00Z ---\n\
                    some library said goodbye\n\
                    --- robotmk-daemon pid 11 started 2026-01-01T00:05:00Z ---\n";
        let seven = left_by(text, 7);
        assert_eq!(seven.cause(), "fatal signal 11 (SIGSEGV)");
        assert_eq!(seven.died, DateTime::from_timestamp(1_767_225_600, 0));
        let eight = left_by(text, 8);
        assert_eq!(
            eight.cause(),
            "panicked at src/x.rs:1:2: boom (fatal signal 6 (SIGABRT))"
        );
        assert_eq!(
            eight.died.map(|d| d.to_rfc3339()),
            Some("2026-01-01T00:02:00+00:00".into())
        );
        let nine = left_by(text, 9).cause();
        assert!(
            nine.starts_with("thread 'finisher' has overflowed its stack (fatal signal 11"),
            "{nine}"
        );
        assert!(left_by(text, 10)
            .cause()
            .contains("some library said goodbye"));
        assert!(left_by(text, 11).cause().contains("SIGKILL"));
        assert!(left_by(text, 12).cause().contains("not captured"));
    }

    #[test]
    fn a_predecessor_without_an_end_crashed_and_a_clean_one_did_not() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        // None before: nothing to judge.
        let first = begin(&st, false, None);
        assert!(first.previous_crash.is_none());
        assert_eq!(first.starts.len(), 1);
        // The same process again stands for a successor: its predecessor has no end.
        let mut starts: Starts = state::read_json(&st.starts_file()).unwrap().unwrap();
        starts.starts[0].pid = 1;
        state::write_json(&st.starts_file(), &starts, Durability::NoSync).unwrap();
        let second = begin(&st, false, None);
        let crash = second.previous_crash.expect("no end recorded: a crash");
        assert_eq!(crash.pid, 1);
        assert!(crash.cause.contains("left no cause"), "{}", crash.cause);
        assert_eq!(second.starts.len(), 2);
        // A clean end: the next start judges nothing.
        end(&st, 0);
        let third = begin(&st, false, None);
        assert!(third.previous_crash.is_none());
        // An exit code is a crash too.
        end(&st, 3);
        let fourth = begin(&st, false, None);
        assert_eq!(
            fourth.previous_crash.map(|c| c.cause),
            Some("exited with code 3".into())
        );
        // Another boot: the host restarted, not the daemon.
        let mut starts: Starts = state::read_json(&st.starts_file()).unwrap().unwrap();
        let last = starts.starts.last_mut().unwrap();
        last.boot = Some("another boot".into());
        last.booted = Some(Utc::now() - chrono::Duration::days(3));
        state::write_json(&st.starts_file(), &starts, Durability::NoSync).unwrap();
        assert!(begin(&st, false, None).previous_crash.is_none());
    }
}
