//! Issue 24, "status and the daemon line tell the truth": a user who cannot read the state
//! dir is told so (never "not running"), `status` says when and why the daemon last stopped,
//! a rejected edit is WARN "running the last good config from <time>" in ctrl and status
//! alike, `start` says the daemon needs ctrl calls, and an unreadable config is reported
//! under the default instance's name.
#![cfg(unix)]

mod common;

use common::{text, wait_for, Instance};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

const IDLE: &str = "[[job]]\nname = \"idle\"\ncommand = [\"true\"]\nevery = \"1h\"\n";

#[test]
fn a_user_who_cannot_read_the_state_dir_is_told_so() {
    if !common::require_root("needs root (a state dir another user cannot read)") {
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
    // The log says it in words too, not Rust's `reason=Some("stop requested")`.
    let log = inst.log();
    assert!(
        log.contains("daemon stopped reason=\"stop requested\""),
        "{log}"
    );
    assert!(!log.contains("Some("), "{log}");
    assert!(log.contains("scheduled job=idle"), "{log}");
    assert!(log.contains("trigger=\"schedule\""), "not Schedule: {log}");

    // Heartbeat silence.
    assert!(inst.ctrl().status.success());
    let pid = inst.daemon_pid().unwrap();
    assert!(wait_for(Duration::from_secs(30), || !common::pid_alive(
        pid
    )));
    let said = text(&inst.run(&["status"]).stdout);
    assert!(said.contains("heartbeat stale: no ctrl for 2s"), "{said}");

    // A run-once that held the instance (no daemon ran) is named, not a bare "stopped".
    assert!(inst.run(&["run-once", "idle"]).status.success());
    let said = text(&inst.run(&["status"]).stdout);
    assert!(
        said.contains("ago): run-once ended (no daemon ran; it held the instance)"),
        "{said}"
    );

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

/// A typo in the very lines that say where the daemon is (W3 F5): ctrl found no daemon where
/// the broken lines pointed, printed CRIT under the default instance, dropped the jobs' lines
/// and stopped the heartbeat, and the running daemon ended at its `heartbeat_timeout`. Now
/// the daemon holding the config's lock is the one reported, beaten for, and stopped.
#[test]
fn a_typo_in_the_instance_or_state_dir_line_keeps_the_running_daemon() {
    let inst = Instance::new("heartbeat_timeout = \"3s\"", IDLE);
    assert!(inst.ctrl().status.success());
    let pid = inst.daemon_pid().expect("a daemon runs");
    let good = std::fs::read_to_string(&inst.config).unwrap();
    let state_line = format!("state_dir = \"{}\"", inst.state.display());
    assert!(good.contains(&state_line), "{good}");
    for (i, (from, to)) in [
        ("instance = \"t\"", "instance = \"t x\""),
        ("instance = \"t\"", "instance = 5"),
        (state_line.as_str(), "state_dir = \"/var/lib/rmkd-typo"),
        (state_line.as_str(), "state_dir = \"\""),
    ]
    .into_iter()
    .enumerate()
    {
        inst.write_raw_config(&good.replace(from, to));
        let mut out = String::new();
        assert!(
            wait_for(Duration::from_secs(20), || {
                out = text(&inst.ctrl().stdout);
                out.contains("running the last good config from 20")
            }),
            "{to}: {out}"
        );
        assert!(
            out.contains("1 \"Robotmk t daemon\" - WARN - running the last good config from "),
            "{to}: {out}"
        );
        assert!(out.contains("\"Robotmk t idle\""), "{to}: {out}");
        assert!(!out.contains("Robotmk system daemon"), "{to}: {out}");
        if i == 0 {
            // Past the heartbeat timeout, with the agent's calls going on: the daemon stays.
            let past = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < past {
                assert!(inst.ctrl().status.success());
                std::thread::sleep(Duration::from_millis(250)); // the agent's cadence
            }
            assert!(
                common::pid_alive(pid),
                "the daemon ended without its heartbeat"
            );
            let said = text(&inst.run(&["status"]).stdout);
            assert!(said.contains("running the last good config"), "{said}");
        }
    }
    assert!(!std::path::Path::new("/var/lib/rmkd-typo").exists());
    // `stop` finds it too.
    let out = inst.run(&["stop", "--now"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_for(Duration::from_secs(10), || !common::pid_alive(pid)),
        "the daemon still runs after stop"
    );
}

/// W2 F4: a cleaner of the state dir's folder (systemd-tmpfiles removing files not changed
/// lately) took `status.json` and `ctrl-view` of a daemon with nothing to do: ctrl said
/// "starting … has not written its status yet" until the next change, weeks for a monthly
/// job. The daemon writes both again.
#[test]
fn a_status_removed_under_an_idle_daemon_is_written_again() {
    let inst = Instance::new("heartbeat_timeout = \"0\"", IDLE);
    assert!(inst.ctrl().status.success());
    let (status, view) = (inst.state.join("status.json"), inst.state.join("ctrl-view"));
    assert!(
        wait_for(Duration::from_secs(10), || status.exists() && view.exists()),
        "no status written"
    );
    // As a cleaner leaves it: the lock and the rest stay, the published files go.
    std::fs::remove_file(&status).unwrap();
    std::fs::remove_file(&view).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || status.exists() && view.exists()),
        "the daemon did not write its status again"
    );
    let out = text(&inst.ctrl().stdout);
    assert!(
        out.contains("0 \"Robotmk t daemon\" - OK - running"),
        "{out}"
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

#[test]
fn ctrl_with_a_broken_config_reports_under_the_instance_its_daemon_table_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let ctrl = || {
        let out = std::process::Command::new(common::BIN)
            .arg("--config")
            .arg(&config)
            .arg("ctrl")
            .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        text(&out.stdout)
    };
    // A job's string never closed: the file as a whole is no TOML, its [daemon] table is.
    std::fs::write(
        &config,
        format!(
            "[daemon]\ninstance = \"shop\"\nstate_dir = \"{}\"\n\n[[job]]\nname = \"a\"\nevery = \"5x\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let said = ctrl();
    assert!(
        said.contains("2 \"Robotmk shop daemon\" - CRIT - config error"),
        "{said}"
    );
    assert!(!said.contains("unknown daemon"), "{said}");
    // Nothing of a [daemon] table left: the default instance's name.
    std::fs::write(&config, "[daemon\ninstance = \"shop\"\n").unwrap();
    let said = ctrl();
    assert!(!said.contains("unknown daemon"), "{said}");
    assert!(
        said.contains("\"Robotmk system daemon\" - CRIT - config error"),
        "{said}"
    );
}

/// `bin` with this build's version patched to an older one of the same length (every digit
/// `0`): the daemon it starts says it runs that build, as one installed before an upgrade.
fn older_build_at(bin: &std::path::Path) -> String {
    let me = env!("CARGO_PKG_VERSION");
    let old: String = me
        .chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect();
    assert_ne!(old, me, "this build has no older version to patch in");
    let mut bytes = std::fs::read(common::BIN).unwrap();
    let (from, to) = (me.as_bytes(), old.as_bytes());
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(from.len()).position(|w| w == from) {
        bytes[i + at..i + at + to.len()].copy_from_slice(to);
        i += at + to.len();
    }
    install_bytes(bin, &bytes);
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains(&format!("robotmk-daemon {old}")),
        "{out:?}"
    );
    old
}

/// Writes `bytes` beside `to` and renames them over it, as dpkg installs a file.
fn install_bytes(to: &std::path::Path, bytes: &[u8]) {
    let tmp = to.with_file_name(".robotmk-daemon.dpkg-new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn status_says_an_upgrade_stopped_the_daemon_and_when() {
    let inst = Instance::new("", IDLE);
    let bin = inst.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let installed = bin.join("robotmk-daemon");
    let old = older_build_at(&installed);
    let new = env!("CARGO_PKG_VERSION");
    let run = |args: &[&str]| run_installed(&inst, &installed, args);
    assert!(run(&["ctrl"]).status.success());
    let s = inst.status_json();
    assert_eq!(s["daemon"]["build"], old.as_str(), "{s}");
    let pid = inst.daemon_pid().unwrap();

    // The upgrade: the new build renamed over the old; its first ctrl retires the old daemon
    // (idle: it exits at once) and starts the new one.
    install_bytes(&installed, &std::fs::read(common::BIN).unwrap());
    let out = run(&["ctrl"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(Duration::from_secs(30), || !common::pid_alive(
        pid
    )));

    // The new daemon runs: status says how its predecessor ended.
    let out = run(&["status"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let why = format!("upgrade (build {old} → {new})");
    assert!(said.contains("last stop:  stopped 20"), "{said}");
    assert!(said.contains(&format!("ago): {why}")), "{said}");
    assert!(!said.contains("stop requested"), "{said}");
    let s = inst.status_json();
    assert_eq!(s["daemon"]["build"], new, "{s}");
    assert_eq!(s["daemon"]["last_stopped"]["reason"], why.as_str(), "{s}");
    assert_eq!(s["daemon"]["last_stopped"]["build"], old.as_str(), "{s}");
    assert!(s["daemon"]["last_stopped"]["at"].is_string(), "{s}");
    assert!(run(&["stop", "--now"]).status.success());
}

/// An upgrade on a full state disk (issue s11 D2): the new build's ctrl cannot write the
/// stop request, so it signals the verified old daemon, which stops after its runs; once
/// there is space again the next ctrl starts the new build.
#[test]
fn an_upgrade_on_a_full_state_disk_still_retires_the_old_daemon() {
    if !common::require_root("mounting a small tmpfs to fill the state dir's file system") {
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("rmkd-full-")
        .tempdir()
        .unwrap();
    let tmpfs = common::Tmpfs::mount(&root.path().join("fs"), "size=4m,nr_inodes=1000");
    let mut inst = Instance::new("", "");
    inst.state = tmpfs.0.join("state");
    inst.write_config("", IDLE);
    let bin = inst.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let installed = bin.join("robotmk-daemon");
    let old = older_build_at(&installed);
    let run = |args: &[&str]| run_installed(&inst, &installed, args);
    assert!(run(&["ctrl"]).status.success());
    assert_eq!(inst.status_json()["daemon"]["build"], old.as_str());
    let pid = inst.daemon_pid().unwrap();
    let files = tmpfs.fill();

    install_bytes(&installed, &std::fs::read(common::BIN).unwrap());
    let out = run(&["ctrl"]);
    assert!(out.status.success(), "{out:?}");
    let note = common::parse_section(&text(&out.stdout))["ctrl"]["note"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    eprintln!("ctrl on a full disk ({files} files to fill it): {note}");
    assert!(
        note.contains("could not be written") && note.contains("signalled"),
        "{note}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || !common::pid_alive(pid)),
        "the old daemon (pid {pid}) still runs after the upgrade"
    );
    tmpfs.empty();
    assert!(run(&["ctrl"]).status.success());
    let s = inst.status_json();
    assert_eq!(s["daemon"]["build"], env!("CARGO_PKG_VERSION"), "{s}");
    assert!(run(&["stop", "--now"]).status.success());
}

/// `--help` and the README say what the tests above show the commands do.
#[test]
fn help_and_readme_tell_the_admins_first_hour_as_it_behaves() {
    let help = |cmd: &str| {
        let out = std::process::Command::new(common::BIN)
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        text(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let status = help("status");
    for want in [
        "4 cannot tell",
        "an upgrade",
        "the pauses in force",
        "warnings",
    ] {
        assert!(
            status.contains(want),
            "status --help lacks {want:?}: {status}"
        );
    }
    for want in [
        "4 cannot tell (the state dir cannot be read: run as root)",
        "heartbeat silence, an upgrade",
        "`paused`, `config_warnings`",
        "(WARN: `running the last good config from <time>`)",
        "exits after `heartbeat_timeout`",
        "WARN once the pause is older than `--warn-after`",
        "survives a daemon restart",
    ] {
        assert!(readme.contains(want), "README lacks {want:?}");
    }
    assert!(
        !readme.contains("WARN when it runs on its last good config after a rejected edit (`running the last good config from <time>`, the time that file was written; `status` says the same), while a paused"),
        "a pause does not make the daemon line WARN"
    );
    let pause = help("pause");
    for want in [
        "--for <DUR>",
        "--warn-after <DUR>",
        "paused by <user> until <time>",
        "survives a daemon restart",
        "`status` and `history` show it",
    ] {
        assert!(pause.contains(want), "pause --help lacks {want:?}: {pause}");
    }
    let start = help("start");
    assert!(
        start.contains("it exits after `heartbeat_timeout`"),
        "{start}"
    );
    let check = help("check-config");
    assert!(check.contains("warnings, on stderr"), "{check}");
}

/// Runs the build installed at `installed` (a copy, as an upgrade leaves it) on `inst`'s
/// config, outside systemd and the agent's variables.
fn run_installed(
    inst: &Instance,
    installed: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new(installed)
        .arg("--config")
        .arg(&inst.config)
        .args(args)
        .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}
