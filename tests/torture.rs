//! The torture suite (issue 6): racing ctrls, a crash storm with a reader in a tight loop, and
//! corrupt state. CI-sized by default; longer runs:
//!   ROBOTMK_TORTURE_KILLS=1000 ROBOTMK_TORTURE_ROUNDS=20 cargo test --release --test torture -- --nocapture
//! Each test prints its figures (kept in docs/RELIABILITY.md).
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every JSON file under `dir` (records, latest results, status).
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out
}

/// A thread that parses every result file it can find, continuously; counts torn documents.
struct Reader {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    torn: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(state: PathBuf) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let torn = Arc::new(AtomicU64::new(0));
        let (s, r, t) = (stop.clone(), reads.clone(), torn.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for f in json_files(&state) {
                    if let Ok(bytes) = std::fs::read(&f) {
                        r.fetch_add(1, Ordering::Relaxed);
                        if serde_json::from_slice::<Value>(&bytes).is_err() {
                            eprintln!("TORN: {}", f.display());
                            t.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        Reader {
            stop,
            reads,
            torn,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        (
            self.reads.load(Ordering::Relaxed),
            self.torn.load(Ordering::Relaxed),
        )
    }
}

/// A cheap deterministic pseudo-random sequence (no dependency, reproducible runs).
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn crash_storm_loses_nothing_and_runs_nothing_twice() {
    let kills_wanted = knob("ROBOTMK_TORTURE_KILLS", 100);
    let jobs = "[[job]]\nname = \"quick\"\ncommand = [\"sleep\", \"0.2\"]\nevery = \"1s\"\n\n\
                [[job]]\nname = \"overlapping\"\ncommand = [\"sleep\", \"1.5\"]\nevery = \"1s\"\noverlap = \"allow\"\ntimeout = \"5s\"\n\n\
                [[job]]\nname = \"timing-out\"\ncommand = [\"sh\", \"-c\", \"sleep 30 & sleep 30\"]\nevery = \"2s\"\ntimeout = \"1s\"\n";
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nmax_parallel = 0\nkeep_runs = 1000",
        jobs,
    );
    let reader = Reader::start(inst.state.clone());
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let t0 = Instant::now();
    let mut kills = 0;
    while kills < kills_wanted {
        let j = inst.ctrl_json();
        let Some(pid) = j["daemon"]["pid"].as_u64() else {
            continue;
        };
        match rng.next(10) {
            // During shutdown: a stop request, then the kill while it drains.
            0 => {
                let _ = std::fs::write(
                    inst.state.join("stop-request"),
                    br#"{"mode":"drain","requested":"2026-01-01T00:00:00Z"}"#,
                );
                // SAFETY: SIGTERM to the daemon this test started.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                std::thread::sleep(Duration::from_millis(rng.next(20)));
            }
            // Right after the start: recovery and the first runs' journal writes.
            1..=3 => std::thread::sleep(Duration::from_millis(rng.next(30))),
            // Anywhere in the schedule: runs starting, ending, timing out.
            _ => std::thread::sleep(Duration::from_millis(100 + rng.next(700))),
        }
        kill9(pid as u32);
        kills += 1;
    }
    let storm = t0.elapsed();
    // Let the last daemon finish the story, then stop it politely (it waits for its runs).
    inst.ctrl_json();
    std::thread::sleep(Duration::from_secs(1)); // a last regular run or two
    let out = inst.run(&["stop", "--timeout", "20s"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (reads, torn) = reader.finish();

    let mut records = 0;
    let mut by_outcome: HashMap<String, usize> = HashMap::new();
    for job in ["quick", "overlapping", "timing-out"] {
        let recs = inst.records(job);
        let dirs = std::fs::read_dir(inst.state.join("jobs").join(job).join("runs"))
            .unwrap()
            .count();
        assert_eq!(
            recs.len(),
            dirs,
            "{job}: a run folder without a readable record"
        );
        let mut dues = HashSet::new();
        for r in &recs {
            let outcome = r["outcome"]
                .as_str()
                .unwrap_or_else(|| panic!("{job}: run without outcome: {r}"));
            *by_outcome.entry(outcome.to_string()).or_default() += 1;
            assert!(
                dues.insert(r["due"].as_str().unwrap().to_string()),
                "{job}: due time run twice: {r}"
            );
        }
        records += recs.len();
    }
    // No runner outlives its timeout: nothing of this instance is left running.
    let left = processes_of(&path_str(inst.dir.path()));
    assert!(left.is_empty(), "processes left after the storm: {left:?}");
    eprintln!(
        "crash storm: {kills} kills in {storm:.1?}, {records} runs recorded {by_outcome:?}, duplicates 0, \
         runs without outcome 0, reader: {reads} reads, {torn} torn"
    );
    assert_eq!(torn, 0);
    assert!(
        records > kills as usize / 4,
        "too few runs recorded: {records}"
    );
}

#[test]
fn racing_ctrls_never_leave_two_daemons_or_none() {
    let rounds = knob("ROBOTMK_TORTURE_ROUNDS", 3);
    let per_round = knob("ROBOTMK_TORTURE_CTRLS", 200) as usize;
    let job = "[[job]]\nname = \"long\"\ncommand = [\"sleep\", \"2\"]\nevery = \"1s\"\ntimeout = \"10s\"\n";
    let inst = Arc::new(Instance::new("heartbeat_timeout = \"1m\"", job));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (inst, max_seen, stop) = (inst.clone(), max_seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                max_seen.fetch_max(inst.daemon_processes().len(), Ordering::Relaxed);
                samples += 1;
            }
            samples
        })
    };
    let mut total = 0;
    for round in 0..rounds {
        // Every other round races against a daemon that drains after a polite stop.
        let stopper = (round % 2 == 1).then(|| {
            let mut c = inst.cmd();
            c.args(["stop", "--timeout", "30s"])
                .stdout(std::process::Stdio::null());
            std::thread::spawn(move || c.output())
        });
        let barrier = Arc::new(std::sync::Barrier::new(per_round));
        let handles: Vec<_> = (0..per_round)
            .map(|_| {
                let mut c = inst.cmd();
                c.arg("ctrl").stdout(std::process::Stdio::null());
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    c.status().map(|s| s.success()).unwrap_or(false)
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap(), "a ctrl failed");
        }
        total += per_round;
        if let Some(s) = stopper {
            let _ = s.join();
        }
        // After the round: the next ctrl finds or starts exactly one.
        inst.ctrl_json();
        assert!(
            wait_for(Duration::from_secs(5), || inst.daemon_processes().len()
                == 1),
            "round {round}: {:?}",
            inst.daemon_processes()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let samples = monitor.join().unwrap();
    let max = max_seen.load(Ordering::Relaxed);
    eprintln!("racing ctrls: {rounds} rounds x {per_round} = {total} ctrls; {samples} samples, at most {max} daemon(s) at once");
    assert_eq!(max, 1, "two daemons of one instance were alive at once");
}

#[test]
fn corrupt_state_files_are_moved_aside_and_the_daemon_carries_on() {
    let job = "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", job);
    for _ in 0..4 {
        assert!(inst.run(&["run-once", "j"]).status.success());
    }
    let runs: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(inst.state.join("jobs/j/runs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    };
    // As after a power loss: empty, truncated, garbage, wrong version.
    let damage: [(&PathBuf, &[u8]); 4] = [
        (&runs[0], b""),
        (&runs[1], b"{\"version\":1,\"job\":\"j\",\"run_"),
        (&runs[2], b"\x00\xff\xfe garbage"),
        (&runs[3], b"{\"version\":99,\"job\":\"j\",\"run_id\":\"x\",\"due\":\"2026-01-01T00:00:00Z\",\"trigger\":\"schedule\",\"run_dir\":\"/x\",\"timeout_s\":1}"),
    ];
    for (dir, bytes) in damage {
        std::fs::write(dir.join("record.json"), bytes).unwrap();
    }
    std::fs::write(inst.state.join("jobs/j/latest.json"), b"{\"trunc").unwrap();
    std::fs::write(inst.state.join("status.json"), b"garbage").unwrap();
    std::fs::write(inst.state.join("heartbeat"), b"\x00\x01").unwrap();
    let j = inst.ctrl_json();
    assert_eq!(j["ctrl"]["action"], "started", "{j}");
    assert!(
        wait_for(Duration::from_secs(5), || inst.finished_records("j").len()
            >= 6),
        "the daemon does not carry on"
    );
    let log = inst.log();
    for dir in &runs {
        let name = dir.join("record.json").display().to_string();
        assert!(
            log.contains(&format!("corrupt run record {name}")),
            "no warning naming {name}:\n{log}"
        );
        let aside = std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("record.json.corrupt-")
        });
        assert!(aside, "{name} not moved aside");
    }
    assert!(log.contains("corrupt latest result"), "{log}");
    // The damaged runs are recorded again (interrupted, with a note), and latest is whole.
    let latest: Value =
        serde_json::from_slice(&std::fs::read(inst.state.join("jobs/j/latest.json")).unwrap())
            .unwrap();
    assert!(latest["outcome"].is_string());
    eprintln!("corrupt state: 4 records, 1 latest result, status and heartbeat damaged; all moved aside or rebuilt");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn bad_runners_are_handled_with_bounded_memory() {
    let jobs = "[[job]]\nname = \"flood\"\ncommand = [\"sh\", \"-c\", \"head -c 100000000 /dev/zero; head -c 1000000 /dev/urandom >&2\"]\nevery = \"1h\"\ntimeout = \"1m\"\n\n\
                [[job]]\nname = \"forker\"\ncommand = [\"sh\", \"-c\", \"i=0; while [ $i -lt 1000 ]; do sleep 60 & i=$((i+1)); done; wait\"]\nevery = \"1h\"\ntimeout = \"3s\"\n\n\
                [[job]]\nname = \"deaf\"\ncommand = [\"sh\", \"-c\", \"exec >&- 2>&- </dev/null; sleep 60\"]\nevery = \"1h\"\ntimeout = \"1s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nmax_parallel = 0", jobs);
    let pid = inst.ctrl_json()["daemon"]["pid"].as_u64().unwrap() as u32;
    let before = rss_kib(pid);
    // Make all three due now: fake a missed slot for each (the daemon catches up at once).
    for j in ["flood", "forker", "deaf"] {
        let runs = inst.state.join("jobs").join(j).join("runs");
        std::fs::create_dir_all(runs.join("20200101T000000Z-1")).unwrap();
        std::fs::write(
            runs.join("20200101T000000Z-1/record.json"),
            format!("{{\"version\":1,\"job\":\"{j}\",\"run_id\":\"20200101T000000Z-1\",\"due\":\"2020-01-01T00:00:00Z\",\"trigger\":\"schedule\",\"outcome\":\"success\",\"run_dir\":\"/x\",\"timeout_s\":1}}"),
        )
        .unwrap();
    }
    assert_eq!(inst.run(&["stop"]).status.code(), Some(0));
    assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
    let pid = inst.ctrl_json()["daemon"]["pid"].as_u64().unwrap() as u32;
    let mut peak = rss_kib(pid).max(before);
    let done = wait_for(Duration::from_secs(40), || {
        peak = peak.max(rss_kib(pid));
        ["flood", "forker", "deaf"].iter().all(|j| {
            inst.finished_records(j)
                .iter()
                .any(|r| r["trigger"] == "catch_up")
        })
    });
    assert!(done, "{}", inst.log());
    let rec = |j: &str| {
        inst.finished_records(j)
            .into_iter()
            .find(|r| r["trigger"] == "catch_up")
            .unwrap()
    };
    let flood = rec("flood");
    assert_eq!(flood["outcome"], "success");
    let rd = PathBuf::from(flood["run_dir"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(rd.join("stdout.log")).unwrap().len(),
        100_000_000
    );
    assert_eq!(
        std::fs::metadata(rd.join("stderr.log")).unwrap().len(),
        1_000_000
    );
    assert_eq!(rec("forker")["outcome"], "timeout");
    assert_eq!(rec("deaf")["outcome"], "timeout");
    let pgid = rec("forker")["pid"].as_u64().unwrap() as u32;
    assert!(
        wait_for(Duration::from_secs(5), || !group_has_live_members(pgid)),
        "children of the forker survived"
    );
    eprintln!("bad runners: 100 MB + 1 MB of garbage captured, 1000 children ended, a deaf runner ended; daemon RSS {before} KiB before, peak {peak} KiB");
    assert!(peak < 16 * 1024, "daemon RSS grew to {peak} KiB");
}

/// Unmounts the test's tmpfs when dropped (declared before the instance, so it drops after
/// the instance has ended its processes).
/// A tmpfs mounted at `at`, unmounted when dropped; then the temp folder it is in goes.
struct Mount {
    at: PathBuf,
    _folder: tempfile::TempDir,
}
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

/// An instance of `jobs` whose state dir is on a tmpfs of `size` of its own (mounted in a
/// temp folder that goes with the returned guard); `None` (a skip, a failure in CI) without
/// root.
fn on_small_tmpfs(size: &str, jobs: &str) -> Option<(Instance, PathBuf, Mount)> {
    let root = tempfile::Builder::new()
        .prefix("rmkd-fs-")
        .tempdir()
        .unwrap();
    let fs = root.path().join("fs");
    std::fs::create_dir(&fs).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(&fs)
        .status()
        .is_ok_and(|s| s.success());
    if !require_tool(mounted, "mounting a tmpfs (root)") {
        return None;
    }
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    inst.write_raw_config(&std::fs::read_to_string(&inst.config).unwrap().replace(
        &format!("state_dir = \"{}\"", inst.state.display()),
        &format!("state_dir = \"{}\"", fs.join("state").display()),
    ));
    let mount = Mount {
        at: fs.clone(),
        _folder: root,
    };
    Some((inst, fs, mount))
}

#[test]
fn a_full_disk_is_reported_and_recording_resumes_when_space_returns() {
    let job = "[[job]]\nname = \"j\"\ncommand = [\"sh\", \"-c\", \"echo some output; sleep 0.3\"]\nevery = \"1s\"\noverlap = \"allow\"\n";
    let Some((inst, fs, _mount)) = on_small_tmpfs("2m", job) else {
        return;
    };
    let state = fs.join("state");
    // Each run's folder name with its record.
    let records = |st: &Path| -> Vec<(String, Value)> {
        let runs = st.join("jobs/j/runs");
        std::fs::read_dir(runs)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let b = std::fs::read(e.path().join("record.json")).ok()?;
                        Some((e.file_name().to_string_lossy().into_owned(), b))
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .map(|(n, b)| {
                let v = serde_json::from_slice::<Value>(&b).expect("no record may be corrupt");
                (n, v)
            })
            .collect()
    };
    let pid = inst.ctrl_json()["daemon"]["pid"].as_u64().unwrap();
    assert!(wait_for(Duration::from_secs(5), || records(&state).len() >= 2));
    // Fill the disk and keep it full, as another writer on the same file system would: every
    // byte the daemon frees (a temporary file it gives up, a view it removes) is taken again, so
    // which of its writes fail does not depend on a few pages of slack.
    let filler = fs.join("filler");
    let full = Arc::new(AtomicBool::new(false));
    let stop_filling = Arc::new(AtomicBool::new(false));
    let filling = {
        let (full, stop) = (full.clone(), stop_filling.clone());
        let mut f = std::fs::File::create(&filler).unwrap();
        std::thread::spawn(move || {
            let chunk = vec![0u8; 4096];
            while !stop.load(Ordering::SeqCst) {
                if std::io::Write::write_all(&mut f, &chunk).is_err() {
                    full.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    assert!(wait_for(Duration::from_secs(5), || full.load(Ordering::SeqCst)));
    let mut line = String::new();
    let reported = wait_for(Duration::from_secs(10), || {
        let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
        line = local_lines(&out).first().cloned().unwrap_or_default();
        line.starts_with("2 ") && line.contains("No space left")
    });
    assert!(reported, "daemon line: {line}");
    // The run prepared before the disk filled still starts and ends (it takes 0.3 s); its final
    // record cannot be written yet. Wait until such a run exists: no outcome on disk, due more
    // than 1.5 s ago.
    let ended_unrecorded = || -> Vec<String> {
        let now = chrono::Utc::now();
        records(&state)
            .into_iter()
            .filter(|(_, r)| {
                r["outcome"].is_null()
                    && r["due"]
                        .as_str()
                        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                        .is_some_and(|d| now - d.to_utc() > chrono::TimeDelta::milliseconds(1500))
            })
            .map(|(n, _)| n)
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(6), || !ended_unrecorded().is_empty()),
        "no run ended while the disk was full: {:?}",
        records(&state)
    );
    let unwritten = ended_unrecorded();
    let stuck = records(&state).len();
    assert_eq!(
        inst.ctrl_json()["daemon"]["pid"].as_u64(),
        Some(pid),
        "no crash loop: same daemon"
    );
    // Space returns: recording resumes by itself and the error clears.
    stop_filling.store(true, Ordering::SeqCst);
    filling.join().unwrap();
    std::fs::remove_file(&filler).unwrap();
    let resumed = wait_for(Duration::from_secs(10), || {
        let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
        records(&state).len() > stuck + 1
            && local_lines(&out)
                .first()
                .is_some_and(|l| l.starts_with("0 "))
    });
    assert!(
        resumed,
        "recording did not resume: {} records",
        records(&state).len()
    );
    assert!(records(&state).iter().all(|(_, r)| r["version"] == 1));
    // The records that could not be written while the disk was full are written now.
    let still_open = || -> Vec<(String, Value)> {
        records(&state)
            .into_iter()
            .filter(|(n, r)| unwritten.contains(n) && r["outcome"].is_null())
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(3), || still_open().is_empty()),
        "runs that ended while the disk was full are still without outcome: {:?}",
        still_open()
    );
    eprintln!("full disk: reported as `{line}`; {} ended unrecorded, {stuck} records before, recording resumed after space returned; all records whole", unwritten.len());
}

#[test]
fn wall_clock_jumps_neither_kill_a_healthy_daemon_nor_keep_an_orphan_alive() {
    let job = "[[job]]\nname = \"idle\"\ncommand = [\"true\"]\nevery = \"1h\"\n";
    let inst = Instance::new("heartbeat_timeout = \"3s\"", job);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    let hb = inst.state.join("heartbeat");
    let set = |offset_s: i64| {
        let now = std::time::SystemTime::now();
        let t = if offset_s >= 0 {
            now + Duration::from_secs(offset_s as u64)
        } else {
            now - Duration::from_secs((-offset_s) as u64)
        };
        std::fs::File::options()
            .write(true)
            .open(&hb)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    // ctrls whose wall clock was set back an hour, then forward an hour, for longer than the
    // timeout: every change of the heartbeat is a beat, whatever time it shows.
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_secs(5) {
        set(if i % 2 == 0 { -3600 } else { 3600 + i });
        i += 1;
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            inst.daemon_processes().len(),
            1,
            "a healthy daemon exited after {:?}",
            t0.elapsed()
        );
    }
    // The agent falls silent with the heartbeat an hour in the future: still an orphan.
    let silent = Instant::now();
    assert!(
        inst.wait_daemon_gone(Duration::from_secs(3 + 2)),
        "orphan still alive {:?} after the last beat",
        silent.elapsed()
    );
    eprintln!("clock jumps: {i} beats at -1h/+1h kept the daemon alive for 5 s; it exited {:?} after they stopped (timeout 3 s)", silent.elapsed());
}

/// The state dir's file system turns read-only under a running daemon (as `errors=remount-ro`
/// does after a disk error): `status` still says the daemon runs — it cannot tell otherwise —
/// and `stop --now` still ends it (by signal: the request cannot be written). Before, the lock
/// probe opened the lock file for writing, failed, and `status` said "not running … ended
/// without stopping (a crash)" while `stop` could not stop it at all.
#[test]
fn a_state_dir_turned_read_only_still_shows_and_stops_its_daemon() {
    if !common::require_root("mounting a tmpfs and remounting it read-only") {
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("rmkd-ro-")
        .tempdir()
        .unwrap();
    let tmpfs = common::Tmpfs::mount(&root.path().join("fs"), "size=8m");
    let mut inst = Instance::new("", "");
    inst.state = tmpfs.0.join("state");
    inst.write_config(
        "",
        "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\ntimeout = \"5s\"\n",
    );
    assert!(inst.ctrl().status.success());
    let pid = inst.daemon_pid().expect("a daemon runs");
    // A read-only bind of the mount over itself: new opens for writing fail with EROFS.
    let bound = |args: &[&str]| {
        std::process::Command::new("mount")
            .args(args)
            .arg(&tmpfs.0)
            .arg(&tmpfs.0)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(bound(&["--bind"]));
    let ro = std::process::Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&tmpfs.0)
        .status()
        .is_ok_and(|s| s.success());
    let unbind = || {
        let _ = std::process::Command::new("umount").arg(&tmpfs.0).status();
    };
    if !ro {
        unbind();
        panic!("cannot remount {} read-only", tmpfs.0.display());
    }
    let status = inst.run(&["status"]);
    let said = text(&status.stdout);
    let stop = inst.run(&["stop", "--now", "--timeout", "10s"]);
    let stopped = wait_for(Duration::from_secs(10), || !pid_alive(pid));
    unbind();
    assert!(
        said.contains(&format!("daemon:     running, pid {pid}")),
        "status on a read-only state dir: {said}{}",
        text(&status.stderr)
    );
    assert_eq!(status.status.code(), Some(0), "{said}");
    assert!(stop.status.success(), "stop --now: {stop:?}");
    assert!(
        text(&stop.stderr).contains("Read-only file system"),
        "stop should say why it signalled: {stop:?}"
    );
    assert!(stopped, "the daemon {pid} still runs after stop --now");
}

/// W2 F3: final records a full disk kept in memory were dropped when the daemon stopped
/// before space returned (an admin's stop, an upgrade retiring it): the next daemon took
/// those runs, finished with success, for runs its predecessor died in, "interrupted". At
/// exit each is now written over its run's journal in place, in the blocks that file has.
#[test]
fn records_a_full_disk_held_back_are_written_at_a_stop() {
    let job = "[[job]]\nname = \"j\"\ncommand = [\"sh\", \"-c\", \"sleep 1\"]\nevery = \"2s\"\n";
    let Some((inst, fs, _mount)) = on_small_tmpfs("4m", job) else {
        return;
    };
    let runs = fs.join("state/jobs/j/runs");
    let records = || -> Vec<(PathBuf, Value)> {
        std::fs::read_dir(&runs)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let p = e.path().join("record.json");
                        let v = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
                        Some((p, v))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(inst.ctrl().status.success());
    assert!(
        wait_for(Duration::from_secs(10), || records()
            .iter()
            .any(|(_, r)| r["outcome"] == "success")),
        "no run recorded"
    );
    // Every byte taken (the inodes left).
    {
        let mut f = std::fs::File::create(fs.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    }
    // A run due 3 s ago (it takes 1 s) with no final record on disk: its journal, written
    // before the disk filled.
    let held_back = || -> Vec<PathBuf> {
        let now = chrono::Utc::now();
        records()
            .into_iter()
            .filter(|(_, r)| {
                r["outcome"].is_null()
                    && r["due"]
                        .as_str()
                        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                        .is_some_and(|t| now - t > chrono::Duration::milliseconds(3000))
            })
            .map(|(p, _)| p)
            .collect()
    };
    let mut kept = Vec::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            kept = held_back();
            !kept.is_empty()
        }),
        "no run ended while the disk was full"
    );
    let out = inst.run(&["stop", "--timeout", "20s"]);
    assert!(out.status.success(), "{out:?}");
    for p in &kept {
        let r: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        assert_eq!(r["outcome"], "success", "{}: {r}", p.display());
    }
}
