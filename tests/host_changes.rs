//! The host changes under a running daemon what its paths lead to: a mount over the config's
//! folder vanishes and comes back, a symlink on the way to the state dir is repointed. The
//! daemon follows without a ctrl or a signal (deadlines far below the 30 s fallback poll).
#![cfg(unix)]

mod common;

use common::{pid_alive, text, wait_for, Instance, Tmpfs};
use std::fs;
use std::process::Command;
use std::time::Duration;

/// Far below the fallback poll (30 s): only a watch, or a look it caused, is this quick.
const SOON: Duration = Duration::from_secs(10);

fn job(every: &str) -> String {
    format!("[[job]]\nname = \"q\"\ncommand = [\"true\"]\nevery = \"{every}\"\n")
}

/// The config on a mount that is lazily unmounted (an NFS share, an automount gone) and
/// mounted again with an edited config: the daemon notices the config is back and reloads it.
#[test]
fn a_config_on_a_mount_that_comes_back_is_followed() {
    if !common::require_root("mounting a tmpfs needs root") {
        return;
    }
    // The mount's own temp dir, dropped after the instance (which ends the daemon first).
    let base = tempfile::Builder::new()
        .prefix("rmkd-test-mnt-")
        .tempdir()
        .unwrap();
    let point = base.path().join("cfgmnt");
    let mnt = Tmpfs::mount(&point, "size=1m");
    let dir = tempfile::Builder::new()
        .prefix("rmkd-test-")
        .tempdir()
        .unwrap();
    let state = dir.path().join("state");
    let inst = Instance {
        dir,
        config: point.join("config.toml"),
        state,
    };
    // Written in place: a rename from the instance's dir would cross file systems.
    let write = |every: &str| {
        let text = format!(
            "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nheartbeat_timeout = \"0\"\n\n{}",
            inst.state.display(),
            job(every)
        );
        let tmp = point.join(".config.tmp");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, &inst.config).unwrap();
    };
    // The daemon's own status.json: `status` reads the config, which is gone for a while.
    let schedule = |inst: &Instance| {
        let s: serde_json::Value = fs::read(inst.state.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        (
            s["jobs"][0]["schedule"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            s["daemon"]["config_error"].as_str().map(str::to_string),
        )
    };
    write("1h");
    let out = inst.run(&["start"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(SOON, || inst.daemon_pid().is_some()), "no daemon");
    let umount = Command::new("umount").arg("-l").arg(&mnt.0).status();
    assert!(umount.is_ok_and(|s| s.success()));
    assert!(
        wait_for(SOON, || schedule(&inst).1.is_some()),
        "the config's loss not seen: {:?}",
        schedule(&inst)
    );
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&mnt.0)
        .status();
    assert!(mounted.is_ok_and(|s| s.success()));
    write("7s");
    assert!(
        wait_for(SOON, || schedule(&inst) == ("every 7s".to_string(), None)),
        "the config back on its mount not followed: {:?}\n{}",
        schedule(&inst),
        inst.log()
    );
    let out = inst.run(&["stop", "--now"]);
    assert!(out.status.success(), "{out:?}");
}

/// `state_dir` reached through a symlink that the admin repoints to a fresh folder: the
/// instance has moved. The daemon keeps to the folder it locked (it never writes in the new
/// one) and hands over: it drains and exits; the next ctrl starts a daemon in the new folder,
/// which answers ctrl there.
#[test]
fn a_repointed_state_dir_symlink_hands_the_instance_over() {
    let mut inst = Instance::new("", &job("1h"));
    let (s1, s2) = (inst.dir.path().join("s1"), inst.dir.path().join("s2"));
    for d in [&s1, &s2] {
        fs::create_dir(d).unwrap();
        fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let link = inst.dir.path().join("statelink");
    std::os::unix::fs::symlink(&s1, &link).unwrap();
    inst.state = link.clone();
    inst.write_config("heartbeat_timeout = \"0\"", &job("1h"));
    let out = inst.ctrl();
    assert!(out.status.success(), "{out:?}");
    let mut first = None;
    assert!(wait_for(SOON, || {
        first = inst.daemon_pid();
        first.is_some()
    }));
    let first = first.unwrap();
    assert!(s1.join("daemon.lock").exists());
    // ln -sfn: a new link renamed over the old one.
    let tmp = inst.dir.path().join(".statelink.new");
    std::os::unix::fs::symlink(&s2, &tmp).unwrap();
    fs::rename(&tmp, &link).unwrap();
    let log1 = || fs::read_to_string(s1.join("daemon.log")).unwrap_or_default();
    assert!(
        wait_for(SOON, || !pid_alive(first)),
        "the daemon did not hand over:\n{}",
        log1()
    );
    assert!(log1().contains("handing over"), "{}", log1());
    assert!(!log1().contains("cannot watch"), "{}", log1());
    assert!(
        !s2.join("daemon.log").exists(),
        "the old daemon wrote in the new folder"
    );
    // The next ctrl starts a daemon in the new folder, and the one after finds it answering.
    let out = inst.ctrl();
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(SOON, || inst
        .daemon_pid()
        .is_some_and(|p| p != first)));
    let out = inst.ctrl();
    let lines = common::local_lines(&text(&out.stdout));
    assert!(lines[0].starts_with("0 "), "{lines:?}");
    assert!(s2.join("heartbeat-ack").exists());
    let out = inst.run(&["stop", "--now"]);
    assert!(out.status.success(), "{out:?}");
}
