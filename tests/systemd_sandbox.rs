//! The daemon survives the Checkmk agent's per-connection systemd unit: runs
//! tests/systemd/sandbox-test.sh, which boots a real systemd (PID 1 of a systemd-nspawn
//! sandbox), models check-mk-agent.socket + check-mk-agent@.service + check-mk-agent-async.service,
//! and runs ctrl as a plugin, synchronous (plugins/) and cached (plugins/<seconds>/).
//! Needs root and systemd-nspawn/debootstrap (scripts/test.sh installs them); skips without
//! them on a developer's machine, fails without them in CI.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;

#[test]
fn daemon_survives_the_agent_unit_in_a_real_systemd() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !common::require_tool(
        root && common::have_tool("systemd-nspawn") && common::have_tool("debootstrap"),
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
    // Every agent output the sandbox's clients read (sync and cached mode) follows Checkmk's
    // grammar (the script saves them for this).
    let state = std::env::var("ROBOTMK_SDSTATE").unwrap_or_else(|_| "/tmp/robotmk-sdtest".into());
    let mut cached = 0;
    let mut n = 0;
    for e in std::fs::read_dir(format!("{state}/outputs")).expect("saved agent outputs") {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let a = common::checkmk::parse_ok(&text);
        assert!(a.section("check_mk").is_some(), "{text}");
        let own = a.local(None);
        assert!(
            own.iter().any(|c| c.name == "Robotmk system daemon"),
            "{text}"
        );
        cached += usize::from(
            a.section("robotmk_daemon")
                .is_some_and(|s| s.cached.is_some()),
        );
        n += 1;
    }
    assert!(n >= 4, "{n} outputs saved");
    assert!(cached >= 1, "no output of the cached mode");
}
