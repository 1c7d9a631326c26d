//! Liveness (issue 10, finding 6): a daemon that holds the lock but no longer answers ctrl's
//! heartbeat (stopped, hung) is CRIT on the daemon line, and past `hang_timeout` ctrl ends it
//! and starts a new one. Real binary, real processes, SIGSTOP as the hang.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};

const IDLE_JOB: &str = "[[job]]\nname = \"idle\"\ncommand = [\"true\"]\nevery = \"1h\"\n";
/// ctrl's grace for an answer (`liveness::ANSWER_GRACE`).
const GRACE: Duration = Duration::from_secs(5);
/// Polling ctrl: each look starts a ctrl process, so not every 10 ms.
const EVERY: Duration = Duration::from_millis(250);

/// One ctrl call: its JSON section and its daemon line.
fn ctrl(inst: &Instance) -> (Value, String) {
    let out = inst.ctrl();
    assert!(out.status.success(), "ctrl failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = local_lines(&text)
        .into_iter()
        .next()
        .expect("a daemon line");
    (parse_section(&text), line)
}

/// The process's start time (`/proc/PID/stat` field 22), to tell it from a recycled PID.
fn start_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19).map(str::to_string)
}

fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

/// A process held in SIGSTOP; continued on drop (also when the test panics), unless it is
/// gone or its PID now names another process.
struct Stopped {
    pid: u32,
    start: Option<String>,
}

impl Stopped {
    fn new(pid: u32) -> Stopped {
        let s = Stopped {
            pid,
            start: start_of(pid),
        };
        // SAFETY: signalling the daemon this test started.
        unsafe {
            libc::kill(pid as i32, libc::SIGSTOP);
        }
        assert!(
            wait_for(Duration::from_secs(5), || is_stopped(pid)),
            "pid {pid} did not stop"
        );
        s
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.start.is_some() && start_of(self.pid) == self.start {
            // SAFETY: the same process as stopped (same start time).
            unsafe {
                libc::kill(self.pid as i32, libc::SIGCONT);
            }
        }
    }
}

/// Starts the daemon with a first ctrl and waits until it has answered that beat (the
/// answer is written by its loop, asynchronously).
fn started(inst: &Instance) -> u32 {
    let (j, _) = ctrl(inst);
    assert_eq!(j["ctrl"]["action"], "started", "{j}");
    let pid = j["daemon"]["pid"].as_u64().expect("pid") as u32;
    let answered = || {
        let m = |f: &str| {
            std::fs::metadata(inst.state.join(f))
                .and_then(|m| m.modified())
                .ok()
        };
        m("heartbeat").is_some() && m("heartbeat") == m("heartbeat-ack")
    };
    assert!(
        wait_for(Duration::from_secs(5), answered),
        "the daemon never answered the heartbeat"
    );
    pid
}

#[test]
fn a_stopped_daemon_is_crit_and_ok_again_once_continued() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nhang_timeout = \"0\"", IDLE_JOB);
    let pid = started(&inst);
    let (_, line) = ctrl(&inst);
    assert!(line.starts_with("0 \"Robotmk t daemon\""), "{line}");

    let stopped = Stopped::new(pid);
    let t0 = Instant::now();
    let mut crit = None;
    let found = wait_for_every(Duration::from_secs(20), EVERY, || {
        let (j, line) = ctrl(&inst);
        if line.starts_with("2 ") {
            crit = Some((j, line));
            return true;
        }
        assert!(line.starts_with("0 "), "before the grace: {line}");
        false
    });
    let took = t0.elapsed();
    assert!(found, "no CRIT within 20s of SIGSTOP");
    let (j, line) = crit.unwrap();
    eprintln!("CRIT {took:?} after SIGSTOP: {line}");
    assert!(line.contains("not responding since"), "{line}");
    assert!(line.contains(&format!("pid {pid}")), "{line}");
    assert!(took < GRACE + Duration::from_secs(3), "took {took:?}");
    assert!(j["daemon"]["not_responding_since"].is_string(), "{j}");
    assert_eq!(j["daemon"]["running"], true, "{j}");
    // The note may follow a call later: the line turns CRIT at the grace's edge, measured
    // from the beat, and the note's own look can fall a few milliseconds before it.
    let mut note = j["ctrl"]["note"].as_str().unwrap_or_default().to_string();
    wait_for_every(Duration::from_secs(3), EVERY, || {
        if !note.contains("not ended") {
            note = ctrl(&inst).0["ctrl"]["note"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        note.contains("not ended")
    });
    assert!(note.contains("not ended"), "hang_timeout = 0: {note}");
    // Still CRIT on the next call, and the daemon is left alone.
    assert!(ctrl(&inst).1.starts_with("2 "));
    assert_eq!(inst.daemon_processes(), vec![pid]);

    drop(stopped);
    let t1 = Instant::now();
    assert!(
        wait_for_every(Duration::from_secs(10), EVERY, || ctrl(&inst)
            .1
            .starts_with("0 ")),
        "still not OK 10s after SIGCONT"
    );
    eprintln!("OK again {:?} after SIGCONT", t1.elapsed());
    let (j, _) = ctrl(&inst);
    assert_eq!(j["ctrl"]["action"], "running");
    assert_eq!(j["daemon"]["pid"].as_u64(), Some(pid as u64));
    assert!(j["daemon"]["not_responding_since"].is_null(), "{j}");
}

#[test]
fn a_daemon_stopped_past_hang_timeout_is_ended_and_replaced() {
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nhang_timeout = \"10s\"",
        IDLE_JOB,
    );
    let old = started(&inst);
    let _stopped = Stopped::new(old);
    let t0 = Instant::now();
    let mut first_crit = None;
    let mut restart = None;
    let found = wait_for_every(Duration::from_secs(40), EVERY, || {
        let (j, line) = ctrl(&inst);
        if j["ctrl"]["action"] == "restarted" {
            restart = Some((j, line));
            return true;
        }
        if line.starts_with("2 ") && first_crit.is_none() {
            first_crit = Some(t0.elapsed());
        }
        false
    });
    let took = t0.elapsed();
    assert!(found, "not replaced within 40s of SIGSTOP");
    let (j, line) = restart.unwrap();
    eprintln!("CRIT after {first_crit:?}, replaced {took:?} after SIGSTOP: {line}");
    assert!(first_crit.is_some(), "no CRIT before the restart");
    assert!(took >= Duration::from_secs(10), "ended before hang_timeout");
    assert!(
        line.starts_with("1 ") && line.contains("restarted now"),
        "{line}"
    );
    let note = j["ctrl"]["note"].as_str().unwrap_or_default();
    assert!(note.contains(&format!("pid {old}")), "{note}");
    assert!(note.contains("hang_timeout"), "{note}");
    let new = j["daemon"]["pid"].as_u64().expect("new pid") as u32;
    assert_ne!(new, old);

    assert!(
        wait_for(Duration::from_secs(5), || !pid_alive(old)),
        "the stopped daemon {old} still lives"
    );
    assert_eq!(inst.daemon_processes(), vec![new], "exactly one daemon");
    let (j, line) = ctrl(&inst);
    assert_eq!(j["ctrl"]["action"], "running", "{j}");
    assert!(line.starts_with("0 \"Robotmk t daemon\""), "{line}");
    assert_eq!(j["daemon"]["pid"].as_u64(), Some(new as u64));
    let log = inst.log();
    assert!(
        log.contains("replacing the previous daemon") && log.contains(&format!("pid {old}")),
        "{log}"
    );
    assert!(!inst.state.join("restart-note").exists());
}

/// The agent runs ctrl as a copy of the binary under its plugin name; the daemon was
/// started by the admin's `robotmk-daemon`. That ctrl must still end the hung daemon.
#[test]
fn a_ctrl_copied_under_another_name_ends_a_hung_daemon() {
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nhang_timeout = \"10s\"",
        IDLE_JOB,
    );
    let old = started(&inst);
    // A name the program answers to as ctrl (ending in `ctrl`), not beginning as the
    // daemon's does.
    let copy = inst.dir.path().join("mk_rmk_ctrl");
    std::fs::copy(BIN, &copy).unwrap();
    let _stopped = Stopped::new(old);
    let mut last = String::new();
    let found = wait_for_every(Duration::from_secs(40), EVERY, || {
        let out = std::process::Command::new(&copy)
            .arg("--config")
            .arg(&inst.config)
            .arg("ctrl")
            .env_remove("MK_CONFDIR")
            .env_remove("MK_VARDIR")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        last = text.clone();
        parse_section(&text)["ctrl"]["action"] == "restarted"
    });
    assert!(found, "not replaced within 40s of SIGSTOP: {last}");
    assert!(
        wait_for(Duration::from_secs(5), || !pid_alive(old)),
        "the stopped daemon {old} still lives"
    );
    let new = inst.daemon_pid().expect("a new daemon");
    assert_ne!(new, old);
    assert!(inst.run(&["stop", "--now"]).status.success());
}

#[test]
fn an_idle_daemon_polled_every_second_is_never_called_unresponsive() {
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nhang_timeout = \"10s\"",
        IDLE_JOB,
    );
    let pid = started(&inst);
    let mut calls = 0;
    let look = |calls: &mut u32| {
        let (j, line) = ctrl(&inst);
        *calls += 1;
        assert!(line.starts_with("0 \"Robotmk t daemon\""), "{line}");
        assert_eq!(j["ctrl"]["action"], "running", "{j}");
        assert!(j["daemon"]["not_responding_since"].is_null(), "{j}");
        assert_eq!(j["daemon"]["pid"].as_u64(), Some(pid as u64));
    };
    // A ctrl every second for 8 s...
    let t0 = Instant::now();
    wait_for_every(Duration::from_secs(8), Duration::from_secs(1), || {
        look(&mut calls);
        false
    });
    // ...and calls whose previous beat is older than the grace, so that the answer is
    // actually judged: the daemon answered each beat long before.
    let beat_age = || {
        std::fs::metadata(inst.state.join("heartbeat"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default()
    };
    for _ in 0..2 {
        assert!(wait_for_every(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || beat_age() > GRACE + Duration::from_secs(1)
        ));
        look(&mut calls);
    }
    eprintln!("{calls} ctrl calls in {:?}, all OK", t0.elapsed());
    assert_eq!(inst.daemon_processes(), vec![pid]);
}

#[test]
fn ctrls_racing_past_hang_timeout_leave_exactly_one_daemon() {
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nhang_timeout = \"10s\"",
        IDLE_JOB,
    );
    let old = started(&inst);
    let _stopped = Stopped::new(old);
    // The first call beats (the beat before it was answered); the daemon never answers it.
    assert!(ctrl(&inst).1.starts_with("0 "));
    let beat_age = || {
        std::fs::metadata(inst.state.join("heartbeat"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default()
    };
    assert!(wait_for_every(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || beat_age() > Duration::from_secs(10)
    ));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = inst.cmd();
            cmd.arg("ctrl");
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                cmd.output().expect("ctrl")
            })
        })
        .collect();
    let actions: Vec<String> = handles
        .into_iter()
        .map(|h| {
            let out = h.join().unwrap();
            assert!(out.status.success(), "{out:?}");
            let j = parse_section(&String::from_utf8_lossy(&out.stdout));
            j["ctrl"]["action"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    eprintln!("actions of 8 racing ctrls: {actions:?}");
    // The ctrl that ended the daemon says so; a racing ctrl may have launched the new one.
    let count = |what: &str| actions.iter().filter(|a| *a == what).count();
    assert_eq!(count("restarted"), 1, "{actions:?}");
    assert!(count("started") <= 1, "{actions:?}");
    assert!(wait_for(Duration::from_secs(5), || !pid_alive(old)));
    let (j, line) = ctrl(&inst);
    assert!(line.starts_with("0 "), "{line}");
    let new = j["daemon"]["pid"].as_u64().expect("pid") as u32;
    assert_ne!(new, old);
    assert_eq!(inst.daemon_processes(), vec![new], "exactly one daemon");
}

#[test]
fn check_config_says_what_hang_timeout_does() {
    for (setting, want) in [
        (
            "hang_timeout = \"10s\"",
            "hang_timeout:      10s (a daemon not answering",
        ),
        (
            "hang_timeout = \"0\"",
            "hang_timeout:      off (a hung daemon is reported",
        ),
        ("", "hang_timeout:      5m (a daemon not answering"),
    ] {
        let inst = Instance::new(setting, IDLE_JOB);
        let out = inst.run(&["check-config"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(text.contains(want), "{setting:?}: {text}");
    }
}

/// `stop` of a frozen daemon (issue s11 D5): without `--now` it says the daemon does not
/// answer and how to end it; with `--now`, past the timeout, it ends it as ctrl ends a hung
/// daemon (verified PID, SIGKILL), and the next daemon adopts its run as after a crash.
#[test]
fn stop_now_ends_a_frozen_daemon_and_the_next_daemon_adopts_its_run() {
    let job = "[[job]]\nname = \"long\"\ncommand = [\"sh\", \"-c\", \"sleep 300\"]\nevery = \"1s\"\ntimeout = \"10m\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nhang_timeout = \"0\"", job);
    let pid = started(&inst);
    assert!(
        wait_for(Duration::from_secs(5), || inst
            .records("long")
            .first()
            .is_some_and(|r| r["pid"].is_u64())),
        "the run never started"
    );
    let pgid = inst.records("long")[0]["pid"].as_u64().unwrap() as u32;
    let _stopped = Stopped::new(pid);

    let out = inst.run(&["stop", "--timeout", "2s"]);
    let err = text(&out.stderr);
    eprintln!("stop: {out:?}");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        err.contains(&format!("(pid {pid}) did not answer")) && err.contains("stop --now"),
        "{err}"
    );
    assert!(pid_alive(pid), "a polite stop ended the daemon");

    let t = Instant::now();
    let out = inst.run(&["stop", "--now", "--timeout", "2s"]);
    eprintln!("stop --now took {:?}: {out:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("(pid {pid}) did not answer")) && said.contains("ended it"),
        "{said}"
    );
    assert!(
        wait_for(Duration::from_secs(3), || !pid_alive(pid)),
        "the frozen daemon still lives"
    );
    // Its run goes on, and the next daemon adopts it.
    assert!(group_has_live_members(pgid), "the run died with its daemon");
    let (j, _) = ctrl(&inst);
    assert_eq!(j["daemon"]["running"], true, "{j}");
    assert_ne!(j["daemon"]["pid"].as_u64(), Some(pid as u64), "{j}");
    assert!(
        wait_for(Duration::from_secs(5), || inst
            .log()
            .contains("adopting a run still in flight")),
        "no adoption in the log:\n{}",
        inst.log()
    );
    let out = inst.run(&["stop", "--now", "--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        wait_for(Duration::from_secs(3), || !group_has_live_members(pgid)),
        "the adopted run outlived stop --now"
    );
}
