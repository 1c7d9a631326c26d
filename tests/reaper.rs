//! The reaper loses no exit (issue 10): a burst of spawns, as when hundreds of jobs are due at
//! once, gets every exit reported. In a test binary of its own: 2000 forks in the library's
//! unit tests would hold other tests' lock files open in the children for a moment.
#![cfg(unix)]

use robotmk_daemon::run::{spawn, RunSpec};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
            user: None,
        };
        spawn(spec, move |pid, _| {
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
