//! What a run starts cannot outlive it, and leaves no zombie (issue 19, findings 5, 6, 10).
//!
//! The model of Chromium's helpers (`ESCAPER`): a child that double-forks, calls `setsid`,
//! clears its environment and execs under a new argv, so it carries neither the run's tag nor
//! its process group, and its parents are gone. Every test that ends runs is done twice: with
//! the daemon's own cgroup v2 subtree (this machine has cgroup2 at /sys/fs/cgroup/unified and no
//! systemd), and with the fallback forced by the daemon's test hook `ROBOTMK_TEST_NO_CGROUP=1`
//! (runners are then subreapers of their own descendants). The delegated-cgroup case (systemd)
//! is the sandbox test's phase h2 (tests/systemd/sandbox-test.sh).
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// `escaper.py PIDFILE SECONDS [WAIT_GONE_S REPORT]`: starts a helper that leaves the run the
/// way Chromium's crashpad handler and zygote do (double fork, setsid, empty environment, a
/// new argv: `chrome_crashpad_model SECONDS`, which sleeps that long), waits until the helper
/// wrote PIDFILE, and returns. With WAIT_GONE_S, it then waits up to that many seconds for
/// the helper to be gone from /proc entirely (exited *and* reaped by whoever inherited it)
/// and writes `gone` or the helper's state to REPORT.
const ESCAPER: &str = r#"
import os, sys, time
pidfile, secs = sys.argv[1], sys.argv[2]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(r)
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        os.write(w, b"x")
        os.close(w)
        os.execve("/bin/sleep", ["chrome_crashpad_model", secs], {})
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
os.read(r, 1)
if len(sys.argv) > 3:
    helper = open(pidfile).read().strip()
    end = time.time() + float(sys.argv[3])
    state = "gone"
    while time.time() < end:
        try:
            state = open("/proc/%s/stat" % helper).read().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "gone"
            break
        time.sleep(0.02)
    with open(sys.argv[4], "w") as f:
        f.write(state)
"#;

/// How the daemon holds a run's processes in a test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// The daemon's own cgroup v2 subtree (the default where one can be had).
    Cgroup,
    /// Forced off by the test hook: runners are subreapers, orphans of ended runs are ended.
    NoCgroup,
}

/// A command of the instance in `mode` (the hook reaches a daemon `ctrl` starts: it inherits
/// ctrl's environment).
fn cmd(inst: &Instance, mode: Mode) -> std::process::Command {
    let mut c = inst.cmd();
    match mode {
        Mode::Cgroup => c.env_remove("ROBOTMK_TEST_NO_CGROUP"),
        Mode::NoCgroup => c.env("ROBOTMK_TEST_NO_CGROUP", "1"),
    };
    c
}

fn run(inst: &Instance, mode: Mode, args: &[&str]) -> Output {
    cmd(inst, mode)
        .args(args)
        .output()
        .expect("run robotmk-daemon")
}

/// Whether the daemon of this test ran in `mode`; skips (fails in CI) a cgroup test where the
/// machine has no cgroup v2 the daemon can write.
fn mode_in_effect(inst: &Instance, mode: Mode) -> bool {
    let log = inst.log();
    match mode {
        Mode::Cgroup => {
            if log.contains("runs get a cgroup each") {
                return true;
            }
            let why = log
                .lines()
                .find(|l| l.contains("runs get no cgroup"))
                .unwrap_or("no word on cgroups in the log")
                .to_string();
            require_tool(false, &format!("a writable cgroup v2 hierarchy ({why})"))
        }
        Mode::NoCgroup => {
            assert!(
                log.contains("runs get no cgroup") && log.contains("ROBOTMK_TEST_NO_CGROUP"),
                "the test hook did not reach the daemon:\n{log}"
            );
            true
        }
    }
}

/// Ends the helpers of a test's runs, also when the test fails: first the daemon's own
/// `stop --now` (runs still in flight end whole, their helpers too), then every helper whose
/// PID file is in a run folder of the instance, as long as it still runs as the model (a PID
/// reused since is left alone). Declared after the instance, so dropped before it.
struct Helpers {
    config: PathBuf,
    state: PathBuf,
}

impl Helpers {
    fn new(inst: &Instance) -> Helpers {
        Helpers {
            config: inst.config.clone(),
            state: inst.state.clone(),
        }
    }

    fn pid(file: &Path) -> Option<u32> {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        let _ = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(["stop", "--now", "--timeout", "20s"])
            .output();
        let Ok(jobs) = std::fs::read_dir(self.state.join("jobs")) else {
            return;
        };
        for job in jobs.flatten() {
            let Ok(runs) = std::fs::read_dir(job.path().join("runs")) else {
                continue;
            };
            for run in runs.flatten() {
                let Some(pid) = Helpers::pid(&run.path().join("helper.pid")) else {
                    continue;
                };
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if cmd.starts_with(b"chrome_crashpad_model") {
                    kill9(pid);
                }
            }
        }
    }
}

/// True once `pid` is not in /proc at all: exited and reaped (a zombie still shows).
fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn state_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().next().unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "gone".into())
}

/// The zombies among `pid`'s children.
fn zombie_children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|l| {
            l.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|c| state_of(*c) == "Z")
        .collect()
}

fn escaper(inst: &Instance) -> String {
    let p = inst.dir.path().join("escaper.py");
    std::fs::write(&p, ESCAPER).unwrap();
    p.display().to_string()
}

/// The latest finished, not skipped record of `job` with (or without) the run-once trigger.
fn last_run(inst: &Instance, job: &str, once: bool) -> serde_json::Value {
    let recs = inst.finished_records(job);
    recs.iter()
        .rev()
        .find(|r| (r["trigger"] == "run_once") == once && r["outcome"] != "skipped")
        .unwrap_or_else(|| panic!("{job}: no finished run (run-once: {once}): {recs:?}"))
        .clone()
}

fn escapes_end_with_their_run(mode: Mode) {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let esc = escaper(&inst);
    // `hang` times out with its helper alive; `leave` ends normally and leaves it behind.
    let hang = format!(
        "cat /proc/self/cgroup > $ROBOTMK_RUN_DIR/cgroup; python3 {esc} $ROBOTMK_RUN_DIR/helper.pid 3600 && exec sleep 600"
    );
    let leave = format!(
        "cat /proc/self/cgroup > $ROBOTMK_RUN_DIR/cgroup; python3 {esc} $ROBOTMK_RUN_DIR/helper.pid 3600 && exit 0"
    );
    let jobs = format!(
        "[[job]]\nname = \"hang\"\ncommand = [\"sh\", \"-c\", {hang:?}]\nevery = \"1h\"\ntimeout = \"2s\"\n\n\
         [[job]]\nname = \"leave\"\ncommand = [\"sh\", \"-c\", {leave:?}]\nevery = \"1h\"\ntimeout = \"30s\"\n"
    );
    inst.write_config("heartbeat_timeout = \"1m\"", &jobs);
    let _helpers = Helpers::new(&inst);
    let check = |job: &str, once: bool| {
        let rec = last_run(&inst, job, once);
        let file = Path::new(rec["run_dir"].as_str().unwrap()).join("helper.pid");
        let pid = Helpers::pid(&file).unwrap_or_else(|| panic!("{job}: no helper started: {rec}"));
        assert!(
            wait_for(Duration::from_secs(10), || gone(pid)),
            "{mode:?}, {job} (run-once: {once}): the helper {pid} outlived its run (state {})",
            state_of(pid)
        );
        // The runner's own cgroup (v2): a run cgroup of the daemon's subtree, or not.
        let cg = std::fs::read_to_string(file.with_file_name("cgroup")).unwrap_or_default();
        let cg = cg.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("");
        let in_run_cgroup = cg.contains("/robotmk-daemon-") && cg.contains("/run-");
        let cgroups_on = inst.log().contains("runs get a cgroup each");
        assert!(
            in_run_cgroup == (mode == Mode::Cgroup && cgroups_on),
            "{mode:?}, {job}: the runner's cgroup is {cg:?}"
        );
        rec
    };
    let out = run(&inst, mode, &["run-once", "hang"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(check("hang", true)["outcome"], "timeout");
    let out = run(&inst, mode, &["run-once", "leave"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    check("leave", true);
    if !mode_in_effect(&inst, mode) {
        return;
    }

    // The same through the daemon's scheduler.
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &jobs.replace("\"1h\"", "\"3s\""),
    );
    let out = run(&inst, mode, &["ctrl"]);
    assert!(out.status.success(), "{out:?}");
    for job in ["hang", "leave"] {
        assert!(
            wait_for(Duration::from_secs(30), || inst
                .finished_records(job)
                .iter()
                .any(|r| r["trigger"] != "run_once" && r["outcome"] != "skipped")),
            "{job}: the daemon ran nothing"
        );
        let rec = check(job, false);
        if job == "hang" {
            assert_eq!(rec["outcome"], "timeout");
        }
    }
    let daemon = inst.daemon_pid().expect("the daemon runs");
    assert!(
        wait_for(Duration::from_secs(5), || zombie_children(daemon)
            .is_empty()),
        "{mode:?}: zombies under the daemon: {:?}",
        zombie_children(daemon)
    );
    assert!(mode_in_effect(&inst, mode));
}

/// Finding 6: a Chromium-like helper that left its run every way it can is ended with the run,
/// at its timeout and when its runner ends normally, with the daemon's own cgroup.
#[test]
fn a_chromium_like_escapee_ends_with_its_run_in_a_cgroup() {
    escapes_end_with_their_run(Mode::Cgroup);
}

/// Finding 6 without any cgroup: the runner holds its descendants as their subreaper, and what
/// it leaves behind is an orphan of an ended run.
#[test]
fn a_chromium_like_escapee_ends_with_its_run_without_a_cgroup() {
    escapes_end_with_their_run(Mode::NoCgroup);
}

fn inherited_children_are_reaped(mode: Mode) {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let esc = escaper(&inst);
    // Crashpad's way: a helper that outlives its parents and exits while the run goes on. With
    // a cgroup, the daemon inherits it at once and must collect it while the run still runs
    // (the runner waits for that, up to 5 s); without, the runner holds it until it ends.
    // The runner is the model itself, which collects no child it did not start (as robot, a
    // shell would collect the zombie below it).
    let wait = if mode == Mode::Cgroup { "5" } else { "0.5" };
    let jobs = format!(
        "[[job]]\nname = \"crashpad\"\ncommand = [\"python3\", {esc:?}, \"{{run_dir}}/helper.pid\", \"0.2\", \"{wait}\", \"{{run_dir}}/report\"]\nevery = \"1s\"\noverlap = \"skip\"\ntimeout = \"30s\"\n"
    );
    inst.write_config("heartbeat_timeout = \"1m\"", &jobs);
    let _helpers = Helpers::new(&inst);
    let out = run(&inst, mode, &["ctrl"]);
    assert!(out.status.success(), "{out:?}");
    let done = |inst: &Instance| {
        inst.finished_records("crashpad")
            .into_iter()
            .filter(|r| r["outcome"] != "skipped")
            .collect::<Vec<_>>()
    };
    assert!(
        wait_for(Duration::from_secs(60), || done(&inst).len() >= 3),
        "three runs did not finish: {:?}",
        done(&inst)
    );
    let daemon = inst.daemon_pid().expect("the daemon runs");
    let runs = done(&inst);
    let pids: Vec<u32> = runs
        .iter()
        .inspect(|rec| assert_eq!(rec["outcome"], "success", "{rec}"))
        .filter_map(|rec| {
            Helpers::pid(&Path::new(rec["run_dir"].as_str().unwrap()).join("helper.pid"))
        })
        .collect();
    assert_eq!(pids.len(), runs.len(), "a run did not start its helper");
    assert!(
        wait_for(Duration::from_secs(5), || pids.iter().all(|p| gone(*p))
            && zombie_children(daemon).is_empty()),
        "{mode:?}: helpers not collected: {:?}; zombies under the daemon: {:?}",
        pids.iter().map(|p| (*p, state_of(*p))).collect::<Vec<_>>(),
        zombie_children(daemon)
    );
    if mode == Mode::Cgroup && mode_in_effect(&inst, mode) {
        for rec in &runs {
            let dir = Path::new(rec["run_dir"].as_str().unwrap());
            let report = std::fs::read_to_string(dir.join("report")).unwrap_or_default();
            assert_eq!(
                report, "gone",
                "the daemon did not collect the helper while its run went on: {rec}"
            );
        }
    }
    assert!(mode_in_effect(&inst, mode));
}

/// Finding 5: orphans the daemon inherits are collected, whatever they are.
#[test]
fn inherited_children_are_reaped_in_a_cgroup() {
    inherited_children_are_reaped(Mode::Cgroup);
}

/// Finding 5 without a cgroup: collected once their run ends.
#[test]
fn inherited_children_are_reaped_without_a_cgroup() {
    inherited_children_are_reaped(Mode::NoCgroup);
}

fn ends_when_nothing_is_left(mode: Mode) {
    // A long grace: the test fails if anything waits for it.
    let daemon = "heartbeat_timeout = \"1m\"";
    let jobs = "[[job]]\nname = \"leave\"\ncommand = [\"sh\", \"-c\", \"setsid sleep 3600 & echo $! > $ROBOTMK_RUN_DIR/child.pid; exit 0\"]\nevery = \"1h\"\ntimeout = \"1m\"\n\n\
                [[job]]\nname = \"stay\"\ncommand = [\"sh\", \"-c\", \"setsid sleep 3600 & echo $! > $ROBOTMK_RUN_DIR/child.pid; exec sleep 3600\"]\nevery = \"1s\"\noverlap = \"skip\"\ntimeout = \"1h\"\n";
    let inst = Instance::new(daemon, jobs);
    let text = std::fs::read_to_string(&inst.config).unwrap();
    inst.write_raw_config(&text.replace("stop_grace = \"1s\"", "stop_grace = \"30s\""));
    let child_of = |rec: &serde_json::Value| -> u32 {
        let dir = Path::new(rec["run_dir"].as_str().unwrap());
        std::fs::read_to_string(dir.join("child.pid"))
            .unwrap_or_else(|e| panic!("no child.pid: {e}: {rec}"))
            .trim()
            .parse()
            .unwrap()
    };
    // run-once: the runner ends, its child ends at the first SIGTERM.
    let t = Instant::now();
    let out = run(&inst, mode, &["run-once", "leave"]);
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let child = child_of(&last_run(&inst, "leave", true));
    assert!(
        wait_for(Duration::from_secs(5), || gone(child)),
        "the runner's child {child} survived"
    );
    assert!(
        took < Duration::from_secs(10),
        "{mode:?}: run-once took {took:?} with stop_grace 30s, though nothing of the run was left"
    );

    // stop --now: the run in flight and its child end at the first SIGTERM.
    let out = run(&inst, mode, &["ctrl"]);
    assert!(out.status.success(), "{out:?}");
    let running = || {
        inst.records("stay")
            .into_iter()
            .find(|r| r["outcome"].is_null() && !r["pid"].is_null())
    };
    let mut rec = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            rec = running().filter(|r| {
                std::fs::read_to_string(Path::new(r["run_dir"].as_str().unwrap()).join("child.pid"))
                    .is_ok_and(|s| s.trim().parse::<u32>().is_ok())
            });
            rec.is_some()
        }),
        "stay did not start: {:?}",
        inst.records("stay")
    );
    let rec = rec.unwrap();
    let child = child_of(&rec);
    let t = Instant::now();
    let out = run(&inst, mode, &["stop", "--now"]);
    let took = t.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(inst.wait_daemon_gone(Duration::from_secs(5)));
    assert!(
        wait_for(Duration::from_secs(5), || gone(child)),
        "the run's child {child} survived"
    );
    assert!(
        took < Duration::from_secs(10),
        "{mode:?}: stop --now took {took:?} with stop_grace 30s, though the run's processes ended at once"
    );
    mode_in_effect(&inst, mode);
}

/// Finding 10: `run-once` and `stop --now` end as soon as the run's processes are gone, not
/// after `stop_grace`.
#[test]
fn run_once_and_stop_now_end_when_nothing_is_left_in_a_cgroup() {
    ends_when_nothing_is_left(Mode::Cgroup);
}

#[test]
fn run_once_and_stop_now_end_when_nothing_is_left_without_a_cgroup() {
    ends_when_nothing_is_left(Mode::NoCgroup);
}

fn an_orphan_of_a_run_in_flight_is_not_ended_with_another_run(mode: Mode) {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let esc = escaper(&inst);
    let release = inst.dir.path().join("release");
    // `keeper` starts a helper and runs on until released; `quick` ends every second meanwhile.
    // Each end of `quick` looks for what it left behind: `keeper`'s helper is not among it.
    let keeper = format!(
        "python3 {esc} $ROBOTMK_RUN_DIR/helper.pid 3600 && \
         for i in $(seq 600); do [ -e {r} ] && exit 0; sleep 0.1; done",
        r = release.display()
    );
    let jobs = format!(
        "[[job]]\nname = \"keeper\"\ncommand = [\"sh\", \"-c\", {keeper:?}]\nevery = \"1s\"\noverlap = \"skip\"\ntimeout = \"2m\"\n\n\
         [[job]]\nname = \"quick\"\ncommand = [\"true\"]\nevery = \"1s\"\ntimeout = \"10s\"\n"
    );
    inst.write_config("heartbeat_timeout = \"1m\"", &jobs);
    let _helpers = Helpers::new(&inst);
    let out = run(&inst, mode, &["ctrl"]);
    assert!(out.status.success(), "{out:?}");
    let mut file = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            file = inst
                .records("keeper")
                .iter()
                .filter(|r| r["outcome"].is_null() && !r["pid"].is_null())
                .map(|r| Path::new(r["run_dir"].as_str().unwrap()).join("helper.pid"))
                .find(|f| Helpers::pid(f).is_some());
            file.is_some()
        }),
        "keeper did not start its helper: {:?}",
        inst.records("keeper")
    );
    let file = file.unwrap();
    let pid = Helpers::pid(&file).unwrap();
    let quick_done = || {
        inst.finished_records("quick")
            .iter()
            .filter(|r| r["outcome"] == "success")
            .count()
    };
    let before = quick_done();
    assert!(
        wait_for(Duration::from_secs(20), || quick_done() >= before + 3),
        "quick did not run"
    );
    assert_eq!(
        state_of(pid),
        "S",
        "{mode:?}: keeper's helper {pid} was ended while keeper still ran"
    );
    std::fs::write(&release, "").unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || gone(pid)),
        "{mode:?}: keeper's helper {pid} outlived keeper's run (state {})",
        state_of(pid)
    );
    assert!(mode_in_effect(&inst, mode));
}

/// What a run's end ends is that run's: an orphan of another run still in flight lives on
/// (held by its run's cgroup, or below its runner).
#[test]
fn an_orphan_of_a_run_in_flight_lives_on_in_a_cgroup() {
    an_orphan_of_a_run_in_flight_is_not_ended_with_another_run(Mode::Cgroup);
}

#[test]
fn an_orphan_of_a_run_in_flight_lives_on_without_a_cgroup() {
    an_orphan_of_a_run_in_flight_is_not_ended_with_another_run(Mode::NoCgroup);
}

/// The flags of the issue's browser suite, with the profile in the run folder.
const CHROMIUM_FLAGS: &str = "--headless --no-sandbox --disable-gpu --disable-background-networking \
     --disable-component-update --disable-sync --no-first-run --user-data-dir=$ROBOTMK_RUN_DIR/profile";

/// Chromium's processes (`comm` chromium, chrome, chrome_crashpad…), zombies included, with
/// their state.
fn chromium_processes() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1;
            let state = rest.split_whitespace().next()?;
            comm.starts_with("chrom")
                .then(|| (pid, format!("{comm} {state}")))
        })
        .collect()
}

/// Ends the Chromium processes a test started (those not there before it), also when it fails.
struct Browsers(Vec<u32>);

impl Browsers {
    fn new_ones(&self) -> Vec<(u32, String)> {
        chromium_processes()
            .into_iter()
            .filter(|(p, _)| !self.0.contains(p))
            .collect()
    }
}

impl Drop for Browsers {
    fn drop(&mut self) {
        for (pid, _) in self.new_ones() {
            kill9(pid);
        }
    }
}

/// One browser test at a time: each counts every Chromium process that was not there before
/// it began as its own.
static ONE_BROWSER_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn a_real_browser_leaves_nothing(mode: Mode) {
    let _one = ONE_BROWSER_TEST.lock().unwrap_or_else(|e| e.into_inner());
    if !require_tool(
        have_tool("chromium"),
        "chromium (apt-get install chromium chromium-driver)",
    ) {
        return;
    }
    // `dump` ends normally (the browser exits by itself); `left` starts a browser, waits until
    // it listens, and ends, leaving it running.
    let dump =
        format!("chromium {CHROMIUM_FLAGS} --dump-dom about:blank > $ROBOTMK_RUN_DIR/dom.html");
    let left = format!(
        "chromium {CHROMIUM_FLAGS} --remote-debugging-port=0 about:blank & \
         for i in $(seq 600); do [ -s $ROBOTMK_RUN_DIR/profile/DevToolsActivePort ] && exit 0; sleep 0.1; done; exit 1"
    );
    let jobs = format!(
        "[[job]]\nname = \"dump\"\ncommand = [\"sh\", \"-c\", {dump:?}]\nevery = \"1h\"\ntimeout = \"2m\"\n\n\
         [[job]]\nname = \"left\"\ncommand = [\"sh\", \"-c\", {left:?}]\nevery = \"1h\"\ntimeout = \"2m\"\n"
    );
    let inst = Instance::new("heartbeat_timeout = \"1m\"", &jobs);
    let browsers = Browsers(chromium_processes().into_iter().map(|p| p.0).collect());
    let nothing_left = |what: &str| {
        assert!(
            wait_for(Duration::from_secs(20), || browsers.new_ones().is_empty()),
            "{mode:?}, {what}: Chromium processes left (pid, comm state): {:?}",
            browsers.new_ones()
        );
    };
    for job in ["dump", "left"] {
        let out = run(&inst, mode, &["run-once", job]);
        assert_eq!(out.status.code(), Some(0), "{job}: {out:?}");
        nothing_left(&format!("run-once {job}"));
    }
    let rec = last_run(&inst, "dump", true);
    let dom = Path::new(rec["run_dir"].as_str().unwrap()).join("dom.html");
    assert!(
        std::fs::read_to_string(&dom).is_ok_and(|d| d.contains("<html")),
        "the browser did not run: {rec}"
    );
    // Through the daemon, whose zombies are there to see.
    let out = run(&inst, mode, &["ctrl"]);
    assert!(out.status.success(), "{out:?}");
    for job in ["dump", "left"] {
        let out = run(&inst, mode, &["run-once", job]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{job} through the daemon: {out:?}"
        );
        nothing_left(&format!("{job} through the daemon"));
        let daemon = inst.daemon_pid().expect("the daemon runs");
        assert!(
            wait_for(Duration::from_secs(5), || zombie_children(daemon)
                .is_empty()),
            "{mode:?}, {job}: zombies under the daemon: {:?}",
            zombie_children(daemon)
        );
    }
    assert!(
        inst.finished_records("left")
            .iter()
            .all(|r| r["outcome"] == "success"),
        "{:?}",
        inst.finished_records("left")
    );
    mode_in_effect(&inst, mode);
}

/// Findings 5 and 6 with a real headless Chromium (the issue's browser suite): a run that
/// ends normally leaves no zombie and no process behind.
#[test]
fn a_real_browser_leaves_nothing_in_a_cgroup() {
    a_real_browser_leaves_nothing(Mode::Cgroup);
}

#[test]
fn a_real_browser_leaves_nothing_without_a_cgroup() {
    a_real_browser_leaves_nothing(Mode::NoCgroup);
}

/// The run cgroups under the daemon's own subtree (`run-<n>`), from the log line that names
/// the subtree.
fn run_cgroups(inst: &Instance) -> Vec<PathBuf> {
    let log = inst.log();
    let Some(base) = log
        .lines()
        .find_map(|l| l.split("runs get a cgroup each under ").nth(1))
    else {
        return Vec::new();
    };
    std::fs::read_dir(base.trim())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// A run prepared ahead of its due time gets its cgroup made ahead too; a run that is then
/// skipped (its previous run still going, `overlap = "skip"`) must not leave that cgroup
/// behind. Five jobs every second whose runs take 2.5 s skip about two runs in three: the
/// daemon's subtree holds at most a cgroup per run in flight and one per run prepared, not
/// one more per skipped run (it held 1,024 empty cgroups, the cap, after a 20-minute soak).
#[test]
fn skipped_runs_leave_no_cgroups_behind() {
    let mut jobs = String::new();
    for i in 0..5 {
        jobs.push_str(&format!(
            "[[job]]\nname = \"slow{i}\"\ncommand = [\"sleep\", \"2.5\"]\nevery = \"1s\"\noverlap = \"skip\"\ntimeout = \"10s\"\n"
        ));
    }
    let inst = Instance::new("heartbeat_timeout = \"1m\"", &jobs);
    let out = run(&inst, Mode::Cgroup, &["ctrl"]);
    assert!(out.status.success(), "{out:?}");
    let skipped = |inst: &Instance| {
        (0..5)
            .map(|i| {
                inst.finished_records(&format!("slow{i}"))
                    .iter()
                    .filter(|r| r["outcome"] == "skipped")
                    .count()
            })
            .sum::<usize>()
    };
    assert!(
        wait_for(Duration::from_secs(60), || skipped(&inst) >= 30),
        "30 runs were not skipped: {}",
        skipped(&inst)
    );
    if !mode_in_effect(&inst, Mode::Cgroup) {
        return;
    }
    let left = run_cgroups(&inst);
    assert!(
        left.len() <= 10,
        "{} run cgroups for 5 jobs ({} runs skipped): {left:?}",
        left.len(),
        skipped(&inst)
    );
}

/// A daemon in a PID namespace of its own (a container sharing the host's cgroup mount) sees
/// none of the host's PIDs: its clean-up of subtrees "of daemons no longer alive", judged by
/// the PID in their names, removed a running host daemon's subtree between its runs, whose
/// runs then got no cgroup while its log still said they did. A live daemon now sits at the
/// top of its own subtree, which no clean-up removes.
#[test]
fn a_daemon_in_another_pid_namespace_leaves_a_live_daemons_cgroups_alone() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let _ = require_tool(false, "root (cgroups of the daemon's own)");
        return;
    }
    let job = "[[job]]\nname = \"cg\"\ncommand = [\"sh\", \"-c\", \"tail -1 /proc/self/cgroup\"]\nevery = \"1h\"\ntimeout = \"5s\"\n";
    let host = Instance::new("heartbeat_timeout = \"1m\"", job);
    let out = host
        .cmd()
        .arg("ctrl")
        .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = host.log();
    let Some(subtree) = log
        .split_whitespace()
        .find(|w| w.starts_with("/sys/fs/cgroup") && w.contains("robotmk-daemon-"))
        .map(std::path::PathBuf::from)
    else {
        let _ = require_tool(
            false,
            "run cgroups of the daemon's own (no systemd, cgroup v2)",
        );
        return;
    };
    let cgroup_of_run = |inst: &Instance| {
        let out = inst.run(&["run-once", "cg"]);
        assert!(out.status.success(), "{out:?}");
        let rec = inst.finished_records("cg").pop().expect("a record");
        let dir = std::path::PathBuf::from(rec["run_dir"].as_str().unwrap());
        std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default()
    };
    let before = cgroup_of_run(&host);
    assert!(before.contains("/run-"), "{before}");
    // Another instance's daemon, in a PID namespace of its own, starts (and cleans up).
    let other = Instance::new("heartbeat_timeout = \"1m\"", job);
    let st = std::process::Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
        ])
        .arg(format!(
            "{BIN} --config {c} ctrl >/dev/null && {BIN} --config {c} stop --now >/dev/null",
            c = other.config.display()
        ))
        .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        other.log().contains("runs get a cgroup each"),
        "the other daemon made no cgroups: {}",
        other.log()
    );
    assert!(
        subtree.is_dir(),
        "the live daemon's subtree {} was removed",
        subtree.display()
    );
    let after = cgroup_of_run(&host);
    assert!(
        after.contains("/run-"),
        "the live daemon's run got no cgroup: {after}"
    );
    let _ = host.run(&["stop", "--now"]);
}

/// A FUSE server that answers the kernel's INIT and no request after it: whatever touches
/// its mount waits in the kernel, past SIGKILL. `hangfs.py MOUNT READY`, run in a mount
/// namespace of its own (the mount goes with it); READY gets its PID once mounted.
const HANGFS: &str = r#"
import os, sys, struct, ctypes
mnt, ready = sys.argv[1], sys.argv[2]
fd = os.open("/dev/fuse", os.O_RDWR)
libc = ctypes.CDLL(None, use_errno=True)
if libc.mount(b"hangfs", mnt.encode(), b"fuse", 0, f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()) != 0:
    sys.exit("mount failed: " + os.strerror(ctypes.get_errno()))
open(ready + ".tmp", "w").write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
while True:
    buf = os.read(fd, 1 << 20)
    ln, op, uniq = struct.unpack_from("<IIQ", buf, 0)
    if op == 26:  # INIT
        body = struct.pack("<IIIIHHIIHHI7I", 7, 31, 0, 0, 16, 12, 65536, 1, 0, 0, 0, 0,0,0,0,0,0,0)
        os.write(fd, struct.pack("<IiQ", 16 + len(body), 0, uniq) + body)
"#;

/// W1 F1: a runner the kernel holds (a `stat` into a FUSE mount whose server never answers:
/// any user can make one, `/dev/fuse` is 0666 and user namespaces are on) outlives its
/// SIGKILL for as long as the server likes. The daemon waited for it: the run was never
/// recorded, every later run of its job was skipped, and `stop --now` never ended. Now the
/// run is given up `GIVE_UP_AFTER` (10 s) after its SIGKILL, recorded with why, and the
/// daemon stops.
#[test]
fn a_runner_the_kernel_holds_past_sigkill_is_given_up() {
    let usable = unsafe { libc::geteuid() } == 0
        && Path::new("/dev/fuse").exists()
        && std::process::Command::new("unshare")
            .args(["--mount", "true"])
            .status()
            .is_ok_and(|s| s.success())
        && std::process::Command::new("python3")
            .arg("-c")
            .arg("import ctypes")
            .status()
            .is_ok_and(|s| s.success());
    if !require_tool(
        usable,
        "root, /dev/fuse, unshare --mount and python3 (a FUSE server that never answers)",
    ) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("rmkd-fuse-")
        .tempdir()
        .unwrap();
    let (script, mnt, ready) = (
        dir.path().join("hangfs.py"),
        dir.path().join("m"),
        dir.path().join("ready"),
    );
    std::fs::write(&script, HANGFS).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    let mut server = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "python3"])
        .arg(&script)
        .arg(&mnt)
        .arg(&ready)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("unshare python3");
    // Killed first when the test ends: the runner stuck on it then fails and ends.
    let guard = KillOnDrop(server.id());
    assert!(
        wait_for(Duration::from_secs(10), || ready.exists()),
        "the FUSE server did not mount"
    );
    let fpid = std::fs::read_to_string(&ready).unwrap();
    let target = format!("/proc/{}/root{}/x", fpid.trim(), mnt.display());
    let job = format!(
        "[[job]]\nname = \"stuck\"\ncommand = [\"stat\", \"{target}\"]\nevery = \"1h\"\noffset = \"{}s\"\ntimeout = \"1s\"\n",
        (chrono::Utc::now().timestamp() + 2).rem_euclid(3600)
    );
    let inst = Instance::new("heartbeat_timeout = \"0\"", &job);
    assert!(inst.run(&["start"]).status.success());
    // Started at once, timeout 1 s, SIGKILL 1 s later (stop_grace), given up 10 s after.
    let mut last = None;
    assert!(
        wait_for(Duration::from_secs(40), || {
            last = inst.finished_records("stuck").pop();
            last.is_some()
        }),
        "the stuck run was never recorded: {}",
        inst.log()
    );
    let rec = last.unwrap();
    assert_eq!(rec["outcome"], "timeout", "{rec}");
    let note = rec["note"].as_str().unwrap_or_default();
    assert!(note.contains("did not end within 10s of SIGKILL"), "{rec}");
    let t = Instant::now();
    let out = inst.run(&["stop", "--now", "--timeout", "20s"]);
    assert!(
        out.status.success(),
        "stop --now: {out:?} after {:?}",
        t.elapsed()
    );
    drop(guard);
    let _ = server.wait();
}
