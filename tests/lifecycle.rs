//! ctrl keeps exactly one detached daemon alive per instance: lock, heartbeat, start, stop,
//! status, crash restart, broken configs (issue 2). Real binary, real processes.
#![cfg(unix)]

mod common;

use common::*;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IDLE_JOB: &str = "[[job]]\nname = \"idle\"\ncommand = [\"true\"]\nevery = \"1h\"\n";

#[test]
fn fifty_racing_ctrls_leave_exactly_one_daemon() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let mut cmd = inst.cmd();
            cmd.arg("ctrl")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                let t = Instant::now();
                let out = cmd.output().expect("ctrl");
                (out, t.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut started = 0;
    let mut slowest = Duration::ZERO;
    for (out, took) in &results {
        assert!(out.status.success(), "ctrl exit: {out:?}");
        let j = parse_section(&String::from_utf8_lossy(&out.stdout));
        if j["ctrl"]["action"] == "started" {
            started += 1;
        }
        slowest = slowest.max(*took);
    }
    eprintln!("slowest of 50 concurrent ctrls: {slowest:?}");
    assert_eq!(
        started, 1,
        "exactly one ctrl reports that it started the daemon"
    );
    assert!(slowest < Duration::from_secs(1), "a ctrl took {slowest:?}");
    let pids = inst.daemon_processes();
    assert_eq!(pids.len(), 1, "daemon processes: {pids:?}");
    assert_eq!(inst.daemon_pid(), Some(pids[0]));
}

#[test]
fn kill_9_then_the_next_ctrl_starts_exactly_one_new_daemon() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let first = inst.ctrl_json();
    assert_eq!(first["ctrl"]["action"], "started");
    let pid = first["daemon"]["pid"].as_u64().expect("pid") as u32;
    let again = inst.ctrl_json();
    assert_eq!(again["ctrl"]["action"], "running");
    assert_eq!(again["daemon"]["pid"].as_u64(), Some(pid as u64));

    kill9(pid);
    let after = inst.ctrl_json();
    assert_eq!(after["ctrl"]["action"], "started", "{after}");
    let new_pid = after["daemon"]["pid"].as_u64().expect("new pid") as u32;
    assert_ne!(new_pid, pid);
    assert_eq!(inst.daemon_processes(), vec![new_pid]);
    // The new daemon runs, and says that the one before it did not exit cleanly (issue 19.4).
    let local = local_lines(&String::from_utf8_lossy(&inst.ctrl().stdout));
    assert!(
        local[0].starts_with("2 \"Robotmk t daemon\"") && local[0].contains("SIGKILL"),
        "{local:?}"
    );
}

#[test]
fn stale_heartbeat_makes_the_daemon_exit() {
    let inst = Instance::new("heartbeat_timeout = \"3s\"", IDLE_JOB);
    let j = inst.ctrl_json();
    assert_eq!(j["ctrl"]["action"], "started");
    // Keep it alive past its timeout with more ctrls...
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        assert!(inst.ctrl().status.success());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        inst.daemon_processes().len(),
        1,
        "ctrls keep the daemon alive"
    );
    // ...then fall silent.
    let silent = Instant::now();
    assert!(
        inst.wait_daemon_gone(Duration::from_secs(3 + 2)),
        "daemon still alive {:?} after the last ctrl",
        silent.elapsed()
    );
    eprintln!(
        "daemon exited {:?} after the last ctrl (timeout 3s)",
        silent.elapsed()
    );
    assert!(inst.log().contains("heartbeat stale"), "{}", inst.log());
}

#[test]
fn heartbeat_timeout_zero_disables_the_switch() {
    let inst = Instance::new("heartbeat_timeout = \"0\"", IDLE_JOB);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    // The daemon's own word that the switch is off: a "0" that fell back to the default
    // would show 300 here (waiting 5 minutes for an exit that must not come is no test).
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(inst.state.join("status.json")).unwrap()).unwrap();
    assert!(
        st["daemon"]["heartbeat_timeout_s"].is_null(),
        "{}",
        st["daemon"]
    );
    assert!(inst.status_json()["daemon"]["heartbeat_timeout_s"].is_null());
    let table = String::from_utf8_lossy(&inst.run(&["status"]).stdout).to_string();
    assert!(table.contains("switch off"), "{table}");
    std::thread::sleep(Duration::from_millis(2500)); // nothing to poll for: absence of an exit
    assert_eq!(inst.daemon_processes().len(), 1);
}

fn time_to_eof(shell: &str) -> Duration {
    let t = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(shell)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("sh");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let took = t.elapsed();
    child.wait().unwrap();
    assert!(out.contains("<<<robotmk_daemon:sep(0)>>>"), "{out}");
    checkmk::parse_ok(&out);
    took
}

#[test]
fn the_agent_sees_eof_when_ctrl_exits_not_when_the_daemon_does() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let base = format!("'{BIN}' --config '{}' ctrl", inst.config.display());
    // The first call starts the daemon: the pipe must not stay open with it.
    let t1 = time_to_eof(&format!("{base} | cat"));
    assert_eq!(inst.daemon_processes().len(), 1, "daemon keeps running");
    let t2 = time_to_eof(&format!("{base} 2>&1 | cat"));
    inst.run(&["stop"]);
    assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
    let t3 = time_to_eof(&format!("{base} 2>&1 | cat"));
    eprintln!("EOF after {t1:?} / {t2:?} / {t3:?}");
    for t in [t1, t2, t3] {
        assert!(t < Duration::from_secs(2), "EOF took {t:?}");
    }
    assert_eq!(inst.daemon_processes().len(), 1);
}

#[test]
fn broken_configs_are_reported_with_line_and_column_and_touch_nothing() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let pid = inst.ctrl_json()["daemon"]["pid"].as_u64().unwrap();
    let state_dir = format!("state_dir = \"{}\"\n", inst.state.display());
    let cases = [
        ("syntax error", format!("[daemon]\n{state_dir}instance = \"t\n"), 3, ""),
        ("unknown field", format!("[daemon]\n{state_dir}bogus = 1\n"), 3, "bogus"),
        (
            "bad duration",
            format!("[daemon]\n{state_dir}\n[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"5x\"\n"),
            7,
            "every",
        ),
        (
            "duplicate job",
            format!("[daemon]\n{state_dir}\n[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"5s\"\n[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"5s\"\n"),
            9,
            "duplicate",
        ),
    ];
    for (what, text, line, word) in cases {
        inst.write_raw_config(&text);
        let out = inst.run(&["check-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        let at = format!("{}:{line}:", inst.config.display());
        assert!(err.contains(&at), "{what}: expected {at} in {err}");
        assert!(err.contains(word), "{what}: expected {word} in {err}");

        let ctrl = inst.ctrl();
        assert!(ctrl.status.success(), "ctrl exits 0 with a config error");
        let text = String::from_utf8_lossy(&ctrl.stdout);
        let j = parse_section(&text);
        assert_eq!(j["ctrl"]["action"], "config_error", "{what}");
        assert!(
            j["config_error"].as_str().unwrap().contains(&at),
            "{what}: {j}"
        );
        let local = local_lines(&text);
        // The daemon runs on with its last good config: WARN, as the README says (issue 24).
        assert!(
            local[0]
                .starts_with("1 \"Robotmk t daemon\" - WARN - running the last good config from "),
            "{what}: {local:?}"
        );
        assert_eq!(inst.run(&["status"]).status.code(), Some(2), "{what}");
        assert_eq!(
            inst.daemon_processes(),
            vec![pid as u32],
            "{what}: daemon untouched"
        );
    }
}

/// From the moment an edit breaks the config, every ctrl says so (WARN: the daemon runs its
/// last good config). Before, the daemon published the edited file's stamp as soon as it saw
/// the edit, and its load's error only when the load came (its own thread: 0.1-0.3 s later,
/// seconds where users are looked up): in between ctrl's fast path vouched for the daemon's
/// old view as the config's, and 14-25 of 40 calls in a row said OK after the first had said
/// WARN.
#[test]
fn no_ctrl_says_ok_between_a_breaking_edit_and_the_daemons_load_of_it() {
    let inst = Instance::new("heartbeat_timeout = \"0\"", IDLE_JOB);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    // The daemon's view is settled (the fast path's), and its last status write a while ago,
    // as on a daemon that has been idle: the next write is not held back.
    assert!(inst.ctrl().status.success());
    let status = inst.state.join("status.json");
    assert!(wait_for(Duration::from_secs(20), || std::fs::metadata(
        &status
    )
    .and_then(|m| m.modified())
    .is_ok_and(|m| m
        .elapsed()
        .is_ok_and(|e| e > Duration::from_secs(1)))));
    let mut text = std::fs::read_to_string(&inst.config).unwrap();
    text.push_str("\n[[job]]\nname = \"bad name\"\ncommand = [\"true\"]\nevery = \"1h\"\n");
    std::fs::write(&inst.config, text).unwrap();
    // ctrl after ctrl until the daemon's status has the error, and a few more.
    let mut lines: Vec<String> = Vec::new();
    let mut after = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while after < 10 && std::time::Instant::now() < deadline {
        lines.push(local_lines(&String::from_utf8_lossy(&inst.ctrl().stdout))[0].clone());
        if !inst.status_json()["daemon"]["config_error"].is_null() {
            after += 1;
        }
    }
    assert_eq!(after, 10, "the daemon never published the error");
    let ok: Vec<&String> = lines.iter().filter(|l| l.starts_with("0 ")).collect();
    assert!(
        ok.is_empty(),
        "{} of {} calls after the edit said OK: {:?}",
        ok.len(),
        lines.len(),
        ok.first()
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("the config now has an error")),
        "{lines:?}"
    );
}

#[test]
fn stop_ends_the_daemon_and_frees_the_lock() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    assert_eq!(inst.run(&["status"]).status.code(), Some(0));
    let t = Instant::now();
    let out = inst.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    eprintln!("stop took {:?}", t.elapsed());
    assert!(inst.wait_daemon_gone(Duration::from_secs(2)));
    assert_eq!(inst.run(&["status"]).status.code(), Some(3));
    let out = inst.run(&["stop"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no daemon running"));
    // The lock is free: a new daemon can start.
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
}

#[test]
fn stop_now_ends_runs_in_flight_with_their_children() {
    let job = "[[job]]\nname = \"long\"\ncommand = [\"sh\", \"-c\", \"sleep 300 & sleep 300\"]\nevery = \"1s\"\ntimeout = \"10m\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", job);
    inst.ctrl_json();
    assert!(wait_for(Duration::from_secs(5), || !inst
        .records("long")
        .is_empty()
        && inst.records("long")[0]["pid"].is_u64()));
    let pgid = inst.records("long")[0]["pid"].as_u64().unwrap() as u32;
    assert!(wait_for(Duration::from_secs(2), || processes_of(
        &path_str(inst.dir.path())
    )
    .len()
        >= 4));
    // Polite stop waits for the run...
    let out = inst.run(&["stop", "--timeout", "1s"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "polite stop must wait for the run: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--now"));
    // ...--now ends it and its children.
    let out = inst.run(&["stop", "--now", "--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let group_gone = wait_for(Duration::from_secs(3), || !group_has_live_members(pgid));
    assert!(group_gone, "the run's process group outlived stop --now");
    let recs = inst.finished_records("long");
    assert_eq!(recs[0]["outcome"], "killed", "{recs:?}");
}

#[test]
fn two_instances_run_side_by_side_in_their_own_state_dirs() {
    let a = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let b = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let ja = a.ctrl_json();
    let jb = b.ctrl_json();
    assert_eq!(ja["ctrl"]["action"], "started");
    assert_eq!(jb["ctrl"]["action"], "started");
    assert_ne!(ja["daemon"]["pid"], jb["daemon"]["pid"]);
    assert_eq!(a.run(&["stop"]).status.code(), Some(0));
    assert!(a.wait_daemon_gone(Duration::from_secs(3)));
    assert_eq!(
        b.daemon_processes().len(),
        1,
        "stopping one instance leaves the other"
    );
    let mode = std::fs::metadata(&b.state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "state dir mode");
    let log_mode = std::fs::metadata(b.state.join("daemon.log"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(log_mode, 0o600, "log mode");
}

#[test]
fn a_binary_named_ctrl_acts_as_ctrl_without_arguments() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let link = inst.dir.path().join("robotmk_daemon_ctrl");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let out = Command::new(&link)
        .env("ROBOTMK_DAEMON_CONFIG", &inst.config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let j = parse_section(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(j["ctrl"]["action"], "started");
    // MK_CONFDIR is the agent's way: config found as $MK_CONFDIR/robotmk-daemon.toml, here a
    // link to the same file (a copy would be another config, whose ctrl is told the state
    // dir is taken: tests/other_instances.rs).
    std::os::unix::fs::symlink(&inst.config, inst.dir.path().join("robotmk-daemon.toml")).unwrap();
    let out = Command::new(&link)
        .env_remove("ROBOTMK_DAEMON_CONFIG")
        .env("MK_CONFDIR", inst.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let j = parse_section(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(j["ctrl"]["action"], "running", "{j}");
}

#[test]
fn run_flag_gone_makes_a_foreground_daemon_exit() {
    let inst = Instance::new("heartbeat_timeout = \"0\"", IDLE_JOB);
    let flag = inst.dir.path().join("robotmk.run");
    std::fs::write(&flag, b"").unwrap();
    let mut child = inst
        .cmd()
        .args(["start", "--foreground", "--run-flag"])
        .arg(&flag)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(5), || inst
        .daemon_pid()
        .is_some()));
    assert_eq!(
        inst.run(&["start"]).status.code(),
        Some(0),
        "start is a no-op when running"
    );
    std::fs::remove_file(&flag).unwrap();
    let t = Instant::now();
    let exited = wait_for(Duration::from_secs(3), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert!(
        exited,
        "daemon still running {:?} after its run flag vanished",
        t.elapsed()
    );
}

#[test]
fn daemons_started_at_once_leave_one_and_the_losers_say_why() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let mut children: Vec<_> = (0..5)
        .map(|_| {
            inst.cmd()
                .args(["start", "--foreground"])
                .stderr(Stdio::null())
                .spawn()
                .expect("start --foreground")
        })
        .collect();
    // Four lose the lock and exit 0 by themselves; one keeps running.
    let settled = wait_for(Duration::from_secs(5), || {
        children
            .iter_mut()
            .map(|c| c.try_wait())
            .filter(|r| matches!(r, Ok(Some(_))))
            .count()
            == 4
    });
    let mut losers_ok = 0;
    for c in children.iter_mut() {
        if let Ok(Some(status)) = c.try_wait() {
            if status.success() {
                losers_ok += 1;
            }
        }
    }
    let running: Vec<u32> = children
        .iter_mut()
        .filter_map(|c| matches!(c.try_wait(), Ok(None)).then(|| c.id()))
        .collect();
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(settled, "expected 4 of 5 daemons to give up");
    assert_eq!(losers_ok, 4, "losers exit 0");
    assert_eq!(running.len(), 1);
    assert_eq!(
        inst.log().matches("another daemon holds").count(),
        4,
        "{}",
        inst.log()
    );
}

#[test]
fn a_daemon_slow_to_start_is_not_launched_twice() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    std::fs::create_dir_all(&inst.state).unwrap();
    // As left by a ctrl whose daemon is still coming up (past ctrl's own 3 s wait).
    let marker = inst.state.join("starting");
    std::fs::write(&marker, b"").unwrap();
    let j = inst.ctrl_json();
    assert_eq!(j["ctrl"]["action"], "running", "{j}");
    assert!(
        j["ctrl"]["note"]
            .as_str()
            .unwrap()
            .contains("still starting"),
        "{j}"
    );
    assert!(
        inst.daemon_processes().is_empty(),
        "launched a second daemon"
    );
    // A launch that never reached its lock expires: the next ctrl launches again.
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&marker)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    assert!(
        !marker.exists(),
        "the daemon removes the marker once it holds its lock"
    );
}

/// A full disk is when an admin stops things (issue s11 D2): `stop --now` that cannot write
/// its request still ends the daemon and its run, by a signal that needs no disk.
#[test]
fn stop_now_ends_the_daemon_and_its_run_when_the_state_disk_is_full() {
    if !require_root("mounting a small tmpfs to fill the state dir's file system") {
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("rmkd-full-")
        .tempdir()
        .unwrap();
    let fs = root.path().join("fs");
    let tmpfs = Tmpfs::mount(&fs, "size=4m,nr_inodes=1000");
    let job = "[[job]]\nname = \"long\"\ncommand = [\"sh\", \"-c\", \"sleep 300 & sleep 300\"]\nevery = \"1s\"\ntimeout = \"10m\"\n";
    let mut inst = Instance::new("", "");
    inst.state = fs.join("state");
    inst.write_config("heartbeat_timeout = \"1m\"", job);
    let pid = inst.ctrl_json()["daemon"]["pid"]
        .as_u64()
        .expect("a daemon") as u32;
    assert!(
        wait_for(Duration::from_secs(5), || inst
            .records("long")
            .first()
            .is_some_and(|r| r["pid"].is_u64())),
        "the run never started"
    );
    let pgid = inst.records("long")[0]["pid"].as_u64().unwrap() as u32;
    let files = tmpfs.fill();
    assert!(
        std::fs::write(fs.join("state/probe"), b"x").is_err(),
        "the disk is not full"
    );
    let t = Instant::now();
    let out = inst.run(&["stop", "--now", "--timeout", "10s"]);
    eprintln!(
        "stop --now on a full disk ({files} files to fill it) took {:?}: {out:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot write the stop request") && err.contains("signalling the daemon"),
        "{err}"
    );
    assert!(
        inst.wait_daemon_gone(Duration::from_secs(3)),
        "the daemon (pid {pid}) outlived stop --now"
    );
    assert!(
        wait_for(Duration::from_secs(3), || !group_has_live_members(pgid)),
        "the run's process group outlived stop --now"
    );
    let log = inst.log();
    assert!(log.contains("stop --now requested (by signal"), "{log}");
}

/// W2 F5: a daemon started on a state disk already full (a reboot with a full /var) never
/// wrote its status, so `stop` knew no PID to signal and gave up: nobody but a `kill` by a
/// PID the admin had to find could end it. Now the daemon holding the config's lock with
/// this state dir is the one signalled, verified as any.
#[test]
fn stop_now_ends_a_daemon_started_on_a_full_disk_before_it_wrote_its_status() {
    if !require_root("mounting a small tmpfs to fill the state dir's file system") {
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("rmkd-full-")
        .tempdir()
        .unwrap();
    let fs = root.path().join("fs");
    let _tmpfs = Tmpfs::mount(&fs, "size=4m");
    let job = "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n";
    let mut inst = Instance::new("", "");
    inst.state = fs.join("state");
    inst.write_config("heartbeat_timeout = \"0\"", job);
    std::fs::create_dir(&inst.state).unwrap();
    std::fs::set_permissions(&inst.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Every byte taken, the inodes left: lock files can be made, no status written.
    {
        let mut f = std::fs::File::create(fs.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    }
    let _ = inst.ctrl();
    assert!(
        wait_for(Duration::from_secs(10), || !inst
            .daemon_processes()
            .is_empty()),
        "no daemon started"
    );
    assert!(
        !inst.state.join("status.json").exists(),
        "the daemon wrote its status on a full disk"
    );
    let out = inst.run(&["stop", "--now", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("signalling the daemon"), "{err}");
    assert!(
        inst.wait_daemon_gone(Duration::from_secs(5)),
        "the daemon outlived stop --now"
    );
}

/// A daemon that gives up at start-up says why on the daemon line of the ctrl that launched
/// it (issue s11 D7), and the next ctrl names that cause too: a hard descriptor limit of 12
/// leaves it none for its signal handlers.
#[test]
fn a_daemon_that_cannot_start_says_why_on_the_daemon_line() {
    use std::os::unix::process::CommandExt;
    let inst = Instance::new("heartbeat_timeout = \"1m\"", IDLE_JOB);
    let mut cmd = inst.cmd();
    cmd.arg("ctrl");
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 12,
                rlim_max: 12,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let t = Instant::now();
    let out = cmd.output().expect("ctrl");
    eprintln!("ctrl with 12 descriptors took {:?}", t.elapsed());
    assert!(out.status.success(), "{out:?}");
    let line = local_lines(&text(&out.stdout))
        .into_iter()
        .next()
        .expect("a daemon line");
    eprintln!("{line}");
    assert!(line.starts_with("2 \"Robotmk t daemon\""), "{line}");
    assert!(
        line.contains("cannot start the daemon") && line.contains("Too many open files"),
        "{line}"
    );
    // With the usual limit the next ctrl starts one, and says what ended the one before.
    let out = inst.ctrl();
    let line = local_lines(&text(&out.stdout))
        .into_iter()
        .next()
        .expect("a daemon line");
    eprintln!("{line}");
    assert!(
        line.contains("exited with code 1: ") && line.contains("Too many open files"),
        "{line}"
    );
}

/// Two configs with the same instance name and state dirs of their own, under systemd: the
/// unit is named by the instance (`robotmk-daemon-<instance>`), so the second config's launch
/// finds the first one's unit loaded. Its ctrl says so and names the other config (CRIT),
/// instead of "daemon not running" at every call with nothing started. systemd is stood in
/// for in a private mount namespace (`/run/systemd/system`, a `systemd-run` that keeps one
/// unit per name as systemd does, and the `systemctl show` it answers with).
#[test]
fn a_second_config_with_the_same_instance_name_is_told_under_systemd() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    let unshare = Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !require_tool(
        root && unshare,
        "root and unshare --mount (a stand-in systemd)",
    ) {
        return;
    }
    let a = Instance::new("", "");
    let b = Instance::new("", "");
    for i in [&a, &b] {
        i.write_raw_config(&format!(
            "[daemon]\ninstance = \"dup\"\nstate_dir = \"{}\"\nheartbeat_timeout = \"0\"\n\n\
             [[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
            i.state.display()
        ));
    }
    let fake = a.dir.path().join("fakebin");
    std::fs::create_dir(&fake).unwrap();
    let script = |name: &str, text: &str| {
        let p = fake.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "systemd-run",
        "#!/bin/sh\nunit=\nfor x in \"$@\"; do case $x in --unit=*) unit=${x#--unit=};; esac; done\n\
         while [ \"$1\" != -- ]; do shift; done; shift\nf=/run/fake-units/$unit; mkdir -p /run/fake-units\n\
         if [ -e $f ] && kill -0 $(cat $f) 2>/dev/null; then\n\
         echo \"Failed to start transient service unit: Unit $unit.service was already loaded or has a fragment file.\" >&2; exit 1; fi\n\
         setsid \"$@\" </dev/null >/dev/null 2>&1 & echo $! > $f\n",
    );
    script(
        "systemctl",
        "#!/bin/sh\nfor u; do :; done\ncat /run/fake-units/${u%.service} 2>/dev/null || echo 0\n",
    );
    let out_b = a.dir.path().join("ctrl-b.txt");
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && \
             PATH=\"$1:$PATH\" \"$2\" --config \"$3\" ctrl >/dev/null && \
             PATH=\"$1:$PATH\" \"$2\" --config \"$4\" ctrl > \"$5\" && \
             PATH=\"$1:$PATH\" \"$2\" --config \"$4\" ctrl > \"$5.2\"",
        )
        .arg("sh")
        .arg(&fake)
        .arg(BIN)
        .arg(&a.config)
        .arg(&b.config)
        .arg(&out_b)
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let out = std::fs::read_to_string(&out_b).unwrap();
    let line = local_lines(&out).first().cloned().unwrap_or_default();
    assert!(
        line.starts_with("2 \"Robotmk dup daemon\"")
            && line.contains("runs the daemon of another config")
            && line.contains(&a.config.display().to_string()),
        "{line}"
    );
    // The next ctrl says it again (a failed launch leaves no "still starting" mark behind).
    let again = std::fs::read_to_string(out_b.with_extension("txt.2")).unwrap();
    let line = local_lines(&again).first().cloned().unwrap_or_default();
    assert!(line.contains("runs the daemon of another config"), "{line}");
    assert!(a.daemon_pid().is_some(), "config a's daemon runs");
}
