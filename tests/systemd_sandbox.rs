//! The daemon survives the Checkmk agent's per-connection systemd unit: runs
//! tests/systemd/sandbox-test.sh, which boots a real systemd (PID 1 of a systemd-nspawn
//! sandbox), models check-mk-agent.socket + check-mk-agent@.service, and runs ctrl as a plugin.
//! Needs root and systemd-nspawn/debootstrap (scripts/test.sh installs them); skips without
//! them on a developer's machine, fails without them in CI.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;

#[test]
fn daemon_survives_the_agent_unit_in_a_real_systemd() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let have = |t: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !common::require_tool(
        root && have("systemd-nspawn") && have("debootstrap"),
        "root with systemd-nspawn and debootstrap (systemd sandbox)",
    ) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/systemd/sandbox-test.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(common::BIN)
        .output()
        .expect("run the sandbox test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    if out.status.code() == Some(77) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd sandbox skipped in CI"
        );
        eprintln!("SKIP: systemd sandbox unavailable");
        return;
    }
    assert!(out.status.success(), "systemd sandbox test failed");
    assert!(stdout.contains(" passed, 0 failed"), "no summary line");
}
