//! The daemon's file descriptors (`service::sys::descriptors`): it raises its soft limit to
//! the hard one at start and gives every runner the soft limit it was started with back; and
//! a daemon that runs out of them all the same loses no run: a run that could not get one is
//! recorded as an error naming the cause, a command job is never judged by an output.xml, and
//! ctrl's daemon line names the cause while it lasts. Real binary, limits set on the daemon's
//! process before it execs, polled with deadlines.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::Duration;

/// A `start --foreground` daemon of `inst` started with `soft`/`hard` descriptors; ended by
/// its PID (and reaped) when the guard goes, also on a panic.
struct Daemon(Child);

impl Daemon {
    fn start(inst: &Instance, soft: u64, hard: u64) -> Daemon {
        let mut cmd = inst.cmd();
        cmd.args(["start", "--foreground"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let d = Daemon(cmd.spawn().expect("start --foreground"));
        assert!(
            wait_for(Duration::from_secs(20), || inst.daemon_pid()
                == Some(d.0.id())),
            "the daemon did not start"
        );
        d
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The soft and hard limits on open files of a live process, from /proc.
fn nofile_of(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default()
        .to_string();
    let mut f = line["Max open files".len()..].split_whitespace();
    (
        f.next().unwrap_or_default().to_string(),
        f.next().unwrap_or_default().to_string(),
    )
}

fn stdout_of(rec: &Value) -> String {
    let dir = rec["run_dir"].as_str().unwrap_or_default();
    std::fs::read_to_string(std::path::Path::new(dir).join("stdout.log")).unwrap_or_default()
}

#[test]
fn the_daemon_raises_its_limit_and_a_runner_gets_the_one_the_daemon_was_started_with() {
    let inst = Instance::new(
        "heartbeat_timeout = \"10m\"",
        "[[job]]\nname = \"lim\"\ncommand = [\"sh\", \"-c\", \"echo soft=$(ulimit -Sn) hard=$(ulimit -Hn)\"]\nevery = \"1s\"\n",
    );
    let daemon = Daemon::start(&inst, 256, 4096);
    assert_eq!(
        nofile_of(daemon.0.id()),
        ("4096".to_string(), "4096".to_string()),
        "the daemon's soft limit was not raised to its hard one"
    );
    assert!(
        wait_for(Duration::from_secs(30), || inst
            .finished_records("lim")
            .iter()
            .any(|r| r["outcome"] == "success" && !stdout_of(r).is_empty())),
        "no run of lim: {:?}",
        inst.records("lim")
    );
    let rec = inst
        .finished_records("lim")
        .into_iter()
        .find(|r| r["outcome"] == "success")
        .unwrap();
    assert_eq!(stdout_of(&rec).trim(), "soft=256 hard=4096");
    let log = inst.log();
    assert!(
        log.contains("file descriptor limit raised from 256 to 4096"),
        "{log}"
    );
}

const LIMIT: u64 = 64;

/// A robot stand-in: writes a passed suite's output.xml where it is told.
const FAKE_ROBOT: &str = r#"#!/bin/sh
out=.
while [ $# -gt 0 ]; do case "$1" in --outputdir) out="$2"; shift;; esac; shift; done
cat > "$out/output.xml" <<X
<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Robot 7.0" generated="2026-12-06T00:00:00" rpa="false" schemaversion="5">
<suite id="s1" name="S"><test id="s1-t1" name="T"><status status="PASS" start="2026-12-06T00:00:00" elapsed="0.1"/></test>
<status status="PASS" start="2026-12-06T00:00:00" elapsed="0.1"/></suite>
<statistics><total><stat pass="1" fail="0" skip="0">All Tests</stat></total></statistics>
<errors/></robot>
X
"#;

fn robot_job(inst: &Instance) -> String {
    let robot = inst.dir.path().join("robot.sh");
    std::fs::write(&robot, FAKE_ROBOT).unwrap();
    std::fs::set_permissions(&robot, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let suite = inst.dir.path().join("suite");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(suite.join("a.robot"), "*** Test Cases ***\n").unwrap();
    format!(
        "[[job]]\nname = \"rob\"\nkind = \"robot\"\nsuite = \"{}\"\nrobot = \"{}\"\nevery = \"1s\"\ntimeout = \"10s\"\noverlap = \"allow\"\n",
        suite.display(),
        robot.display()
    )
}

fn daemon_line(inst: &Instance) -> String {
    let out = inst.ctrl();
    text(&out.stdout)
        .lines()
        .find(|l| l.contains("\"Robotmk t daemon\""))
        .unwrap_or_default()
        .to_string()
}

/// Every due time of `job` from its first to its last record has a record: none dropped.
fn gaps(inst: &Instance, job: &str) -> Vec<String> {
    let dues: BTreeSet<chrono::DateTime<chrono::Utc>> = inst
        .finished_records(job)
        .iter()
        .filter_map(|r| r["due"].as_str()?.parse().ok())
        .collect();
    let mut missing = Vec::new();
    for (a, b) in dues.iter().zip(dues.iter().skip(1)) {
        let mut t = *a + chrono::Duration::seconds(1);
        while t < *b {
            missing.push(t.to_rfc3339());
            t += chrono::Duration::seconds(1);
        }
    }
    missing
}

#[test]
fn a_daemon_out_of_descriptors_records_every_run_with_the_cause_and_recovers() {
    const WORDS: &str = "the daemon has no file descriptor left (limit 64)";
    let inst = Instance::new("", "");
    // Each run in flight holds a pidfd of the daemon's: while the flag is there, the runs
    // last, and ten jobs due every second fill the daemon's 64 descriptors within seconds.
    let flag = inst.dir.path().join("busy");
    std::fs::write(&flag, "").unwrap();
    let busy = (0..10)
        .map(|i| {
            format!(
                "[[job]]\nname = \"c{i}\"\ncommand = [\"sh\", \"-c\", \"test -e {} && exec sleep 15; exit 0\"]\nevery = \"1s\"\ntimeout = \"30s\"\noverlap = \"allow\"\n\n",
                flag.display()
            )
        })
        .chain((0..10).map(|i| format!("[[job]]\nname = \"q{i}\"\ncommand = [\"sleep\", \"2\"]\nevery = \"1s\"\ntimeout = \"30s\"\noverlap = \"allow\"\n\n")))
        .collect::<String>();
    let daemon_cfg = "heartbeat_timeout = \"10m\"\nmax_parallel = 0\nkeep_runs = 1000";
    inst.write_config(daemon_cfg, &format!("{busy}{}", robot_job(&inst)));
    // The hard limit as low as the soft one: raising it does not help, as when a daemon
    // has far more runs at once than its limit was made for.
    let daemon = Daemon::start(&inst, LIMIT, LIMIT);
    let commands = || (0..10).flat_map(|i| [format!("c{i}"), format!("q{i}")]);
    let jobs = || commands().chain(["rob".to_string()]);
    // Starved: the log (open already) says what failed, and results went unread.
    assert!(
        wait_for(Duration::from_secs(60), || inst
            .log()
            .matches("Too many open files")
            .count()
            >= 20
            && inst.finished_records("rob").iter().any(|r| r["note"]
                .as_str()
                .unwrap_or_default()
                .contains(WORDS))),
        "the daemon did not run out of descriptors: {} open",
        std::fs::read_dir(format!("/proc/{}/fd", daemon.0.id())).map_or(0, |d| d.count())
    );
    // The load goes: the runs in flight end within their 15 s, new ones at once.
    let eased = chrono::Utc::now();
    std::fs::remove_file(&flag).unwrap();
    let with_cause = || {
        jobs()
            .flat_map(|j| inst.finished_records(&j))
            .filter(|r| r["note"].as_str().unwrap_or_default().contains(WORDS))
            .collect::<Vec<_>>()
    };
    let succeeded_since = |job: &str, t: chrono::DateTime<chrono::Utc>| {
        inst.finished_records(job)
            .iter()
            .filter(|r| r["outcome"] == "success")
            .filter_map(|r| {
                r["due"]
                    .as_str()?
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .ok()
            })
            .filter(|d| *d > t)
            .count()
    };
    let recovered = eased + chrono::Duration::seconds(20);
    assert!(
        wait_for(Duration::from_secs(90), || jobs()
            .all(|j| succeeded_since(&j, recovered) >= 2)),
        "the runs did not succeed again: {:?}",
        jobs()
            .map(|j| (j.clone(), succeeded_since(&j, recovered)))
            .collect::<Vec<_>>()
    );
    // The runs that could not start (or whose result could not be read) are recorded as
    // errors naming the cause; a command job is never judged by an output.xml.
    let failed = with_cause();
    for r in &failed {
        eprintln!("{} {}: {}", r["job"], r["outcome"], r["note"]);
        assert_eq!(r["outcome"], "error", "{r}");
    }
    // (Which of the command jobs' runs met the shortage is up to timing: they start with
    // the two descriptors a spawn frees, and their records are retried until written.)
    let mut read_under_pressure = 0;
    for j in commands() {
        for r in inst.finished_records(&j) {
            let note = r["note"].as_str().unwrap_or_default();
            assert!(!note.contains("output.xml"), "{r}");
            read_under_pressure += usize::from(r["outcome"] == "success");
        }
    }
    assert!(read_under_pressure > 0);
    // Every due time is accounted for by a record of its own: none was dropped.
    for j in jobs() {
        let missing = gaps(&inst, &j);
        assert!(
            missing.is_empty(),
            "{j}: no record of the runs due at {missing:?}"
        );
    }
    let history = text(&inst.run(&["history", "rob", "-n", "1000"]).stdout);
    assert!(history.contains("error"), "{history}");
    // While it lasts (a minute after the last time), the daemon line names the cause: never
    // back to OK as if nothing had been lost.
    let line = daemon_line(&inst);
    eprintln!("{line}");
    assert!(line.starts_with("1 ") && line.contains(WORDS), "{line}");
}
