//! Issue 24, "status and the daemon line tell the truth": a user who cannot read the state
//! dir is told so (never "not running"), `status` says when and why the daemon last stopped,
//! a rejected edit is WARN "running the last good config from <time>" in ctrl and status
//! alike, `start` says the daemon needs ctrl calls, and an unreadable config is reported
//! under the default instance's name.
#![cfg(unix)]

mod common;

use common::{wait_for, Instance};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

const IDLE: &str = "[[job]]\nname = \"idle\"\ncommand = [\"true\"]\nevery = \"1h\"\n";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn root() -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "needs root under CI"
    );
    eprintln!("SKIP: needs root (a state dir another user cannot read)");
    false
}

#[test]
fn a_user_who_cannot_read_the_state_dir_is_told_so() {
    if !root() {
        return;
    }
    // A folder the other user can walk through, with root's config and state dir in it.
    let dir = tempfile::Builder::new()
        .prefix("rmkd-i24-st-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("c.toml");
    let state = dir.path().join("state");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\n\n{IDLE}",
            state.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = |args: &[&str], uid: Option<u32>| {
        let mut c = std::process::Command::new(common::BIN);
        c.arg("--config").arg(&config).args(args);
        if let Some(u) = uid {
            c.uid(u).gid(u);
        }
        c.output().unwrap()
    };
    let out = run(&["ctrl"], None);
    assert!(out.status.success(), "{out:?}");
    let guard = scopeguard(&config);
    let out = run(&["status"], Some(65534));
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        said.contains("cannot tell whether it runs: cannot read the state dir"),
        "{said}"
    );
    assert!(said.contains("Permission denied"), "{said}");
    assert!(!said.contains("not running"), "{said}");
    assert!(text(&out.stderr).contains("run status as root"), "{out:?}");
    // The config itself unreadable: the same, naming it.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&["status"], Some(65534));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        text(&out.stdout).contains("cannot read the config"),
        "{out:?}"
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(run(&["stop", "--now"], None).status.success());
    drop(guard);
}

/// Ends the daemon of `config` by its PID if the test fails before its `stop`.
fn scopeguard(config: &std::path::Path) -> impl Drop {
    struct G(String);
    impl Drop for G {
        fn drop(&mut self) {
            for (pid, _) in common::processes_with(&self.0) {
                common::kill9(pid);
            }
        }
    }
    G(format!("{} daemon", config.display()))
}

#[test]
fn status_says_when_and_why_the_daemon_last_stopped() {
    let inst = Instance::new("heartbeat_timeout = \"2s\"", IDLE);
    let out = inst.run(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(inst.ctrl().status.success());
    assert!(inst.run(&["stop"]).status.success());
    let out = inst.run(&["status"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("last stop:  stopped "), "{said}");
    assert!(said.contains("ago): stop requested"), "{said}");

    // Heartbeat silence.
    assert!(inst.ctrl().status.success());
    let pid = inst.daemon_pid().unwrap();
    assert!(wait_for(Duration::from_secs(30), || !common::pid_alive(
        pid
    )));
    let said = text(&inst.run(&["status"]).stdout);
    assert!(said.contains("heartbeat stale: no ctrl for 2s"), "{said}");

    // Killed: no word of its own.
    assert!(inst.ctrl().status.success());
    let pid = inst.daemon_pid().unwrap();
    common::kill9(pid);
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
    let said = text(&inst.run(&["status"]).stdout);
    assert!(
        said.contains("last stop:  ended without stopping (a crash, kill -9"),
        "{said}"
    );
    assert!(said.contains(&format!("(pid {pid})")), "{said}");
}

#[test]
fn a_rejected_edit_is_warn_running_the_last_good_config_in_ctrl_and_status() {
    let inst = Instance::new("", IDLE);
    assert!(inst.ctrl().status.success());
    let good = std::fs::read_to_string(&inst.config).unwrap();
    inst.write_raw_config(&format!("{good}\n[[job]]\nname = \"x\"\nevery = \"5x\"\n"));
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            let out = text(&inst.ctrl().stdout);
            line = out
                .lines()
                .find(|l| l.contains("\"Robotmk t daemon\""))
                .unwrap_or_default()
                .to_string();
            line.contains("running the last good config from 20")
        }),
        "{line}"
    );
    assert!(
        line.starts_with("1 \"Robotmk t daemon\" - WARN - "),
        "{line}"
    );
    assert!(line.contains("5x"), "{line}");
    let said = text(&inst.run(&["status"]).stdout);
    assert!(
        said.contains("running the last good config from 20"),
        "{said}"
    );
    assert!(inst.run(&["stop", "--now"]).status.success());
}

#[test]
fn start_says_the_daemon_needs_ctrl_calls() {
    let inst = Instance::new("heartbeat_timeout = \"3m\"", IDLE);
    let out = inst.run(&["start"]);
    assert!(out.status.success(), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("the daemon exits after 3m without a ctrl call"),
        "{err}"
    );
    assert!(inst.run(&["stop", "--now"]).status.success());
}

#[test]
fn ctrl_without_a_readable_config_reports_under_the_default_instance() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .arg("ctrl")
        .output()
        .unwrap();
    let said = text(&out.stdout);
    assert!(
        said.contains("2 \"Robotmk system daemon\" - CRIT - config error"),
        "{said}"
    );
    assert!(!said.contains("unknown daemon"), "{said}");
}
