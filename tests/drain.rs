//! Drains and what passes meanwhile (tester's report D1, D3): a config that is empty for a
//! moment is a rejected edit, never a handover; a handover is called off when the config
//! names the instance again; due times that pass while a daemon drains are recorded as
//! skipped (or caught up by the next daemon), never dropped without a word. Real binary.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

/// A long run to keep in flight, and a quick job whose runs show whether scheduling goes on.
const JOBS: &str = "[[job]]\nname = \"long\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 8\"]\nevery = \"1m\"\ncatch_up = \"skip\"\n\n\
                    [[job]]\nname = \"quick\"\ncommand = [\"true\"]\nevery = \"1s\"\n";

/// The status the daemon wrote, read from its state dir (whatever the config names now).
fn status_file(inst: &Instance) -> Value {
    std::fs::read(inst.state.join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Starts the daemon and a run of `long` (by `run-once`'s request, not waiting for it).
fn with_long_run_in_flight(inst: &Instance) -> String {
    let pid = inst.ctrl_json()["daemon"]["pid"]
        .as_u64()
        .expect("a daemon");
    let mut once = inst.cmd();
    once.args(["run-once", "long"])
        .stdout(std::process::Stdio::null());
    let mut child = once.spawn().expect("run-once");
    let mut run_id = String::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let s = status_file(inst);
            match s["jobs"][0]["running"][0]["run_id"].as_str() {
                Some(id) => {
                    run_id = id.to_string();
                    true
                }
                None => false,
            }
        }),
        "no run of long in flight: {}",
        status_file(inst)
    );
    // The waiting command is not needed: the run is the daemon's.
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(inst.daemon_pid(), Some(pid as u32));
    run_id
}

/// Finished runs (not skipped) of `job`.
fn runs(inst: &Instance, job: &str) -> usize {
    inst.finished_records(job)
        .iter()
        .filter(|r| r["outcome"] != "skipped")
        .count()
}

#[test]
fn an_empty_config_for_a_moment_is_a_rejected_edit_not_a_handover() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nkeep_runs = 200", JOBS);
    let long_run = with_long_run_in_flight(&inst);
    let pid = inst.daemon_pid().unwrap();
    let vardir = tempfile::tempdir().unwrap();

    // The file is rewritten in place: empty for a moment (here, until we restore it).
    std::fs::write(&inst.config, "").unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || status_file(&inst)["daemon"]
            ["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("the config is empty"))),
        "the empty file was not rejected: {}",
        status_file(&inst)["daemon"]
    );
    let s = status_file(&inst);
    assert_eq!(s["daemon"]["phase"], "running", "{}", s["daemon"]);
    // ctrl in that moment starts no daemon for a default instance (nor makes its state dir).
    let out = inst
        .cmd()
        .env("MK_VARDIR", vardir.path())
        .arg("ctrl")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        parse_section(&text)["ctrl"]["action"],
        "config_error",
        "{text}"
    );
    assert!(
        std::fs::read_dir(vardir.path()).unwrap().next().is_none(),
        "ctrl made a default state dir: {text}"
    );
    // Runs go on under the running config, the long one in flight too.
    let before = runs(&inst, "quick");
    assert!(
        wait_for(Duration::from_secs(5), || runs(&inst, "quick")
            >= before + 2),
        "quick stopped running while the config was empty: {}",
        inst.log()
    );
    assert_eq!(
        status_file(&inst)["jobs"][0]["running"][0]["run_id"].as_str(),
        Some(long_run.as_str())
    );
    let log = inst.log();
    assert!(
        log.contains("config edit rejected") && log.contains("the config is empty"),
        "{log}"
    );
    assert!(!log.contains("handing over"), "{log}");

    // Restored: the error clears, the same daemon runs on, WARN gone.
    inst.write_config("heartbeat_timeout = \"1m\"\nkeep_runs = 200", JOBS);
    assert!(wait_for(Duration::from_secs(5), || status_file(&inst)
        ["daemon"]["config_error"]
        .is_null()));
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    assert!(local_lines(&out)[0].starts_with("0 "), "{out}");
    assert_eq!(inst.daemon_pid(), Some(pid));
}

#[test]
fn the_default_deployment_caught_with_an_empty_config_runs_on_and_shows_why() {
    // No instance, no state dir: the default instance in $MK_VARDIR.
    let inst = Instance::new("", "");
    let good = "[daemon]\nstop_grace = \"1s\"\nheartbeat_timeout = \"1m\"\nkeep_runs = 200\n\n\
                [[job]]\nname = \"quick\"\ncommand = [\"true\"]\nevery = \"1s\"\n";
    inst.write_raw_config(good);
    let var = inst.dir.path().join("var");
    std::fs::create_dir(&var).unwrap();
    let state = var.join("robotmk-daemon").join("system");
    let ctrl = || {
        let out = inst
            .cmd()
            .env("MK_VARDIR", &var)
            .arg("ctrl")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let status = || -> Value {
        std::fs::read(state.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let quick_runs = || {
        std::fs::read_dir(state.join("jobs/quick/runs"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    ctrl();
    assert!(
        wait_for(Duration::from_secs(5), || quick_runs() >= 1),
        "{}",
        ctrl()
    );
    let pid = status()["daemon"]["pid"].as_u64();

    std::fs::write(&inst.config, "").unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || status()["daemon"]
            ["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("the config is empty"))),
        "{}",
        status()["daemon"]
    );
    // The jobs run on, and ctrl shows the daemon: WARN, the job still there.
    let before = quick_runs();
    assert!(wait_for(Duration::from_secs(5), || quick_runs() >= before + 2));
    let out = ctrl();
    let lines = local_lines(&out);
    assert!(
        lines[0].starts_with("1 \"Robotmk system daemon\" - WARN - running the last good config")
            && lines[0].contains("the config is empty"),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"Robotmk system quick\"")),
        "{out}"
    );
    inst.write_raw_config(good);
    assert!(wait_for(Duration::from_secs(5), || status()["daemon"]
        ["config_error"]
        .is_null()));
    assert_eq!(status()["daemon"]["pid"].as_u64(), pid);
    let _ = inst
        .cmd()
        .env("MK_VARDIR", &var)
        .args(["stop", "--now"])
        .output();
}

#[test]
fn a_handover_is_called_off_when_the_config_names_the_instance_again() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nkeep_runs = 200", JOBS);
    let long_run = with_long_run_in_flight(&inst);
    let pid = inst.daemon_pid().unwrap();

    // Another instance in another state dir: this daemon hands over (drains).
    let other = inst.dir.path().join("state2");
    inst.write_raw_config(&format!(
        "[daemon]\ninstance = \"t2\"\nstate_dir = \"{}\"\nstop_grace = \"1s\"\nheartbeat_timeout = \"1m\"\nkeep_runs = 200\n\n{JOBS}",
        other.display()
    ));
    assert!(
        wait_for(Duration::from_secs(5), || status_file(&inst)["daemon"]
            ["phase"]
            == "draining"),
        "no handover: {}",
        status_file(&inst)["daemon"]
    );
    // Due times of quick pass meanwhile: recorded as skipped, not dropped.
    let drained = |r: &Value| {
        r["outcome"] == "skipped"
            && r["note"].as_str().is_some_and(|n| {
                n.starts_with("the daemon was draining: the config now names instance t2")
            })
    };
    assert!(
        wait_for(Duration::from_secs(5), || inst
            .records("quick")
            .iter()
            .any(drained)),
        "{:?}",
        inst.records("quick")
    );
    // The edit is taken back before the long run ended.
    inst.write_config("heartbeat_timeout = \"1m\"\nkeep_runs = 200", JOBS);
    assert!(
        wait_for(Duration::from_secs(5), || status_file(&inst)["daemon"]
            ["phase"]
            == "running"),
        "the handover was not called off: {}",
        status_file(&inst)["daemon"]
    );
    let before = runs(&inst, "quick");
    assert!(
        wait_for(Duration::from_secs(5), || runs(&inst, "quick")
            >= before + 2),
        "no run started after the handover was called off: {}",
        inst.log()
    );
    // The same daemon, the long run still in flight.
    assert_eq!(inst.daemon_pid(), Some(pid));
    assert_eq!(
        status_file(&inst)["jobs"][0]["running"][0]["run_id"].as_str(),
        Some(long_run.as_str())
    );
    let log = inst.log();
    assert!(log.contains("handover called off"), "{log}");
    // The latest due time missed runs now, as a catch-up.
    assert!(
        inst.finished_records("quick")
            .iter()
            .any(|r| r["trigger"] == "catch_up" && r["outcome"] == "success"),
        "{:?}",
        inst.records("quick")
    );
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    assert!(local_lines(&out)[0].starts_with("0 "), "{out}");
}

#[test]
fn due_times_passing_while_a_daemon_drains_are_recorded_as_skipped() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nkeep_runs = 200", JOBS);
    with_long_run_in_flight(&inst);
    let pid = inst.daemon_pid().unwrap();
    let mut stop = inst.cmd();
    stop.args(["stop"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut stop = stop.spawn().expect("stop");
    assert!(wait_for(Duration::from_secs(5), || status_file(&inst)
        ["daemon"]["phase"]
        == "draining"));
    // Meanwhile the daemon line is WARN and says why no job starts.
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    let line = &local_lines(&out)[0];
    assert!(
        line.starts_with("1 ")
            && line
                .contains("draining: no run starts until the runs in flight end (stop requested"),
        "{out}"
    );
    assert!(stop.wait().unwrap().success());
    assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
    let skipped: Vec<Value> = inst
        .records("quick")
        .into_iter()
        .filter(|r| {
            r["outcome"] == "skipped"
                && r["note"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("the daemon was draining: stop requested"))
        })
        .collect();
    assert!(
        skipped.len() >= 3,
        "due times of an 8 s drain not recorded: {:?}",
        inst.records("quick")
    );
    // The latest one is left to the next daemon: its catch-up run.
    let last_skipped = skipped.last().unwrap()["due"].as_str().unwrap().to_string();
    assert_ne!(inst.ctrl_json()["daemon"]["pid"].as_u64(), Some(pid as u64));
    assert!(
        wait_for(Duration::from_secs(10), || inst
            .finished_records("quick")
            .iter()
            .any(|r| r["trigger"] == "catch_up"
                && r["due"].as_str().unwrap() > last_skipped.as_str())),
        "{:?}",
        inst.records("quick")
    );
    // Every due time between is in the history once: nothing dropped, nothing twice.
    let dues: Vec<String> = inst
        .records("quick")
        .iter()
        .map(|r| r["due"].as_str().unwrap().to_string())
        .collect();
    let mut unique = dues.clone();
    unique.dedup();
    assert_eq!(unique.len(), dues.len(), "{dues:?}");
}
