//! No one else can steer the daemon (issue 6, security): a config or state dir that another
//! user could write makes the daemon refuse to start, with a message naming the path and fix.
#![cfg(unix)]

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

const JOB: &str = "[[job]]\nname = \"idle\"\ncommand = [\"true\"]\nevery = \"1h\"\n";

fn chmod(p: &std::path::Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_world_writable_config_or_state_dir_is_refused() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", JOB);
    for (what, path) in [
        ("config file", inst.config.clone()),
        ("state dir", inst.state.clone()),
    ] {
        std::fs::create_dir_all(&inst.state).unwrap();
        chmod(&inst.state, 0o700);
        chmod(&inst.config, 0o644);
        chmod(&path, if what == "state dir" { 0o777 } else { 0o666 });
        let out = inst
            .cmd()
            .args(["start", "--foreground"])
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("refusing to run")
                && err.contains(&path.display().to_string())
                && err.contains("chmod go-w"),
            "{what}: {err}"
        );
        // ctrl says so at once, starts nothing, and the daemon line is CRIT.
        let t = Instant::now();
        let out = inst.ctrl();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "ctrl waited {:?}",
            t.elapsed()
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let j = parse_section(&text);
        assert_eq!(j["ctrl"]["action"], "error", "{what}: {j}");
        assert!(
            j["ctrl"]["error"]
                .as_str()
                .unwrap()
                .contains("writable by group or others"),
            "{j}"
        );
        assert!(local_lines(&text)[0].starts_with("2 "), "{text}");
        assert!(
            inst.daemon_processes().is_empty(),
            "{what}: a daemon started"
        );
    }
    chmod(&inst.state, 0o700);
    chmod(&inst.config, 0o600);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
}

#[test]
fn a_config_owned_by_another_user_is_refused() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        require_tool(false, "root (to give the config to another user)");
        return;
    }
    let inst = Instance::new("heartbeat_timeout = \"1m\"", JOB);
    std::os::unix::fs::chown(&inst.config, Some(65534), None).unwrap();
    let out = inst
        .cmd()
        .args(["start", "--foreground"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("belongs to uid 65534") && err.contains("chown"),
        "{err}"
    );
    assert!(inst.daemon_processes().is_empty());
}
