//! The reaper loses no exit (issue 10): a burst of spawns, as when hundreds of jobs are due at
//! once, gets every exit reported; and in a subreaper it collects every orphan it inherits
//! without ever taking a runner's exit for one's (issue 19). In a test binary of its own: 2000 forks in the library's
//! unit tests would hold other tests' lock files open in the children for a moment.
#![cfg(unix)]

use robotmk_daemon::run::{RunSpec, Spawner};
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
