//! Every job on its own schedule, in parallel, each run bounded, recorded atomically, nothing
//! lost across crashes (issue 3). Real binary, real processes, real signals.
#![cfg(unix)]

mod common;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn due(r: &Value) -> DateTime<Utc> {
    r["due"].as_str().unwrap().parse().unwrap()
}

fn started(r: &Value) -> DateTime<Utc> {
    r["started"].as_str().unwrap().parse().unwrap()
}

/// Waits until each `(job, n)` has at least n finished records.
fn wait_records(inst: &Instance, timeout: Duration, want: &[(&str, usize)]) -> bool {
    wait_for(timeout, || {
        want.iter()
            .all(|(j, n)| inst.finished_records(j).len() >= *n)
    })
}

/// No due time of a job was started twice.
fn assert_unique_dues(inst: &Instance, job: &str) {
    let recs = inst.records(job);
    let dues: Vec<String> = recs
        .iter()
        .map(|r| r["due"].as_str().unwrap().to_string())
        .collect();
    let set: HashSet<&String> = dues.iter().collect();
    assert_eq!(
        set.len(),
        dues.len(),
        "{job}: a due time was run twice: {dues:?}"
    );
}

#[test]
fn two_jobs_run_in_parallel_on_their_own_aligned_schedules() {
    let jobs = "[[job]]\nname = \"one\"\ncommand = [\"sleep\", \"0.5\"]\nevery = \"1s\"\n\n\
                [[job]]\nname = \"two\"\ncommand = [\"sh\", \"-c\", \"echo out-$ROBOTMK_JOB; echo err >&2; sleep 0.5\"]\nevery = \"2s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    inst.ctrl_json();
    assert!(wait_records(
        &inst,
        Duration::from_secs(10),
        &[("one", 4), ("two", 2)]
    ));
    for (job, every) in [("one", 1), ("two", 2)] {
        let recs = inst.finished_records(job);
        for r in &recs {
            assert_eq!(r["outcome"], "success", "{r}");
            assert_eq!(due(r).timestamp() % every, 0, "{job}: due not aligned: {r}");
            assert_eq!(due(r).timestamp_subsec_millis(), 0);
            let late = (started(r) - due(r)).num_milliseconds();
            assert!(
                (0..500).contains(&late),
                "{job}: started {late} ms after due"
            );
            assert!(r["duration_s"].as_f64().unwrap() >= 0.5);
        }
        assert_unique_dues(&inst, job);
    }
    // Parallel: a run of "two" overlapped a run of "one" in time.
    let ones = inst.finished_records("one");
    let twos = inst.finished_records("two");
    let overlap = twos.iter().any(|t| {
        ones.iter().any(|o| {
            started(o) < started(t) + chrono::Duration::milliseconds(500)
                && started(t) < started(o) + chrono::Duration::milliseconds(500)
        })
    });
    assert!(overlap, "runs of different jobs never overlapped");
    // Output went to the run folder.
    let rd = twos[0]["run_dir"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("{rd}/stdout.log")).unwrap(),
        "out-two\n"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{rd}/stderr.log")).unwrap(),
        "err\n"
    );
    // status lists both with a next due time.
    let s = inst.status_json();
    assert_eq!(s["jobs"].as_array().unwrap().len(), 2);
    assert!(s["jobs"][0]["next_due"].is_string());
    // Run folders are prepared ahead of their due time; a stop removes those not yet due, so
    // every folder left holds a finished record.
    assert_eq!(inst.run(&["stop"]).status.code(), Some(0));
    for job in ["one", "two"] {
        let all = inst.records(job);
        assert!(
            all.iter().all(|r| !r["outcome"].is_null()),
            "{job}: unfinished records after stop: {all:?}"
        );
        let dirs = std::fs::read_dir(inst.state.join("jobs").join(job).join("runs"))
            .unwrap()
            .count();
        assert_eq!(dirs, all.len(), "{job}: a run folder without a record");
    }
}

/// Jobs due together are spawned on more than one thread (`app::daemon::runs::SPAWNERS`): each
/// run's record still names its own runner, and every runner starts at the daemon's own
/// priority, not that of a background thread (nice 10), which a child inherits from the
/// thread that spawns it.
#[test]
fn runs_due_together_each_record_their_own_runner_at_normal_priority() {
    const JOBS: usize = 24;
    let jobs: String = (0..JOBS)
        .map(|i| {
            format!(
                "[[job]]\nname = \"j{i:02}\"\ncommand = [\"sh\", \"-c\", \"echo $$ $(cut -d' ' -f19 /proc/$$/stat)\"]\nevery = \"2s\"\n"
            )
        })
        .collect();
    // No limit on runs in flight: every run due at one instant is one batch, spawned on two
    // threads (with the default of 4, batches of 4 are spawned one by one).
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nmax_parallel = 0", &jobs);
    inst.ctrl_json();
    let names: Vec<String> = (0..JOBS).map(|i| format!("j{i:02}")).collect();
    let want: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 2)).collect();
    assert!(wait_records(&inst, Duration::from_secs(20), &want));
    for job in &names {
        for r in inst.finished_records(job) {
            assert_eq!(r["outcome"], "success", "{r}");
            let rd = r["run_dir"].as_str().unwrap();
            let out = std::fs::read_to_string(format!("{rd}/stdout.log")).unwrap();
            let (pid, nice) = out.trim().split_once(' ').unwrap();
            assert_eq!(
                r["pid"].as_u64().map(|p| p.to_string()).as_deref(),
                Some(pid),
                "{job}: the record names another process than its runner: {r}"
            );
            assert_eq!(nice, "0", "{job}: the runner started at nice {nice}");
        }
    }
    // Due together: the first due time of every job is the same second.
    let firsts: HashSet<i64> = names
        .iter()
        .map(|j| due(&inst.finished_records(j)[0]).timestamp())
        .collect();
    assert!(firsts.len() <= 2, "not due together: {firsts:?}");
}

#[test]
fn overlap_skip_records_skipped_and_allow_runs_side_by_side() {
    let jobs = "[[job]]\nname = \"skipper\"\ncommand = [\"sleep\", \"2.5\"]\nevery = \"1s\"\noverlap = \"skip\"\ntimeout = \"10s\"\n\n\
                [[job]]\nname = \"allower\"\ncommand = [\"sleep\", \"2.5\"]\nevery = \"1s\"\noverlap = \"allow\"\ntimeout = \"10s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nmax_parallel = 0", jobs);
    inst.ctrl_json();
    let mut max_parallel_allow = 0;
    let ok = wait_for(Duration::from_secs(10), || {
        let s = inst.status_json();
        let running = s["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == "allower")
            .unwrap()["running"]
            .as_array()
            .unwrap()
            .len();
        max_parallel_allow = max_parallel_allow.max(running);
        let skipped = inst
            .finished_records("skipper")
            .iter()
            .filter(|r| r["outcome"] == "skipped")
            .count();
        max_parallel_allow >= 2 && skipped >= 2
    });
    assert!(
        ok,
        "allow reached {max_parallel_allow} parallel runs; skipper records: {:?}",
        inst.records("skipper")
    );
    // The status is written at most every 100 ms: it may trail the records on disk a little.
    let skipper = || {
        inst.status_json()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == "skipper")
            .unwrap()
            .clone()
    };
    assert!(
        wait_for(Duration::from_secs(3), || skipper()["skipped_total"]
            .as_u64()
            .unwrap()
            >= 2),
        "{}",
        skipper()
    );
    assert!(skipper()["running"].as_array().unwrap().len() <= 1);
    assert_unique_dues(&inst, "skipper");
    assert_unique_dues(&inst, "allower");
}

/// Descendants that leave the run's process group (`setsid`, a double fork, `setpgid`) are
/// still part of the run: a timeout ends them, and so does the end of a runner that left them
/// behind. Through run-once and through the scheduler.
#[test]
fn descendants_that_leave_the_process_group_do_not_escape() {
    let escape = "setsid sh -c 'echo $$ > $ROBOTMK_RUN_DIR/a.pid; exec sleep 3011' & \
                  ( setsid sh -c 'echo $$ > $ROBOTMK_RUN_DIR/b.pid; exec sleep 3012' & ) ; \
                  python3 -c 'import os,time; os.setpgid(0,0); open(os.environ[\"ROBOTMK_RUN_DIR\"]+\"/c.pid\",\"w\").write(str(os.getpid())); time.sleep(3013)' & ";
    let hang = format!("{escape} sleep 600");
    let leave =
        format!("{escape} while [ ! -s $ROBOTMK_RUN_DIR/c.pid ]; do sleep 0.05; done; exit 0");
    let jobs = format!(
        "[[job]]\nname = \"hang\"\ncommand = [\"sh\", \"-c\", {hang:?}]\nevery = \"1h\"\ntimeout = \"2s\"\n\n\
         [[job]]\nname = \"leave\"\ncommand = [\"sh\", \"-c\", {leave:?}]\nevery = \"1h\"\ntimeout = \"20s\"\n"
    );
    let inst = Instance::new("heartbeat_timeout = \"1m\"", &jobs);
    let escapees = |rec: &serde_json::Value| -> Vec<u32> {
        let rd = rec["run_dir"].as_str().unwrap().to_string();
        ["a", "b", "c"]
            .iter()
            .filter_map(|n| std::fs::read_to_string(format!("{rd}/{n}.pid")).ok())
            .filter_map(|p| p.trim().parse().ok())
            .collect()
    };
    let check = |job: &str, trigger_once: bool| {
        let recs = inst.finished_records(job);
        let rec = recs
            .iter()
            .rev()
            .find(|r| (r["trigger"] == "run_once") == trigger_once && r["outcome"] != "skipped")
            .unwrap_or_else(|| panic!("{job}: no run ({trigger_once}): {recs:?}"))
            .clone();
        let pids = escapees(&rec);
        assert_eq!(pids.len(), 3, "{job}: the escapees did not start: {rec}");
        assert!(
            wait_for(Duration::from_secs(5), || pids
                .iter()
                .all(|p| !pid_alive(*p))),
            "{job}: escaped descendants survived the run: {:?}",
            pids.iter().filter(|p| pid_alive(**p)).collect::<Vec<_>>()
        );
        rec
    };
    let out = inst.run(&["run-once", "hang"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let rec = check("hang", true);
    assert_eq!(rec["outcome"], "timeout");
    assert!(
        rec["note"].as_str().unwrap_or("").contains("timeout"),
        "{rec}"
    );
    let out = inst.run(&["run-once", "leave"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    check("leave", true);

    // The same through the daemon's scheduler.
    let jobs = jobs.replace("every = \"1h\"", "every = \"3s\"");
    inst.write_config("heartbeat_timeout = \"1m\"", &jobs);
    inst.ctrl_json();
    for job in ["hang", "leave"] {
        assert!(
            wait_for(Duration::from_secs(20), || inst
                .finished_records(job)
                .iter()
                .any(|r| r["trigger"] != "run_once" && r["outcome"] != "skipped")),
            "{job}: the daemon ran nothing"
        );
        let rec = check(job, false);
        if job == "hang" {
            assert_eq!(rec["outcome"], "timeout");
        }
        // The daemon, their subreaper, collected them: no zombie is left behind.
        let pids = escapees(&rec);
        assert!(
            wait_for(Duration::from_secs(5), || pids
                .iter()
                .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())),
            "{job}: escaped descendants left as zombies: {pids:?}"
        );
    }
}

#[test]
fn timeout_ends_the_runner_and_a_grandchild_that_ignores_sigterm() {
    // The grandchild ignores SIGTERM and lives on; only SIGKILL after stop_grace ends it.
    let job = "[[job]]\nname = \"hang\"\ncommand = [\"sh\", \"-c\", \"sh -c 'trap \\\"\\\" TERM; echo $$ > $ROBOTMK_RUN_DIR/gc.pid; sleep 600; sleep 600' & sleep 600\"]\nevery = \"1h\"\ntimeout = \"1s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", job);
    let out = inst.run(&["run-once", "hang"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "run-once exit code for a timeout: {out:?}"
    );
    let recs = inst.finished_records("hang");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["outcome"], "timeout");
    let rd = recs[0]["run_dir"].as_str().unwrap();
    let gc: u32 = std::fs::read_to_string(format!("{rd}/gc.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || !pid_alive(gc)),
        "grandchild {gc} survived"
    );

    // The same through the daemon's scheduler.
    let job = job.replace("every = \"1h\"", "every = \"2s\"");
    inst.write_config("heartbeat_timeout = \"1m\"", &job);
    inst.ctrl_json();
    let t = Instant::now();
    // The daemon's first run may be a catch-up (a 2s slot passed since run-once) or a
    // regular one; either way it is the scheduler's, not run-once's. A slot that came while
    // it was still in flight is recorded as skipped, maybe before it ends: not the one.
    let by_daemon = |r: &serde_json::Value| r["trigger"] != "run_once" && r["outcome"] != "skipped";
    assert!(wait_for(Duration::from_secs(10), || inst
        .finished_records("hang")
        .iter()
        .any(by_daemon)));
    let recs = inst.finished_records("hang");
    let r = recs
        .iter()
        .find(|r| by_daemon(r))
        .expect("a run started by the daemon");
    assert_eq!(r["outcome"], "timeout", "{r}");
    let d = r["duration_s"].as_f64().unwrap();
    assert!(
        (1.0..3.0).contains(&d),
        "timeout 1s took {d}s (+ 1s grace at most)"
    );
    let rd = r["run_dir"].as_str().unwrap();
    let gc: u32 = std::fs::read_to_string(format!("{rd}/gc.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || !pid_alive(gc)),
        "grandchild {gc} survived ({:?})",
        t.elapsed()
    );
    let pgid = r["pid"].as_u64().unwrap() as u32;
    assert!(wait_for(
        Duration::from_secs(3),
        || !group_has_live_members(pgid)
    ));
}

#[test]
fn missing_runner_is_an_error_and_other_jobs_go_on() {
    let jobs =
        "[[job]]\nname = \"broken\"\ncommand = [\"/nonexistent/runner\"]\nevery = \"1s\"\n\n\
                [[job]]\nname = \"fine\"\ncommand = [\"true\"]\nevery = \"1s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    inst.ctrl_json();
    assert!(wait_records(
        &inst,
        Duration::from_secs(6),
        &[("broken", 2), ("fine", 2)]
    ));
    let b = &inst.finished_records("broken")[0];
    assert_eq!(b["outcome"], "error");
    let note = b["note"].as_str().unwrap();
    assert!(
        note.contains("/nonexistent/runner") && note.contains("No such file"),
        "{note}"
    );
    assert!(inst
        .finished_records("fine")
        .iter()
        .all(|r| r["outcome"] == "success"));

    // A runner that exists but cannot be executed (its interpreter is missing) fails after
    // the fork: the error still reaches the record.
    let script = inst.dir.path().join("bad-interp.sh");
    std::fs::write(&script, "#!/nonexistent/interpreter\necho never\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let jobs = format!(
        "[[job]]\nname = \"interp\"\ncommand = [\"{}\"]\nevery = \"1h\"\n",
        script.display()
    );
    inst.write_config("heartbeat_timeout = \"1m\"", &jobs);
    let out = inst.run(&["run-once", "interp"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let r = &inst.finished_records("interp")[0];
    assert_eq!(r["outcome"], "error");
    assert!(r["note"].as_str().unwrap().contains("No such file"), "{r}");
    assert_eq!(inst.daemon_processes().len(), 1);
}

#[test]
fn kill_9_during_runs_then_the_next_daemon_finishes_the_story() {
    // Runs of 3 s every second with overlap skip: there is always one in flight.
    let jobs = "[[job]]\nname = \"slow\"\ncommand = [\"sleep\", \"3\"]\nevery = \"1s\"\ntimeout = \"20s\"\n\n\
                [[job]]\nname = \"quick\"\ncommand = [\"sleep\", \"0.3\"]\nevery = \"1s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    let mut killed = 0;
    for _ in 0..3 {
        inst.ctrl_json();
        assert!(wait_for(Duration::from_secs(5), || {
            inst.records("slow")
                .iter()
                .any(|r| r["outcome"].is_null() && r["pid"].is_u64())
        }));
        let pid = inst.daemon_pid().expect("daemon");
        kill9(pid);
        killed += 1;
    }
    let j = inst.ctrl_json();
    assert_eq!(j["ctrl"]["action"], "started");
    // Every run ends up with an outcome; the survivors were watched, the dead are interrupted.
    assert!(
        wait_for(Duration::from_secs(10), || {
            let recs = inst.records("slow");
            recs.iter().filter(|r| r["outcome"].is_null()).count() <= 1 // the current one
                && recs.iter().any(|r| r["note"].as_str().is_some_and(|n| n.contains("restarted")))
        }),
        "records: {:#?}",
        inst.records("slow")
    );
    assert!(inst.log().contains("adopting a run"), "{}", inst.log());
    for job in ["slow", "quick"] {
        assert_unique_dues(&inst, job);
    }
    eprintln!(
        "killed the daemon {killed} times; slow records: {}",
        inst.records("slow").len()
    );
}

#[test]
fn readers_never_see_a_torn_result_file() {
    let jobs =
        "[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"1s\"\noverlap = \"allow\"\n\n\
                [[job]]\nname = \"b\"\ncommand = [\"true\"]\nevery = \"1s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    inst.ctrl_json();
    let files = [
        inst.state.join("jobs/a/latest.json"),
        inst.state.join("jobs/b/latest.json"),
        inst.state.join("status.json"),
    ];
    let (mut reads, mut torn) = (0u64, 0u64);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        for f in &files {
            if let Ok(bytes) = std::fs::read(f) {
                reads += 1;
                if serde_json::from_slice::<Value>(&bytes).is_err() {
                    torn += 1;
                }
            }
        }
    }
    eprintln!(
        "{reads} reads, {torn} torn, {} results written",
        inst.finished_records("a").len()
    );
    assert!(inst.finished_records("a").len() >= 3);
    assert_eq!(torn, 0);
}

#[test]
fn a_broken_config_edit_keeps_the_old_jobs_running_and_shows_the_error() {
    let jobs = "[[job]]\nname = \"keep\"\ncommand = [\"true\"]\nevery = \"1s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    let pid = inst.ctrl_json()["daemon"]["pid"].as_u64().unwrap();
    assert!(wait_for(Duration::from_secs(4), || !inst
        .finished_records("keep")
        .is_empty()));
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!("{jobs}every = \"oops\"\n"),
    );
    assert!(wait_for(Duration::from_secs(4), || inst.status_json()
        ["daemon"]["config_error"]
        .is_string()));
    let before = inst.finished_records("keep").len();
    assert!(
        wait_for(Duration::from_secs(4), || inst
            .finished_records("keep")
            .len()
            >= before + 2),
        "old jobs stopped"
    );
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    let j = parse_section(&out);
    assert_eq!(j["ctrl"]["action"], "config_error");
    assert_eq!(j["daemon"]["pid"].as_u64(), Some(pid));
    // WARN: the daemon runs on with its last good config (issue 24).
    assert!(
        local_lines(&out)[0].starts_with("1 ")
            && local_lines(&out)[0].contains("running the last good config from "),
        "{out}"
    );

    // A valid edit is applied: a new job appears, the old one goes on.
    let both = format!("{jobs}\n[[job]]\nname = \"new\"\ncommand = [\"true\"]\nevery = \"1s\"\n");
    inst.write_config("heartbeat_timeout = \"1m\"", &both);
    assert!(wait_for(Duration::from_secs(5), || !inst
        .finished_records("new")
        .is_empty()));
    assert!(inst.status_json()["daemon"]["config_error"].is_null());
    assert_eq!(inst.daemon_pid(), Some(pid as u32));
}

#[test]
fn max_parallel_queues_due_runs_and_starts_them_as_slots_free() {
    // Four jobs due at the very same instants (every 4 s, aligned to the clock), each running
    // 1.5 s: without the limit all four overlap; with max_parallel = 2, two run and two wait
    // for a free slot.
    let mut jobs = String::new();
    for i in 0..4 {
        jobs.push_str(&format!(
            "[[job]]\nname = \"j{i}\"\ncommand = [\"sleep\", \"1.5\"]\nevery = \"4s\"\n\n"
        ));
    }
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nmax_parallel = 2", &jobs);
    inst.ctrl_json();
    // One due time that all four ran for.
    let common_due = || -> Option<String> {
        let per_job: Vec<Vec<String>> = (0..4)
            .map(|i| {
                inst.finished_records(&format!("j{i}"))
                    .iter()
                    .filter(|r| r["trigger"] == "schedule")
                    .filter_map(|r| r["due"].as_str().map(str::to_string))
                    .collect()
            })
            .collect();
        per_job[0]
            .iter()
            .find(|d| per_job.iter().all(|p| p.contains(d)))
            .cloned()
    };
    assert!(
        wait_for(Duration::from_secs(20), || common_due().is_some()),
        "no due time run by all four jobs"
    );
    let due = common_due().unwrap();
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = (0..4)
        .flat_map(|i| inst.finished_records(&format!("j{i}")))
        .filter(|r| r["due"] == due.as_str())
        .map(|r| {
            (
                started(&r),
                r["finished"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    spans.sort();
    assert_eq!(spans.len(), 4, "{spans:?}");
    let mut most = 0;
    for (s, _) in &spans {
        let concurrent = spans.iter().filter(|(a, b)| a <= s && s < b).count();
        most = most.max(concurrent);
    }
    assert_eq!(most, 2, "runs in flight at once (limit 2): {spans:?}");
    // The two that waited started only when a slot was free, about 1.5 s after the due time.
    let due: DateTime<Utc> = due.parse().unwrap();
    let late = spans
        .iter()
        .filter(|(s, _)| (*s - due).num_milliseconds() >= 1000)
        .count();
    assert_eq!(late, 2, "queued runs: {spans:?}");
}

#[test]
fn catch_up_once_runs_a_missed_slot_soon_after_start_and_skip_does_not() {
    let jobs = "[[job]]\nname = \"once\"\ncommand = [\"true\"]\nevery = \"1h\"\n\n\
                [[job]]\nname = \"skip\"\ncommand = [\"true\"]\nevery = \"1h\"\ncatch_up = \"skip\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    for j in ["once", "skip"] {
        assert!(inst.run(&["run-once", j]).status.success());
        let runs = inst.state.join(format!("jobs/{j}/runs"));
        for e in std::fs::read_dir(&runs).unwrap().flatten() {
            std::fs::rename(e.path(), e.path().with_file_name("20200101T000000Z-1")).unwrap();
        }
    }
    inst.ctrl_json();
    assert!(wait_for(Duration::from_secs(15), || inst
        .finished_records("once")
        .len()
        == 2));
    let r = inst.finished_records("once").pop().unwrap();
    assert_eq!(r["trigger"], "catch_up");
    assert_eq!(due(&r).timestamp() % 3600, 0);
    std::thread::sleep(Duration::from_millis(500)); // "skip" must stay at one record: absence
    assert_eq!(inst.finished_records("skip").len(), 1);
}

#[test]
fn a_run_spawned_but_not_journalled_is_found_and_bounded() {
    use std::os::unix::process::CommandExt;
    // As if the previous daemon died between the spawn and journalling the PID: a journal
    // without PID, and a runner (in its own group) carrying the run folder in its environment.
    let job =
        "[[job]]\nname = \"j\"\ncommand = [\"sleep\", \"60\"]\nevery = \"1h\"\ntimeout = \"2s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", job);
    let due = Utc::now() - chrono::Duration::seconds(1);
    let id = format!("{}-1", due.format("%Y%m%dT%H%M%SZ"));
    let run_dir = inst.state.join("jobs/j/runs").join(&id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let journal = serde_json::json!({
        "version": 1, "job": "j", "run_id": id, "due": due.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "trigger": "schedule", "run_dir": run_dir, "timeout_s": 2.0
    });
    std::fs::write(run_dir.join("record.json"), journal.to_string()).unwrap();
    let mut orphan = std::process::Command::new("sleep")
        .arg("60")
        .env("ROBOTMK_RUN_DIR", &run_dir)
        .process_group(0)
        .spawn()
        .unwrap();
    let opid = orphan.id();
    inst.ctrl_json();
    let ended = wait_for(Duration::from_secs(8), || {
        matches!(orphan.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = orphan.kill();
    }
    let _ = orphan.wait();
    assert!(
        ended,
        "the unjournalled runner {opid} outlived its timeout: {}",
        inst.log()
    );
    assert!(inst.log().contains("did not journal"), "{}", inst.log());
    let find = || {
        inst.finished_records("j")
            .into_iter()
            .find(|r| r["run_id"] == id.as_str())
    };
    // The daemon sees an adopted run end at its next once-a-second look.
    assert!(
        wait_for(Duration::from_secs(3), || find().is_some()),
        "{:?}",
        inst.records("j")
    );
    let rec = find().unwrap();
    assert_eq!(rec["outcome"], "timeout", "{rec}");
    assert_eq!(rec["pid"].as_u64(), Some(opid as u64));
}

/// Finishing a run (reading a 200 MB output.xml takes seconds in a debug build) happens off
/// the loop: a job due every second meanwhile starts on time.
#[test]
fn a_huge_result_does_not_delay_other_jobs() {
    // Every tick kept: on a busy machine the big read outlasts the default keep_runs (20) of
    // ticks, and a count capped by pruning would never grow.
    let daemon_cfg = "heartbeat_timeout = \"1m\"\nkeep_runs = 100000";
    let inst = Instance::new(daemon_cfg, "");
    let big = inst.dir.path().join("big.xml");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let msg = "y".repeat(10_000);
        write!(f, "<robot><suite name=\"Big\">").unwrap();
        for _ in 0..10_000 {
            writeln!(f, "<test name=\"t\"><kw name=\"Log\"><msg level=\"INFO\">{msg}</msg><status status=\"PASS\"/></kw><status status=\"FAIL\">{msg}</status></test>").unwrap();
        }
        write!(f, "<status status=\"FAIL\"/></suite><statistics><total><stat pass=\"0\" fail=\"10000\" skip=\"0\">All Tests</stat></total></statistics></robot>").unwrap();
    }
    let jobs = format!(
        "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n\n\
         [[job]]\nname = \"big\"\ncommand = [\"ln\", \"{}\", \"{{run_dir}}/output.xml\"]\nevery = \"1h\"\n",
        big.display()
    );
    inst.write_config(daemon_cfg, &jobs);
    inst.ctrl_json();
    assert!(wait_for(Duration::from_secs(10), || inst
        .finished_records("tick")
        .len()
        >= 2));
    let t = Instant::now();
    let out = inst.run(&["run-once", "big"]);
    let took = t.elapsed();
    let big_rec = &inst.finished_records("big")[0];
    assert_eq!(big_rec["tests"]["failed"], 10_000, "{out:?}");
    // A few more ticks after the big one was read.
    let n = inst.finished_records("tick").len();
    assert!(wait_for(Duration::from_secs(5), || inst
        .finished_records("tick")
        .len()
        >= n + 2));
    let ticks: Vec<serde_json::Value> = inst
        .finished_records("tick")
        .into_iter()
        .filter(|r| r["trigger"] == "schedule")
        .collect();
    let worst = ticks
        .iter()
        .map(|r| (started(r) - due(r)).num_milliseconds())
        .max()
        .unwrap();
    // A loop blocked past a due time runs only the latest slot when it wakes: the others are
    // missing, so every second must be there.
    let mut dues: Vec<i64> = ticks.iter().map(|r| due(r).timestamp()).collect();
    dues.sort();
    let gaps: Vec<i64> = dues
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g != 1)
        .collect();
    eprintln!("run-once of the 200 MB result took {took:?}; worst tick lateness {worst} ms; gaps {gaps:?}");
    assert!(
        worst < 1000,
        "a tick started {worst} ms late while a result was read"
    );
    assert!(
        gaps.is_empty(),
        "due times missed while a result was read: {dues:?}"
    );
}

/// The line of the service `name` in ctrl's output, ctrl run on the fake clock whose offset
/// is in the file `offset`. ctrl starts the daemon (which inherits the fake clock) and its
/// beat wakes it for a look. Monotonic time stays real, as in a real jump.
fn line_on_fake_clock(
    inst: &Instance,
    lib: &std::path::Path,
    offset: &std::path::Path,
    name: &str,
) -> String {
    let out = inst
        .cmd()
        .arg("ctrl")
        .env("LD_PRELOAD", lib)
        .env("FAKETIME_TIMESTAMP_FILE", offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .unwrap();
    let name = format!("\"{name}\"");
    text(&out.stdout)
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_default()
        .to_string()
}

/// A wall clock set back (NTP correcting a clock that ran ahead, a VM restored) stops every
/// job until the clock is past the latest due time run again, since no due time runs twice:
/// the daemon line says so (WARN) instead of an hour of silence behind an OK, and clears
/// once the clock is past. Set forward, the slots it skipped are recorded as skipped for
/// that reason, not blamed on overload. The daemon's clock is moved with libfaketime (the machine's is not
/// the test's to set); monotonic time stays real, as in a real jump.
#[test]
fn a_wall_clock_set_back_is_named_on_the_daemon_line_until_it_passes() {
    let Some(lib) = faketime() else {
        return;
    };
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"",
        "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"2s\"\n",
    );
    let offset = inst.dir.path().join("faketime");
    std::fs::write(&offset, "+0").unwrap();
    let daemon_line = || line_on_fake_clock(&inst, lib, &offset, "Robotmk t daemon");
    assert!(daemon_line().starts_with("0 "));
    assert!(wait_for(Duration::from_secs(20), || inst
        .finished_records("tick")
        .len()
        >= 2));
    std::fs::write(&offset, "-1h").unwrap();
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            line = daemon_line();
            line.starts_with("1 ")
        }),
        "{line}"
    );
    assert!(
        line.contains("the wall clock was set back behind the latest due time taken"),
        "{line}"
    );
    std::fs::write(&offset, "+0").unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || {
            line = daemon_line();
            line.starts_with("0 ")
        }),
        "{line}"
    );
    // Set forward an hour: the slots in between are one skipped record that says why, and
    // no sign of overload (the daemon line stays OK).
    std::fs::write(&offset, "+1h").unwrap();
    let forward = || {
        inst.records("tick").into_iter().any(|r| {
            r["outcome"] == "skipped"
                && r["note"]
                    .as_str()
                    .unwrap_or("")
                    .contains("the wall clock was set forward by")
        })
    };
    assert!(
        wait_for(Duration::from_secs(20), forward),
        "{:?}",
        inst.records("tick")
    );
    line = daemon_line();
    assert!(line.starts_with("0 "), "{line}");
    assert_unique_dues(&inst, "tick");
    assert!(inst.run(&["stop", "--now"]).status.success());
}

/// The daemon settings and the job of the tests of a result from the future: a job every 2 s
/// whose result goes stale within seconds once no due run reports.
const STALE_DAEMON: &str = "heartbeat_timeout = \"0\"\nstale_margin = \"1s\"";
const TICK: &str =
    "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"2s\"\ntimeout = \"1s\"\n";

/// Runs job `tick` of `inst` with the clock (libfaketime's `offset` file) a year ahead until
/// it has two results, then sets the clock back: the job's latest result lies in the future.
/// The daemon's timer is armed on the kernel's real clock, a year off: each ctrl's beat
/// (`job_line`) wakes it for a look, at which it runs what is due.
fn two_results_from_the_future(
    inst: &Instance,
    offset: &std::path::Path,
    job_line: &dyn Fn() -> String,
) {
    std::fs::write(offset, "+365d").unwrap();
    assert!(wait_for_every(
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            job_line();
            inst.finished_records("tick").len() >= 2
        }
    ));
    std::fs::write(offset, "+0").unwrap();
}

/// [`two_results_from_the_future`], then the job's line once it is CRIT (stale: two due runs
/// have not reported since the step was seen).
fn crit_from_the_future(
    inst: &Instance,
    offset: &std::path::Path,
    job_line: &dyn Fn() -> String,
) -> String {
    two_results_from_the_future(inst, offset, job_line);
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(40), || {
            line = job_line();
            line.starts_with("2 ")
        }),
        "{line}"
    );
    line
}

/// F5 (t6): the clock ran a year ahead (a bad RTC at boot, a `date -s` typo) while the daemon
/// ran, then was set back. No run starts until the clock passes the latest due time taken (a
/// due time never runs twice), so the job's result is from the future: its check must not
/// say "OK - last run 0s ago" for a year, but name the time and the step, and go stale like
/// any job whose due runs do not report, counted from when the daemon noticed the step.
#[test]
fn a_result_from_the_future_goes_stale_after_the_clock_is_set_back() {
    let Some(lib) = faketime() else {
        return;
    };
    let inst = Instance::new(STALE_DAEMON, TICK);
    let offset = inst.dir.path().join("faketime");
    let job_line = || line_on_fake_clock(&inst, lib, &offset, "Robotmk t tick");
    two_results_from_the_future(&inst, &offset, &job_line);
    // Seen at once: not "0s ago", the time it lies in the future and why.
    let mut line = job_line();
    assert!(!line.contains(" 0s ago"), "{line}");
    // Then stale: WARN after the interval, the timeout and the margin, CRIT one more
    // interval later (about 7 s here), not a year.
    let mut states = Vec::new();
    assert!(
        wait_for(Duration::from_secs(40), || {
            line = job_line();
            states.push(line.chars().next().unwrap_or('?'));
            line.starts_with("2 ")
        }),
        "{line}"
    );
    assert!(
        line.contains("which lies in the future (the wall clock was set back)")
            && line.contains("result stale: two due runs have not reported"),
        "{line}"
    );
    // WARN came first (one due run missed), then CRIT.
    assert!(states.contains(&'1'), "{states:?}");
    assert!(inst.run(&["stop", "--now"]).status.success());
}

/// F8: once a result from the future has gone stale (the clock ran ahead, then was set back),
/// it stays stale however the instance is looked at while the clock is still behind: by ctrl
/// with no daemon to start (the full path, from the config and the status left), by the next
/// daemon after a restart (which takes over when the clock was seen behind rather than count
/// from its own start; so does a `run-once` in between), and after that daemon reloads its
/// config.
#[test]
fn a_result_from_the_future_stays_stale_across_a_restart_a_reload_and_ctrl_alone() {
    let Some(lib) = faketime() else {
        return;
    };
    let (daemon, tick) = (STALE_DAEMON, TICK);
    let inst = Instance::new(daemon, tick);
    let offset = inst.dir.path().join("faketime");
    let job_line = || line_on_fake_clock(&inst, lib, &offset, "Robotmk t tick");
    crit_from_the_future(&inst, &offset, &job_line);
    assert!(inst.run(&["stop", "--now"]).status.success());
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
    let mut line;
    // A `run-once` of another job with no daemon holds the instance and writes the status:
    // it passes the count on too.
    inst.write_config(
        daemon,
        &format!("{tick}[[job]]\nname = \"other\"\ncommand = [\"true\"]\nevery = \"1h\"\n"),
    );
    let once = inst.run(&["run-once", "other"]);
    assert!(once.status.success(), "{once:?}");
    // ctrl alone: a job of a user that is not there keeps any daemon from starting.
    inst.write_config(
        daemon,
        &format!("{tick}[[job]]\nname = \"nobody\"\ncommand = [\"true\"]\nevery = \"1h\"\nuser = \"no-such-user-rmkd\"\n"),
    );
    line = job_line();
    // The daemon that refused the config may still be on its way out.
    assert!(wait_for(Duration::from_secs(10), || inst
        .daemon_processes()
        .is_empty()));
    assert!(line.starts_with("2 "), "ctrl with no daemon: {line}");
    // The next daemon, started by this ctrl on the clock still behind.
    inst.write_config(daemon, tick);
    line = job_line();
    assert_eq!(inst.daemon_processes().len(), 1);
    assert!(line.starts_with("2 "), "after a restart: {line}");
    assert!(
        line.contains("which lies in the future (the wall clock was set back)"),
        "{line}"
    );
    // A reload: another job added, seen in the status once applied.
    inst.write_config(
        daemon,
        &format!("{tick}[[job]]\nname = \"other\"\ncommand = [\"true\"]\nevery = \"1h\"\n"),
    );
    assert!(wait_for(Duration::from_secs(20), || {
        line = job_line();
        inst.status_json()["jobs"]
            .as_array()
            .is_some_and(|j| j.iter().any(|j| j["name"] == "other"))
    }));
    line = job_line();
    assert!(line.starts_with("2 "), "after a reload: {line}");
    assert!(inst.run(&["stop", "--now"]).status.success());
}

/// V3 F2/F4: the clock set back a second time, with the daemon running and across a stop and
/// start, must not turn a stale result from the future fresh again: the time already seen
/// behind is kept (the status and the view written before the step lie ahead of the clock
/// now, and are counted back with it).
#[test]
fn a_second_step_back_keeps_a_stale_result_from_the_future_stale() {
    let Some(lib) = faketime() else {
        return;
    };
    let inst = Instance::new(STALE_DAEMON, TICK);
    let offset = inst.dir.path().join("faketime");
    let job_line = || line_on_fake_clock(&inst, lib, &offset, "Robotmk t tick");
    let mut line = crit_from_the_future(&inst, &offset, &job_line);
    // Two hours further back, the daemon running. A real step wakes the daemon at once
    // (its timer is cancelled by the step); libfaketime's does not, so the daemon sees it at
    // the look the next ctrl's beat wakes it for, and writes its status again then.
    std::fs::write(&offset, "-2h").unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || {
            line = job_line();
            line.starts_with("2 ")
        }),
        "after a second step back: {line}"
    );
    for _ in 0..3 {
        line = job_line();
        assert!(line.starts_with("2 "), "after a second step back: {line}");
    }
    // Stopped, set back again, started by the next ctrl.
    assert!(inst.run(&["stop", "--now"]).status.success());
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
    std::fs::write(&offset, "-4h").unwrap();
    line = job_line();
    assert!(
        line.starts_with("2 "),
        "after a stop, a step back and a start: {line}"
    );
    assert!(inst.run(&["stop", "--now"]).status.success());
}
