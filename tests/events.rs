//! The daemon is event-driven: idle, it does not wake at all (no periodic tick), yet it reacts
//! to each change it watches at once. Each test here changes one thing by hand — no signal,
//! no ctrl — and waits (with a deadline of [`QUICK`]) for the daemon to act on it; with the
//! watch missing, the daemon would only notice on its fallback look minutes later.
//!
//! Instances live under the target dir, not /tmp, and the tests here run one at a time: the
//! daemon watches every directory above its config and state dir for changes of their mode,
//! and inotify reports those together with attribute changes of their entries (a sibling
//! temp dir chmodded or removed). The watcher thread filters those out without waking the
//! loop, but it does wake, and the idle test counts every thread's wake-ups.

#![cfg(unix)]

mod common;

use common::{parse_section, wait_for, Instance, BIN};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How soon a change must be acted on. The watches react in milliseconds; this leaves room
/// for a loaded machine while staying far below the fallback poll (30 s).
const QUICK: Duration = Duration::from_secs(2);

const HOURLY: &str = "[[job]]\nname = \"hourly\"\ncommand = [\"true\"]\ncron = \"0 0 1 1 *\"\n";

/// Held by each test for its whole run (see the module doc).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn instance(daemon: &str, jobs: &str) -> Instance {
    instance_in("", daemon, jobs)
}

/// An instance whose config is in the subdirectory `sub` of its temp dir (made, 0755).
fn instance_in(sub: &str, daemon: &str, jobs: &str) -> Instance {
    let dir = tempfile::Builder::new()
        .prefix("rmkd-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let etc = dir.path().join(sub);
    fs::create_dir_all(&etc).unwrap();
    chmod(&etc, 0o755);
    let config = etc.join("config.toml");
    let state = dir.path().join("state");
    let inst = Instance { dir, config, state };
    inst.write_config(daemon, jobs);
    inst
}

fn start(inst: &Instance) -> u32 {
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    daemon_of(inst)
}

/// The PID of `inst`'s daemon, once it has written it.
fn daemon_of(inst: &Instance) -> u32 {
    let mut pid = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            pid = inst.daemon_pid();
            pid.is_some()
        }),
        "no daemon"
    );
    pid.unwrap()
}

/// [`start`], with the daemon in a mount namespace of its own where the test can have one
/// (root): the mounts other tests make meanwhile (tmpfs, binds) are then not its mount
/// table's changes, which its watcher looks at (a second apart at most) — an idle host is
/// what the idle test is about.
fn start_apart(inst: &Instance) -> u32 {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    if !root {
        return start(inst);
    }
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(BIN)
        .arg("--config")
        .arg(&inst.config)
        .arg("ctrl")
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .env_remove("ROBOTMK_DAEMON_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare");
    assert_eq!(
        parse_section(&String::from_utf8_lossy(&out.stdout))["ctrl"]["action"],
        "started",
        "{out:?}"
    );
    daemon_of(inst)
}

/// Voluntary context switches of each thread of `pid`: a thread that blocks (sleeps until a
/// timeout or an event) adds one each time; load alone does not add any.
fn switches(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .flatten()
    {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let status = fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let n = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        out.push((
            format!("{}/{}", comm.trim(), t.file_name().to_string_lossy()),
            n,
        ));
    }
    out.sort();
    out
}

fn total(s: &[(String, u64)]) -> u64 {
    s.iter().map(|(_, n)| n).sum()
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(p).ok()?.modified().ok()
}

fn answered(inst: &Instance) -> bool {
    let hb = mtime(&inst.state.join("heartbeat"));
    hb.is_some() && hb == mtime(&inst.state.join("heartbeat-ack"))
}

fn status_file(inst: &Instance) -> Value {
    fs::read(inst.state.join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn has_job(inst: &Instance, name: &str) -> bool {
    status_file(inst)["jobs"]
        .as_array()
        .is_some_and(|j| j.iter().any(|j| j["name"] == name))
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Waits for `cond` for [`QUICK`]; says how long it took.
fn quickly(what: &str, cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    assert!(wait_for(QUICK, cond), "{what}: not within {QUICK:?}");
    eprintln!("{what}: {:?}", t0.elapsed());
}

#[test]
fn an_idle_daemon_does_not_wake_and_a_ctrl_call_wakes_each_thread_once_at_most() {
    let _serial = serial();
    let jobs: String = (0..20)
        .map(|i| format!("[[job]]\nname = \"j{i}\"\ncommand = [\"true\"]\ncron = \"0 0 1 1 *\"\n"))
        .collect();
    let inst = instance("heartbeat_timeout = \"10m\"", &jobs);
    let pid = start_apart(&inst);
    assert!(
        wait_for(Duration::from_secs(5), || answered(&inst)),
        "no ack"
    );
    // Settled: start-up work (recovery, the first status write) is over.
    std::thread::sleep(Duration::from_millis(500));
    let before = switches(pid);
    std::thread::sleep(Duration::from_secs(5));
    let after = switches(pid);
    eprintln!("idle 5 s: {before:?} -> {after:?}");
    assert_eq!(
        total(&after),
        total(&before),
        "an idle daemon woke: {before:?} -> {after:?}"
    );

    // Each ctrl call's beat is answered by one wake of the loop thread (the main thread).
    let main = |s: &[(String, u64)]| {
        s.iter()
            .find(|(n, _)| n.ends_with(&format!("/{pid}")))
            .map_or(0, |(_, n)| *n)
    };
    let calls = 5;
    let before = switches(pid);
    for _ in 0..calls {
        inst.ctrl();
        assert!(
            wait_for(Duration::from_secs(5), || answered(&inst)),
            "beat not answered"
        );
    }
    // The loop's switch is counted when it blocks again, just after its answer.
    wait_for(Duration::from_secs(5), || {
        total(&switches(pid)) >= total(&before) + 2 * calls
    });
    let after = switches(pid);
    eprintln!("{calls} ctrl calls: {before:?} -> {after:?}");
    assert_eq!(
        main(&after) - main(&before),
        calls,
        "the loop should wake once per ctrl call: {before:?} -> {after:?}"
    );
    // And the watcher thread once (the beat; the daemon's own answer is not reported to it).
    assert_eq!(
        total(&after) - total(&before),
        2 * calls,
        "two switches per ctrl call (watcher, loop): {before:?} -> {after:?}"
    );
}

#[test]
fn a_touched_heartbeat_is_answered_at_once() {
    let _serial = serial();
    let inst = instance("heartbeat_timeout = \"10m\"", HOURLY);
    start(&inst);
    assert!(wait_for(Duration::from_secs(5), || answered(&inst)));
    let hb = inst.state.join("heartbeat");
    fs::File::options()
        .write(true)
        .open(&hb)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7))
        .unwrap();
    quickly("heartbeat answered", || answered(&inst));
    // Replaced by rename (ctrl does that when the agent's mode changes), then touched: the
    // new file is watched too.
    let tmp = inst.state.join(".hb.tmp");
    fs::write(&tmp, "{}\n").unwrap();
    fs::rename(&tmp, &hb).unwrap();
    quickly("replaced heartbeat answered", || answered(&inst));
    fs::File::options()
        .write(true)
        .open(&hb)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3))
        .unwrap();
    quickly("touched after replacement, answered", || answered(&inst));
}

#[test]
fn a_stop_request_file_alone_stops_the_daemon() {
    let _serial = serial();
    let inst = instance("heartbeat_timeout = \"10m\"", HOURLY);
    start(&inst);
    let req = format!(
        "{{\"mode\":\"drain\",\"requested\":\"{}\"}}",
        chrono::Utc::now().to_rfc3339()
    );
    let tmp = inst.state.join(".stop.tmp");
    fs::write(&tmp, req).unwrap();
    fs::rename(&tmp, inst.state.join("stop-request")).unwrap();
    quickly("stopped", || inst.daemon_processes().is_empty());
}

#[test]
fn a_config_edited_in_place_or_replaced_is_reloaded_at_once() {
    let _serial = serial();
    let inst = instance("heartbeat_timeout = \"10m\"", HOURLY);
    start(&inst);
    assert!(wait_for(Duration::from_secs(5), || has_job(
        &inst, "hourly"
    )));
    // In place: truncate and write, as an editor without backup files does.
    let text = fs::read_to_string(&inst.config).unwrap();
    fs::write(
        &inst.config,
        format!("{text}\n[[job]]\nname = \"edited\"\ncommand = [\"true\"]\ncron = \"0 0 1 1 *\"\n"),
    )
    .unwrap();
    quickly("edit in place reloaded", || has_job(&inst, "edited"));
    // Replaced by rename.
    inst.write_config(
        "heartbeat_timeout = \"10m\"",
        &format!(
            "{HOURLY}[[job]]\nname = \"renamed\"\ncommand = [\"true\"]\ncron = \"0 0 1 1 *\"\n"
        ),
    );
    quickly("replacement reloaded", || has_job(&inst, "renamed"));
}

#[test]
fn a_config_opened_to_others_or_under_a_directory_opened_to_others_is_refused_at_once() {
    let _serial = serial();
    // The config in a directory of its own: not above the state dir (that would end the
    // daemon, see the last test).
    let inst = instance_in("etc", "heartbeat_timeout = \"10m\"", HOURLY);
    start(&inst);
    let error = |inst: &Instance| {
        status_file(inst)["daemon"]["config_error"]
            .as_str()
            .map(str::to_string)
    };
    assert!(wait_for(Duration::from_secs(5), || has_job(
        &inst, "hourly"
    )));
    assert_eq!(error(&inst), None);
    chmod(&inst.config, 0o660);
    quickly("config g+w refused", || error(&inst).is_some());
    chmod(&inst.config, 0o600);
    quickly("config trusted again", || error(&inst).is_none());
    // A directory above it: only its own mode changes (no file in it does).
    let dir = &inst.dir.path().join("etc");
    let mode = fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
    chmod(dir, 0o777);
    quickly("directory o+w refused", || error(&inst).is_some());
    chmod(dir, mode);
    quickly("directory trusted again", || error(&inst).is_none());
}

#[test]
fn a_symlink_on_the_config_path_re_pointed_reloads_at_once() {
    let _serial = serial();
    let inst = instance("heartbeat_timeout = \"10m\"", HOURLY);
    let root = inst.dir.path();
    // config at <root>/conf/config.toml, with conf -> a (then b).
    let text = fs::read_to_string(&inst.config).unwrap();
    for (d, extra) in [
        ("a", ""),
        (
            "b",
            "[[job]]\nname = \"via_b\"\ncommand = [\"true\"]\ncron = \"0 0 1 1 *\"\n",
        ),
    ] {
        fs::create_dir(root.join(d)).unwrap();
        chmod(&root.join(d), 0o755);
        fs::write(root.join(d).join("config.toml"), format!("{text}\n{extra}")).unwrap();
        chmod(&root.join(d).join("config.toml"), 0o600);
    }
    std::os::unix::fs::symlink("a", root.join("conf")).unwrap();
    let linked = root.join("conf").join("config.toml");
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&linked)
        .arg("ctrl")
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .env_remove("ROBOTMK_DAEMON_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(Duration::from_secs(10), || has_job(
        &inst, "hourly"
    )));
    assert!(!has_job(&inst, "via_b"));
    std::os::unix::fs::symlink("b", root.join("conf.new")).unwrap();
    fs::rename(root.join("conf.new"), root.join("conf")).unwrap();
    quickly("re-pointed link reloaded", || has_job(&inst, "via_b"));
}

#[test]
fn a_run_once_request_file_alone_is_picked_up_even_in_a_requests_dir_made_later() {
    let _serial = serial();
    let inst = instance("heartbeat_timeout = \"10m\"", HOURLY);
    start(&inst);
    let dir = inst.state.join("requests");
    // The test's own tree (std's remover is for tests only, see clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let _ = fs::remove_dir_all(&dir);
    // Made after the daemon armed its watches: its creation is seen, then its contents.
    fs::create_dir(&dir).unwrap();
    // No pause: a look arms its watches before it reads the folder, so a request written
    // before the new folder is watched is found by that read, one written after by the watch.
    let id = "evtest1";
    let req = format!(
        "{{\"id\":\"{id}\",\"job\":\"hourly\",\"requested\":\"{}\"}}",
        chrono::Utc::now().to_rfc3339()
    );
    fs::write(dir.join(".tmp"), req).unwrap();
    fs::rename(dir.join(".tmp"), dir.join(format!("{id}.json"))).unwrap();
    quickly("request run", || {
        inst.finished_records("hourly")
            .iter()
            .any(|r| r["request"] == id)
    });
}

#[test]
fn the_dead_man_fires_at_its_deadline() {
    let _serial = serial();
    let inst = instance("heartbeat_timeout = \"2s\"", HOURLY);
    start(&inst);
    let last_beat = mtime(&inst.state.join("heartbeat")).unwrap();
    assert!(
        inst.wait_daemon_gone(Duration::from_secs(6)),
        "still alive 6 s after the last beat with a 2 s timeout"
    );
    let after = last_beat.elapsed().unwrap_or_default();
    eprintln!("dead man fired; gone {after:?} after the last beat (timeout 2 s)");
    assert!(after >= Duration::from_secs(2), "fired early: {after:?}");
    assert!(inst.log().contains("heartbeat stale"), "{}", inst.log());
}

#[test]
fn a_directory_above_the_state_dir_opened_to_others_ends_the_daemon_at_once() {
    let _serial = serial();
    let inst = instance("", "");
    let parent = inst.dir.path().join("p");
    fs::create_dir(&parent).unwrap();
    chmod(&parent, 0o755);
    let state = parent.join("state");
    inst.write_raw_config(&format!(
        "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nheartbeat_timeout = \"10m\"\n\n{HOURLY}",
        state.display()
    ));
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    assert!(wait_for(Duration::from_secs(10), || !inst
        .daemon_processes()
        .is_empty()));
    assert!(wait_for(Duration::from_secs(5), || state
        .join("status.json")
        .exists()));
    chmod(&parent, 0o757);
    quickly("untrusted state dir abandoned", || {
        inst.daemon_processes().is_empty()
    });
}

#[test]
fn a_deleted_lock_file_is_locked_again_at_once() {
    let _serial = serial();
    let inst = instance("heartbeat_timeout = \"10m\"", HOURLY);
    start(&inst);
    let lock = inst.state.join("daemon.lock");
    assert!(wait_for(Duration::from_secs(5), || lock.exists()));
    fs::remove_file(&lock).unwrap();
    quickly("lock file made again", || lock.exists());
}
