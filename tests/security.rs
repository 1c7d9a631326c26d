//! The threat model, as tests (issue 9; docs/SECURITY.md explains it). The daemon runs as
//! root and runs what its config says; the attacker is a real unprivileged local user,
//! created by the test (CI runs as root; elsewhere these tests skip with a reason). Each test
//! is one finding of the attack run: the attacker's move, then what must hold.
//!
//! - F1 a config the attacker can replace (their directory, a link they own, a mode opened
//!   after start) is never loaded, at start or on reload;
//! - F2 `run-once` applies the same check;
//! - F3 a state dir the attacker prepared (links, a forged status, a lock they hold) is not
//!   acted on, and no PID from a file is signalled unverified;
//! - F4 a state dir whose parent becomes writable, or that is the attacker's symlink, is not
//!   written to;
//! - F5 FIFOs planted anywhere never hang ctrl or the daemon;
//! - F6 nothing unbounded reaches the agent;
//! - F7 a relative `MK_VARDIR` is an error, not a second state dir;
//! - F8 robot variables (secrets) never appear in `ps`;
//! - F9 the heartbeat is private, and a cron expression that never fires is an error;
//! - F10 a `user` job's runner gets an environment built for that user: nothing of the root
//!   daemon's (secrets, an agent's socket, proxies with passwords, root's `PATH` and
//!   `PYTHONPATH`), from the daemon and from `run-once` alike;
//! - F11 a job whose user is deleted (its uid then given to someone else) is held, never run
//!   as that uid, and runs again once the user is back;
//! - F12 a job whose account expired (its expiry date, or its password expired past its
//!   inactive days) is held until the account is valid again;
//! - F14 a job's user who stops (SIGSTOP) the daemon's child between its identity drop and its
//!   exec hangs neither the daemon's loop nor any other job: that run fails, saying why;
//! - F15 a process that gets a finished runner's PID and leads a group of that id is never
//!   signalled as the run's group;
//! - F16 a user job's runner started from an admin's terminal (`run-once`) gets neither that
//!   terminal nor the descriptors the admin's shell left open.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{chown, lchown, symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const IDLE_JOB: &str = "[[job]]\nname = \"idle\"\ncommand = [\"true\"]\nevery = \"1h\"\n";

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// The attacker: an unprivileged user of this machine.
struct Attacker {
    uid: u32,
    gid: u32,
}

const ATTACKER: &str = "rmkd-attacker";

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The attacker user, created once per test binary (and kept: other test binaries of the
/// same run may use it). `None` (skip) where this process is not root.
fn attacker() -> Option<&'static Attacker> {
    static A: OnceLock<Option<Attacker>> = OnceLock::new();
    let a = A.get_or_init(|| {
        if !is_root() {
            return None;
        }
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, ATTACKER]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        if id("-u").is_none() {
            let out = user_db(
                "useradd",
                &[
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    ATTACKER,
                ],
            );
            assert!(
                out.status.success() || id("-u").is_some(),
                "useradd {ATTACKER}: {out:?}"
            );
        }
        Some(Attacker {
            uid: id("-u")?,
            gid: id("-g")?,
        })
    });
    if a.is_none() {
        require_tool(false, "root (to create an unprivileged attacker user)");
    }
    a.as_ref()
}

impl Attacker {
    /// `sh -c script` as the attacker; panics unless it succeeds.
    fn sh(&self, script: &str) {
        let out = Command::new("sh")
            .args(["-c", script])
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "attacker's `{script}`: {out:?}");
    }

    fn owns(&self, p: &Path) {
        chown(p, Some(self.uid), Some(self.gid)).unwrap();
    }
}

/// A playground: the test's temp dir opened up (0755) so the attacker can reach what the
/// test gives them, plus a config with a daemon table and jobs of the test's choosing.
fn open_instance(jobs: &str) -> Instance {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    chmod(inst.dir.path(), 0o755);
    chmod(&inst.config, 0o644);
    inst
}

/// The binary with `config`, the environment cleaned as in [`Instance::cmd`].
fn bin(config: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--config")
        .arg(config)
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .env_remove("ROBOTMK_DAEMON_CONFIG")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd`, killing it (and failing the test) if it takes longer than `limit`.
fn within(limit: Duration, cmd: &mut Command) -> Output {
    output_within(limit, cmd).0
}

fn ctrl_at(config: &Path) -> String {
    let out = within(Duration::from_secs(10), bin(config).arg("ctrl"));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The daemon line of ctrl's output.
fn daemon_line(out: &str) -> String {
    local_lines(out)
        .into_iter()
        .find(|l| l.contains(" daemon\""))
        .unwrap_or_else(|| panic!("no daemon line in {out}"))
}

/// The daemon's own status file, read directly (the test is root).
fn status_file(inst: &Instance) -> Option<Value> {
    serde_json::from_slice(&fs::read(inst.state.join("status.json")).ok()?).ok()
}

/// A process the attacker would like root to kill; ended by PID when the test ends.
struct Victim(Child);

impl Victim {
    fn new() -> Victim {
        Victim(
            Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

// ---- F1: the config ------------------------------------------------------------------------

#[test]
fn f1_a_config_in_the_attackers_directory_is_refused_at_start() {
    let Some(a) = attacker() else { return };
    let inst = open_instance(IDLE_JOB);
    let theirs = inst.dir.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    a.owns(&theirs);
    let config = theirs.join("robotmk-daemon.toml");
    fs::copy(&inst.config, &config).unwrap();
    chmod(&config, 0o644);
    let out = ctrl_at(&config);
    let line = daemon_line(&out);
    assert!(
        line.starts_with("2 ") && line.contains("belongs to uid") && line.contains("theirs"),
        "{line}"
    );
    assert!(!inst.state.exists(), "ctrl created the state dir");
    assert!(inst.daemon_processes().is_empty());
    // The same for a link the attacker owns, even in a directory of root's.
    let link = inst.dir.path().join("link.toml");
    symlink(&inst.config, &link).unwrap();
    lchown(&link, Some(a.uid), Some(a.gid)).unwrap();
    let line = daemon_line(&ctrl_at(&link));
    assert!(
        line.starts_with("2 ") && line.contains("link.toml belongs to uid"),
        "{line}"
    );
    assert!(!inst.state.exists());
}

/// Starts the daemon with a job that runs every second, and waits for its first record.
fn running_ticker(inst: &Instance) {
    let out = ctrl_at(&inst.config);
    assert!(daemon_line(&out).starts_with("0 "), "{out}");
    assert!(
        wait_for(Duration::from_secs(10), || !inst
            .finished_records("tick")
            .is_empty()),
        "the ticker never ran"
    );
}

/// Waits until the daemon publishes a config error containing `what`, then until the ticker
/// ran twice more (the running config goes on), and checks the attacker's command never ran.
fn rejected_and_still_running(inst: &Instance, what: &str, marker: &Path) {
    let err =
        || status_file(inst).and_then(|s| s["daemon"]["config_error"].as_str().map(str::to_string));
    assert!(
        wait_for(Duration::from_secs(10), || err()
            .is_some_and(|e| e.contains(what))),
        "no config error with {what:?}: {:?}",
        err()
    );
    let n = inst.finished_records("tick").len();
    assert!(
        wait_for(Duration::from_secs(10), || inst
            .finished_records("tick")
            .len()
            >= n + 2),
        "the last good config stopped running"
    );
    assert!(!marker.exists(), "the attacker's command ran as root");
    assert!(inst.log().contains("config not reloaded"), "{}", inst.log());
}

fn ticker_and_evil(marker: &Path) -> (String, String) {
    let tick = "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n".to_string();
    let evil = format!(
        "{tick}\n[[job]]\nname = \"evil\"\ncommand = [\"touch\", \"{}\"]\nevery = \"1s\"\n",
        marker.display()
    );
    (tick, evil)
}

#[test]
fn f1_a_config_replaced_after_start_through_a_directory_the_attacker_got_is_not_reloaded() {
    let Some(a) = attacker() else { return };
    let inst = open_instance("");
    let marker = inst.dir.path().join("pwned");
    let (tick, evil) = ticker_and_evil(&marker);
    let conf_dir = inst.dir.path().join("conf");
    fs::create_dir(&conf_dir).unwrap();
    chmod(&conf_dir, 0o755);
    let config = conf_dir.join("robotmk-daemon.toml");
    let head = format!(
        "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nheartbeat_timeout = \"1m\"\n",
        inst.state.display()
    );
    fs::write(&config, format!("{head}{tick}")).unwrap();
    chmod(&config, 0o644);
    // `daemon_processes` looks for the instance's own config path: point it there.
    fs::remove_file(&inst.config).unwrap();
    symlink(&config, &inst.config).unwrap();
    running_ticker(&inst);
    // An admin's mistake: the directory goes to the attacker, who swaps the file.
    a.owns(&conf_dir);
    let new = conf_dir.join("new");
    fs::write(&new, format!("{head}{evil}")).unwrap();
    a.owns(&new);
    a.sh(&format!("mv -f {} {}", new.display(), config.display()));
    rejected_and_still_running(&inst, "belongs to uid", &marker);
    let line = daemon_line(&ctrl_at(&inst.config));
    assert!(
        line.starts_with("2 ") && line.contains("refusing"),
        "{line}"
    );
}

#[test]
fn f1_a_config_opened_to_others_after_start_is_not_reloaded() {
    let Some(a) = attacker() else { return };
    let inst = open_instance("");
    let marker = inst.dir.path().join("pwned");
    let (tick, evil) = ticker_and_evil(&marker);
    inst.write_config("heartbeat_timeout = \"1m\"", &tick);
    chmod(&inst.config, 0o644);
    running_ticker(&inst);
    chmod(&inst.config, 0o666);
    let text = fs::read_to_string(&inst.config)
        .unwrap()
        .replace(&tick, &evil);
    let staged = inst.dir.path().join("staged");
    fs::write(&staged, text).unwrap();
    chmod(&staged, 0o644);
    a.sh(&format!(
        "cat {} > {}",
        staged.display(),
        inst.config.display()
    ));
    rejected_and_still_running(&inst, "writable by group or others", &marker);
}

// ---- F2: run-once --------------------------------------------------------------------------

/// Any user who may read the config may `flock` it: the daemon's lock on its config (one
/// daemon per config file, whatever state dir) must not let such a user keep the daemon from
/// starting. A lock of another user's is no daemon's: the daemon starts without it and says so.
#[test]
fn f1_another_users_lock_on_the_config_keeps_no_daemon_from_starting() {
    let Some(a) = attacker() else { return };
    // A process that takes the lock itself (flock(1) would leave it to a child, gone).
    let python = Path::new("/usr/bin/python3");
    if !require_tool(python.exists(), "/usr/bin/python3") {
        return;
    }
    let inst = open_instance(IDLE_JOB);
    // Dressed up as a daemon: it holds a `daemon.lock` of its own too.
    let theirs = inst.dir.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    a.owns(&theirs);
    let mut holder = Victim(
        Command::new(python)
            .arg("-c")
            .arg("import fcntl, sys, time; d = open(sys.argv[2], 'w'); fcntl.flock(d, fcntl.LOCK_EX); f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(600)")
            .arg(&inst.config)
            .arg(theirs.join("daemon.lock"))
            .uid(a.uid)
            .gid(a.gid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
    assert!(
        wait_for(Duration::from_secs(5), locked),
        "the lock was not taken"
    );
    let line = daemon_line(&ctrl_at(&inst.config));
    assert!(line.starts_with("0 "), "{line}");
    assert!(inst.daemon_pid().is_some());
    // The config's lock is a file in a folder only the daemon's user may write (T5 F1): a
    // lock on the config file itself is nobody's business, and the daemon holds its own,
    // which names it.
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(&inst.config).unwrap();
    let lock = format!("/run/robotmk-daemon/config-{}-{}.lock", m.dev(), m.ino());
    let said = fs::read_to_string(&lock).unwrap_or_default();
    assert_eq!(
        said.lines().next(),
        Some(inst.daemon_pid().unwrap().to_string().as_str()),
        "{lock}: {said:?}\n{}",
        inst.log()
    );
    assert!(holder.alive());
    let out = inst.run(&["stop", "--now"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn f2_run_once_refuses_a_config_another_user_can_write() {
    let Some(a) = attacker() else { return };
    let inst = open_instance("");
    let marker = inst.dir.path().join("pwned");
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"evil\"\ncommand = [\"touch\", \"{}\"]\nevery = \"1h\"\n",
            marker.display()
        ),
    );
    a.owns(&inst.config);
    chmod(&inst.config, 0o666);
    let out = within(
        Duration::from_secs(10),
        inst.cmd().args(["run-once", "evil"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("refusing to run"), "{err}");
    assert!(
        !marker.exists(),
        "run-once ran the attacker's command as root"
    );
}

// ---- F3: a state dir the attacker prepared -------------------------------------------------

#[test]
fn f3_a_state_dir_prepared_by_the_attacker_is_not_touched() {
    let Some(a) = attacker() else { return };
    let inst = open_instance(IDLE_JOB);
    // A root-owned place the attacker would like root to create or append to.
    let victim = inst.dir.path().join("victim");
    fs::write(&victim, "keep\n").unwrap();
    chmod(&victim, 0o640);
    let absent = inst.dir.path().join("created-by-root");
    fs::create_dir(&inst.state).unwrap();
    a.owns(&inst.state);
    a.sh(&format!(
        "cd {s} && ln -s {absent} heartbeat && ln -s {v} daemon.log && ln -s {v} state-error",
        s = inst.state.display(),
        absent = absent.display(),
        v = victim.display()
    ));
    let line = daemon_line(&ctrl_at(&inst.config));
    assert!(
        line.starts_with("2 ") && line.contains("state dir") && line.contains("belongs to uid"),
        "{line}"
    );
    assert!(!absent.exists(), "ctrl followed the heartbeat link");
    let out = within(
        Duration::from_secs(10),
        inst.cmd().args(["start", "--foreground"]),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
    assert!(inst.daemon_processes().is_empty());
}

/// A forged status naming an older build and a PID of the attacker's choice, with the lock
/// held by the attacker's `flock`: ctrl must neither show the forged results nor signal.
#[test]
fn f3_a_forged_status_and_a_held_lock_steer_nothing() {
    let Some(a) = attacker() else { return };
    let inst = open_instance(IDLE_JOB);
    let mut victim = Victim::new();
    let vpid = victim.0.id();
    fs::create_dir(&inst.state).unwrap();
    a.owns(&inst.state);
    let forged = serde_json::json!({
        "version": 1, "instance": "t", "updated": "2026-01-01T00:00:00Z",
        "daemon": {"pid": vpid, "pid_start": start_time(vpid), "started": "2026-01-01T00:00:00Z",
                   "build": "0.0.1", "config": inst.config, "route": "fork", "phase": "running",
                   "heartbeat_timeout_s": 60.0},
        "jobs": [{"name": "idle", "schedule": "every 1h", "interval_s": 3600.0, "timeout_s": 60.0,
                  "next_due": null, "last": {"run_id": "x-1", "due": "2026-01-01T00:00:00Z",
                  "outcome": "success", "note": "FORGED"}}]
    });
    let staged = inst.dir.path().join("forged.json");
    fs::write(&staged, forged.to_string()).unwrap();
    a.owns(&staged);
    a.sh(&format!(
        "cp {} {s}/status.json && touch {s}/daemon.lock",
        staged.display(),
        s = inst.state.display()
    ));
    // --no-fork: flock execs sleep in its own process, so the guard's PID is the holder's
    // (with a fork, killing flock left `sleep 600` running past the test).
    let mut holder = Command::new("flock")
        .args(["--no-fork", "-x"])
        .arg(inst.state.join("daemon.lock"))
        .args(["sleep", "600"])
        .uid(a.uid)
        .gid(a.gid)
        .spawn()
        .unwrap();
    let _holder_guard = KillOnDrop(holder.id());
    assert!(wait_for(Duration::from_secs(5), || fs::read_to_string(
        "/proc/locks"
    )
    .unwrap_or_default()
    .contains(&format!(" {} ", holder.id()))));
    let out = ctrl_at(&inst.config);
    assert!(!out.contains("FORGED"), "forged results shown: {out}");
    assert!(daemon_line(&out).starts_with("2 "), "{out}");
    assert!(victim.alive(), "ctrl signalled the attacker's PID");
    let _ = holder.kill();
    let _ = holder.wait();
}

/// Even where the state dir is root's, a PID from `status.json` is signalled only if that
/// process is this program and holds the instance's lock.
#[test]
fn f3_a_pid_in_the_status_is_verified_before_it_is_signalled() {
    if !require_tool(
        Command::new("flock").arg("-V").output().is_ok(),
        "flock (util-linux)",
    ) {
        return;
    }
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let mut victim = Victim::new();
    let vpid = victim.0.id();
    fs::create_dir(&inst.state).unwrap();
    chmod(&inst.state, 0o700);
    let forged = serde_json::json!({
        "version": 1, "instance": "t", "updated": "2026-01-01T00:00:00Z",
        "daemon": {"pid": vpid, "pid_start": start_time(vpid), "started": "2026-01-01T00:00:00Z",
                   "build": "0.0.1", "config": inst.config, "route": "fork", "phase": "running",
                   "heartbeat_timeout_s": 60.0},
        "jobs": []
    });
    fs::write(inst.state.join("status.json"), forged.to_string()).unwrap();
    fs::write(inst.state.join("daemon.lock"), "").unwrap();
    // --no-fork: flock execs sleep in its own process, so the guard's PID is the holder's
    // (with a fork, killing flock left `sleep 600` running past the test).
    let mut holder = Command::new("flock")
        .args(["--no-fork", "-x"])
        .arg(inst.state.join("daemon.lock"))
        .args(["sleep", "600"])
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(holder.id());
    assert!(wait_for(Duration::from_secs(5), || fs::read_to_string(
        "/proc/locks"
    )
    .unwrap_or_default()
    .contains(&format!(" {} ", holder.id()))));
    ctrl_at(&inst.config);
    let out = within(
        Duration::from_secs(10),
        inst.cmd().args(["stop", "--timeout", "200ms"]),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(victim.alive(), "a PID read from status.json was signalled");
    let _ = holder.kill();
    let _ = holder.wait();
}

// ---- F4: the state dir's parent ------------------------------------------------------------

#[test]
fn f4_a_state_dir_whose_parent_turns_writable_is_abandoned_not_written() {
    let Some(a) = attacker() else { return };
    let inst = open_instance("");
    let parent = inst.dir.path().join("p");
    fs::create_dir(&parent).unwrap();
    chmod(&parent, 0o755);
    let state = parent.join("state");
    let text = format!(
        "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nheartbeat_timeout = \"1m\"\n\n[[job]]\nname = \"tick\"\ncommand = [\"sleep\", \"30\"]\nevery = \"1s\"\n",
        state.display()
    );
    inst.write_raw_config(&text);
    chmod(&inst.config, 0o644);
    let out = ctrl_at(&inst.config);
    assert!(daemon_line(&out).starts_with("0 "), "{out}");
    let in_flight = || {
        processes_of(&state.display().to_string())
            .iter()
            .any(|(_, c)| c.starts_with("sleep 30"))
    };
    assert!(
        wait_for(Duration::from_secs(10), in_flight),
        "no run started"
    );
    let victim = inst.dir.path().join("victim");
    fs::write(&victim, "keep\n").unwrap();
    chmod(&victim, 0o640);
    a.owns(&parent);
    // `ln -sf`: until its next look finds the folder untrusted, the daemon may still replace
    // status.json there (its own temp file renamed over the name, never following a link)
    // between the attacker's mkdir and links; the attacker, who owns the folder, replaces it
    // back. (CI once saw daemon.log made there by the log's reopen by name: the log now checks
    // the folder first, see service::logging.)
    a.sh(&format!(
        "cd {p} && mv state old && mkdir state && ln -sf {v} state/state-error && ln -sf {v} state/status.json && ln -sf {v} state/daemon.log",
        p = parent.display(),
        v = victim.display()
    ));
    assert!(
        inst.wait_daemon_gone(Duration::from_secs(10)),
        "the daemon kept running in an untrusted state dir"
    );
    assert!(
        wait_for(Duration::from_secs(10), || processes_of(
            &state.display().to_string()
        )
        .is_empty()),
        "runs were left behind"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
    let line = daemon_line(&ctrl_at(&inst.config));
    assert!(
        line.starts_with("2 ") && line.contains("belongs to uid"),
        "{line}"
    );
    assert!(
        inst.daemon_processes().is_empty(),
        "ctrl started a new daemon"
    );
}

#[test]
fn f4_a_state_dir_that_is_the_attackers_link_to_a_root_dir_is_refused() {
    let Some(a) = attacker() else { return };
    let inst = open_instance(IDLE_JOB);
    let real = inst.dir.path().join("real-state");
    fs::create_dir(&real).unwrap();
    chmod(&real, 0o700);
    symlink(&real, &inst.state).unwrap();
    lchown(&inst.state, Some(a.uid), Some(a.gid)).unwrap();
    let line = daemon_line(&ctrl_at(&inst.config));
    assert!(
        line.starts_with("2 ") && line.contains("state dir") && line.contains("belongs to uid"),
        "{line}"
    );
    assert_eq!(
        fs::read_dir(&real).unwrap().count(),
        0,
        "ctrl wrote through the link"
    );
}

// ---- F5: FIFOs -----------------------------------------------------------------------------

fn mkfifo(p: &Path) {
    let _ = fs::remove_file(p);
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {p:?}"
    );
}

#[test]
fn f5_fifos_in_the_state_dir_or_as_the_config_never_hang_ctrl() {
    for name in ["heartbeat", "status.json", "state-error", "daemon.lock"] {
        let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
        fs::create_dir(&inst.state).unwrap();
        chmod(&inst.state, 0o700);
        mkfifo(&inst.state.join(name));
        let out = ctrl_at(&inst.config);
        let j = parse_section(&out);
        assert!(j["generated"].is_string(), "{name}: {out}");
        if name != "status.json" && name != "state-error" {
            assert!(daemon_line(&out).starts_with("2 "), "{name}: {out}");
            assert!(out.contains("not a regular file"), "{name}: {out}");
        }
        let _ = within(Duration::from_secs(40), inst.cmd().args(["stop", "--now"]));
    }
    let inst = Instance::new("", IDLE_JOB);
    mkfifo(&inst.config);
    let out = ctrl_at(&inst.config);
    assert!(
        daemon_line(&out).starts_with("2 ") && out.contains("not a regular file"),
        "{out}"
    );
}

#[test]
fn f5_a_runner_that_plants_fifos_does_not_block_the_daemon() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let s = inst.state.display();
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!(
            "[[job]]\nname = \"plant\"\ncommand = [\"sh\", \"-c\", \"rm -f {s}/jobs/plant/latest.json; mkfifo {s}/jobs/plant/latest.json\"]\nevery = \"1s\"\n\n\
             [[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n"
        ),
    );
    let out = ctrl_at(&inst.config);
    assert!(daemon_line(&out).starts_with("0 "), "{out}");
    assert!(wait_for(Duration::from_secs(10), || inst
        .finished_records("plant")
        .len()
        >= 2));
    // The loop goes on: the ticker keeps running and the status keeps being written.
    let n = inst.finished_records("tick").len();
    assert!(
        wait_for(Duration::from_secs(10), || inst
            .finished_records("tick")
            .len()
            >= n + 3),
        "the daemon's loop is stuck"
    );
    let out = ctrl_at(&inst.config);
    assert!(out.contains("Robotmk t tick"), "{out}");
    // A stop request that is a FIFO: read at once (refused), never waited on.
    mkfifo(&inst.state.join("stop-request"));
    assert!(
        inst.wait_daemon_gone(Duration::from_secs(10)),
        "a FIFO stop request blocked the daemon"
    );
}

// ---- F6: sizes -----------------------------------------------------------------------------

#[test]
fn f6_huge_files_and_names_do_not_reach_the_agent() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let script = inst.dir.path().join("write-xml.sh");
    fs::write(
        &script,
        "#!/bin/sh\nname=$(head -c 50000000 /dev/zero | tr '\\0' 'S')\nprintf '<?xml version=\"1.0\"?><robot><suite name=\"%s\"><status status=\"PASS\"/></suite><statistics><total><stat pass=\"1\" fail=\"0\" skip=\"0\">All Tests</stat></total></statistics></robot>' \"$name\" > \"$ROBOTMK_RUN_DIR/output.xml\"\n",
    )
    .unwrap();
    chmod(&script, 0o755);
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!(
            "[[job]]\nname = \"big\"\ncommand = [\"{}\"]\nevery = \"1h\"\n",
            script.display()
        ),
    );
    let out = within(
        Duration::from_secs(60),
        inst.cmd().args(["run-once", "big"]),
    );
    assert!(out.status.success(), "{out:?}");
    let out = ctrl_at(&inst.config);
    assert!(out.len() < 256 * 1024, "ctrl printed {} bytes", out.len());
    assert!(
        out.contains("SSSS"),
        "the suite name is still shown, cut: {}",
        &out[..out.len().min(2000)]
    );
    // A state-error file someone filled with 100 MB.
    let f = fs::File::create(inst.state.join("state-error")).unwrap();
    f.set_len(100 << 20).unwrap();
    let out = ctrl_at(&inst.config);
    assert!(out.len() < 256 * 1024, "ctrl printed {} bytes", out.len());
    assert!(out.contains("larger than"), "{out}");
    let _ = within(Duration::from_secs(40), inst.cmd().args(["stop", "--now"]));
    // status.json pointing at /dev/zero.
    assert!(inst.wait_daemon_gone(Duration::from_secs(20)));
    fs::remove_file(inst.state.join("status.json")).unwrap();
    symlink("/dev/zero", inst.state.join("status.json")).unwrap();
    let out = within(
        Duration::from_secs(20),
        bin(&inst.config).args(["status", "--json"]),
    );
    assert!(
        out.stdout.len() < 256 * 1024,
        "status printed {} bytes",
        out.stdout.len()
    );
}

// ---- F7: a relative MK_VARDIR ---------------------------------------------------------------

#[test]
fn f7_a_relative_mk_vardir_is_a_config_error() {
    let inst = Instance::new("", IDLE_JOB);
    // No state_dir in the config: the default comes from MK_VARDIR.
    inst.write_raw_config(&format!("[daemon]\ninstance = \"t\"\n\n{IDLE_JOB}"));
    let cwd = inst.dir.path().join("cwd");
    fs::create_dir(&cwd).unwrap();
    let out = within(
        Duration::from_secs(10),
        bin(&inst.config)
            .arg("ctrl")
            .env("MK_VARDIR", "rel/var")
            .current_dir(&cwd),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = daemon_line(&text);
    assert!(
        line.starts_with("2 ") && line.contains("MK_VARDIR"),
        "{line}"
    );
    assert_eq!(
        fs::read_dir(&cwd).unwrap().count(),
        0,
        "created dirs under the cwd"
    );
    assert!(inst.daemon_processes().is_empty());
}

// ---- F8: secrets ---------------------------------------------------------------------------

#[test]
fn f8_robot_variables_never_appear_on_a_command_line() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    // A stand-in for robot that keeps running with the argv it was given (no exec), so `ps`
    // can be searched meanwhile.
    let fake = inst.dir.path().join("fake-robot");
    fs::write(&fake, "#!/bin/sh\nsleep 30\n").unwrap();
    chmod(&fake, 0o755);
    let suite = inst.dir.path().join("s.robot");
    fs::write(&suite, "").unwrap();
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!(
            "[[job]]\nname = \"secret\"\nkind = \"robot\"\nsuite = \"{}\"\nrobot = \"{}\"\nvariables = {{ PASSWORD = \"s3cret-4711\" }}\nevery = \"1h\"\n",
            suite.display(),
            fake.display()
        ),
    );
    let mut child = inst
        .cmd()
        .args(["run-once", "secret"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());
    let runs = inst.state.join("jobs/secret/runs");
    let argfile = || -> Option<PathBuf> {
        let d = fs::read_dir(&runs).ok()?.flatten().next()?.path();
        Some(d.join("robotmk-variables.args"))
    };
    let needle = inst.dir.path().display().to_string();
    assert!(
        wait_for(Duration::from_secs(10), || processes_of(&needle)
            .iter()
            .any(|(_, c)| c.starts_with("sleep"))),
        "the fake robot never started"
    );
    for (pid, cmd) in processes_with("") {
        assert!(
            !cmd.contains("s3cret-4711"),
            "pid {pid} shows the secret: {cmd}"
        );
    }
    let f = argfile().expect("argument file");
    assert_eq!(
        fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(fs::read_to_string(&f)
        .unwrap()
        .contains("--variable PASSWORD:s3cret-4711"));
    kill9(child.id());
    let _ = child.wait();
}

#[test]
fn f8_robot_receives_the_variables_from_the_argument_file() {
    let robot = std::env::var_os("ROBOTMK_TEST_ROBOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/robot")));
    if !require_tool(
        robot.exists(),
        "Robot Framework (.venv/bin/robot or $ROBOTMK_TEST_ROBOT)",
    ) {
        return;
    }
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let suite = inst.dir.path().join("vars.robot");
    fs::write(
        &suite,
        "*** Test Cases ***\nSecret Arrives\n    Should Be Equal    ${PASSWORD}    pa ss:w=rd#1\n",
    )
    .unwrap();
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!(
            "[[job]]\nname = \"vars\"\nkind = \"robot\"\nsuite = \"{}\"\nrobot = \"{}\"\nvariables = {{ PASSWORD = \"pa ss:w=rd#1\" }}\nevery = \"1h\"\ntimeout = \"60s\"\n",
            suite.display(),
            robot.display()
        ),
    );
    let out = within(
        Duration::from_secs(90),
        inst.cmd().args(["run-once", "vars"]),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{out:?}\n{:?}",
        inst.finished_records("vars")
    );
}

// ---- F9: small things ----------------------------------------------------------------------

#[test]
fn f9_the_heartbeat_is_private_and_a_cron_that_never_fires_is_an_error() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    ctrl_at(&inst.config);
    let mode = fs::metadata(inst.state.join("heartbeat"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    inst.write_config(
        "",
        "[[job]]\nname = \"never\"\ncommand = [\"true\"]\ncron = \"59 23 31 2 *\"\n",
    );
    let out = within(Duration::from_secs(10), inst.cmd().arg("check-config"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("job[0].cron") && err.contains("never fires"),
        "{err}"
    );
    let _ = within(Duration::from_secs(40), inst.cmd().args(["stop", "--now"]));
}

// ---- the basics this builds on ---------------------------------------------------------------

#[test]
fn a_world_writable_config_or_state_dir_is_refused() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    for (what, path) in [
        ("config file", inst.config.clone()),
        ("state dir", inst.state.clone()),
    ] {
        fs::create_dir_all(&inst.state).unwrap();
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
    let Some(a) = attacker() else { return };
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    a.owns(&inst.config);
    let out = inst
        .cmd()
        .args(["start", "--foreground"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("belongs to uid {}", a.uid)) && err.contains("chown"),
        "{err}"
    );
    assert!(inst.daemon_processes().is_empty());
}

// ---- F10: a `user` job's environment -------------------------------------------------------

/// What root's environment holds that a user's runner must never see (name, value).
const ROOTS_SECRETS: [(&str, &str); 6] = [
    ("ROOT_SECRET_TOKEN", "s3cr3t"),
    ("https_proxy", "http://admin:pw@proxy:3128"),
    ("SSH_AUTH_SOCK", "/tmp/ssh-XXXX/agent.1"),
    ("PYTHONPATH", "/root/lib"),
    ("VIRTUAL_ENV", "/root/venv"),
    ("XDG_RUNTIME_DIR", "/run/user/0"),
];

/// A root process's environment: exactly these (nothing of the test's own), so that what a
/// runner gets can be told apart to the name. `LANG` and `TZ` are the two that pass.
fn roots_environment(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env(
            "PATH",
            "/root/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("USER", "root")
        .env("LOGNAME", "root")
        .env("SHELL", "/bin/bash")
        .env("LANG", "C.UTF-8")
        .env("TZ", "Europe/Berlin")
        // `start` forks the daemon, which so has this very environment.
        .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
        .envs(ROOTS_SECRETS)
}

/// `name:…:home:shell` of `user`, from the user database.
fn passwd_home_and_shell(user: &str) -> (String, String) {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let f: Vec<&str> = line.split(':').collect();
    assert_eq!(f.len(), 7, "getent passwd {user}: {line:?}");
    (f[5].to_string(), f[6].to_string())
}

/// The environment the last finished run of `job` printed (`/usr/bin/env`), after checking it
/// succeeded and that at least `runs` ran (a due run of the daemon's may be one more).
fn printed_environment(inst: &Instance, job: &str, runs: usize) -> Vec<(String, String)> {
    let recs = inst.finished_records(job);
    assert!(recs.len() >= runs, "{recs:?}\n{}", inst.log());
    let rec = recs.last().unwrap();
    assert_eq!(rec["outcome"], "success", "{rec}");
    let out =
        fs::read_to_string(Path::new(rec["run_dir"].as_str().unwrap()).join("stdout.log")).unwrap();
    out.lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What must hold of a user run's environment `env`: exactly the names built for the user,
/// with its values, the locale and time zone, the job's `env` and the run's own names; none of
/// root's names or values.
fn assert_users_own_environment(env: &[(String, String)], how: &str) {
    let (home, shell) = passwd_home_and_shell(ATTACKER);
    let get = |k: &str| {
        let mut v = env.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let one = v.next();
        assert!(v.next().is_none(), "{how}: {k} twice in {env:?}");
        one
    };
    for (name, value) in ROOTS_SECRETS {
        assert_eq!(
            get(name),
            None,
            "{how}: root's {name} reached the user's run: {env:?}"
        );
        assert!(
            !env.iter().any(|(_, v)| v.contains(value)),
            "{how}: root's {value} reached the user's run: {env:?}"
        );
    }
    assert!(
        !env.iter()
            .any(|(_, v)| v.starts_with("/root") || v.contains(":/root")),
        "{how}: a value of root's reached the user's run: {env:?}"
    );
    assert_eq!(get("ROBOTMK_DAEMON_NO_SYSTEMD"), None, "{how}: {env:?}");
    assert_eq!(get("HOME"), Some(home.as_str()), "{how}: HOME");
    assert_eq!(get("USER"), Some(ATTACKER), "{how}: USER");
    assert_eq!(get("LOGNAME"), Some(ATTACKER), "{how}: LOGNAME");
    assert_eq!(get("SHELL"), Some(shell.as_str()), "{how}: SHELL");
    assert_eq!(
        get("PATH"),
        Some("/usr/local/bin:/usr/bin:/bin"),
        "{how}: PATH"
    );
    assert_eq!(get("LANG"), Some("C.UTF-8"), "{how}: the locale passes");
    // run-once passes its own time zone; a daemon launched in the background (`start`, ctrl)
    // drops it and keeps the host's (/etc/localtime), so the runs get none either.
    let tz = (how == "run-once").then_some("Europe/Berlin");
    assert_eq!(get("TZ"), tz, "{how}: the time zone");
    assert_eq!(get("JOB_VAR"), Some("from the job"), "{how}: the job's env");
    assert_eq!(get("ROBOTMK_JOB"), Some("env"), "{how}");
    let tmp = get("TMPDIR").unwrap_or_else(|| panic!("{how}: no TMPDIR: {env:?}"));
    assert_eq!((get("TEMP"), get("TMP")), (Some(tmp), Some(tmp)), "{how}");
    let mut names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "HOME",
            "JOB_VAR",
            "LANG",
            "LOGNAME",
            "PATH",
            "ROBOTMK_JOB",
            "ROBOTMK_RUN_DIR",
            "ROBOTMK_RUN_ID",
            "SHELL",
            "TEMP",
            "TMP",
            "TMPDIR",
            "TZ",
            "USER",
        ]
        .into_iter()
        .filter(|n| *n != "TZ" || tz.is_some())
        .collect::<Vec<_>>(),
        "{how}: {env:?}"
    );
}

#[test]
fn f10_a_user_jobs_runner_gets_nothing_of_roots_environment() {
    let Some(_) = attacker() else { return };
    let inst = open_instance(&format!(
        "[[job]]\nname = \"env\"\nuser = \"{ATTACKER}\"\ncommand = [\"/usr/bin/env\"]\n\
         every = \"1h\"\nenv = {{ JOB_VAR = \"from the job\" }}\n"
    ));
    // run-once without a daemon runs the job itself, with its own (root's) environment.
    let out = within(
        Duration::from_secs(60),
        roots_environment(&mut inst.cmd()).args(["run-once", "env"]),
    );
    assert!(out.status.success(), "{out:?}\n{}", inst.log());
    assert_users_own_environment(&printed_environment(&inst, "env", 1), "run-once");

    // The daemon, started with root's environment, runs it: asked by a run-once that has
    // nothing of it, so what the runner could leak is the daemon's.
    let out = within(
        Duration::from_secs(20),
        roots_environment(&mut inst.cmd()).arg("start"),
    );
    assert!(out.status.success(), "start: {out:?}");
    assert!(
        wait_for(Duration::from_secs(20), || inst.daemon_pid().is_some()),
        "no daemon: {}",
        inst.log()
    );
    let pid = inst.daemon_pid().unwrap();
    let daemons = fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        String::from_utf8_lossy(&daemons).contains("ROOT_SECRET_TOKEN=s3cr3t"),
        "the daemon was to have root's secrets"
    );
    let out = within(
        Duration::from_secs(60),
        inst.cmd()
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .args(["run-once", "env"]),
    );
    assert!(out.status.success(), "{out:?}\n{}", inst.log());
    assert_users_own_environment(&printed_environment(&inst, "env", 2), "the daemon");
}

/// What a user job's runner writes to its stdout and stderr counts to that user's disk quota:
/// the files are opened by root in the state dir (out of the user's reach by path) and given
/// to the user, so a runner that grows them (`fallocate`), or keeps a descriptor and writes
/// after its run, uses its own quota, never root's. The record stays root's.
#[test]
fn f13_a_user_jobs_output_files_are_the_users() {
    let Some(a) = attacker() else { return };
    let inst = open_instance(&format!(
        "[[job]]\nname = \"out\"\nuser = \"{ATTACKER}\"\n\
         command = [\"sh\", \"-c\", \"stat -L -c %u /proc/self/fd/1; stat -L -c %u /proc/self/fd/2 >&2\"]\n\
         every = \"1h\"\n"
    ));
    let out = within(
        Duration::from_secs(60),
        inst.cmd().args(["run-once", "out"]),
    );
    assert!(out.status.success(), "{out:?}\n{}", inst.log());
    let recs = inst.finished_records("out");
    let rec = recs.last().expect("a record");
    let dir = Path::new(rec["run_dir"].as_str().unwrap());
    use std::os::unix::fs::MetadataExt;
    for (name, printed) in [("stdout.log", "stdout"), ("stderr.log", "stderr")] {
        let m = fs::metadata(dir.join(name)).unwrap();
        assert_eq!(m.uid(), a.uid, "{name} is root's: {rec}");
        let said = fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(
            said.trim(),
            a.uid.to_string(),
            "the runner's {printed} as it saw it"
        );
    }
    assert_eq!(fs::metadata(dir.join("record.json")).unwrap().uid(), 0);
}

/// What a run of job `who` printed (its stdout).
fn said(r: &Value) -> String {
    fs::read_to_string(Path::new(r["run_dir"].as_str().unwrap_or("")).join("stdout.log"))
        .unwrap_or_default()
}

/// The latest record of job `who` (by run id) that `pick` accepts, after run id `after`.
fn newest_record(inst: &Instance, after: &str, pick: &dyn Fn(&Value) -> bool) -> Option<Value> {
    inst.records("who")
        .into_iter()
        .filter(|r| r["run_id"].as_str().unwrap_or("") > after && pick(r))
        .max_by_key(|r| r["run_id"].as_str().unwrap_or("").to_string())
}

/// f11 and f12 add and delete regular users (uid 1000 and up) in this binary at the same
/// time: `useradd` hands out the highest uid + 1, so f12's user could take the uid f11 had
/// just freed for its heir (`useradd -u 1001`: "UID 1001 is not unique", seen in CI). Each
/// holds this while it runs.
static REGULAR_USERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Removes the users a test made, whatever happens to it.
struct UsersMade(Vec<String>);

impl Drop for UsersMade {
    fn drop(&mut self) {
        for u in &self.0 {
            let _ = user_db("userdel", &[u]);
        }
    }
}

fn useradd(args: &[&str]) {
    let all = [&["-M", "-s", "/usr/sbin/nologin"], args].concat();
    let out = user_db("useradd", &all);
    assert!(out.status.success(), "useradd {args:?}: {out:?}");
}

/// The daemon looked a job's user up when it loaded its config. The admin deletes that user
/// and the host gives its uid to a new one: the job must not go on running as that uid (it is
/// another person's now). The daemon follows the user database, holds the job (its runs are
/// recorded as not run, the daemon line says why), and runs it again once the user is back.
#[test]
fn f11_a_job_whose_user_is_deleted_is_held_not_run_as_its_old_uid() {
    if !is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root");
        eprintln!("SKIP: needs root (users are created)");
        return;
    }
    let _users = REGULAR_USERS.lock().unwrap_or_else(|e| e.into_inner());
    let tag = std::process::id() % 100_000;
    let (gone, heir) = (format!("rmkd-gone{tag}"), format!("rmkd-heir{tag}"));
    let _made = UsersMade(vec![gone.clone(), heir.clone()]);
    useradd(&[&gone]);
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"",
        &format!("[[job]]\nname = \"who\"\nuser = \"{gone}\"\ncommand = [\"id\", \"-un\"]\nevery = \"1s\"\n"),
    );
    assert!(inst.ctrl().status.success());
    let newest = |after: &str, pick: &dyn Fn(&Value) -> bool| newest_record(&inst, after, pick);
    let ran_as = |who: String| move |r: &Value| r["outcome"] == "success" && said(r).trim() == who;
    let mut first = None;
    assert!(wait_for(Duration::from_secs(20), || {
        first = newest("", &ran_as(gone.clone()));
        first.is_some()
    }));
    let uid = String::from_utf8_lossy(
        &Command::new("id")
            .args(["-u", &gone])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    let out = user_db("userdel", &[&gone]);
    assert!(out.status.success(), "userdel {gone}: {out:?}");
    useradd(&["-u", &uid, &heir]);
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            line = daemon_line(&String::from_utf8_lossy(&inst.ctrl().stdout));
            line.starts_with("1 ")
                && line.contains("the user database changed")
                && line.contains("are held, not run")
        }),
        "{line}"
    );
    let mut held = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            held = newest("", &|r: &Value| {
                r["outcome"] == "error" && r["note"].as_str().unwrap_or("").contains("not run")
            });
            held.is_some()
        }),
        "{:?}",
        inst.records("who")
    );
    let held_id = held.unwrap()["run_id"].as_str().unwrap().to_string();
    assert!(
        newest("", &ran_as(heir.clone())).is_none(),
        "a run ran as the uid's new owner"
    );
    // A reload asked for meanwhile (SIGHUP) finds the same: the jobs stay held, and no edit
    // was rejected (there was none).
    let reloads = |log: &str| log.matches("config reloaded").count();
    let before = reloads(&inst.log());
    let pid = inst.daemon_pid().expect("a daemon runs");
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    assert!(
        wait_for(Duration::from_secs(20), || {
            let log = inst.log();
            reloads(&log) > before || log.contains("config edit rejected")
        }),
        "the reload was not seen: {}",
        inst.log()
    );
    line = daemon_line(&String::from_utf8_lossy(&inst.ctrl().stdout));
    assert!(
        !inst.log().contains("config edit rejected")
            && line.starts_with("1 ")
            && line.contains("the user database changed"),
        "{line}\n{}",
        inst.log()
    );
    // The user is back (with a uid of its own): the job runs again, the line clears.
    let out = user_db("userdel", &[&heir]);
    assert!(out.status.success(), "userdel {heir}: {out:?}");
    useradd(&[&gone]);
    assert!(
        wait_for(Duration::from_secs(20), || {
            line = daemon_line(&String::from_utf8_lossy(&inst.ctrl().stdout));
            line.starts_with("0 ")
        }),
        "{line}"
    );
    assert!(wait_for(Duration::from_secs(20), || newest(
        &held_id,
        &ran_as(gone.clone())
    )
    .is_some()));
    assert!(inst.run(&["stop", "--now"]).status.success());
}

/// The admin expires the account of a job's user (`chage -E 0`; `usermod --expiredate 1`
/// likewise): cron's PAM account check refuses such an account, and the daemon stops running
/// the job too, without a restart (it watches `/etc/shadow`): each due run is recorded as not
/// run, saying the account expired and on which date, and the daemon line says so. Once the
/// account is valid again (`chage -E -1`) the job runs again. An account whose password
/// expired and was not changed within its inactive days is expired too (PAM has it so); one
/// whose password must merely be changed is not.
#[test]
fn f12_a_job_whose_account_expired_is_held_until_it_is_valid_again() {
    if !is_root() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root");
        eprintln!("SKIP: needs root (a user is created)");
        return;
    }
    let _users = REGULAR_USERS.lock().unwrap_or_else(|e| e.into_inner());
    let tag = std::process::id() % 100_000;
    let user = format!("rmkd-exp{tag}");
    let _made = UsersMade(vec![user.clone()]);
    useradd(&[&user]);
    let chage = |expire: &str| {
        let out = Command::new("chage")
            .args(["-E", expire, &user])
            .output()
            .unwrap();
        assert!(out.status.success(), "chage -E {expire}: {out:?}");
    };
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"",
        &format!("[[job]]\nname = \"who\"\nuser = \"{user}\"\ncommand = [\"id\", \"-un\"]\nevery = \"1s\"\n"),
    );
    assert!(inst.ctrl().status.success());
    let newest = |after: &str, pick: &dyn Fn(&Value) -> bool| newest_record(&inst, after, pick);
    let id_of = |r: &Value| r["run_id"].as_str().unwrap().to_string();
    // The records in short, for a failure's message: run id, outcome, note.
    let runs = || {
        inst.records("who")
            .iter()
            .map(|r| format!("{} {} {}", r["run_id"], r["outcome"], r["note"]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ran = |r: &Value| r["outcome"] == "success" && said(r).trim() == user;
    assert!(
        wait_for(Duration::from_secs(20), || newest("", &ran).is_some()),
        "{}",
        runs()
    );
    // Day 0 of shadow's count is 1970-01-01: the account is expired from then on.
    chage("0");
    let why = format!("account {user} expired on 1970-01-01");
    let held = |r: &Value| {
        r["outcome"] == "error" && {
            let note = r["note"].as_str().unwrap_or("");
            note.contains("not run") && note.contains(&why)
        }
    };
    let mut first = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            first = newest("", &held);
            first.is_some()
        }),
        "no run recorded as not run because {why}:\n{}",
        runs()
    );
    let first = id_of(&first.unwrap());
    // Held for good, not once: a second due run is held too, and none ran in between.
    assert!(
        wait_for(Duration::from_secs(20), || newest(&first, &held).is_some()),
        "{}",
        runs()
    );
    assert!(
        newest(&first, &ran).is_none(),
        "a run ran as the expired account:\n{}",
        runs()
    );
    let mut line = String::new();
    assert!(
        wait_for_every(Duration::from_secs(20), Duration::from_millis(100), || {
            line = daemon_line(&String::from_utf8_lossy(&inst.ctrl().stdout));
            line.starts_with("1 ") && line.contains(&why) && line.contains("are held, not run")
        }),
        "{line}"
    );
    let status = String::from_utf8_lossy(&inst.run(&["status"]).stdout).into_owned();
    assert!(status.contains(&why), "{status}");
    // A daemon started while the account is expired runs the config (an expired account is
    // no mistake in it) and holds that user's jobs alone.
    assert!(inst.run(&["stop", "--now"]).status.success());
    let before_restart = id_of(&newest("", &held).unwrap());
    let started = inst.ctrl();
    assert!(started.status.success(), "{started:?}");
    assert!(
        wait_for(Duration::from_secs(20), || newest(&before_restart, &held)
            .is_some()),
        "no held run after the restart:\n{}\n{}",
        runs(),
        daemon_line(&String::from_utf8_lossy(&inst.ctrl().stdout))
    );
    assert!(
        wait_for_every(Duration::from_secs(20), Duration::from_millis(100), || {
            line = daemon_line(&String::from_utf8_lossy(&inst.ctrl().stdout));
            line.starts_with("1 ") && line.contains(&why)
        }),
        "{line}"
    );
    // Valid again: the job runs again and the line clears.
    let last_held = id_of(&newest("", &held).unwrap());
    chage("-1");
    assert!(
        wait_for(Duration::from_secs(20), || newest(&last_held, &ran)
            .is_some()),
        "{}",
        runs()
    );
    assert!(
        wait_for_every(Duration::from_secs(20), Duration::from_millis(100), || {
            line = daemon_line(&String::from_utf8_lossy(&inst.ctrl().stdout));
            line.starts_with("0 ")
        }),
        "{line}"
    );
    // Its password expired (changed 2020-01-01, valid 10 days) and was not changed within its
    // inactive days (none): `pam_unix` takes that for an expired account ("Your account has
    // expired"), and so does the daemon.
    let ageing = |args: &[&str]| {
        let out = Command::new("chage")
            .args(args)
            .arg(&user)
            .output()
            .unwrap();
        assert!(out.status.success(), "chage {args:?}: {out:?}");
    };
    let last_ran = id_of(&newest("", &ran).unwrap());
    ageing(&["-d", "2020-01-01", "-M", "10", "-I", "0"]);
    let aged = format!(
        "account {user} expired on 2020-01-12 (its password expired on 2020-01-11 and was not \
         changed within 0 inactive days)"
    );
    let held_aged = |r: &Value| {
        r["outcome"] == "error" && {
            let note = r["note"].as_str().unwrap_or("");
            note.contains("not run") && note.contains(&aged)
        }
    };
    assert!(
        wait_for(Duration::from_secs(20), || newest(&last_ran, &held_aged)
            .is_some()),
        "no run recorded as not run because {aged}:\n{}",
        runs()
    );
    assert!(
        wait_for_every(Duration::from_secs(20), Duration::from_millis(100), || {
            line = daemon_line(&String::from_utf8_lossy(&inst.ctrl().stdout));
            line.starts_with("1 ") && line.contains(&aged)
        }),
        "{line}"
    );
    // A password that must merely be changed (`chage -d 0`) holds nothing: cron refuses it,
    // the daemon never uses the password and runs the job.
    let last_held = id_of(&newest("", &held_aged).unwrap());
    ageing(&["-d", "0"]);
    assert!(
        wait_for(Duration::from_secs(20), || newest(&last_held, &ran)
            .is_some()),
        "{}",
        runs()
    );
    assert!(inst.run(&["stop", "--now"]).status.success());
}

// ---- F14: the window between a runner's identity drop and its exec -------------------------

/// The stopper: `kill(-1, SIGSTOP)` in a loop for `argv[1]` seconds. As a job's user, it stops
/// every process of that user but itself — the daemon's child too, once that has dropped root
/// and until it execs.
const STOPPER_C: &str = r#"
#include <signal.h>
#include <stdlib.h>
#include <time.h>
int main(int c, char **v) {
    time_t end = time(0) + (c > 1 ? atoi(v[1]) : 60);
    while (time(0) < end) kill(-1, SIGSTOP);
    return 0;
}
"#;

/// The running stopper, ended by its PID (SIGKILL, then collected) when dropped — also when
/// the test panics.
struct Stopper(Child);

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A user loops `kill(-1, SIGSTOP)` (its own process, started as any user may: nothing of the
/// daemon's) while the daemon starts that user's jobs every second. Each start forks a child
/// that drops root and then execs; in between the user may signal it, and a stopped child
/// used to hold the daemon's loop for ever (no job ran, root's neither, until ctrl replaced
/// the daemon after `hang_timeout`). Now a child stopped there is killed and its run recorded
/// as failed with the reason; root's job every second stays on time, and ctrl answers.
#[test]
fn f14_a_user_who_stops_the_runners_start_hangs_neither_the_daemon_nor_other_jobs() {
    // A user of this test's own: the stopper stops every process of its user.
    let Some((uid, gid)) = system_user("rmkd-stopper") else {
        return;
    };
    let user_jobs: String = (1..=3)
        .map(|i| {
            format!(
                "[[job]]\nname = \"user{i}\"\nuser = \"rmkd-stopper\"\n\
                 command = [\"sh\", \"-c\", \"echo left > left.txt\"]\n\
                 every = \"1s\"\ntimeout = \"2s\"\n"
            )
        })
        .collect();
    // keep_runs = 1: every run's end removes the run before, as its owner (a user child).
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nkeep_runs = 1",
        &format!(
            "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\ntimeout = \"5s\"\n\
             {user_jobs}"
        ),
    );
    chmod(inst.dir.path(), 0o755);
    chmod(&inst.config, 0o644);
    let src = inst.dir.path().join("stopper.c");
    let exe = inst.dir.path().join("stopper");
    fs::write(&src, STOPPER_C).unwrap();
    let cc = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .output();
    if !require_tool(cc.as_ref().is_ok_and(|o| o.status.success()), "cc") {
        return;
    }
    chmod(&exe, 0o755);
    running_ticker(&inst);

    let stopper = Stopper(
        Command::new(&exe)
            .arg("600")
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let attacked = || {
        (1..=3).find_map(|i| {
            inst.finished_records(&format!("user{i}"))
                .into_iter()
                .find(|r| {
                    r["outcome"] == "error"
                        && r["note"]
                            .as_str()
                            .is_some_and(|n| n.contains("stopped before it could start"))
                })
        })
    };
    let mut hit = None;
    assert!(
        wait_for(Duration::from_secs(60), || {
            hit = attacked();
            hit.is_some()
        }),
        "no user run was recorded as stopped before its start; tick's last records: {:?}\n{}",
        inst.finished_records("tick")
            .iter()
            .rev()
            .take(2)
            .collect::<Vec<_>>(),
        inst.log()
    );
    let hit = hit.unwrap();
    let note = hit["note"].as_str().unwrap();
    assert!(
        note.contains(&format!("uid {uid}")) && note.contains("ended"),
        "{hit}"
    );

    // root's job goes on, on time, while the stopper keeps at it (each run seen while it is
    // the one kept: keep_runs = 1).
    let id = |r: &Value| r["run_id"].as_str().unwrap_or_default().to_string();
    let before: std::collections::HashSet<String> =
        inst.finished_records("tick").iter().map(id).collect();
    let mut seen = std::collections::BTreeMap::new();
    assert!(
        wait_for(Duration::from_secs(15), || {
            for r in inst.finished_records("tick") {
                if !before.contains(&id(&r)) {
                    seen.insert(id(&r), r);
                }
            }
            seen.len() >= 5
        }),
        "root's job stopped running: {} new runs seen\n{}",
        seen.len(),
        inst.log()
    );
    let time = |r: &Value, k: &str| {
        chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap_or_default()).ok()
    };
    let mut latest = Duration::ZERO;
    for r in seen.values() {
        let (Some(due), Some(started)) = (time(r, "due"), time(r, "started")) else {
            panic!("a tick without due or started: {r}");
        };
        let late = (started - due).to_std().unwrap_or_default();
        assert!(late < Duration::from_secs(2), "tick late by {late:?}: {r}");
        latest = latest.max(late);
    }
    eprintln!("attacked run: {note}; root's job late by at most {latest:?} after it");
    // ctrl answers, and the daemon is fine.
    let line = daemon_line(&ctrl_at(&inst.config));
    assert!(line.starts_with("0 "), "{line}");
    // The child that removes the user's old runs with the user's rights (each run's end
    // removes the one before, which left a file) keeps root's real and saved uid: the
    // stopper cannot stop it, so no removal ran into its deadline.
    let mut ended = std::collections::HashSet::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            for i in 1..=3 {
                for r in inst.finished_records(&format!("user{i}")) {
                    if r["outcome"] == "success" || r["outcome"] == "timeout" {
                        ended.insert(id(&r));
                    }
                }
            }
            ended.len() >= 8
        }),
        "the user's runs did not end: {ended:?}"
    );
    let log = inst.log();
    assert!(
        !log.contains("did not end within its look"),
        "a removal as the user was held: {}",
        log.lines()
            .filter(|l| l.contains("did not end within its look"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(stopper);
    assert!(inst.run(&["stop", "--now"]).status.success());
}

/// A namespace of PIDs of its own (`unshare --pid --fork --mount-proc`), whose init is a
/// `sleep`: root there picks the next PID (`ns_last_pid`). Ended by PID on drop: `--kill-child`
/// takes the namespace's init, and with it every process in the namespace, along.
struct PidNamespace {
    unshare: Child,
    init: u32,
}

impl PidNamespace {
    fn new() -> Option<PidNamespace> {
        let mut unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "sleep",
                "600",
            ])
            .stdin(Stdio::null())
            .spawn()
            .ok()?;
        let me = unshare.id();
        let mut init = None;
        wait_for(Duration::from_secs(10), || {
            init = fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse().ok());
            init.is_some()
        });
        match init {
            Some(init) => Some(PidNamespace { unshare, init }),
            None => {
                let _ = unshare.kill();
                let _ = unshare.wait();
                None
            }
        }
    }

    /// `sh -c script` inside the namespace.
    fn sh(&self, script: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.init.to_string())
            .args(["-p", "-m", "--", "sh", "-c", script]);
        c
    }

    /// Whether the namespace's process `pid` lives (and is no zombie).
    fn alive(&self, pid: u32) -> bool {
        self.sh(&format!(
            "awk '/^State:/ {{ exit ($2 == \"Z\") }}' /proc/{pid}/status 2>/dev/null"
        ))
        .status()
        .is_ok_and(|s| s.success())
    }
}

impl Drop for PidNamespace {
    fn drop(&mut self) {
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// A job's runner starts a process that leaves the run's process group (`setsid`) and
/// ignores SIGTERM, and exits: the group's id — the runner's PID — is free again while the run's
/// end still ends what the run left (SIGTERM, then SIGKILL after `stop_grace`). A new process
/// that gets that PID and leads a group of its own (anyone's: here a stand-in started while the
/// leftover waits, with the PID picked through `ns_last_pid`, as a user cycling PIDs gets it on
/// a host whose `pid_max` is 32768) is not the run's and must not be signalled. Before, the
/// run's end sent SIGKILL to "the run's group" by its id, and killed it.
#[test]
fn f15_a_process_group_id_given_anew_after_a_run_is_never_signalled() {
    group_id_given_anew(false);
}

/// The same without cgroups (the daemon's test hook): the group is told by its id only while no
/// process but the run's has that PID.
#[test]
fn f15_without_cgroups_a_process_group_id_given_anew_is_never_signalled() {
    group_id_given_anew(true);
}

fn group_id_given_anew(no_cgroup: bool) {
    let Some((uid, gid)) = system_user("rmkd-pgid") else {
        return;
    };
    if !require_tool(
        have_tool("unshare") && have_tool("nsenter"),
        "unshare and nsenter (a PID namespace)",
    ) {
        return;
    }
    let inst = Instance::new("", "");
    let pids = inst.dir.path().join("pids");
    fs::create_dir(&pids).unwrap();
    chown(&pids, Some(uid), Some(gid)).unwrap();
    let p = pids.display();
    // Due once, a few seconds from now; the leftover is ended 5 s after the run's end.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    inst.write_raw_config(&format!(
        "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nstop_grace = \"5s\"\n\
         heartbeat_timeout = \"10m\"\n\n\
         [[job]]\nname = \"leaver\"\nuser = \"rmkd-pgid\"\nevery = \"1h\"\noffset = \"{}s\"\n\
         timeout = \"30s\"\n\
         command = [\"sh\", \"-c\", \"echo $$ > {p}/runner; setsid sh -c 'trap \\\"\\\" TERM; echo $$ > {p}/left; exec sleep 60' </dev/null >/dev/null 2>&1 & sleep 0.5\"]\n",
        inst.state.display(),
        (now + 3) % 3600
    ));
    chmod(inst.dir.path(), 0o755);
    chmod(&inst.config, 0o644);
    let Some(ns) = PidNamespace::new() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot make a PID namespace in CI"
        );
        eprintln!("SKIP: cannot make a PID namespace here");
        return;
    };
    // The daemon, started by ctrl in the namespace (forked: no systemd there).
    let daemon = |cmd: &str| {
        ns.sh(&format!(
            "ROBOTMK_DAEMON_NO_SYSTEMD=1 {} exec {BIN} --config {} {cmd}",
            if no_cgroup {
                "ROBOTMK_TEST_NO_CGROUP=1"
            } else {
                ""
            },
            inst.config.display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap()
    };
    let out = daemon("ctrl");
    assert!(out.status.success(), "{out:?}");
    let read_pid = |name: &str| -> Option<u32> {
        fs::read_to_string(pids.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let (mut runner, mut left) = (None, None);
    assert!(
        wait_for(Duration::from_secs(30), || {
            runner = read_pid("runner");
            left = read_pid("left");
            runner.is_some() && left.is_some()
        }),
        "the run did not start its leftover\n{}",
        inst.log()
    );
    let (runner, left) = (runner.unwrap(), left.unwrap());
    // The runner is gone (collected) and its group empty: its PID is free.
    assert!(
        wait_for(Duration::from_secs(10), || !ns.alive(runner)),
        "the runner {runner} did not end"
    );
    assert!(ns.alive(left), "the leftover {left} ended before the test");
    // A stranger gets the runner's PID and leads a group (and session) of that id.
    let st = ns
        .sh(&format!(
            "echo {} > /proc/sys/kernel/ns_last_pid && exec setsid --fork sleep 120",
            runner - 1
        ))
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        wait_for(Duration::from_secs(5), || {
            ns
            .sh(&format!(
                "grep -q sleep /proc/{runner}/cmdline && [ \"$(ps -o pgid= -p {runner} | tr -d ' ')\" = {runner} ]"
            ))
            .status()
            .is_ok_and(|s| s.success())
        }),
        "the stand-in did not get PID {runner} (another process of the namespace took it)"
    );
    // The run's end kills the leftover after stop_grace, and records the run.
    assert!(
        wait_for(Duration::from_secs(30), || !ns.alive(left)),
        "the leftover {left} was not ended\n{}",
        inst.log()
    );
    let done = wait_for(Duration::from_secs(30), || {
        inst.finished_records("leaver").len() == 1
    });
    let log = inst.log();
    assert_eq!(
        log.contains("runs get no cgroup"),
        no_cgroup,
        "cgroups as asked ({no_cgroup})\n{log}"
    );
    let spared = ns.alive(runner);
    let _ = daemon("stop --now");
    assert!(done, "the run was not recorded\n{log}");
    assert!(
        spared,
        "the process that got the run's old PID {runner} (a group of its own) was killed by the run's end\n{log}"
    );
}

/// `run-once` (and `start --foreground`) run from an admin's terminal: a job's user must get
/// neither that terminal nor any descriptor the admin's shell left open. Before, the runner
/// stayed in run-once's session, so the admin's terminal was its controlling terminal (a
/// user's process could push input into root's shell with `TIOCSTI`, or write escape
/// sequences to it), and `run-once JOB 7</etc/shadow` handed fd 7 to the user's runner.
#[test]
fn f16_a_user_jobs_runner_gets_neither_the_admins_terminal_nor_its_descriptors() {
    let Some((uid, gid)) = system_user("rmkd-tty") else {
        return;
    };
    if !require_tool(
        have_tool("script"),
        "script (util-linux: a terminal for run-once)",
    ) {
        return;
    }
    let inst = Instance::new("", "");
    let seen = inst.dir.path().join("seen");
    fs::create_dir(&seen).unwrap();
    chown(&seen, Some(uid), Some(gid)).unwrap();
    let s = seen.display();
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"peek\"\nuser = \"rmkd-tty\"\nevery = \"1h\"\ntimeout = \"30s\"\n\
             command = [\"sh\", \"-c\", \"if sh -c ': </dev/tty' 2>/dev/null; then echo terminal; else echo none; fi > {s}/tty; \
             if [ -e /proc/$$/fd/7 ]; then echo open; else echo closed; fi > {s}/fd7\"]\n"
        ),
    );
    chmod(inst.dir.path(), 0o755);
    chmod(&inst.config, 0o644);
    // The admin's terminal: script's pty is the controlling terminal of the shell it starts.
    let out = within(
        Duration::from_secs(60),
        Command::new("script")
            .args(["-qec"])
            .arg(format!(
                "{BIN} --config {} run-once peek 7</etc/shadow",
                inst.config.display()
            ))
            .arg("/dev/null")
            .stdin(Stdio::null()),
    );
    let read = |f: &str| {
        fs::read_to_string(seen.join(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(
        read("tty"),
        "none",
        "the user's runner had the admin's terminal: {out:?}"
    );
    assert_eq!(
        read("fd7"),
        "closed",
        "the user's runner got the admin's fd 7 (/etc/shadow): {out:?}"
    );
}

/// A user job whose run folder its user cannot reach (a folder above the state dir without
/// `o+x`, as a temporary folder made 0700 is): the run's error names the folder and the fix,
/// not "cannot start /bin/sh: Permission denied", which sent the admin to the program.
#[test]
fn a_run_folder_its_user_cannot_reach_is_named_with_the_fix() {
    let Some(_) = system_user("rmkd-tty") else {
        return;
    };
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"walled\"\nuser = \"rmkd-tty\"\ncommand = [\"sh\", \"-c\", \"true\"]\nevery = \"1h\"\n",
    );
    chmod(&inst.config, 0o644);
    // The instance's folder stays 0700: the user cannot pass it.
    chmod(inst.dir.path(), 0o700);
    let out = inst.run(&["run-once", "walled"]);
    let rec = inst.finished_records("walled").pop();
    let note = rec
        .as_ref()
        .and_then(|r| r["note"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        note.contains("cannot enter the run folder") && note.contains("chmod o+x"),
        "{note}\n{out:?}"
    );
}

/// A job's user that is another name for the build user's uid (`useradd -o`, an alias in
/// LDAP) is the build user: refused like the build user's own name (a job as that uid could
/// put code into the environments root's jobs run).
#[test]
fn a_job_user_with_the_build_users_uid_is_refused() {
    let Some((uid, _)) = system_user("rmkd-build") else {
        return;
    };
    let alias = "rmkd-build-alias";
    if Command::new("id")
        .arg(alias)
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        let uid = uid.to_string();
        let made = user_db(
            "useradd",
            &["-o", "-u", &uid, "-M", "-s", "/usr/sbin/nologin", alias],
        )
        .status
        .success();
        assert!(made, "useradd -o {alias}");
    }
    // A second name for one uid is an odd account to leave on a host: removed again, also
    // when the test fails.
    struct Gone(&'static str);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = user_db("userdel", &[self.0]);
        }
    }
    let _gone = Gone(alias);
    let inst = Instance::new(
        "build_user = \"rmkd-build\"",
        &format!(
            "[[job]]\nname = \"j\"\nuser = \"{alias}\"\ncommand = [\"true\"]\nevery = \"1h\"\n"
        ),
    );
    let out = inst.run(&["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("has uid {uid}, the uid of the build_user")),
        "{err}"
    );
}
