//! One daemon per config file, whatever state dir the caller's environment gives it (T3): a
//! config without `state_dir` takes its state dir from `MK_VARDIR`, and ctrl run with two
//! values (the agent, an admin's shell) started two daemons of the same config, each in a
//! state dir of its own: every job ran twice. The daemon now locks the config file itself; a
//! second ctrl launches none and says CRIT, naming the other state dir, and a second daemon
//! started by hand refuses. Real binary, fork route. The lock is a file only the daemon's
//! user may create (T5 F1-F4: a lock on the config itself was anyone's who could read it).
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Python that takes an exclusive flock on the file `argv[1]` itself and keeps it.
const HOLD_LOCK: &str = "import fcntl, sys, time; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(600)";

const CONFIG: &str = "[daemon]\ninstance = \"od\"\nheartbeat_timeout = \"0\"\nstop_grace = \"1s\"\n\n[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n";

/// The instance with its config (no `state_dir`) and three `MK_VARDIR` folders.
fn setup() -> (Instance, [PathBuf; 3]) {
    let inst = Instance::new("", "");
    inst.write_raw_config(CONFIG);
    let vars = ["v1", "v2", "v3"].map(|v| inst.dir.path().join(v));
    for v in &vars {
        std::fs::create_dir(v).unwrap();
    }
    (inst, vars)
}

fn with_var(inst: &Instance, var: &Path) -> Command {
    let mut c = inst.cmd();
    c.env("MK_VARDIR", var)
        .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1");
    c
}

/// The daemon line of ctrl run with `MK_VARDIR=var`.
fn ctrl_line(inst: &Instance, var: &Path) -> String {
    let out = with_var(inst, var).arg("ctrl").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    local_lines(&text(&out.stdout))
        .into_iter()
        .find(|l| l.contains("\"Robotmk od daemon\""))
        .unwrap_or_else(|| panic!("no daemon line: {}", text(&out.stdout)))
}

fn state_dir(var: &Path) -> PathBuf {
    var.join("robotmk-daemon").join("od")
}

/// The first daemon, started by ctrl with `MK_VARDIR=v1`; its PID.
fn first_daemon(inst: &Instance, v1: &Path) -> u32 {
    let line = ctrl_line(inst, v1);
    assert!(line.starts_with("0 "), "{line}");
    assert!(
        wait_for(Duration::from_secs(5), || inst.daemon_processes().len()
            == 1),
        "{:?}",
        inst.daemon_processes()
    );
    inst.daemon_processes()[0]
}

/// A second ctrl (`MK_VARDIR=v2`) starts no daemon and says CRIT, naming the first daemon's
/// state dir and the fix; a daemon started by hand there refuses, saying the same.
fn second_is_refused(inst: &Instance, first: u32, v1: &Path, v2: &Path) {
    let line = ctrl_line(inst, v2);
    assert!(line.starts_with("2 "), "{line}");
    assert!(
        line.contains(&state_dir(v1).display().to_string()),
        "{line}"
    );
    assert!(line.contains(&format!("pid {first}")), "{line}");
    assert!(line.contains("set state_dir in the config"), "{line}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inst.daemon_processes(), vec![first]);

    let (out, _) = output_within(
        Duration::from_secs(10),
        with_var(inst, v2).args(["daemon", "--route", "fork"]),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&state_dir(v1).display().to_string()) && err.contains("set state_dir"),
        "{err}"
    );
    // For a ctrl that launched it: the same words in its start-error.
    let start_error =
        std::fs::read_to_string(state_dir(v2).join("start-error")).unwrap_or_default();
    assert!(start_error.contains("set state_dir"), "{start_error}");
    assert_eq!(inst.daemon_processes(), vec![first]);
}

fn stop(inst: &Instance, v1: &Path) {
    let out = with_var(inst, v1).args(["stop", "--now"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn two_mk_vardirs_run_one_daemon_of_a_config() {
    let (inst, [v1, v2, v3]) = setup();
    let first = first_daemon(&inst, &v1);
    second_is_refused(&inst, first, &v1, &v2);
    // `status` from a third environment says where it runs, not a bare "not running".
    let out = with_var(&inst, &v3).arg("status").output().unwrap();
    let shown = text(&out.stdout);
    assert!(
        shown.contains("elsewhere:") && shown.contains(&state_dir(&v1).display().to_string()),
        "{shown}"
    );
    // The first ctrl still sees its daemon, OK.
    assert!(ctrl_line(&inst, &v1).starts_with("0 "));
    stop(&inst, &v1);
    assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
    // With it gone, the other environment may start one.
    assert!(ctrl_line(&inst, &v2).starts_with("0 "));
    // A daemon that stops takes its config's lock file with it: none piles up per stop.
    // (Root's folder; another user's depends on its session.)
    let lock_file = Some(config_lock_file(&inst)).filter(|f| f.exists());
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        lock_file.is_some() || !root,
        "no lock file in /run/robotmk-daemon"
    );
    stop(&inst, &v2);
    assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
    if let Some(f) = lock_file {
        assert!(!f.exists(), "the stopped daemon left {}", f.display());
    }
}

/// The config's lock file of a daemon run by this (root) user: `/run/robotmk-daemon/`, named
/// after the config file's device and inode.
fn config_lock_file(inst: &Instance) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&inst.config).unwrap();
    PathBuf::from(format!(
        "/run/robotmk-daemon/config-{}-{}.lock",
        m.dev(),
        m.ino()
    ))
}

#[test]
fn a_config_replaced_by_rename_is_locked_again_after_the_reload() {
    let (inst, [v1, v2, _]) = setup();
    let first = first_daemon(&inst, &v1);
    let stamp = || {
        std::fs::read(state_dir(&v1).join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|s| s["daemon"]["config_stamp"].clone())
    };
    let before = stamp();
    assert!(before.is_some());
    // An editor's save: a new file renamed over the config. The daemon reloads it.
    inst.write_raw_config(&format!("{CONFIG}# edited\n"));
    assert!(
        wait_for(Duration::from_secs(5), || stamp() != before),
        "the daemon did not reload the config"
    );
    second_is_refused(&inst, first, &v1, &v2);
    let log = std::fs::read_to_string(state_dir(&v1).join("daemon.log")).unwrap_or_default();
    assert!(log.contains("was replaced; locked the new file"), "{log}");
    stop(&inst, &v1);
}

/// A handover (the config now names another state dir) while a run is in flight: the old
/// daemon drains until the run ends, and lets the config's lock go at once, so the next ctrl
/// starts the daemon the config names now instead of reporting the draining one as a daemon
/// of the config elsewhere.
#[test]
fn a_handover_lets_the_next_daemon_start_while_runs_finish() {
    let long = "[[job]]\nname = \"long\"\ncommand = [\"sleep\", \"30\"]\nevery = \"1s\"\ntimeout = \"1m\"\n";
    let inst = Instance::new("heartbeat_timeout = \"0\"", long);
    let out = inst.ctrl();
    assert!(out.status.success(), "{out:?}");
    let running = first_job_running;
    assert!(wait_for(Duration::from_secs(5), || running(&inst.state)));
    let first = inst.daemon_processes();
    assert_eq!(first.len(), 1);
    let s2 = inst.dir.path().join("state2");
    inst.write_raw_config(&format!(
        "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nstop_grace = \"1s\"\nheartbeat_timeout = \"0\"\n\n{long}",
        s2.display()
    ));
    let log = || std::fs::read_to_string(inst.state.join("daemon.log")).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(5), || log()
            .contains("let go of the config's lock")),
        "{}",
        log()
    );
    let out = inst.ctrl();
    let line = local_lines(&text(&out.stdout))
        .into_iter()
        .find(|l| l.contains(" daemon\""))
        .unwrap_or_default();
    assert!(line.starts_with("0 "), "{line}");
    // The old one still finishes its run beside the new one.
    assert!(common::pid_alive(first[0]));
    assert_eq!(inst.daemon_processes().len(), 2);
    let _ = inst.run(&["stop", "--now"]);
}

/// A process of this user that locks the config file (a tool that locks files it reads) is no
/// daemon of the config: ctrl starts the daemon, which takes the config's lock (a file of its
/// own, see `sys::config_lock`) and keeps a second daemon of the config from starting.
#[test]
fn a_lock_on_the_config_by_a_non_daemon_keeps_no_daemon_from_starting() {
    // A process that takes the lock itself (flock(1) would leave it to a child).
    let python = Path::new("/usr/bin/python3");
    if !require_tool(python.exists(), "/usr/bin/python3") {
        return;
    }
    let (inst, [v1, v2, _]) = setup();
    let mut holder = Command::new(python)
        .arg("-c")
        .arg(HOLD_LOCK)
        .arg(&inst.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let locked = || {
        !Command::new(python)
            .arg("-c")
            .arg("import fcntl, sys; fcntl.flock(open(sys.argv[1]), fcntl.LOCK_SH | fcntl.LOCK_NB)")
            .arg(&inst.config)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(wait_for(Duration::from_secs(5), locked));
    let first = first_daemon(&inst, &v1);
    second_is_refused(&inst, first, &v1, &v2);
    let log = std::fs::read_to_string(state_dir(&v1).join("daemon.log")).unwrap_or_default();
    assert!(!log.contains("without the config's lock"), "{log}");
    let _ = holder.kill();
    let _ = holder.wait();
    stop(&inst, &v1);
}

/// A holder of a local user's (T5 F1-F4): it locks the config (`flock`, which any user who
/// may read the config may take) and a `daemon.lock` of its own, marks both inheritable and
/// execs a setuid-root program that waits (`su` asking for a password on a pty), so that
/// `/proc` shows euid 0 holding both. Without `su` it keeps them itself. Prints its PID.
const USER_HOLDER: &str = r#"
import os, sys, fcntl, pty, time
cfg, fake = sys.argv[1], sys.argv[2]
pid, master = pty.fork()
if pid == 0:
    a = os.open(cfg, os.O_RDONLY); fcntl.flock(a, fcntl.LOCK_EX)
    b = os.open(os.path.join(fake, "daemon.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(b, fcntl.LOCK_EX)
    os.set_inheritable(a, True); os.set_inheritable(b, True)
    su = "/usr/bin/su"
    if os.path.exists(su) and os.stat(su).st_mode & 0o4000:
        os.execv(su, ["su", "root"])
    time.sleep(600); os._exit(0)
print(pid, flush=True)
time.sleep(600)
"#;

/// The user's holder processes, ended by PID when the test ends.
struct Holders(Vec<std::process::Child>, Vec<u32>);

impl Drop for Holders {
    fn drop(&mut self) {
        for pid in &self.1 {
            // SAFETY: a PID this test started (the holder's child, su); SIGKILL.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Holders {
    /// Starts a holder as `(uid, gid)` on `file`, its fake `daemon.lock` in `fake`; returns
    /// once the lock is taken (and, with a setuid `su`, once that runs as euid 0).
    fn start(&mut self, (uid, gid): (u32, u32), file: &Path, fake: &Path) {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(USER_HOLDER)
            .arg(file)
            .arg(fake)
            .uid(uid)
            .gid(gid)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.0.push(child);
        let pid: u32 = line.trim().parse().expect("the holder's PID");
        self.1.push(pid);
        let locked = || {
            std::fs::read_to_string("/proc/locks")
                .unwrap_or_default()
                .lines()
                .filter(|l| l.split_whitespace().nth(4) == Some(&pid.to_string()))
                .count()
                == 2
        };
        assert!(wait_for(Duration::from_secs(10), locked), "holder {pid}");
        let su = std::fs::metadata("/usr/bin/su")
            .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o4000 != 0);
        if su {
            let euid_0 = || {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
                    .unwrap_or(false)
            };
            assert!(wait_for(Duration::from_secs(10), euid_0), "su {pid}");
        }
    }
}

/// T5 F1, F2, F4: a local user who may read the config locks it and a `daemon.lock` of its
/// own inside a setuid-root process. The config's lock is a file only the daemon's user may
/// create (`/run/robotmk-daemon/` for root), so none of that is a daemon of the config: ctrl
/// starts the daemon at once and says OK, and a config replaced by rename, whose new file the
/// user locked first, is locked by the daemon, which goes on running its jobs.
#[test]
fn a_local_users_locks_on_the_config_keep_no_daemon_from_starting() {
    if !require_root("a local user to hold the locks")
        || !require_tool(Path::new("/usr/bin/python3").exists(), "/usr/bin/python3")
    {
        return;
    }
    let Some(user) = system_user("rmkd-lockholder") else {
        return;
    };
    let (inst, [v1, v2, _]) = setup();
    // The config readable by the user, as a hand-written config with umask 022 is.
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
    };
    mode(inst.dir.path(), 0o755);
    mode(&inst.config, 0o644);
    // The user's folders for its `daemon.lock`s (each holder flocks one of its own).
    let fake = |n: &str| {
        let f = inst.dir.path().join(n);
        std::fs::create_dir(&f).unwrap();
        std::os::unix::fs::chown(&f, Some(user.0), Some(user.1)).unwrap();
        f
    };
    let mut holders = Holders(Vec::new(), Vec::new());
    holders.start(user, &inst.config, &fake("fake"));

    let (out, took) = output_within(Duration::from_secs(30), with_var(&inst, &v1).arg("ctrl"));
    let line = local_lines(&text(&out.stdout))
        .into_iter()
        .find(|l| l.contains("\"Robotmk od daemon\""))
        .unwrap_or_default();
    assert!(line.starts_with("0 "), "{line}");
    // ctrl looks at no process of the user's: milliseconds, not the seconds a walk of its
    // descriptors took.
    assert!(took < Duration::from_secs(5), "ctrl took {took:?}");
    assert!(
        wait_for(Duration::from_secs(5), || inst.daemon_processes().len()
            == 1),
        "{:?}",
        inst.daemon_processes()
    );
    let first = inst.daemon_processes()[0];
    // From another MK_VARDIR the daemon is found where it runs, not in the user's folder.
    let out = with_var(&inst, &v2).arg("status").output().unwrap();
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&state_dir(&v1).display().to_string()) && !shown.contains("fake"),
        "{shown}"
    );

    // An admin's edit by rename; the user locked the new file before the rename.
    let stamp = || {
        std::fs::read(state_dir(&v1).join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|s| s["daemon"]["config_stamp"].clone())
    };
    let before = stamp();
    let new = inst.dir.path().join("config.toml.new");
    std::fs::write(&new, format!("{CONFIG}# edited\n")).unwrap();
    mode(&new, 0o644);
    holders.start(user, &new, &fake("fake2"));
    std::fs::rename(&new, &inst.config).unwrap();
    let log = || std::fs::read_to_string(state_dir(&v1).join("daemon.log")).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(5), || stamp() != before
            && log().contains("was replaced; locked the new file")),
        "{}",
        log()
    );
    let line = ctrl_line(&inst, &v1);
    assert!(
        line.starts_with("0 ") && line.contains(&format!("pid {first}")),
        "{line}"
    );
    assert_eq!(inst.daemon_processes(), vec![first]);
    stop(&inst, &v1);
    drop(holders);
}

/// The daemon's lock file removed under it (a cleaner of its folder, logind at a logout, an
/// admin's `rm`): it is watched, so the daemon takes it again within moments (not at its next
/// safety look, minutes later), and a second daemon of the config is still refused.
#[test]
fn a_removed_lock_file_is_taken_again_at_once() {
    if !require_root("the config's lock file in /run/robotmk-daemon") {
        return;
    }
    let (inst, [v1, v2, _]) = setup();
    let first = first_daemon(&inst, &v1);
    let lock = config_lock_file(&inst);
    assert!(lock.exists());
    std::fs::remove_file(&lock).unwrap();
    let holder = || std::fs::read_to_string(&lock).ok();
    assert!(
        wait_for(Duration::from_secs(3), || holder()
            .is_some_and(|t| t.starts_with(&format!("{first}\n")))),
        "the lock file was not taken again: {:?}",
        holder()
    );
    let log = std::fs::read_to_string(state_dir(&v1).join("daemon.log")).unwrap_or_default();
    assert!(log.contains("was removed under this daemon"), "{log}");
    second_is_refused(&inst, first, &v1, &v2);
    stop(&inst, &v1);
}

/// A process held in SIGSTOP, continued when dropped (also when the test panics).
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        // SAFETY: a daemon this test started.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

/// The lock file removed while its daemon cannot look (held in SIGSTOP here; a busy host, in
/// life), and a second daemon of the config started from another `MK_VARDIR` in that window:
/// it holds the new lock file, so the first one, once it looks, stands down. It says so in its
/// log and on its ctrl line, naming the other daemon, and its run in flight is not cut off: it
/// finishes and is recorded as a success.
#[test]
fn the_daemon_that_lost_its_removed_lock_file_stands_down() {
    if !require_root("the config's lock file in /run/robotmk-daemon") {
        return;
    }
    let (inst, [v1, v2, _]) = setup();
    inst.write_raw_config(
        "[daemon]\ninstance = \"od\"\nheartbeat_timeout = \"0\"\nstop_grace = \"1s\"\n\n[[job]]\nname = \"j\"\ncommand = [\"sleep\", \"6\"]\nevery = \"1s\"\ntimeout = \"1m\"\n",
    );
    let first = first_daemon(&inst, &v1);
    let st1 = state_dir(&v1);
    let running = || first_job_running(&st1);
    assert!(wait_for(Duration::from_secs(5), running));
    let stopped = Stopped::new(first);
    std::fs::remove_file(config_lock_file(&inst)).unwrap();
    let line = ctrl_line(&inst, &v2);
    assert!(line.starts_with("0 "), "{line}");
    assert!(wait_for(Duration::from_secs(5), || inst
        .daemon_processes()
        .len()
        == 2));
    let second = *inst
        .daemon_processes()
        .iter()
        .find(|p| **p != first)
        .unwrap();
    drop(stopped);
    let log = || std::fs::read_to_string(st1.join("daemon.log")).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(5), || log().contains("stands down")),
        "{}",
        log()
    );
    let l = log();
    assert!(
        l.contains("was removed under this daemon") && l.contains(&format!("pid {second}")),
        "{l}"
    );
    // On its line while it drains (its run is still in flight), once its status is written
    // (the log line comes first).
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(3), || {
            line = ctrl_line(&inst, &v1);
            line.contains("stands down") && line.contains(&format!("pid {second}"))
        }),
        "{line}"
    );
    // Its run finishes, then it exits; the other one runs on.
    assert!(
        wait_for(Duration::from_secs(15), || !pid_alive(first)),
        "the first daemon did not end"
    );
    let runs = inst_records(&st1);
    assert!(runs.iter().any(|r| r["outcome"] == "success"), "{runs:?}");
    assert!(
        runs.iter()
            .all(|r| r["outcome"] != "failure" && r["outcome"] != "timeout"),
        "{runs:?}"
    );
    assert!(pid_alive(second));
    stop(&inst, &v2);
}

/// Every run record of the job `j` in the state dir `st`.
fn inst_records(st: &Path) -> Vec<serde_json::Value> {
    let runs = st.join("jobs").join("j").join("runs");
    std::fs::read_dir(&runs)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .filter_map(|d| std::fs::read(d.join("record.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// Entries this test put into `/run/robotmk-daemon/`, removed when it ends.
struct Planted(Vec<PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A daemon killed (SIGKILL, a crash) leaves its lock file behind: not locked, so harmless,
/// but one per daemon for as long as `/run` lives. A daemon that takes its lock removes the
/// lock files in the folder that nobody holds, and only those: not one a daemon holds, not a
/// name of another pattern, not a symlink (nor what it leads to).
#[test]
fn a_starting_daemon_removes_lock_files_nobody_holds() {
    if !require_root("the config's lock folder /run/robotmk-daemon")
        || !require_tool(Path::new("/usr/bin/python3").exists(), "/usr/bin/python3")
    {
        return;
    }
    let (inst, [v1, _, _]) = setup();
    let folder = Path::new("/run/robotmk-daemon");
    if let Err(e) = std::fs::create_dir(folder) {
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    }
    std::fs::set_permissions(folder, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // Names no config of this host has (device 0), unique to this test process.
    let base = u64::from(std::process::id()) * 1000;
    let name = |i: u64| folder.join(format!("config-0-{}.lock", base + i));
    let killed = name(1);
    let held = name(2);
    let link = name(3);
    let other = folder.join(format!("config-0-{base}.lock.keep"));
    let _planted = Planted(vec![
        killed.clone(),
        held.clone(),
        link.clone(),
        other.clone(),
    ]);
    // A daemon killed: start one on a config of its own, SIGKILL it, its file stays.
    let dead = Instance::new("heartbeat_timeout = \"0\"", "");
    let out = dead.ctrl();
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(Duration::from_secs(5), || dead
        .daemon_processes()
        .len()
        == 1));
    let dead_lock = config_lock_file(&dead);
    assert!(dead_lock.exists());
    kill9(dead.daemon_processes()[0]);
    assert!(dead.wait_daemon_gone(Duration::from_secs(5)));
    // Not asserted that the killed daemon's file is still there now: the other tests of this
    // file start root daemons in parallel, and any of them sweeps it (the feature itself; CI
    // saw it once). With the sweep taken out, nothing removes it and the checks below fail.
    for f in [&killed, &other] {
        std::fs::write(f, "1\n/nowhere").unwrap();
    }
    std::fs::write(&held, "").unwrap();
    let target = inst.dir.path().join("target");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut holder = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(HOLD_LOCK)
        .arg(&held)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let locked = || {
        std::fs::File::open(&held)
            .is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)))
    };
    assert!(wait_for(Duration::from_secs(5), locked));

    first_daemon(&inst, &v1);
    assert!(!dead_lock.exists(), "the killed daemon's lock file stayed");
    assert!(!killed.exists(), "a lock file nobody holds stayed");
    assert!(held.exists(), "a held lock file was removed");
    assert!(other.exists(), "a file of another name was removed");
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "the symlink was removed"
    );
    assert!(target.exists());
    let _ = holder.kill();
    let _ = holder.wait();
    stop(&inst, &v1);
}

/// `/tmp/robotmk-daemon-<uid>` (the last place for a user's config locks: no
/// `XDG_RUNTIME_DIR`, no `/run/user/<uid>`), emptied and removed when the test ends.
struct LockFolder(PathBuf);

impl LockFolder {
    fn clear(&self) {
        if std::fs::symlink_metadata(&self.0).is_ok_and(|m| m.is_dir()) {
            for e in std::fs::read_dir(&self.0).unwrap().flatten() {
                let _ = std::fs::remove_file(e.path());
            }
            let _ = std::fs::remove_dir(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Drop for LockFolder {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The binary run as `(uid, gid)` on `inst`'s config: no runtime dir, no `MK_VARDIR`, the
/// fork route.
fn user_cmd(inst: &Instance, (uid, gid): (u32, u32), args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(BIN);
    c.arg("--config")
        .arg(&inst.config)
        .args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("MK_VARDIR")
        .env_remove("MK_CONFDIR")
        .env_remove("ROBOTMK_DAEMON_CONFIG")
        .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
        .current_dir("/")
        .stdin(Stdio::null())
        .uid(uid)
        .gid(gid);
    c
}

/// The daemon line of a ctrl (`cmd`).
fn user_daemon_line(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    local_lines(&text(&out.stdout))
        .into_iter()
        .find(|l| l.contains(" daemon\" "))
        .unwrap_or_else(|| panic!("no daemon line: {}", text(&out.stdout)))
}

/// A user's daemon whose only place for the config's lock is `/tmp/robotmk-daemon-<uid>`,
/// which another user planted (a folder, or a symlink, of theirs): a lock there would be
/// theirs to take or fake, and one kept elsewhere would not keep a second daemon out. No
/// daemon starts, and it is said where the admin looks, not only in daemon.log: ctrl's daemon
/// line (CRIT), `status`, and a daemon started by hand, each naming the folder, its owner and
/// the fix. With the folder gone, the daemon starts and creates it as its own.
#[test]
fn another_users_lock_folder_keeps_the_daemon_from_starting_and_says_so() {
    if !require_root("users to run the daemon and to plant its lock folder") {
        return;
    }
    let (Some((uid, gid)), Some((planter, _))) =
        (system_user("rmkd-lockuser"), system_user("rmkd-planter"))
    else {
        return;
    };
    if Path::new(&format!("/run/user/{uid}")).exists() {
        // Not the case under test: the user has a runtime dir of its own.
        eprintln!("SKIP: /run/user/{uid} exists");
        return;
    }
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"",
        "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    for p in [inst.dir.path(), inst.config.as_path()] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    }
    let folder = LockFolder(PathBuf::from(format!("/tmp/robotmk-daemon-{uid}")));
    folder.clear();
    let as_user = |args: &[&str]| user_cmd(&inst, (uid, gid), args);
    let daemon_line = || user_daemon_line(as_user(&["ctrl"]));
    let path = folder.0.display().to_string();
    for planted in ["a folder", "a symlink"] {
        folder.clear();
        if planted == "a folder" {
            std::fs::create_dir(&folder.0).unwrap();
            std::os::unix::fs::chown(&folder.0, Some(planter), Some(planter)).unwrap();
        } else {
            std::os::unix::fs::symlink("/tmp", &folder.0).unwrap();
            std::os::unix::fs::lchown(&folder.0, Some(planter), Some(planter)).unwrap();
        }
        let owner = format!("uid {planter}");
        let says = |w: &str| w.contains(&path) && w.contains(&owner) && w.contains("fix: remove");
        let line = daemon_line();
        assert!(line.starts_with("2 ") && says(&line), "{planted}: {line}");
        assert!(inst.daemon_processes().is_empty(), "{planted}");
        let out = as_user(&["status"]).output().unwrap();
        let shown = text(&out.stdout);
        assert!(
            shown.contains("cannot run:") && says(&shown),
            "{planted}: {shown}"
        );
        let (out, _) = output_within(
            Duration::from_secs(10),
            as_user(&["daemon", "--route", "fork"]).env("MK_VARDIR", inst.dir.path()),
        );
        assert_eq!(out.status.code(), Some(1), "{planted}: {out:?}");
        assert!(says(&text(&out.stderr)), "{planted}: {out:?}");
        assert!(inst.daemon_processes().is_empty(), "{planted}");
    }
    // The admin's fix: the planted entry removed. The daemon starts, its folder its own.
    folder.clear();
    let line = daemon_line();
    assert!(line.starts_with("0 "), "{line}");
    assert!(wait_for(Duration::from_secs(5), || inst
        .daemon_processes()
        .len()
        == 1));
    let m = std::fs::symlink_metadata(&folder.0).unwrap();
    assert!(m.is_dir() && std::os::unix::fs::MetadataExt::uid(&m) == uid);
    // Removed under the running daemon (a cleaner of /tmp) and planted before it looks (held
    // in SIGSTOP here): it cannot take its lock again, and it does not run on without it.
    let pid = inst.daemon_processes()[0];
    let stopped = Stopped::new(pid);
    folder.clear();
    std::fs::create_dir(&folder.0).unwrap();
    std::os::unix::fs::chown(&folder.0, Some(planter), Some(planter)).unwrap();
    drop(stopped);
    assert!(
        wait_for(Duration::from_secs(5), || !pid_alive(pid)),
        "the daemon runs on without its lock"
    );
    let log = inst.log();
    assert!(
        log.contains("cannot be taken again") && log.contains(&format!("uid {planter}")),
        "{log}"
    );
    let line = daemon_line();
    assert!(line.starts_with("2 ") && line.contains(&path), "{line}");
}

/// A user's daemon started in a session keeps its lock in its runtime dir; logind removes that
/// at the user's last logout. The daemon takes its lock again at once, in the place it has
/// left (`/tmp/robotmk-daemon-<uid>`), and a daemon of the config started in the user's next
/// session (the runtime dir back, another `MK_VARDIR`) finds it there: it does not start, and
/// ctrl names the running daemon.
#[test]
fn a_users_lock_taken_again_after_a_logout_keeps_the_next_sessions_daemon_out() {
    if !require_root("a user to run the daemon") {
        return;
    }
    let Some((uid, gid)) = system_user("rmkd-sessionuser") else {
        return;
    };
    if Path::new(&format!("/run/user/{uid}")).exists() {
        eprintln!("SKIP: /run/user/{uid} exists");
        return;
    }
    let (inst, [v1, v2, _]) = setup();
    let runtime = inst.dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    for p in [inst.dir.path(), &inst.config, &v1, &v2, &runtime] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    }
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let tmp = LockFolder(PathBuf::from(format!("/tmp/robotmk-daemon-{uid}")));
    tmp.clear();
    let in_session = |var: &Path, args: &[&str]| {
        let mut c = user_cmd(&inst, (uid, gid), args);
        c.env("XDG_RUNTIME_DIR", &runtime).env("MK_VARDIR", var);
        c
    };
    let line = user_daemon_line(in_session(&v1, &["ctrl"]));
    assert!(line.starts_with("0 "), "{line}");
    assert!(wait_for(Duration::from_secs(5), || inst
        .daemon_processes()
        .len()
        == 1));
    let first = inst.daemon_processes()[0];
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&inst.config).unwrap();
    let name = format!("config-{}-{}.lock", m.dev(), m.ino());
    assert!(runtime.join("robotmk-daemon").join(&name).exists());
    // The logout: the runtime dir removed, all of it. Moved away first, so that it is gone
    // at once: a daemon that sees its lock file go takes it again at once, in the folder
    // while that is still there (logind's removal, file by file, races with it the same way).
    let gone = inst.dir.path().join("runtime.gone");
    std::fs::rename(&runtime, &gone).unwrap();
    for e in std::fs::read_dir(gone.join("robotmk-daemon"))
        .unwrap()
        .flatten()
    {
        std::fs::remove_file(e.path()).unwrap();
    }
    std::fs::remove_dir(gone.join("robotmk-daemon")).unwrap();
    std::fs::remove_dir(&gone).unwrap();
    let taken = tmp.0.join(&name);
    assert!(
        wait_for(Duration::from_secs(3), || std::fs::read_to_string(&taken)
            .is_ok_and(|t| t.starts_with(&format!("{first}\n")))),
        "not taken again in {}",
        tmp.0.display()
    );
    // The next session: the runtime dir back, empty.
    std::fs::create_dir(&runtime).unwrap();
    std::os::unix::fs::chown(&runtime, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let line = user_daemon_line(in_session(&v2, &["ctrl"]));
    assert!(
        line.starts_with("2 ")
            && line.contains(&format!("pid {first}"))
            && line.contains(&state_dir(&v1).display().to_string()),
        "{line}"
    );
    let (out, _) = output_within(
        Duration::from_secs(10),
        &mut in_session(&v2, &["daemon", "--route", "fork"]),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(inst.daemon_processes(), vec![first]);
    let out = in_session(&v1, &["stop", "--now"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
}

/// Whether the first job of the daemon with state dir `st` has a run in flight, as its
/// `status.json` says.
fn first_job_running(st: &Path) -> bool {
    std::fs::read(st.join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|s| {
            s["jobs"][0]["running"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        })
}
