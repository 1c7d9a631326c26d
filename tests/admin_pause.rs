//! Issue 24, "a pause for maintenance": `pause` stops new runs (of some jobs or all) while
//! the daemon keeps running, ctrl shows the paused checks OK (WARN when the pause is older
//! than --warn-after), `status` and `history` show it, it survives a daemon restart,
//! `resume` and `--for` end it, and only root may pause.
#![cfg(unix)]

mod common;

use common::{text, wait_for, Instance};
use std::os::unix::process::CommandExt;
use std::time::Duration;

const JOBS: &str = "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n\n[[job]]\nname = \"other\"\ncommand = [\"true\"]\nevery = \"1s\"\n";

/// How many times the daemon has declined to start `job` for a pause.
fn declined(inst: &Instance, job: &str) -> usize {
    inst.log()
        .lines()
        .filter(|l| l.contains(&format!("job={job}")) && l.contains("not started: paused by"))
        .count()
}

fn finished(inst: &Instance, job: &str) -> usize {
    inst.finished_records(job).len()
}

fn ctrl_line(inst: &Instance, job: &str) -> String {
    let out = text(&inst.ctrl().stdout);
    out.lines()
        .find(|l| l.contains(&format!("\"Robotmk t {job}\"")))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_paused_job_starts_no_run_shows_ok_and_survives_a_restart() {
    if !common::require_root("pause is root's") {
        return;
    }
    let inst = Instance::new("", JOBS);
    assert!(inst.ctrl().status.success());
    assert!(wait_for(Duration::from_secs(20), || finished(
        &inst, "tick"
    ) >= 1));
    let out = inst
        .cmd()
        .args(["pause", "tick"])
        .env("SUDO_USER", "alice")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = text(&out.stdout);
    assert!(
        said.contains("job tick: paused by alice until resumed"),
        "{said}"
    );
    assert!(
        wait_for(Duration::from_secs(20), || declined(&inst, "tick") >= 2),
        "{}",
        inst.log()
    );
    // No run of tick after the first decline; other goes on.
    let ticks = finished(&inst, "tick");
    let others = finished(&inst, "other");
    let before = declined(&inst, "tick");
    assert!(wait_for(Duration::from_secs(20), || declined(
        &inst, "tick"
    ) >= before + 2));
    assert!(
        finished(&inst, "tick") <= ticks + 1,
        "a run in flight may end, no new one"
    );
    assert!(finished(&inst, "other") > others, "other runs on");
    let line = ctrl_line(&inst, "tick");
    assert!(line.starts_with("0 \"Robotmk t tick\""), "{line}");
    assert!(
        line.contains("OK - paused by alice until resumed"),
        "{line}"
    );
    let status = text(&inst.run(&["status"]).stdout);
    assert!(
        status.contains("paused:     job tick, paused by alice until resumed"),
        "{status}"
    );
    let history = text(&inst.run(&["history", "tick"]).stdout);
    assert!(
        history.starts_with("job tick is paused by alice until resumed"),
        "{history}"
    );

    // A new daemon keeps the pause.
    let pid = inst.daemon_pid().unwrap();
    assert!(inst.run(&["stop", "--now"]).status.success());
    assert!(wait_for(Duration::from_secs(20), || !common::pid_alive(
        pid
    )));
    let before = declined(&inst, "tick");
    assert!(inst.ctrl().status.success());
    assert_ne!(inst.daemon_pid(), Some(pid));
    assert!(
        wait_for(Duration::from_secs(20), || declined(&inst, "tick") > before),
        "{}",
        inst.log()
    );

    let out = inst.run(&["resume"]);
    assert!(out.status.success(), "{out:?}");
    let ticks = finished(&inst, "tick");
    assert!(wait_for(Duration::from_secs(20), || finished(
        &inst, "tick"
    ) > ticks + 1));
    let line = ctrl_line(&inst, "tick");
    assert!(!line.contains("paused"), "{line}");
    assert!(inst.run(&["stop", "--now"]).status.success());
}

#[test]
fn a_pause_of_all_jobs_ends_by_itself_and_warns_when_long() {
    if !common::require_root("pause is root's") {
        return;
    }
    let inst = Instance::new("", JOBS);
    assert!(inst.ctrl().status.success());
    let out = inst
        .cmd()
        .args(["pause", "--for", "6s", "--warn-after", "2s"])
        // A domain user as winbind names it: `\n` in it must not start the check's details.
        .env("SUDO_USER", "CORP\\nbob")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("all jobs of instance t: paused by CORP\\nbob until "));
    let daemon = text(&inst.ctrl().stdout);
    assert!(
        daemon.contains("all jobs paused by CORP⧵nbob until"),
        "{daemon}"
    );
    assert!(wait_for(Duration::from_secs(20), || declined(
        &inst, "other"
    ) >= 1));
    // Past --warn-after: WARN, so a forgotten pause is seen.
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            line = ctrl_line(&inst, "other");
            line.starts_with("1 ")
        }),
        "{line}"
    );
    assert!(line.contains("WARN - paused by CORP⧵nbob until"), "{line}");
    assert!(!line.contains("\\n"), "one line for Checkmk: {line}");
    // Past --for: runs start again.
    let others = finished(&inst, "other");
    assert!(wait_for(Duration::from_secs(30), || finished(
        &inst, "other"
    ) > others + 1));
    assert!(inst.run(&["stop", "--now"]).status.success());
}

#[test]
fn only_root_may_pause_and_jobs_must_exist() {
    if !common::require_root("pause is root's") {
        return;
    }
    let inst = Instance::new("", JOBS);
    let out = inst
        .cmd()
        .args(["pause"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("pause and resume need root"),
        "{out:?}"
    );
    let out = inst.run(&["pause", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("no job \"nope\""), "{out:?}");
    assert!(!inst.state.join("pause.json").exists());
}

#[test]
fn status_json_carries_the_pauses_the_config_warnings_and_the_last_stop() {
    if !common::require_root("pause is root's") {
        return;
    }
    // The state dir is in /tmp: a config warning.
    let inst = Instance::new("", JOBS);
    assert!(inst.ctrl().status.success());
    let pause = |args: &[&str], who: &str| {
        let out = inst
            .cmd()
            .arg("pause")
            .args(args)
            .env("SUDO_USER", who)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    pause(&["tick"], "alice");
    pause(&["--for", "1h", "--warn-after", "2h"], "bob");
    let s = inst.status_json();
    let p = &s["paused"];
    assert_eq!(p["jobs"]["tick"]["by"], "alice", "{s}");
    assert!(p["jobs"]["tick"]["since"].is_string(), "{s}");
    assert!(p["jobs"]["tick"]["until"].is_null(), "{s}");
    assert!(p["jobs"]["other"].is_null(), "{s}");
    assert_eq!(p["all"]["by"], "bob", "{s}");
    assert!(p["all"]["until"].is_string(), "{s}");
    assert_eq!(p["warn_after_s"], 7200, "{s}");
    let warnings = s["config_warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap_or_default().contains("temporary folder")),
        "{s}"
    );
    // What was there stays.
    assert_eq!(s["daemon"]["running"], true, "{s}");
    assert_eq!(s["jobs"].as_array().map(Vec::len), Some(2), "{s}");

    assert!(inst.run(&["stop"]).status.success());
    assert!(inst.wait_daemon_gone(Duration::from_secs(30)));
    let s = inst.status_json();
    assert_eq!(
        s["daemon"]["last_stopped"]["reason"], "stop requested",
        "{s}"
    );
    assert!(s["daemon"]["last_stopped"]["at"].is_string(), "{s}");
    assert!(
        s["daemon"]["last_stop"]
            .as_str()
            .unwrap_or_default()
            .contains("ago): stop requested"),
        "{s}"
    );
    assert_eq!(s["paused"]["jobs"]["tick"]["by"], "alice", "{s}");

    assert!(inst.run(&["resume"]).status.success());
    let s = inst.status_json();
    assert!(s["paused"].is_null(), "{s}");
}
