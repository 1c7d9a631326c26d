//! The instance stays whole (issue 10): one daemon even when its lock file or state dir is
//! deleted or the config moves the state dir; stop requests are claimed, never lost or
//! mistaken; a record that cannot be written stays visible until it is; values read back
//! from disk cannot crash the daemon; errors are not swallowed into wrong answers.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const TICK: &str = "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n";

fn status_file(state: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(state.join("status.json")).ok()?).ok()
}

/// Run ids of `job` whose suffix is not `-1`: a due time run twice.
fn duplicates(inst: &Instance, job: &str) -> Vec<String> {
    inst.records(job)
        .iter()
        .filter_map(|r| r["run_id"].as_str().map(str::to_string))
        .filter(|id| !id.ends_with("-1"))
        .collect()
}

#[test]
fn deleting_the_lock_file_or_the_state_dir_never_makes_a_second_daemon() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", TICK);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    assert!(wait_for(Duration::from_secs(10), || !inst
        .finished_records("tick")
        .is_empty()));
    for what in ["lock file", "state dir"] {
        if what == "lock file" {
            fs::remove_file(inst.state.join("daemon.lock")).unwrap();
        } else {
            // The daemon writes into it meanwhile: retry until one removal gets it all.
            // (The test's own tree: std's remover is for tests only, see clippy.toml.)
            #[allow(clippy::disallowed_methods)]
            let removed = wait_for(Duration::from_secs(5), || {
                fs::remove_dir_all(&inst.state).is_ok()
            });
            assert!(removed);
        }
        // The daemon notices within its next look (a second) and takes the lock again.
        assert!(
            wait_for(Duration::from_secs(5), || inst
                .log()
                .contains("this daemon still guards the instance")),
            "{what}: {}",
            inst.log()
        );
        for _ in 0..10 {
            assert!(inst.ctrl().status.success());
        }
        assert_eq!(
            inst.daemon_processes().len(),
            1,
            "{what}: a second daemon started"
        );
        let n = inst.finished_records("tick").len();
        assert!(wait_for(Duration::from_secs(10), || inst
            .finished_records("tick")
            .len()
            >= n + 2));
        assert_eq!(duplicates(&inst, "tick"), Vec::<String>::new(), "{what}");
        let _ = fs::write(inst.state.join("heartbeat"), "");
    }
    // And `stop` still reaches it.
    let out = inst.run(&["stop", "--timeout", "20s"]);
    assert!(out.status.success(), "{out:?}");
    assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
}

#[test]
fn moving_the_state_dir_in_the_config_hands_over_to_one_daemon() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", TICK);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    let old_pid = inst.daemon_pid().expect("daemon pid");
    let moved = inst.dir.path().join("state2");
    let text = fs::read_to_string(&inst.config).unwrap().replace(
        &inst.state.display().to_string(),
        &moved.display().to_string(),
    );
    inst.write_raw_config(&text);
    // The old daemon sees the edit and drains.
    assert!(
        wait_for(Duration::from_secs(5), || status_file(&inst.state)
            .is_some_and(|s| s["daemon"]["phase"] != "running")),
        "{:?}",
        status_file(&inst.state)
    );
    let j = inst.ctrl_json();
    assert_eq!(j["state_dir"], moved.display().to_string());
    assert!(
        wait_for(Duration::from_secs(10), || !pid_alive(old_pid)),
        "the old daemon kept running"
    );
    for _ in 0..5 {
        inst.ctrl();
    }
    assert_eq!(inst.daemon_processes().len(), 1);
}

#[test]
fn a_stale_stop_request_is_ignored_and_a_fresh_one_obeyed() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", TICK);
    // A request left over from before this daemon: written before it started.
    fs::create_dir_all(&inst.state).unwrap();
    let stale = serde_json::json!({"mode": "now", "requested": "2020-01-01T00:00:00Z"});
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    // Put in place whole, as `stop` does: a leftover is a complete file, and a file the
    // daemon could claim between its creation and its content would read as unreadable.
    let tmp = inst.state.join(".stop-request.test");
    fs::write(&tmp, stale.to_string()).unwrap();
    fs::rename(&tmp, inst.state.join("stop-request")).unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || !inst
            .state
            .join("stop-request")
            .exists()),
        "the request was never claimed"
    );
    assert!(
        wait_for(Duration::from_secs(5), || inst
            .log()
            .contains("ignoring a stop request from before")),
        "{}",
        inst.log()
    );
    assert_eq!(
        inst.daemon_processes().len(),
        1,
        "a stale request stopped it"
    );
    let out = inst.run(&["stop", "--timeout", "20s"]);
    assert!(out.status.success(), "{out:?}");
    assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
}

#[test]
fn a_record_that_cannot_be_written_stays_visible_until_it_is() {
    // `lost` turns its run folder into a file: its record cannot be written there. `tick`
    // writes a good record every second meanwhile.
    let jobs = format!(
        "{TICK}\n[[job]]\nname = \"lost\"\ncommand = [\"sh\", \"-c\", \"rm -rf \\\"$ROBOTMK_RUN_DIR\\\" && touch \\\"$ROBOTMK_RUN_DIR\\\"\"]\nevery = \"2s\"\n"
    );
    let inst = Instance::new("heartbeat_timeout = \"1m\"", &jobs);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    let err = || {
        status_file(&inst.state)
            .and_then(|s| s["daemon"]["state_error"].as_str().map(str::to_string))
    };
    assert!(
        wait_for(Duration::from_secs(10), || err().is_some_and(|e| e
            .contains("cannot record run")
            && e.contains("of lost"))),
        "{:?}",
        err()
    );
    // Good writes of `tick` go on, and must not clear it.
    for _ in 0..6 {
        let n = inst.finished_records("tick").len();
        assert!(wait_for(Duration::from_secs(5), || inst
            .finished_records("tick")
            .len()
            > n));
        assert!(
            err().is_some_and(|e| e.contains("of lost")),
            "the error was hidden by a good write: {:?}",
            err()
        );
        let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
        let line = local_lines(&out)[0].clone();
        assert!(line.starts_with("2 ") && line.contains("lost"), "{line}");
    }
}

#[test]
fn a_runner_that_removes_its_run_folder_still_gets_its_record() {
    let job = "[[job]]\nname = \"rm\"\ncommand = [\"sh\", \"-c\", \"rm -rf \\\"$ROBOTMK_RUN_DIR\\\"\"]\nevery = \"1s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", job);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    assert!(
        wait_for(Duration::from_secs(10), || inst
            .finished_records("rm")
            .iter()
            .any(|r| r["note"]
                .as_str()
                .is_some_and(|n| n.contains("run folder had disappeared")))),
        "{:?}",
        inst.records("rm")
    );
    let s = status_file(&inst.state).unwrap();
    assert!(s["daemon"]["state_error"].is_null(), "{s}");
}

#[test]
fn a_record_with_an_absurd_timeout_does_not_crash_recovery() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", TICK);
    // A runner still alive from a "previous daemon", its record damaged.
    for timeout in ["1e300", "-5"] {
        let mut runner = Command::new("sleep")
            .arg("300")
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = runner.id();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let start: u64 = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap();
        // The test's own tree (std's remover is for tests only, see clippy.toml).
        #[allow(clippy::disallowed_methods)]
        let _ = fs::remove_dir_all(inst.state.join("jobs/tick/runs"));
        let dir = inst.state.join("jobs/tick/runs/20260101T000000Z-1");
        fs::create_dir_all(&dir).unwrap();
        let rec = format!(
            "{{\"version\":1,\"job\":\"tick\",\"run_id\":\"20260101T000000Z-1\",\"due\":\"2026-01-01T00:00:00Z\",\"trigger\":\"schedule\",\"started\":\"2026-01-01T00:00:00Z\",\"run_dir\":\"{}\",\"pid\":{pid},\"pid_start\":{start},\"timeout_s\":{timeout}}}",
            dir.display()
        );
        fs::write(dir.join("record.json"), rec).unwrap();
        assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started", "{timeout}");
        assert!(
            wait_for(Duration::from_secs(5), || inst
                .finished_records("tick")
                .len()
                >= 2),
            "timeout {timeout}: the daemon does not run: {}",
            inst.log()
        );
        assert!(!inst.log().contains("panicked"), "{}", inst.log());
        let out = inst.run(&["stop", "--now", "--timeout", "20s"]);
        assert!(out.status.success(), "{out:?}");
        assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
        let _ = runner.kill();
        let _ = runner.wait();
    }
}

#[test]
fn stop_by_a_user_who_cannot_read_the_state_dir_is_an_error_not_no_daemon() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        require_tool(false, "root (to run stop as another user)");
        return;
    }
    let inst = Instance::new("heartbeat_timeout = \"1m\"", TICK);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(inst.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&inst.config, fs::Permissions::from_mode(0o644)).unwrap();
    let out = inst
        .cmd()
        .args(["stop", "--timeout", "1s"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("no daemon running"), "{text}");
    assert_eq!(inst.daemon_processes().len(), 1);
}
