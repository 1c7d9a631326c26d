//! `start` and `stop`: launch the daemon in the background and wait until it runs; ask it to
//! stop (after its runs, or `--now`) and wait until it is gone, ending one that no longer
//! answers.

use super::load_or_report;
use crate::app::ctrl;
// What these commands print from files and other processes (a config error naming paths, the
// words of a daemon of this config elsewhere, a launched daemon's start error) passes the
// terminal filter: control characters shown as `\x1b`, not executed.
use crate::app::term::sanitize;
use crate::model::report::{self};
use crate::model::request::{StopMode, StopRequest};
use crate::service::config::{self};
use crate::service::state::{self, Durability, StateDir};
use crate::service::{lock, sys};
use chrono::Utc;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `start`: launches the daemon in the background (as ctrl would) and returns once it runs.
pub(crate) fn start(path: &Path, run_flag: Option<PathBuf>) -> i32 {
    if run_flag.is_some() {
        eprintln!(
            "robotmk-daemon: --run-flag needs --foreground (the agent starts extensions itself)"
        );
        return 1;
    }
    let cfg = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = crate::service::security::check(&cfg) {
        eprintln!("robotmk-daemon: {e}");
        return 1;
    }
    let st = StateDir::new(&cfg.daemon.state_dir);
    if let Some(why) = crate::service::report::daemon_of_another_config(&st, path) {
        eprintln!("robotmk-daemon: {}", sanitize(&why));
        return 1;
    }
    if let Err(e) = st.ensure().and_then(|_| st.touch_heartbeat()) {
        eprintln!("robotmk-daemon: {e}");
        return 1;
    }
    match ctrl::ensure_daemon(&cfg, &st) {
        Ok(e) => {
            let r = crate::service::report::build(
                path.to_path_buf(),
                report::ConfigView::Loaded(&cfg),
                Some((cfg.daemon.instance.clone(), cfg.daemon.state_dir.clone())),
            );
            let pid = r.daemon.pid.map_or("?".into(), |p| p.to_string());
            if e.started {
                println!(
                    "daemon started for instance {} (pid {pid}, via {})",
                    cfg.daemon.instance,
                    e.route.as_ref().map_or("?", |r| r.as_str())
                );
            } else {
                println!(
                    "daemon already running for instance {} (pid {pid})",
                    cfg.daemon.instance
                );
            }
            if let Some(n) = e.note {
                eprintln!("robotmk-daemon: note: {}", sanitize(&n));
            }
            if let Some(t) = cfg.daemon.heartbeat_timeout {
                eprintln!(
                    "robotmk-daemon: note: the daemon exits after {} without a ctrl call (the Checkmk agent makes one every minute; heartbeat_timeout in {}; \"0\" keeps it running without an agent)",
                    crate::model::duration::format(t),
                    cfg.path.display()
                );
            }
            if r.daemon.running {
                0
            } else {
                eprintln!(
                    "robotmk-daemon: the daemon is not running; see {}",
                    st.log_file().display()
                );
                1
            }
        }
        Err(e) => {
            eprintln!("robotmk-daemon: {}", sanitize(&e.to_string()));
            1
        }
    }
}

/// `stop [--now]`: asks the daemon to stop and waits up to `timeout` until it is gone.
pub(crate) fn stop(path: &Path, now: bool, timeout: Duration) -> i32 {
    // A broken config must not keep an admin from stopping the daemon: find it leniently
    // (nor a user that is gone: no lookups).
    let located = match config::load_with(path, crate::model::config::Users::NamesOnly) {
        Ok(c) => Some((c.daemon.instance, c.daemon.state_dir)),
        Err(e) => {
            eprintln!(
                "robotmk-daemon: warning: config error: {}",
                sanitize(&e.to_string())
            );
            crate::service::one_daemon::locate(path)
        }
    };
    let Some((instance, dir)) = located else {
        eprintln!(
            "robotmk-daemon: cannot tell which state dir the config at {} uses",
            path.display()
        );
        return 2;
    };
    // A config or state dir another user could change may name another instance, hold a
    // forged status (a PID to signal) or links to redirect the stop request: do not act on it.
    if let Err(e) = crate::service::security::check_config(path)
        .and_then(|_| crate::service::security::check_state_dir(&dir))
    {
        eprintln!("robotmk-daemon: {e}");
        return 1;
    }
    let st = StateDir::new(dir);
    if let Some(why) = crate::service::report::daemon_of_another_config(&st, path) {
        eprintln!("robotmk-daemon: not stopped: {}", sanitize(&why));
        return 1;
    }
    match lock::is_held(&st.lock_file()) {
        Ok(false) => {
            println!("no daemon running for instance {instance}");
            return 0;
        }
        Ok(true) => {}
        Err(e) => {
            eprintln!("robotmk-daemon: cannot tell whether a daemon runs: {e}");
            return 1;
        }
    }
    let status: Option<crate::model::status::Status> =
        state::read_json(&st.status_file()).ok().flatten();
    // Only ever a PID verified as this instance's daemon is signalled or ended: the one its
    // status names, or — no status written yet, a daemon started on a full disk (W2 F5) —
    // the one holding the config's lock with this state dir (only a daemon of this user can
    // hold it: see `sys::config_lock`), verified all the same.
    let daemon = status
        .map(|s| s.daemon)
        .filter(|d| sys::is_instance_daemon(d.pid, d.pid_start, &st.lock_file()))
        .map(|d| Daemon { pid: d.pid })
        .or_else(|| match crate::service::one_daemon::probe(path, &st.root) {
            crate::service::one_daemon::Probe::Here(pid) => {
                let start = sys::process_start_time(pid);
                sys::is_instance_daemon(pid, start, &st.lock_file()).then_some(Daemon { pid })
            }
            _ => None,
        });
    // A beat of this command's own: whether the daemon answers it tells, past the timeout, a
    // daemon that is busy ending its runs from one that is frozen or hung. Setting an mtime
    // needs no free space.
    let beat = st
        .touch_heartbeat()
        .ok()
        .and_then(|()| st.heartbeat_mtime());
    let req = StopRequest {
        mode: if now { StopMode::Now } else { StopMode::Drain },
        requested: Utc::now(),
        upgrade_to: None,
    };
    match state::write_json(&st.stop_file(), &req, Durability::NoSync) {
        // Wake the daemon at once instead of at its next look at the stop file.
        Ok(()) => {
            if let Some(d) = &daemon {
                let _ = sys::signal_stop(d.pid);
            }
        }
        // A full disk is when an admin stops things: the signal needs no disk. SIGTERM alone
        // means a polite stop; `--now` has a signal of its own.
        Err(e) => {
            let Some(d) = &daemon else {
                eprintln!(
                    "robotmk-daemon: cannot write the stop request: {e}; and the daemon's PID is not known or not verified, so it cannot be signalled instead"
                );
                return 1;
            };
            eprintln!(
                "robotmk-daemon: cannot write the stop request: {e}; signalling the daemon (pid {}) instead",
                d.pid
            );
            let sent = if now {
                sys::signal_stop_now(d.pid)
            } else {
                sys::signal_stop(d.pid)
            };
            if let Err(e) = sent {
                eprintln!(
                    "robotmk-daemon: cannot signal the daemon (pid {}): {e}",
                    d.pid
                );
                return 1;
            }
        }
    }
    let deadline = Instant::now() + timeout;
    let mut progress = crate::app::term::Progress::stderr();
    while lock::is_held(&st.lock_file()).unwrap_or(false) {
        if progress.due() {
            progress.draw(&stop_progress(&st, &instance));
        }
        if Instant::now() >= deadline {
            progress.finish();
            return stop_overdue(&st, &instance, now, timeout, beat);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    progress.finish();
    println!("daemon for instance {instance} stopped");
    0
}

/// The daemon `stop` may signal: a PID verified as this instance's.
struct Daemon {
    pid: u32,
}

/// `stop` past its timeout with the daemon still running. A daemon that has not answered
/// this command's beat is frozen or hung: with `--now` it is ended as ctrl ends one past
/// `hang_timeout` (a verified PID, SIGKILL; the next daemon adopts its runs as after a
/// crash); without, the admin is told so and how to end it.
fn stop_overdue(
    st: &StateDir,
    instance: &str,
    now: bool,
    timeout: Duration,
    beat: Option<std::time::SystemTime>,
) -> i32 {
    let r: Option<crate::model::status::Status> =
        state::read_json(&st.status_file()).ok().flatten();
    let inflight: usize = r
        .as_ref()
        .map(|s| s.jobs.iter().map(|j| j.running.len()).sum())
        .unwrap_or(0);
    let after = crate::model::duration::format(timeout);
    let silent = r
        .as_ref()
        .map(|s| &s.daemon)
        .zip(beat)
        .filter(|(d, beat)| d.acks_heartbeat && st.heartbeat_ack() != Some(*beat));
    let Some((d, beat)) = silent else {
        eprintln!(
            "robotmk-daemon: daemon for instance {instance} still running after {after} ({inflight} run(s) in flight){}",
            if now { "" } else { "; use --now to end them" }
        );
        return 1;
    };
    let silent = format!(
        "the daemon for instance {instance} (pid {}) did not answer within {after}",
        d.pid
    );
    if !now {
        eprintln!("robotmk-daemon: {silent} (frozen or hung?); `stop --now` ends it");
        return 1;
    }
    match crate::app::hang::end_unanswering(st, d, beat) {
        Ok(crate::app::hang::Ending::Ended) => {
            let why = format!("{silent} to stop --now; stop ended it");
            // For the next daemon's log and daemon line: the one ended could not write it.
            let _ =
                state::write_atomic(&st.restart_note_file(), why.as_bytes(), Durability::NoSync);
            println!(
                "{silent}: ended it (SIGKILL){}",
                if inflight > 0 {
                    format!("; its {inflight} run(s) in flight go on, and the daemon the next ctrl starts adopts them")
                } else {
                    String::new()
                }
            );
            0
        }
        Ok(crate::app::hang::Ending::Gone) => {
            println!("daemon for instance {instance} stopped");
            0
        }
        Ok(crate::app::hang::Ending::Answered) => {
            eprintln!(
                "robotmk-daemon: daemon for instance {instance} still running after {after} ({inflight} run(s) in flight); it answers, so it was not ended"
            );
            1
        }
        Err(e) => {
            eprintln!("robotmk-daemon: {silent}; not ended: {e}");
            1
        }
    }
}

/// The progress line of `stop` on a terminal: what the daemon still waits for.
fn stop_progress(st: &StateDir, instance: &str) -> String {
    let s: Option<crate::model::status::Status> =
        state::read_json(&st.status_file()).ok().flatten();
    let inflight: usize = s
        .map(|s| s.jobs.iter().map(|j| j.running.len()).sum())
        .unwrap_or(0);
    format!("waiting for the daemon of instance {instance} to stop: {inflight} run(s) in flight")
}
