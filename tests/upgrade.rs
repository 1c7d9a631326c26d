//! Upgrades by rename, as dpkg does them (issue 20.3): the new binary is written beside the
//! old one and renamed over it, so the running daemon keeps running the old build from a file
//! that no longer has a name (`/proc/<pid>/exe` reads `… (deleted)`). The helpers the daemon
//! starts from its own binary — the retry wrapper of a robot job with `attempts`, and an
//! environment build — must still start for a job added by a reload after that, and run the
//! very build the daemon runs.
//!
//! The program renamed over the daemon's decides what ctrl does: the same build (a reinstall)
//! leaves the daemon running; another build — a downgrade, or the same version built anew —
//! retires it, and the next ctrl starts the new program. A daemon started from another path
//! is never retired for what is installed at ctrl's.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The build user of this test's environment (as root; created once, kept).
const BUILDER: &str = "rmkd-upgrade-build";

/// Copies the test's build to `to` (mode 0755) through a temporary name and a rename, as
/// dpkg installs a file.
fn install(to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = to.with_file_name(".robotmk-daemon.dpkg-new");
    std::fs::copy(BIN, &tmp).expect("copy the binary");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, to).expect("rename the new binary into place");
}

/// Another build of the test's program, of the same version, installed at `to` as [`install`]
/// does: the test's build with one byte of its GNU build-id note changed (the linker's hash of
/// what it linked, which a rebuild or a patched package changes too; nothing reads it at
/// run time).
fn install_another_build(to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(BIN).expect("read the binary");
    // The note's header, little-endian: name size 4, descriptor size 20, NT_GNU_BUILD_ID, "GNU".
    let head: &[u8] = b"\x04\0\0\0\x14\0\0\0\x03\0\0\0GNU\0";
    let at: Vec<usize> = bytes
        .windows(head.len())
        .enumerate()
        .filter(|(_, w)| *w == head)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the test's build has one GNU build-id note");
    bytes[at[0] + head.len()] ^= 0xff;
    let tmp = to.with_file_name(".robotmk-daemon.dpkg-new");
    std::fs::write(&tmp, &bytes).expect("write the other build");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, to).expect("rename the other build into place");
}

/// Runs `bin ctrl` for `inst`, as the agent does (fork route); its JSON section.
fn ctrl_of(bin: &Path, inst: &Instance) -> serde_json::Value {
    parse_section(&ctrl_output(bin, inst))
}

/// Runs `bin ctrl` for `inst`, as the agent does (fork route); all it prints.
fn ctrl_output(bin: &Path, inst: &Instance) -> String {
    let out = Command::new(bin)
        .arg("--config")
        .arg(&inst.config)
        .arg("ctrl")
        .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .env_remove("ROBOTMK_DAEMON_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run ctrl");
    assert!(out.status.success(), "ctrl: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The daemon's `/proc/PID/exe`.
fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// A reinstall (the same build renamed over the daemon's program) leaves the daemon running;
/// another build of the same version renamed over it — a rebuild, a patched package, or a
/// downgrade to the same version — retires it: ctrl asks it to drain, and the next ctrl after
/// it has gone starts the new program. Before, the daemon ran the deleted old program forever
/// while every ctrl said `running`.
#[test]
fn another_build_renamed_over_the_daemons_program_retires_it_and_the_same_build_does_not() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"tick\"\ncommand = [\"/bin/true\"]\nevery = \"1h\"\n",
    );
    let d = inst.dir.path();
    std::fs::create_dir(d.join("bin")).unwrap();
    let installed = d.join("bin").join("robotmk-daemon");
    install(&installed);
    let first = ctrl_of(&installed, &inst);
    assert_eq!(first["ctrl"]["action"], "started", "{first}");
    let pid = first["daemon"]["pid"].as_u64().expect("a daemon runs") as u32;

    // A reinstall: the same build renamed over the daemon's program. Not a reason to stop.
    install(&installed);
    assert!(
        exe_of(pid).ends_with(" (deleted)"),
        "the daemon should run a replaced file now: {}",
        exe_of(pid)
    );
    for _ in 0..3 {
        let c = ctrl_of(&installed, &inst);
        assert_eq!(c["ctrl"]["action"], "running", "{c}");
        assert!(
            c["ctrl"]["note"].is_null(),
            "the same build retired the daemon: {c}"
        );
        assert_eq!(c["daemon"]["pid"].as_u64(), Some(u64::from(pid)), "{c}");
    }
    assert!(
        !inst.state.join("stop-request").exists(),
        "a stop was requested"
    );

    // Another build of the same version renamed over it. The daemon has no run in flight:
    // it exits as soon as it is asked, and the ctrl that asked starts the new build itself, so
    // that the agent never shows "daemon not running" in between (before, it did once).
    install_another_build(&installed);
    let out = ctrl_output(&installed, &inst);
    let asked = parse_section(&out);
    let note = asked["ctrl"]["note"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        note.contains("replaced")
            && note.contains("asked it to stop")
            && note.contains("this ctrl started another build of"),
        "the daemon running the replaced build should be asked to stop and replaced: {asked}"
    );
    assert_eq!(asked["ctrl"]["action"], "started", "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("0 \"Robotmk ") && l.contains(" daemon\" - OK - running")),
        "the handover's agent output should say the new daemon runs:\n{out}"
    );
    let new_pid = asked["daemon"]["pid"].as_u64().expect("a daemon runs") as u32;
    assert_ne!(new_pid, pid, "{asked}");
    assert!(!pid_alive(pid), "the old daemon still runs");
    assert_eq!(
        exe_of(new_pid),
        installed.display().to_string(),
        "the new daemon runs the installed file"
    );
    let status = inst.status_json();
    assert!(
        status["daemon"]["last_stop"]
            .as_str()
            .is_some_and(|s| s.contains("another build of")),
        "{status}"
    );
    // And it stays: the new daemon runs what is installed.
    for _ in 0..3 {
        let c = ctrl_of(&installed, &inst);
        assert_eq!(c["ctrl"]["action"], "running", "{c}");
        assert!(c["ctrl"]["note"].is_null(), "{c}");
        assert_eq!(c["daemon"]["pid"].as_u64(), Some(u64::from(new_pid)), "{c}");
    }
}

/// Two different builds installed at two paths — the agent's plugin and an admin's other copy
/// — calling ctrl in turn never retire each other's daemon, whichever of them started it.
#[test]
fn two_different_builds_at_two_paths_never_retire_each_others_daemon() {
    let inst = Instance::new("", "");
    let d = inst.dir.path();
    let (a, b) = (d.join("a"), d.join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let (a, b) = (a.join("robotmk-daemon"), b.join("robotmk-daemon"));
    install(&a);
    install_another_build(&b);
    for (starter, other) in [(&a, &b), (&b, &a)] {
        let first = ctrl_of(starter, &inst);
        assert_eq!(first["ctrl"]["action"], "started", "{first}");
        let pid = first["daemon"]["pid"].as_u64().expect("a daemon runs");
        for round in 0..4 {
            for bin in [other, starter] {
                let c = ctrl_of(bin, &inst);
                assert_eq!(
                    c["ctrl"]["action"],
                    "running",
                    "round {round}, {}: {c}",
                    bin.display()
                );
                assert!(
                    c["ctrl"]["note"].is_null(),
                    "round {round}, {}: {c}",
                    bin.display()
                );
                assert_eq!(c["daemon"]["pid"].as_u64(), Some(pid), "{c}");
            }
        }
        assert_eq!(exe_of(pid as u32), starter.display().to_string());
        let stopped = Command::new(starter)
            .arg("--config")
            .arg(&inst.config)
            .args(["stop", "--now"])
            .stdin(Stdio::null())
            .output()
            .expect("run stop");
        assert!(stopped.status.success(), "stop: {stopped:?}");
        assert!(
            wait_for(Duration::from_secs(20), || !pid_alive(pid as u32)),
            "the daemon did not stop"
        );
    }
}

#[test]
fn after_an_upgrade_by_rename_a_reloaded_job_starts_its_retry_wrapper_and_environment_build() {
    let Some(robot) = test_robot() else {
        require_tool(
            false,
            "Robot Framework (.venv/bin/robot or $ROBOTMK_TEST_ROBOT)",
        );
        return;
    };
    // As root the environment is built as an unprivileged build user, which must reach the
    // base interpreter (the venv's python lives under /root here) and the test's folder.
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    let daemon = if root {
        if system_user(BUILDER).is_none() {
            return;
        }
        format!("uv = \"off\"\nbuild_user = \"{BUILDER}\"")
    } else {
        "uv = \"off\"".to_string()
    };
    let python = Path::new("/usr/bin/python3");
    if !require_tool(python.is_file(), "/usr/bin/python3") {
        return;
    }
    let inst = Instance::new(&daemon, "");
    let d = inst.dir.path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let installed = d.join("bin").join("robotmk-daemon");
    std::fs::create_dir(d.join("bin")).unwrap();
    install(&installed);
    let ctrl = |bin: &Path| ctrl_of(bin, &inst);
    let first = ctrl(&installed);
    let pid = first["daemon"]["pid"].as_u64().expect("a daemon runs") as u32;

    // The upgrade: a new file renamed over the one the daemon runs.
    install(&installed);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().ends_with(" (deleted)"),
        "the daemon should run a replaced file now: {}",
        exe.display()
    );

    // A config edit after the upgrade: a retried robot job and a job with an environment.
    let wheels = d.join("wheels");
    let made = Command::new(python)
        .args(["-c", MKWHEEL, "mypkg", "1.0"])
        .arg(&wheels)
        .output()
        .expect("run python");
    assert!(made.status.success(), "build the test wheel: {made:?}");
    std::fs::write(
        d.join("pass.robot"),
        "*** Test Cases ***\nPasses\n    Log    fine\n",
    )
    .unwrap();
    std::fs::write(
        d.join("requirements.txt"),
        format!(
            "--no-index\n--find-links {}\nmypkg==1.0\n",
            wheels.display()
        ),
    )
    .unwrap();
    let jobs = format!(
        "[[job]]\nname = \"retried\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"pass.robot\"\nevery = \"2s\"\ntimeout = \"120s\"\nattempts = 2\n\n\
         [[job]]\nname = \"with-env\"\nsuite = \"pass.robot\"\nevery = \"1h\"\ntimeout = \"120s\"\nrequirements = \"requirements.txt\"\npython = \"{p}\"\n",
        r = robot.display(),
        p = python.display(),
    );
    inst.write_config(&daemon, &jobs);

    // A run that took longer than the 2 s interval (a loaded machine) has the next due time
    // recorded as skipped before it ends: that is not the run looked for.
    let ran = || -> Vec<serde_json::Value> {
        inst.finished_records("retried")
            .into_iter()
            .filter(|r| r["outcome"] != "skipped")
            .collect()
    };
    let done = wait_for(Duration::from_secs(120), || !ran().is_empty());
    let recs = ran();
    assert!(done, "the retried job never finished: {}", inst.log());
    let rec = &recs[0];
    assert_eq!(
        rec["outcome"],
        "success",
        "the retry wrapper must start after the upgrade: {rec}\nstderr: {}",
        std::fs::read_to_string(
            Path::new(rec["run_dir"].as_str().unwrap_or_default()).join("stderr.log")
        )
        .unwrap_or_default()
    );
    assert_eq!(rec["attempts"].as_array().map(Vec::len), Some(1), "{rec}");

    let env_state = || {
        inst.status_json()["envs"]
            .as_array()
            .and_then(|e| e.first().cloned())
            .unwrap_or_default()
    };
    assert!(
        wait_for(Duration::from_secs(180), || {
            let e = env_state();
            e["state"] == "ready" || e["state"] == "failed"
        }),
        "the environment build never ended: {}",
        env_state()
    );
    let env = env_state();
    assert_eq!(
        env["state"], "ready",
        "the environment build must start after the upgrade: {env}"
    );
    // The daemon that did all this is the one started before the upgrade.
    assert_eq!(inst.daemon_pid(), Some(pid));
}

/// An upgrade that moves the old program aside instead of renaming over it — the install
/// folder renamed (`bin` → `bin.old`) or the file kept as `robotmk-daemon.old` — and puts
/// another build at ctrl's path retires the daemon like a rename over it. Before, ctrl judged
/// by the path the daemon's file has now (`/proc/PID/exe` follows the move and shows no
/// "(deleted)"), and the old build ran on for ever with every ctrl saying OK.
#[test]
fn another_build_put_where_the_old_one_was_moved_away_from_retires_it() {
    for aside in ["folder", "file"] {
        let inst = Instance::new(
            "",
            "[[job]]\nname = \"tick\"\ncommand = [\"/bin/true\"]\nevery = \"1h\"\n",
        );
        let d = inst.dir.path();
        std::fs::create_dir(d.join("bin")).unwrap();
        let installed = d.join("bin").join("robotmk-daemon");
        install(&installed);
        let first = ctrl_of(&installed, &inst);
        assert_eq!(first["ctrl"]["action"], "started", "{first}");
        let pid = first["daemon"]["pid"].as_u64().expect("a daemon runs") as u32;
        match aside {
            "folder" => {
                std::fs::rename(d.join("bin"), d.join("bin.old")).unwrap();
                std::fs::create_dir(d.join("bin")).unwrap();
            }
            _ => std::fs::rename(&installed, d.join("bin").join("robotmk-daemon.old")).unwrap(),
        }
        assert!(
            !exe_of(pid).ends_with(" (deleted)"),
            "{aside}: the daemon's file should have been moved, not deleted: {}",
            exe_of(pid)
        );
        install_another_build(&installed);
        let asked = ctrl_of(&installed, &inst);
        let note = asked["ctrl"]["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("asked it to stop"),
            "{aside}: the daemon moved aside was not asked to stop: {asked}"
        );
        assert!(
            wait_for(Duration::from_secs(10), || !pid_alive(pid)),
            "{aside}: the old daemon still runs"
        );
        let mut last = asked.clone();
        assert!(
            last["ctrl"]["action"] == "started"
                || wait_for(Duration::from_secs(10), || {
                    last = ctrl_of(&installed, &inst);
                    last["ctrl"]["action"] == "started"
                }),
            "{aside}: no ctrl started the new build: {last}"
        );
        let new_pid = last["daemon"]["pid"].as_u64().expect("a daemon runs") as u32;
        assert_eq!(exe_of(new_pid), installed.display().to_string(), "{aside}");
        let _ = inst.run(&["stop", "--now"]);
    }
}
