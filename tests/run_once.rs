//! `run-once` (issue 10, finding 3): one supervisor and one writer. With a daemon running, the
//! daemon runs the job (its child, its record); with none, `run-once` holds the instance
//! itself, so no daemon can start beside it and adopt the run a second time. Either way the
//! output shows up live and the run is recorded once.
#![cfg(unix)]

mod common;

use common::*;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

const TALK: &str = "[[job]]\nname = \"talk\"\ncommand = [\"sh\", \"-c\", \"echo first; echo oops >&2; sleep 2; echo second\"]\nevery = \"1h\"\ntimeout = \"30s\"\n";

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Starts `run-once talk` with piped output; returns the child, the buffer a reader thread
/// fills with its stdout as it comes, and that reader.
fn spawn_run_once(
    inst: &Instance,
) -> (
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<String>>,
    std::thread::JoinHandle<()>,
) {
    let mut child = inst
        .cmd()
        .args(["run-once", "talk"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut out = child.stdout.take().unwrap();
    let b = buf.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    (child, buf, reader)
}

/// Waits for run-once and for the reader to have taken all of its output.
fn finish(mut child: std::process::Child, reader: std::thread::JoinHandle<()>) -> (i32, String) {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    reader.join().unwrap();
    (code, err)
}

#[test]
fn with_no_daemon_run_once_holds_the_instance_and_shows_output_live() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", TALK);
    let t0 = Instant::now();
    let (child, buf, reader) = spawn_run_once(&inst);
    let guard = child.id();
    assert!(
        wait_for(Duration::from_secs(10), || buf
            .lock()
            .unwrap()
            .contains("first")),
        "no live output: {:?}",
        buf.lock().unwrap()
    );
    let live_at = t0.elapsed();
    assert!(
        !buf.lock().unwrap().contains("second"),
        "output arrived only at the end"
    );
    // Meanwhile the instance is held: ctrl finds it running and starts no daemon.
    let j = inst.ctrl_json();
    assert_eq!(j["ctrl"]["action"], "running", "{j}");
    assert!(
        inst.daemon_processes().is_empty(),
        "a daemon started beside run-once"
    );
    let (code, err) = finish(child, reader);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("oops"), "stderr is shown too: {err}");
    let out = buf.lock().unwrap().clone();
    assert!(out.contains("second") && out.contains(": success"), "{out}");
    eprintln!(
        "first output line after {live_at:?}; run took {:?}",
        t0.elapsed()
    );
    // Recorded once, as run_once; the next ctrl starts a daemon that does not record it again.
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    assert!(wait_for(Duration::from_secs(3), || inst
        .daemon_pid()
        .is_some()));
    let recs = inst.finished_records("talk");
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["trigger"], "run_once");
    kill9(guard);
}

#[test]
fn with_a_daemon_running_the_daemon_runs_it_and_run_once_follows() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", TALK);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    let daemon = inst.daemon_pid().expect("daemon pid");
    let (child, buf, reader) = spawn_run_once(&inst);
    let guard = child.id();
    assert!(
        wait_for(Duration::from_secs(10), || buf
            .lock()
            .unwrap()
            .contains("first")),
        "no live output: {:?}",
        buf.lock().unwrap()
    );
    // The runner is the daemon's child, not run-once's: one supervisor.
    let rec = inst
        .records("talk")
        .into_iter()
        .find(|r| r["pid"].is_u64())
        .expect("a journalled run");
    let runner = rec["pid"].as_u64().unwrap() as u32;
    assert_eq!(ppid(runner), Some(daemon), "runner {runner}'s parent");
    assert!(!buf.lock().unwrap().contains("second"));
    let (code, err) = finish(child, reader);
    assert_eq!(code, 0, "{err}");
    assert!(buf.lock().unwrap().contains(": success"));
    // One record, and the daemon's status knows it at once (no back channel needed).
    let recs = inst.finished_records("talk");
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert!(wait_for(Duration::from_secs(3), || {
        inst.status_json()["jobs"][0]["last"]["run_id"] == recs[0]["run_id"]
    }));
    kill9(guard);
}

#[test]
fn exit_codes_follow_outcomes_with_and_without_a_daemon() {
    let jobs = format!(
        "{TALK}\n[[job]]\nname = \"fail\"\ncommand = [\"false\"]\nevery = \"1h\"\n\n[[job]]\nname = \"slow\"\ncommand = [\"sleep\", \"30\"]\nevery = \"1h\"\ntimeout = \"1s\"\n"
    );
    let inst = Instance::new("heartbeat_timeout = \"1m\"", &jobs);
    assert_eq!(inst.run(&["run-once", "fail"]).status.code(), Some(1));
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    assert_eq!(inst.run(&["run-once", "fail"]).status.code(), Some(1));
    let t = Instant::now();
    let out = inst.run(&["run-once", "slow"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("timeout") && text.contains("ended after its timeout"),
        "{text}"
    );
    let out = inst.run(&["run-once", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn ctrl_c_on_a_one_shot_run_ends_its_tree_and_records_it() {
    let job = "[[job]]\nname = \"long\"\ncommand = [\"sh\", \"-c\", \"echo started; sleep 300\"]\nevery = \"1h\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", job);
    let mut child = inst
        .cmd()
        .args(["run-once", "long"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let n = out.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("running job long"));
    assert!(wait_for(Duration::from_secs(10), || processes_of(
        &inst.state.display().to_string()
    )
    .iter()
    .any(|(_, c)| c.starts_with("sleep 300"))));
    // SAFETY: SIGINT to the run-once process this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let t = Instant::now();
    let status = child.wait().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(status.code(), Some(4), "killed runs exit 4");
    let recs = inst.finished_records("long");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["outcome"], "killed");
    assert!(processes_of(&inst.state.display().to_string()).is_empty());
}

#[test]
fn on_a_terminal_run_once_says_what_the_run_waits_for() {
    let jobs = format!(
        "{TALK}\n[[job]]\nname = \"block\"\ncommand = [\"sleep\", \"3\"]\nevery = \"1h\"\n"
    );
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nmax_parallel = 1", &jobs);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    let mut block = inst
        .cmd()
        .args(["run-once", "block"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let guard = block.id();
    assert!(wait_for(Duration::from_secs(10), || inst
        .records("block")
        .iter()
        .any(|r| r["pid"].is_u64())));
    // The only slot is taken: talk waits in the queue, and a terminal is told so.
    let out = inst
        .cmd()
        .args(["run-once", "talk"])
        .env("ROBOTMK_DAEMON_TTY", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("job talk is queued: waiting for a free run slot"),
        "{err}"
    );
    assert!(err.contains("job talk runs ("), "{err}");
    // Piped (no terminal): the output alone, no progress line.
    let out = inst.run(&["run-once", "talk"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("waiting") && !err.contains("runs ("), "{err}");
    let _ = block.wait();
    kill9(guard);
}

/// What `run-once` printed is what the agent sees next: once it returns, ctrl shows that run,
/// not the one before it (the daemon writes the record first and its status after).
#[test]
fn ctrl_right_after_run_once_shows_that_run() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let flag = inst.dir.path().join("fail-now");
    // Other jobs make the status (and ctrl's view) larger, its write later.
    let mut jobs = format!(
        "[[job]]\nname = \"flip\"\ncommand = [\"sh\", \"-c\", \"test ! -e {}\"]\nevery = \"1h\"\n",
        flag.display()
    );
    for i in 0..200 {
        jobs.push_str(&format!(
            "[[job]]\nname = \"other{i}\"\ncommand = [\"true\"]\nevery = \"1h\"\n"
        ));
    }
    inst.write_config("heartbeat_timeout = \"1m\"", &jobs);
    assert!(inst.ctrl().status.success());
    for round in 0..8 {
        let failing = round % 2 == 1;
        if failing {
            std::fs::write(&flag, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&flag);
        }
        let out = inst.run(&["run-once", "flip"]);
        assert_eq!(out.status.code(), Some(i32::from(failing)), "{out:?}");
        let text = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
        let line = local_lines(&text)
            .into_iter()
            .find(|l| l.contains("\"Robotmk t flip\""))
            .unwrap_or_else(|| panic!("no line for flip:\n{text}"));
        let want = if failing { "2 " } else { "0 " };
        assert!(line.starts_with(want), "round {round}: {line}");
    }
}

/// F8: `start` after a `run-once` that ran while the wall clock stood ahead (NTP has stepped it
/// back a few seconds since) names the daemon it started, not the `run-once` that has ended:
/// that one's status has a start time after the launch, and readiness is judged by the live
/// process holding the lock, not by the wall clock. The `run-once`'s clock is moved with
/// libfaketime; the step back is the return to the real clock.
#[test]
fn start_after_a_run_once_from_the_future_names_the_daemon_it_started() {
    let Some(lib) = faketime() else {
        return;
    };
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"",
        "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    let ahead = inst
        .cmd()
        .args(["run-once", "tick"])
        .env("LD_PRELOAD", lib)
        .env("FAKETIME", "+30s")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .unwrap();
    assert!(ahead.status.success(), "{ahead:?}");
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(inst.state.join("status.json")).unwrap()).unwrap();
    let once = status["daemon"]["pid"].as_u64().unwrap();
    let out = inst.run(&["start"]);
    assert!(out.status.success(), "{out:?}");
    let said = text(&out.stdout);
    // The daemon as the system sees it, not as a file says.
    let mut daemons = Vec::new();
    assert!(wait_for(Duration::from_secs(10), || {
        daemons = inst.daemon_processes();
        daemons.len() == 1
    }));
    let pid = daemons[0];
    assert!(
        said.contains(&format!("(pid {pid},")) && !said.contains(&format!("pid {once}")),
        "run-once was pid {once}, the daemon is {pid}: {said}"
    );
    assert!(inst.run(&["stop", "--now"]).status.success());
}
