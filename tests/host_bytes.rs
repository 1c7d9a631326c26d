//! What the host gives as bytes is taken as bytes: a line of `/etc/shadow` or a mount point
//! that is not UTF-8 (a Latin-1 account name, a USB stick's Latin-1 label) does not break
//! what has nothing to do with it, and a path of the daemon's own that is not UTF-8 (which its
//! JSON state files cannot hold) is refused up front with the reason, not accepted and then
//! never written.
//!
//! The odd files and mounts live only in a mount namespace of the daemon's own (as in
//! `user_database.rs`): the host's `/etc` and mount table are not touched.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Whether this test can make mount namespaces (root and `unshare`); `false` is a skip (a
/// failure in CI).
fn can_unshare(what: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    let unshare = Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    require_tool(root && unshare, what)
}

/// `BIN --config <inst> args…` in a mount namespace of its own, after `setup` (a shell
/// script whose `$1` is `arg`).
fn in_namespace(inst: &Instance, setup: &str, arg: &OsStr, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!("{setup} && shift && exec \"$@\""))
        .arg("sh")
        .arg(arg)
        .arg(BIN)
        .arg("--config")
        .arg(&inst.config)
        .args(args)
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .env_remove("ROBOTMK_DAEMON_CONFIG")
        .stdin(Stdio::null());
    c
}

/// A daemon of `inst` in the foreground in a namespace of its own (see [`in_namespace`]).
fn daemon_in_namespace(inst: &Instance, setup: &str, arg: &OsStr) -> (Child, KillOnDrop) {
    let child = in_namespace(inst, setup, arg, &["start", "--foreground"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare");
    let guard = KillOnDrop(child.id());
    (child, guard)
}

fn stop(inst: &Instance, mut daemon: Child) {
    let _ = inst.run(&["stop", "--now"]);
    let _ = daemon.wait();
}

/// What a finished run of `job` printed (its output file).
fn run_output(inst: &Instance, job: &str) -> Option<String> {
    let r = inst.finished_records(job).into_iter().last()?;
    std::fs::read_to_string(Path::new(r["run_dir"].as_str()?).join("stdout.log")).ok()
}

/// A path below `dir` whose last name is Latin-1 "café": not UTF-8.
fn latin1(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsString::from_vec(name.to_vec()))
}

/// One line in `/etc/shadow` that is not UTF-8 — another account's, a legacy Latin-1 name —
/// made every user lookup fail (the file was read as text): the config was refused and the
/// daemon did not start at all. Now the job's user runs, and an expired account's line after
/// the odd one is still read (its jobs are held).
#[test]
fn a_shadow_line_that_is_not_utf8_does_not_stop_the_users_jobs() {
    if !can_unshare("root and unshare --mount (a private /etc/shadow)") {
        return;
    }
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"",
        r#"[[job]]
name = "asuser"
command = ["/bin/sh", "-c", "id -un"]
user = "rmkbytes"
every = "1s"
timeout = "5s"

[[job]]
name = "expired"
command = ["/bin/true"]
user = "rmkbytesx"
every = "1s"
timeout = "5s"
"#,
    );
    // The jobs' user reaches its run folder through the instance's.
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(inst.dir.path(), mode).unwrap();
    let etc = inst.dir.path().join("etc");
    let copied = Command::new("cp")
        .args(["-a", "/etc"])
        .arg(&etc)
        .status()
        .is_ok_and(|s| s.success());
    assert!(copied, "cp -a /etc");
    let append = |file: &str, text: &[u8]| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(etc.join(file))
            .unwrap();
        f.write_all(text).unwrap();
    };
    append(
        "passwd",
        b"rmkbytes:x:64123:64123::/nonexistent:/bin/sh\nrmkbytesx:x:64124:64123::/nonexistent:/bin/sh\n",
    );
    append("group", b"rmkbytes:x:64123:\n");
    // A Latin-1 name ("m\xfcller") and a hash with bytes that are no UTF-8, before the users'.
    append(
        "shadow",
        b"m\xfcller:!:20000:0:99999:7:::\n\
          odd:$6$\xff\xfe$x:20000:0:99999:7:::\n\
          rmkbytes:!:20000:0:99999:7:::\n\
          rmkbytesx:!:20000:0:99999:7::1:\n",
    );
    let setup = "mount --bind \"$1\" /etc";
    let cc = in_namespace(&inst, setup, etc.as_os_str(), &["check-config"])
        .output()
        .expect("check-config");
    assert!(
        cc.status.success(),
        "check-config refused the config: {}{}",
        text(&cc.stdout),
        text(&cc.stderr)
    );
    let (daemon, _guard) = daemon_in_namespace(&inst, setup, etc.as_os_str());
    let ran = wait_for(Duration::from_secs(20), || {
        run_output(&inst, "asuser").is_some_and(|o| o.trim() == "rmkbytes")
    });
    let ctrl = text(&inst.ctrl().stdout);
    stop(&inst, daemon);
    assert!(
        ran,
        "the user's job did not run as its user: {:?}\n{}",
        run_output(&inst, "asuser"),
        inst.log()
    );
    assert!(
        ctrl.contains("account rmkbytesx expired on 1970-01-02"),
        "the expired account's line (after the odd ones) was not read: {ctrl}"
    );
}

/// A mount anywhere whose path is not UTF-8 made the daemon's read of the mount table fail,
/// and it concluded that no cgroup v2 was mounted: every run lost its cgroup for the daemon's
/// life. Now the daemon still gets its runs' cgroups; where the host has none to give (a
/// daemon without the odd mount gets none either), the test is skipped.
#[test]
fn a_mount_whose_path_is_not_utf8_does_not_take_the_runs_cgroups() {
    if !can_unshare("root and unshare --mount (a private mount table)") {
        return;
    }
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"",
        r#"[[job]]
name = "where"
command = ["/bin/cat", "/proc/self/cgroup"]
every = "1s"
timeout = "5s"
"#,
    );
    let odd = latin1(inst.dir.path(), b"caf\xe9");
    std::fs::create_dir(&odd).unwrap();
    let said = |inst: &Instance| {
        wait_for(Duration::from_secs(20), || inst.log().contains("runs get "));
        inst.log()
    };
    let setup = "mount -t tmpfs rmkd-bytes \"$1\"";
    let (daemon, _guard) = daemon_in_namespace(&inst, setup, odd.as_os_str());
    let log = said(&inst);
    let got = log.contains("runs get a cgroup each");
    let ran_in_one = got
        && wait_for(Duration::from_secs(20), || {
            run_output(&inst, "where").is_some_and(|o| o.contains("/run-"))
        });
    stop(&inst, daemon);
    if got {
        assert!(
            ran_in_one,
            "the run was not in its cgroup: {:?}",
            run_output(&inst, "where")
        );
        return;
    }
    assert!(
        !log.contains("no cgroup v2 hierarchy is mounted"),
        "a mount whose path is not UTF-8 hid the cgroup2 mount: {log}"
    );
    // No cgroup for another reason: a daemon without the odd mount must get none either.
    let plain = Instance::new("heartbeat_timeout = \"0\"", "");
    let (daemon, _guard) = daemon_in_namespace(&plain, "true", OsStr::new("-"));
    let plain_log = said(&plain);
    stop(&plain, daemon);
    assert!(
        !plain_log.contains("runs get a cgroup each"),
        "the daemon got no cgroup with the odd mount, and one without it: {log}"
    );
    require_tool(
        false,
        "run cgroups (a cgroup v2 hierarchy this daemon may use)",
    );
}

/// The daemon's JSON state files hold its config's path and its state dir's, and JSON holds
/// text only: a state dir or config path that is not UTF-8 was accepted by `check-config` and
/// `start`, and then no run record (or no status) could ever be written. Now the config is
/// refused up front, naming the setting; a state dir that only a link leads to is refused
/// when the daemon resolves it.
#[test]
fn a_state_dir_or_config_path_that_is_not_utf8_is_refused_up_front() {
    let inst = Instance::new("", "");
    let job =
        "[[job]]\nname = \"j1\"\ncommand = [\"/bin/true\"]\nevery = \"1s\"\ntimeout = \"2s\"\n";
    let var = latin1(inst.dir.path(), b"caf\xe9");
    std::fs::create_dir(&var).unwrap();
    let refused = |out: &std::process::Output, what: &str, naming: &str| {
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            !out.status.success() && said.contains("not valid UTF-8") && said.contains(naming),
            "{what} did not refuse with the reason ({naming}): {:?} {said}",
            out.status
        );
    };

    // The default state dir below $MK_VARDIR.
    inst.write_raw_config(&format!(
        "[daemon]\ninstance = \"bytes\"\nheartbeat_timeout = \"0\"\n{job}"
    ));
    let with_var = |args: &[&str]| {
        inst.cmd()
            .env("MK_VARDIR", &var)
            .args(args)
            .output()
            .unwrap()
    };
    let cc = with_var(&["check-config"]);
    assert_eq!(cc.status.code(), Some(2), "{cc:?}");
    refused(&cc, "check-config", "MK_VARDIR");
    refused(&with_var(&["start", "--foreground"]), "start", "MK_VARDIR");
    let ctrl = text(&with_var(&["ctrl"]).stdout);
    assert!(
        ctrl.lines()
            .any(|l| l.starts_with("2 \"Robotmk bytes daemon\"")
                && l.contains("config error")
                && l.contains("MK_VARDIR")),
        "ctrl: {ctrl}"
    );
    // The section still serializes (the report holds the state dir's path).
    assert!(!ctrl.contains("cannot serialize"), "ctrl: {ctrl}");

    // The config file's own path.
    let odd_config = latin1(inst.dir.path(), b"caf\xe9.toml");
    std::fs::write(
        &odd_config,
        format!(
            "[daemon]\ninstance = \"bytes2\"\nheartbeat_timeout = \"0\"\nstate_dir = \"{}\"\n{job}",
            inst.state.display()
        ),
    )
    .unwrap();
    let with_config = |args: &[&str]| {
        Command::new(BIN)
            .arg("--config")
            .arg(&odd_config)
            .args(args)
            .env_remove("MK_VARDIR")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let cc = with_config(&["check-config"]);
    assert_eq!(cc.status.code(), Some(2), "{cc:?}");
    refused(&cc, "check-config", "config file's path");
    refused(
        &with_config(&["start", "--foreground"]),
        "start",
        "config file's path",
    );
    let ctrl = text(&with_config(&["ctrl"]).stdout);
    assert!(
        ctrl.lines()
            .any(|l| l.starts_with("2 ") && l.contains("config file's path")),
        "ctrl: {ctrl}"
    );

    // A state dir that a link leads to a folder whose path is not UTF-8.
    let link = inst.dir.path().join("state-link");
    std::os::unix::fs::symlink(&var, &link).unwrap();
    inst.write_raw_config(&format!(
        "[daemon]\ninstance = \"bytes3\"\nheartbeat_timeout = \"0\"\nstate_dir = \"{}\"\n{job}",
        link.display()
    ));
    let start = inst.run(&["start", "--foreground"]);
    assert_eq!(start.status.code(), Some(1), "{start:?}");
    refused(&start, "start through a link", "state-link");
}
