//! The reaper loses no exit (issue 10): a burst of spawns, as when hundreds of jobs are due at
//! once, gets every exit reported; and in a subreaper it collects every orphan it inherits
//! without ever taking a runner's exit for one's (issue 19). In a test binary of its own: 2000 forks in the library's
//! unit tests would hold other tests' lock files open in the children for a moment.
#![cfg(unix)]

use robotmk_daemon::service::run::{RunSpec, Spawner};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One spawner for this test binary, as a daemon has one: once it inherits orphans (the second
/// test), a child of another spawner's would be taken for one.
fn spawner() -> &'static Spawner {
    static SPAWNER: OnceLock<Spawner> = OnceLock::new();
    SPAWNER.get_or_init(|| Spawner::new().expect("a spawner"))
}

#[test]
fn every_exit_of_a_burst_of_spawns_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let n = 2000;
    for i in 0..n {
        let tx = tx.clone();
        let spec = RunSpec {
            argv: vec!["true".into()],
            env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
            working_dir: dir.path().to_path_buf(),
            stdout: dir.path().join(format!("out{i}")),
            stderr: dir.path().join(format!("err{i}")),
        };
        spawner()
            .spawn(spec, move |pid, _| {
                let _ = tx.send(pid);
            })
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(_) => got += 1,
            Err(_) => panic!("only {got} of {n} exits reported"),
        }
    }
}

/// The children of this process (every thread's) and their states.
fn children() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in list
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()?.to_string()))
                .unwrap_or_default();
            out.push((pid, state));
        }
    }
    out
}

/// Issue 19, finding 5: a subreaper (the daemon) collects every orphan it inherits, and never
/// takes a runner's exit for one's — also a runner that exits before its spawn has registered
/// it. Half the runners leave orphans behind (which come to this process when they end), all
/// exit with a code of their own.
#[test]
fn orphans_are_collected_and_no_runner_exit_is_taken_for_one() {
    spawner().become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let n = 400;
    let mut expected = std::collections::HashMap::new();
    for i in 0..n {
        let code = i % 100;
        let script = if i % 2 == 0 {
            format!("exit {code}")
        } else {
            format!("(sleep 0.05 &) ; (true &) ; exit {code}")
        };
        let tx = tx.clone();
        let spec = RunSpec {
            argv: vec!["sh".into(), "-c".into(), script],
            env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
            working_dir: dir.path().to_path_buf(),
            stdout: dir.path().join(format!("o{i}")),
            stderr: dir.path().join(format!("e{i}")),
        };
        let pid = spawner()
            .spawn(spec, move |pid, exit| {
                let _ = tx.send((pid, exit));
            })
            .unwrap();
        expected.insert(pid, code);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for got in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        let (pid, exit) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {got} of {n} exits reported"));
        let want = expected
            .remove(&pid)
            .expect("an exit of a runner of this test");
        assert_eq!(exit.code, Some(want), "runner {pid}: {exit:?}");
    }
    // Every orphan the runners left came to this process and was collected: no child is left,
    // not even a zombie (the other test's runners end within moments too).
    let ok = common_wait(Duration::from_secs(20), || children().is_empty());
    assert!(ok, "children left (pid, state): {:?}", children());
}

fn common_wait(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A user the removal below runs as (made once, shared by the runs of this test).
fn test_user() -> Option<(u32, u32)> {
    const USER: &str = "rmkd-spawner";
    let id = |flag: &str| -> Option<u32> {
        let out = std::process::Command::new("id")
            .args([flag, USER])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("root (to create a user) is required in CI");
        }
        eprintln!("SKIP: not root (to create the user a removal runs as)");
        return None;
    }
    if id("-u").is_none() {
        let out = std::process::Command::new("useradd")
            .args(["--system", "--no-create-home", "--home-dir", "/nonexistent"])
            .args(["--shell", "/usr/sbin/nologin", USER])
            .output()
            .expect("useradd");
        assert!(out.status.success() || id("-u").is_some(), "{out:?}");
    }
    id("-u").zip(id("-g"))
}

/// Issue 21: a child the daemon starts for itself is no run's orphan. A `user` job's folder is
/// removed by a child that took that user's rights; the daemon (a subreaper) ends runs all the
/// while, and each end looks for what the run left among the daemon's children. That child
/// was taken for such an orphan and killed ("ended without a report"), so a user's folder was
/// never removed while runs kept ending.
#[test]
fn a_daemon_helper_is_never_taken_for_a_runs_orphan() {
    use robotmk_daemon::service::sys::tree::{remove_tree, Budget, Removal, Rights};
    use std::os::unix::fs::lchown;
    let Some((uid, gid)) = test_user() else {
        return;
    };
    spawner().become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("runs");
    std::fs::create_dir(&run_dir).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Runs end one after the other, each looked at as the daemon does at a run's end.
    let ender = {
        let stop = stop.clone();
        let run_dir = run_dir.clone();
        std::thread::spawn(move || {
            let mut ended = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let (tx, rx) = std::sync::mpsc::channel();
                let spec = RunSpec {
                    argv: vec!["true".into()],
                    env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
                    working_dir: run_dir.clone(),
                    stdout: run_dir.join("out"),
                    stderr: run_dir.join("err"),
                };
                let pid = spawner()
                    .spawn(spec, move |_, _| {
                        let _ = tx.send(());
                    })
                    .unwrap();
                rx.recv_timeout(Duration::from_secs(30))
                    .expect("the runner's exit is reported");
                let tag = run_dir.display().to_string();
                if spawner().tree_alive(pid, &tag) {
                    spawner().kill_tree(pid, &tag);
                }
                ended += 1;
            }
            ended
        })
    };
    let mut errors = Vec::new();
    for round in 0..3 {
        let tree = dir.path().join(format!("users-folder-{round}"));
        std::fs::create_dir(&tree).unwrap();
        for i in 0..5_000 {
            let f = tree.join(format!("f{i}"));
            std::fs::write(&f, "x").unwrap();
            lchown(&f, Some(uid), Some(gid)).unwrap();
        }
        lchown(&tree, Some(uid), Some(gid)).unwrap();
        let mut budget = Budget::new(Duration::from_secs(120), u64::MAX);
        match remove_tree(&tree, Rights::Owner, &mut budget) {
            Ok(Removal::Gone) => {}
            other => errors.push(format!("round {round}: {other:?}")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let ended = ender.join().unwrap();
    assert!(ended > 0, "no run ended meanwhile");
    assert!(
        errors.is_empty(),
        "{} runs ended meanwhile; removals as the owner failed: {errors:#?}",
        ended
    );
}
