//! Python environments per job (issue 13) with the real robot and real venvs: jobs with
//! clashing versions of a library, jobs sharing one environment, a changed requirements file
//! switching atomically, a failing build reported with its error, a hanging build ended at
//! `env_build_timeout`, `start_delay`, and the build time with uv and with pip.
//!
//! As root (issue 20) the daemon builds as an unprivileged user: the tests name one they create
//! (`build_user`), open their temp dir to it, and build from /usr/bin/python3 (the tools venv's
//! interpreter lives under root's private home). Attacks through a requirements file that
//! reaches another user's files, a build process that outlives its build, and a job's user who
//! fills the venv its failed build left with a 30,000-level tree (no Robot Framework needed
//! there: that build is meant to fail), are below.
//!
//! No network is needed by the daemon's builds: the library (`mypkg`, versions 1.0 and 2.0)
//! is a wheel the test writes, and Robot Framework's wheel is downloaded once per target dir
//! (`pip download`, done by the test, not by the daemon); every requirements file says
//! `--no-index --find-links <that folder>`.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The venv with Robot Framework the tests use as tools (scripts/test.sh creates it).
fn venv_bin() -> Option<PathBuf> {
    let robot = std::env::var_os("ROBOTMK_TEST_ROBOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/robot")));
    robot
        .is_file()
        .then(|| robot.parent().map(Path::to_path_buf))
        .flatten()
}

/// The venv's uv, if installed (scripts/test.sh installs it).
fn uv(bin: &Path) -> Option<PathBuf> {
    let p = bin.join("uv");
    p.is_file().then_some(p)
}

/// The tools and the wheel folder, or `None` (a skip; a failure in CI).
struct Kit {
    bin: PathBuf,
    wheels: PathBuf,
}

fn kit() -> Option<Kit> {
    static ONCE: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
    let Some(bin) = venv_bin() else {
        require_tool(
            false,
            "Robot Framework (.venv/bin/robot or $ROBOTMK_TEST_ROBOT)",
        );
        return None;
    };
    let mut once = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if once.is_none() {
        let wheels = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("env-wheels");
        let made = (|| {
            for v in ["1.0", "2.0"] {
                let out = Command::new(bin.join("python"))
                    .args(["-c", MKWHEEL, "mypkg", v])
                    .arg(&wheels)
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!("cannot build the test wheel: {out:?}"));
                }
            }
            // robotframework for every environment, setuptools to build a pyproject project.
            for dist in ["robotframework", "setuptools"] {
                let prefix = format!("{dist}-");
                let have = std::fs::read_dir(&wheels)
                    .map_err(|e| e.to_string())?
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(&prefix));
                if have {
                    continue;
                }
                let out = Command::new(bin.join("pip"))
                    .args([
                        "download",
                        "-q",
                        "--disable-pip-version-check",
                        "--only-binary=:all:",
                        "--no-deps",
                        "-d",
                    ])
                    .arg(&wheels)
                    .arg(dist)
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "cannot download {dist}'s wheel: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            Ok(wheels)
        })();
        *once = Some(made);
    }
    match once.as_ref() {
        Some(Ok(w)) => Some(Kit {
            bin,
            wheels: w.clone(),
        }),
        Some(Err(e)) => {
            require_tool(false, e);
            None
        }
        None => None,
    }
}

/// A suite that writes the version of `mypkg` it imported to version.txt in its run folder.
const SUITE: &str = "*** Settings ***\nLibrary    OperatingSystem\n\n*** Test Cases ***\nVersion\n    ${v}=    Evaluate    __import__('mypkg').VERSION\n    Create File    ${OUTPUT DIR}/version.txt    ${v}\n";

fn requirements(kit: &Kit, line: &str) -> String {
    format!(
        "--no-index\n--find-links {}\nrobotframework\n{line}\n",
        kit.wheels.display()
    )
}

/// Writes `text` to `path` by rename (a reader never sees half a file).
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn setup(inst: &Instance) {
    open_to_builders(inst);
    std::fs::write(inst.dir.path().join("v.robot"), SUITE).unwrap();
}

/// As root, builds run as another user, who must reach the users' tree beside the state dir
/// and read the requirements: the temp dir is 0700.
fn open_to_builders(inst: &Instance) {
    use std::os::unix::fs::PermissionsExt;
    if is_root() {
        std::fs::set_permissions(inst.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `[daemon]` lines choosing the build tool (and, as root, the build user).
fn tool_line(kit: &Kit, with_uv: bool) -> String {
    let tool = match (with_uv, uv(&kit.bin)) {
        (true, Some(u)) => format!("uv = \"{}\"", u.display()),
        _ => "uv = \"off\"".into(),
    };
    format!("{tool}\n{}", build_user_line())
}

/// The unprivileged user this file's builds run as (created once, kept).
const BUILDER: &str = "rmkd-i20-build";
/// The local user whose files a requirements file reaches (created once, kept).
const ATTACKER: &str = "rmkd-i20-attacker";

/// `build_user = "…"` as root (the daemon never builds as root); nothing otherwise.
fn build_user_line() -> String {
    if is_root() && system_user(BUILDER).is_some() {
        format!("build_user = \"{BUILDER}\"\n")
    } else {
        String::new()
    }
}

/// Where the environments are: in the users' tree when another user builds them (root).
fn envs_root(inst: &Instance) -> PathBuf {
    if is_root() {
        PathBuf::from(format!("{}.users/envs", inst.state.display()))
    } else {
        inst.state.join("envs")
    }
}

fn job(name: &str, req: &str, every: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nsuite = \"v.robot\"\nevery = \"{every}\"\ntimeout = \"60s\"\nrequirements = \"{req}\"\n"
    )
}

/// The base interpreter: the build user cannot reach the tools venv's (under /root).
fn python_line(kit: &Kit) -> String {
    let py = if is_root() {
        PathBuf::from("/usr/bin/python3")
    } else {
        kit.bin.join("python3")
    };
    format!("python = \"{}\"\n", py.display())
}

fn start(inst: &Instance) {
    let out = inst.run(&["start"]);
    assert!(out.status.success(), "start: {out:?}");
}

fn version_of(rec: &Value) -> Option<String> {
    let dir = PathBuf::from(rec["run_dir"].as_str()?);
    std::fs::read_to_string(dir.join("version.txt")).ok()
}

/// The records of runs that ran (or were meant to and could not): not the skipped ones.
fn ran(inst: &Instance, job: &str) -> Vec<Value> {
    inst.finished_records(job)
        .into_iter()
        .filter(|r| r["outcome"] != "skipped")
        .collect()
}

fn ts(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default()).expect("a timestamp")
}

fn envs(inst: &Instance) -> Vec<Value> {
    inst.status_json()["envs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn env_dirs(inst: &Instance) -> Vec<String> {
    std::fs::read_dir(envs_root(inst))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 32)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn jobs_get_their_own_environments_and_share_equal_ones() {
    let Some(kit) = kit() else { return };
    let inst = Instance::new(&tool_line(&kit, true), "");
    setup(&inst);
    let d = inst.dir.path();
    std::fs::write(d.join("one.txt"), requirements(&kit, "mypkg==1.0")).unwrap();
    // Same content, another file: the same environment.
    std::fs::write(d.join("one-again.txt"), requirements(&kit, "mypkg==1.0")).unwrap();
    std::fs::write(d.join("two.txt"), requirements(&kit, "mypkg==2.0")).unwrap();
    let py = python_line(&kit);
    let jobs = format!(
        "{}{py}\n{}{py}\n{}{py}",
        job("a", "one.txt", "2s"),
        job("b", "two.txt", "2s"),
        job("c", "one-again.txt", "2s")
    );
    inst.write_config(&tool_line(&kit, true), &jobs);
    let check = inst.run(&["check-config"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("environment ") && l.ends_with("jobs: a, c")),
        "check-config lists the shared environment:\n{text}"
    );
    start(&inst);
    for (job, want) in [("a", "1.0"), ("b", "2.0"), ("c", "1.0")] {
        assert!(
            wait_for(Duration::from_secs(120), || ran(&inst, job)
                .iter()
                .any(|r| r["outcome"] == "success")),
            "job {job} never succeeded: {:?}\n{}",
            ran(&inst, job),
            inst.log()
        );
        for r in ran(&inst, job) {
            assert_eq!(r["outcome"], "success", "{r}");
            assert_eq!(version_of(&r).as_deref(), Some(want), "{job}: {r}");
        }
    }
    let envs = envs(&inst);
    assert_eq!(envs.len(), 2, "{envs:?}");
    for e in &envs {
        assert_eq!(e["state"], "ready", "{e}");
        assert!(e["duration_s"].as_f64().is_some(), "{e}");
        assert!(e["built"].is_string(), "{e}");
        assert!(e["tool"].is_string(), "{e}");
    }
    let mut users: Vec<String> = envs.iter().map(|e| e["jobs"].to_string()).collect();
    users.sort();
    assert_eq!(users, ["[\"a\",\"c\"]", "[\"b\"]"]);
    assert_eq!(env_dirs(&inst).len(), 2);
    // ctrl's section carries them too.
    let section = inst.ctrl_json();
    assert_eq!(
        section["envs"].as_array().map(Vec::len),
        Some(2),
        "{section}"
    );
}

#[test]
fn a_changed_file_switches_atomically_once_the_new_environment_is_ready() {
    let Some(kit) = kit() else { return };
    // pip: slow enough that runs go on while the new environment builds.
    let daemon = tool_line(&kit, false);
    let inst = Instance::new(&daemon, "");
    setup(&inst);
    let req = inst.dir.path().join("req.txt");
    std::fs::write(&req, requirements(&kit, "mypkg==1.0")).unwrap();
    inst.write_config(
        &daemon,
        &format!("{}{}", job("a", "req.txt", "1s"), python_line(&kit)),
    );
    start(&inst);
    let v1 = |inst: &Instance| {
        ran(inst, "a")
            .iter()
            .any(|r| version_of(r).as_deref() == Some("1.0"))
    };
    assert!(
        wait_for(Duration::from_secs(120), || v1(&inst)),
        "{}",
        inst.log()
    );
    let first = env_dirs(&inst);
    assert_eq!(first.len(), 1);
    write_atomic(&req, &requirements(&kit, "mypkg==2.0"));
    assert!(
        wait_for(Duration::from_secs(120), || ran(&inst, "a")
            .iter()
            .any(|r| version_of(r).as_deref() == Some("2.0"))),
        "never switched: {}",
        inst.log()
    );
    // The old one goes once no run uses it.
    assert!(
        wait_for(Duration::from_secs(30), || {
            let now = env_dirs(&inst);
            now.len() == 1 && now != first
        }),
        "{:?}",
        env_dirs(&inst)
    );
    let new = envs(&inst)
        .into_iter()
        .find(|e| e["state"] == "ready")
        .expect("the new environment");
    let (started, built) = (ts(&new["started"]), ts(&new["built"]));
    let recs = ran(&inst, "a");
    let mut seen_two = false;
    let mut during_build = 0;
    for r in &recs {
        // Every run had one environment or the other, never a broken one; once a run had the
        // new one, no later run had the old one.
        assert_eq!(r["outcome"], "success", "{r}");
        let v = version_of(r).unwrap_or_default();
        if v == "2.0" {
            seen_two = true;
        } else {
            assert_eq!(v, "1.0", "{r}");
            assert!(!seen_two, "went back to the old environment: {recs:?}");
        }
        let s = ts(&r["started"]);
        if s > started && s < built {
            assert_eq!(v, "1.0", "a run during the build used the old one: {r}");
            during_build += 1;
        }
    }
    assert!(
        during_build > 0,
        "no run started while the new environment was built ({started} .. {built}): {recs:?}"
    );
}

#[test]
fn a_failing_build_is_reported_with_its_error() {
    let Some(kit) = kit() else { return };
    let daemon = tool_line(&kit, true);
    let inst = Instance::new(&daemon, "");
    setup(&inst);
    std::fs::write(
        inst.dir.path().join("bad.txt"),
        requirements(&kit, "nosuchpkg==9.9"),
    )
    .unwrap();
    inst.write_config(
        &daemon,
        &format!("{}{}", job("bad", "bad.txt", "1s"), python_line(&kit)),
    );
    start(&inst);
    assert!(
        wait_for(Duration::from_secs(120), || !ran(&inst, "bad").is_empty()),
        "{}",
        inst.log()
    );
    let rec = &ran(&inst, "bad")[0];
    assert_eq!(rec["outcome"], "error", "{rec}");
    let note = rec["note"].as_str().unwrap_or_default();
    assert!(note.contains("could not be built"), "{note}");
    assert!(note.contains("nosuchpkg"), "the build's last lines: {note}");
    // status.json follows within its flush gap.
    let mut envs = Vec::new();
    assert!(
        wait_for(Duration::from_secs(5), || {
            envs = self::envs(&inst);
            envs.len() == 1 && envs[0]["state"] == "failed"
        }),
        "{envs:?}"
    );
    assert!(
        envs[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("nosuchpkg")),
        "{envs:?}"
    );
    let table = String::from_utf8_lossy(&inst.run(&["status"]).stdout).into_owned();
    assert!(table.contains("failed"), "{table}");
}

#[test]
fn a_hanging_build_is_ended_at_env_build_timeout() {
    // No real Python needed: the "interpreter" hangs, so does the build.
    let daemon = format!(
        "uv = \"off\"\nenv_build_timeout = \"2s\"\n{}",
        build_user_line()
    );
    let inst = Instance::new(&daemon, "");
    open_to_builders(&inst);
    let d = inst.dir.path();
    let fake = d.join("hangs-python");
    std::fs::write(&fake, "#!/bin/sh\nsleep 300\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(d.join("r.txt"), "x\n").unwrap();
    std::fs::write(d.join("v.robot"), SUITE).unwrap();
    inst.write_config(
        &daemon,
        &format!(
            "{}python = \"{}\"\n",
            job("h", "r.txt", "1s"),
            fake.display()
        ),
    );
    let t0 = Instant::now();
    start(&inst);
    assert!(
        wait_for(Duration::from_secs(30), || !ran(&inst, "h").is_empty()),
        "{}",
        inst.log()
    );
    let rec = &ran(&inst, "h")[0];
    assert_eq!(rec["outcome"], "error", "{rec}");
    assert!(
        rec["note"]
            .as_str()
            .is_some_and(|n| n.contains("env_build_timeout")),
        "{rec}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20));
    // The whole build tree is gone (the sleep too).
    let envs_dir = envs_root(&inst).display().to_string();
    assert!(
        wait_for(Duration::from_secs(5), || processes_of(&envs_dir)
            .is_empty()),
        "{:?}",
        processes_of(&envs_dir)
    );
}

#[test]
fn start_delay_holds_runs_after_boot() {
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/uptime");
    // As if the machine had booted just now: runs wait 3 more seconds.
    let delay = up.ceil() as u64 + 3;
    let daemon = format!("start_delay = \"{delay}s\"");
    let inst = Instance::new(
        &daemon,
        "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1s\"\n",
    );
    let t0 = Instant::now();
    start(&inst);
    assert!(
        wait_for(Duration::from_secs(20), || !ran(&inst, "j").is_empty()),
        "{}",
        inst.log()
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "ran {:?} after start",
        t0.elapsed()
    );
}

/// Builds one environment with each tool through the daemon and prints the times the daemon
/// recorded (the closing note of issue 13 quotes them).
#[test]
fn build_time_with_uv_and_with_pip() {
    let Some(kit) = kit() else { return };
    if !require_tool(uv(&kit.bin).is_some(), "uv in the tools venv") {
        return;
    }
    let mut figures = Vec::new();
    for with_uv in [true, false] {
        let daemon = tool_line(&kit, with_uv);
        let inst = Instance::new(&daemon, "");
        setup(&inst);
        std::fs::write(
            inst.dir.path().join("r.txt"),
            requirements(&kit, "mypkg==1.0"),
        )
        .unwrap();
        inst.write_config(
            &daemon,
            &format!("{}{}", job("t", "r.txt", "1h"), python_line(&kit)),
        );
        start(&inst);
        let mut ready = None;
        assert!(
            wait_for(Duration::from_secs(180), || {
                ready = envs(&inst).into_iter().find(|e| e["state"] == "ready");
                ready.is_some()
            }),
            "{}",
            inst.log()
        );
        let e = ready.unwrap();
        assert_eq!(e["tool"], if with_uv { "uv" } else { "pip" }, "{e}");
        // The log names the tool in words, not Rust's `tool=Some("pip")` (issue 24).
        let log = inst.log();
        let tool = e["tool"].as_str().unwrap_or_default();
        assert!(
            log.lines().any(|l| l.contains("environment built")
                && l.contains(&format!("tool=\"{tool}\""))),
            "{log}"
        );
        assert!(!log.contains("Some("), "{log}");
        figures.push((e["tool"].clone(), e["duration_s"].as_f64().unwrap()));
    }
    eprintln!("environment build time (robotframework + one local wheel, offline): {figures:?}");
}

const RUNNER: &str = "rmkd-runner";

/// The unprivileged user jobs run as.
fn runner_user() -> Option<(u32, u32)> {
    system_user(RUNNER)
}

fn owner(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn uid_of(pid: u64) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn a_job_runs_as_its_user_who_cannot_touch_the_daemons_files() {
    let Some((uid, gid)) = runner_user() else {
        return;
    };
    let inst = Instance::new("", "");
    // The user must reach the users' tree beside the state dir: the temp dir is 0700.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(inst.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = inst.state.display().to_string();
    let script = format!(
        "id -u > uid; id -G > groups; echo \"$HOME $USER $LOGNAME\" > env; pwd > cwd; \
         touch {state}/intruder 2>/dev/null; touch \"$ROBOTMK_RUN_DIR/record.json\" 2>/dev/null; \
         ls {state} >/dev/null 2>&1 && echo listed > listed; sleep 3"
    );
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"u\"\ncommand = [\"sh\", \"-c\", {script:?}]\nevery = \"1h\"\nuser = \"{RUNNER}\"\n"
        ),
    );
    // run-once (no daemon running) runs it with the daemon's own code and waits for it.
    let out = inst.run(&["run-once", "u"]);
    assert!(out.status.success(), "{out:?}");
    let recs = ran(&inst, "u");
    assert_eq!(recs.len(), 1, "{recs:?}\n{}", inst.log());
    let rec = &recs[0];
    assert_eq!(rec["outcome"], "success", "{rec}");
    let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    let work = PathBuf::from(format!("{}.users", state))
        .join("jobs/u")
        .join(run_dir.file_name().unwrap());
    let read = |f: &str| std::fs::read_to_string(work.join(f)).unwrap_or_default();
    assert_eq!(read("uid").trim(), uid.to_string());
    assert!(
        read("groups")
            .split_whitespace()
            .any(|g| g == gid.to_string()),
        "{}",
        read("groups")
    );
    assert_eq!(
        read("env").trim(),
        format!("/nonexistent {RUNNER} {RUNNER}")
    );
    assert_eq!(read("cwd").trim(), work.display().to_string());
    // Its folder is its own, and so are its output files (its quota: they stay in the state
    // dir, out of its reach by path); the record and the state dir stay root's.
    assert_eq!(owner(&work), uid);
    assert_eq!(owner(&run_dir.join("record.json")), 0);
    assert_eq!(owner(&run_dir.join("stdout.log")), uid);
    assert_eq!(owner(&run_dir), 0);
    assert!(!inst.state.join("intruder").exists());
    assert!(
        !work.join("listed").exists(),
        "the user listed the state dir"
    );
    let rec_text = std::fs::read_to_string(run_dir.join("record.json")).unwrap();
    assert!(rec_text.contains("\"outcome\""), "{rec_text}");
}

#[test]
fn a_scheduled_robot_job_runs_as_its_user_in_its_environment() {
    let Some((uid, gid)) = runner_user() else {
        return;
    };
    let Some(kit) = kit() else { return };
    // The user must be able to run the interpreter the environment is built from.
    let py = Path::new("/usr/bin/python3");
    if !require_tool(py.is_file(), "/usr/bin/python3") {
        return;
    }
    let daemon = tool_line(&kit, true);
    let inst = Instance::new(&daemon, "");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(inst.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    setup(&inst);
    std::fs::write(
        inst.dir.path().join("r.txt"),
        requirements(&kit, "mypkg==2.0"),
    )
    .unwrap();
    let slow_suite = SUITE.to_string() + "    Sleep    2s\n";
    std::fs::write(inst.dir.path().join("v.robot"), slow_suite).unwrap();
    inst.write_config(
        &daemon,
        &format!(
            // With the retry wrapper: its attempts.json is found in the user's folder too.
            "{}python = \"/usr/bin/python3\"\nuser = \"{RUNNER}\"\nattempts = 2\n",
            job("r", "r.txt", "3s")
        ),
    );
    start(&inst);
    // Its processes are the user's while it runs.
    let mut pid = None;
    assert!(
        wait_for(Duration::from_secs(120), || {
            pid = inst.status_json()["jobs"][0]["running"][0]["pid"].as_u64();
            pid.is_some()
        }),
        "{}",
        inst.log()
    );
    // The fork path returns once the child exists; it drops to the user before it execs.
    let pid = pid.unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || uid_of(pid) == Some(uid)),
        "the runner {pid} runs as {:?}, not {uid}",
        uid_of(pid)
    );
    assert!(
        wait_for(Duration::from_secs(60), || !ran(&inst, "r").is_empty()),
        "{}",
        inst.log()
    );
    let rec = &ran(&inst, "r")[0];
    let stderr =
        std::fs::read_to_string(PathBuf::from(rec["run_dir"].as_str().unwrap()).join("stderr.log"))
            .unwrap_or_default();
    assert_eq!(rec["outcome"], "success", "{rec}\n{stderr}");
    // The result was read from the user's folder, where robot wrote it.
    let result = PathBuf::from(rec["result"].as_str().unwrap());
    assert!(
        result.starts_with(format!("{}.users", inst.state.display())),
        "{rec}"
    );
    assert_eq!(owner(&result), uid);
    assert_eq!(rec["attempts"].as_array().map(Vec::len), Some(1), "{rec}");
    // Each attempt has its own output dir.
    let attempt = PathBuf::from(rec["attempts"][0]["output"].as_str().unwrap_or_default());
    let version = [
        attempt.with_file_name("version.txt"),
        result.with_file_name("version.txt"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok());
    assert_eq!(version.as_deref(), Some("2.0"), "{rec}");
    let envs = envs(&inst);
    assert_eq!(envs[0]["shared"], true, "{envs:?}");
    // Built as the job's user (never as root), then sealed: readable, not writable, by it.
    assert_eq!(
        envs[0]["builder"].as_str(),
        Some(format!("{RUNNER} (uid {uid})").as_str()),
        "{envs:?}"
    );
    let key = envs[0]["key"].as_str().unwrap();
    let env_dir = PathBuf::from(format!("{}.users/envs/{key}", inst.state.display()));
    assert_eq!(owner(&env_dir), 0);
    assert_sealed(&env_dir.join("venv"), 0o022);
    // Its user's to enter and read (by its group), no other local user's.
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&env_dir).unwrap();
    assert_eq!(
        (m.mode() & 0o777, m.gid()),
        (0o750, gid),
        "{}",
        env_dir.display()
    );
}

/// Every entry below `dir` is root's, and none is writable by anyone covered by `others`
/// (`0o022`: group and others).
fn assert_sealed(dir: &Path, others: u32) {
    use std::os::unix::fs::MetadataExt;
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        seen += 1;
        assert_eq!(m.uid(), 0, "{} is not root's", p.display());
        if m.file_type().is_symlink() {
            continue;
        }
        assert_eq!(
            m.mode() & others,
            0,
            "{} is writable by others: {:o}",
            p.display(),
            m.mode()
        );
        if m.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    assert!(seen > 10, "{} holds almost nothing", dir.display());
}

#[test]
fn an_unknown_user_is_a_config_error() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"x\"\ncommand = [\"true\"]\nevery = \"1h\"\nuser = \"no-such-user-rmkd\"\n",
    );
    let out = inst.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("job[0].user"), "{err}");
    assert!(err.contains("no user \"no-such-user-rmkd\""), "{err}");
}

#[test]
fn a_pyproject_names_the_environment_too() {
    let Some(kit) = kit() else { return };
    // The index options of a pyproject live in its [tool.uv] table (pip reads them from its
    // own config or environment instead).
    if !require_tool(uv(&kit.bin).is_some(), "uv in the tools venv") {
        return;
    }
    let daemon = tool_line(&kit, true);
    let inst = Instance::new(&daemon, "");
    setup(&inst);
    let proj = inst.dir.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(
        proj.join("pyproject.toml"),
        format!(
            "[project]\nname = \"shop-suite\"\nversion = \"0.1\"\n\
             dependencies = [\"robotframework\", \"mypkg==2.0\"]\n\n\
             [build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
             [tool.setuptools]\npy-modules = []\n\n\
             [tool.uv]\nno-index = true\nfind-links = [\"{}\"]\n",
            kit.wheels.display()
        ),
    )
    .unwrap();
    inst.write_config(
        &daemon,
        &format!(
            "[[job]]\nname = \"p\"\nsuite = \"v.robot\"\nevery = \"1s\"\ntimeout = \"60s\"\npyproject = \"proj/pyproject.toml\"\n{}",
            python_line(&kit)
        ),
    );
    start(&inst);
    assert!(
        wait_for(Duration::from_secs(120), || !ran(&inst, "p").is_empty()),
        "{}",
        inst.log()
    );
    let rec = &ran(&inst, "p")[0];
    assert_eq!(rec["outcome"], "success", "{rec}");
    assert_eq!(version_of(rec).as_deref(), Some("2.0"), "{rec}");
    let envs = envs(&inst);
    assert_eq!(envs[0]["kind"], "pyproject", "{envs:?}");
    // The project itself is installed (it may carry the suite's own keyword libraries), not
    // only its dependencies.
    let key = envs[0]["key"].as_str().unwrap();
    let lib = envs_root(&inst).join(key).join("venv/lib");
    let installed = std::fs::read_dir(&lib).unwrap().flatten().any(|py| {
        py.path()
            .join("site-packages/shop_suite-0.1.dist-info")
            .is_dir()
    });
    assert!(
        installed,
        "shop-suite is not installed in {}",
        lib.display()
    );
}

#[test]
fn a_requirements_file_others_can_write_is_not_built_until_fixed() {
    // The installer runs as root on the file's say: like the config, no one else may change
    // it. No Python needed: nothing is built while it is writable.
    let daemon = format!("uv = \"off\"\n{}", build_user_line());
    let inst = Instance::new(&daemon, "");
    open_to_builders(&inst);
    let d = inst.dir.path();
    std::fs::write(d.join("v.robot"), SUITE).unwrap();
    let req = d.join("r.txt");
    // Offline: once fixed, the build fails quickly on the missing package.
    std::fs::write(&req, "--no-index\nnosuchpkg\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&req, std::fs::Permissions::from_mode(0o666)).unwrap();
    inst.write_config(&daemon, &job("w", "r.txt", "1s"));
    start(&inst);
    assert!(
        wait_for(Duration::from_secs(30), || !ran(&inst, "w").is_empty()),
        "{}",
        inst.log()
    );
    let rec = &ran(&inst, "w")[0];
    assert_eq!(rec["outcome"], "error", "{rec}");
    let note = rec["note"].as_str().unwrap_or_default();
    assert!(note.contains("writable"), "{note}");
    assert!(!inst.state.join("envs").exists() || env_dirs(&inst).is_empty());
    // Fixed (chmod): tried again at once, without a reload.
    std::fs::set_permissions(&req, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || envs(&inst)
            .iter()
            .any(|e| e["error"]
                .as_str()
                .is_some_and(|e| !e.contains("writable")))),
        "{:?}",
        envs(&inst)
    );
}

/// A package whose setup.py records, in `markers`, the uid it ran as.
fn marker_package(dir: &Path, name: &str, markers: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("setup.py"),
        format!(
            "import os\n\
             with open(os.path.join({markers:?}, 'ran-%d' % os.getpid()), 'w') as f:\n    \
                 f.write(str(os.getuid()))\n\
             from setuptools import setup\n\
             setup(name={name:?}, version='1.0', py_modules=[])\n",
            markers = markers.display().to_string()
        ),
    )
    .unwrap();
}

/// A folder anyone may write (sticky, like /tmp): whoever runs a package's code leaves its mark.
fn marker_dir(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o1777)).unwrap();
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The uids the markers in `dir` recorded.
fn marks(dir: &Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("ran-"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 20, finding 2: a root-owned 0644 requirements file that reaches another user's files
/// (`-r other.txt` naming an editable package of theirs; `-e ./local`, a folder of theirs)
/// ran that user's setup.py as uid 0 during the build. Now their code never runs as root:
/// it runs as the build user, or the build fails before it runs. With uv and with pip.
#[test]
fn an_attackers_package_reached_by_requirements_never_runs_as_root() {
    let Some((builder, _)) = system_user(BUILDER) else {
        return;
    };
    let Some((attacker, attacker_gid)) = system_user(ATTACKER) else {
        return;
    };
    let Some(kit) = kit() else { return };
    if !require_tool(Path::new("/usr/bin/python3").is_file(), "/usr/bin/python3")
        || !require_tool(uv(&kit.bin).is_some(), "uv in the tools venv")
    {
        return;
    }
    for with_uv in [true, false] {
        let daemon = tool_line(&kit, with_uv);
        let inst = Instance::new(&daemon, "");
        setup(&inst);
        let d = inst.dir.path();
        let head = format!(
            "--no-index\n--find-links {}\nrobotframework\n",
            kit.wheels.display()
        );
        // Case 1: `-r other.txt`, other.txt the attacker's, naming their editable package.
        let (marks_r, marks_e) = (d.join("marks-r"), d.join("marks-e"));
        marker_dir(&marks_r);
        marker_dir(&marks_e);
        let theirs = d.join("theirs");
        marker_package(&theirs.join("evil_r"), "evil-r", &marks_r);
        std::fs::write(
            theirs.join("other.txt"),
            format!("-e {}\n", theirs.join("evil_r").display()),
        )
        .unwrap();
        std::fs::write(
            d.join("req-r.txt"),
            format!("{head}-r {}\n", theirs.join("other.txt").display()),
        )
        .unwrap();
        chown_tree(&theirs, attacker, attacker_gid);
        // Case 2: `-e ./local`, a folder of the attacker's beside the requirements file.
        marker_package(&d.join("local"), "evil-e", &marks_e);
        chown_tree(&d.join("local"), attacker, attacker_gid);
        std::fs::write(d.join("req-e.txt"), format!("{head}-e ./local\n")).unwrap();
        let py = python_line(&kit);
        inst.write_config(
            &daemon,
            &format!(
                "{}{py}\n{}{py}",
                job("r", "req-r.txt", "1h"),
                job("e", "req-e.txt", "1h")
            ),
        );
        start(&inst);
        let mut done = Vec::new();
        assert!(
            wait_for(Duration::from_secs(180), || {
                done = envs(&inst)
                    .into_iter()
                    .filter(|e| e["state"] == "ready" || e["state"] == "failed")
                    .collect();
                done.len() == 2
            }),
            "uv {with_uv}: {:?}\n{}",
            envs(&inst),
            inst.log()
        );
        for (case, marks_dir, source) in [
            ("-r other.txt", &marks_r, "req-r.txt"),
            ("-e ./local", &marks_e, "req-e.txt"),
        ] {
            let env = done
                .iter()
                .find(|e| e["source"].as_str().is_some_and(|s| s.ends_with(source)))
                .expect("its environment");
            let uids = marks(marks_dir);
            let error = env["error"].as_str().unwrap_or_default();
            eprintln!(
                "uv {with_uv}, {case}: {} (setup.py ran as uids {uids:?}) {}",
                env["state"],
                &error[error.len().saturating_sub(400)..]
            );
            assert!(
                !uids.contains(&0),
                "uv {with_uv}, {case}: the attacker's setup.py ran as root: {env}"
            );
            assert!(
                uids.iter().all(|&u| u == builder),
                "uv {with_uv}, {case}: ran as {uids:?}, not as the build user {builder}"
            );
            // Ready means their code ran (as the build user); failed, that it may not have.
            if env["state"] == "ready" {
                assert!(!uids.is_empty(), "uv {with_uv}, {case}: {env}");
            }
            assert_eq!(
                env["builder"].as_str(),
                Some(format!("{BUILDER} (uid {builder})").as_str()),
                "{env}"
            );
        }
    }
}

/// The lingering process a build's setup.py leaves behind: it left the build's process group
/// (setsid) and its environment (no run tag), and keeps writing into the venv through a
/// handle it opened during the build, and by path.
const LINGER: &str = r#"
import os, sys, time
venv, marks = sys.argv[1], sys.argv[2]
with open(os.path.join(marks, "lingering.pid"), "w") as f:
    f.write(str(os.getpid()))
held = None
n = 0
end = time.time() + 600
while time.time() < end:
    n += 1
    if held is None:
        try:
            held = open(os.path.join(venv, "pyvenv.cfg"), "a")
        except OSError:
            pass
    if held is not None:
        try:
            held.write("tampered %d\n" % n)
            held.flush()
        except OSError:
            pass
    try:
        with open(os.path.join(venv, "tampered-%d" % n), "w") as g:
            g.write("x")
        by_path = "created"
    except OSError:
        by_path = "denied"
    with open(os.path.join(marks, "lingering.log"), "a") as log:
        log.write("%d %d %s\n" % (n, os.getuid(), by_path))
    time.sleep(0.05)
"#;

/// A value only the daemon's (root's) environment carries.
const SECRET: &str = "rmkd-i20-secret-of-root";

/// Ends the lingering process (by the PID it recorded) also when the test fails.
struct LingerGuard(PathBuf);

impl Drop for LingerGuard {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            kill9(pid);
        }
    }
}

fn linger_log(p: &Path) -> Vec<(u64, u32, String)> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
            ))
        })
        .collect()
}

/// Issue 20, finding 2: what a build as the build user made becomes root's and read-only
/// before a root runner uses it, and a process of the build that outlived it (out of its
/// process group, without its tag: no kill finds it without a cgroup) changes nothing in the
/// sealed venv, neither through a handle it held nor by path. The job then runs in it (a
/// pyproject, whose folder is copied for the build: its backend writes into it).
#[test]
fn a_sealed_environment_is_roots_and_a_lingering_build_process_cannot_change_it() {
    let Some((builder, _)) = system_user(BUILDER) else {
        return;
    };
    let Some(kit) = kit() else { return };
    if !require_tool(Path::new("/usr/bin/python3").is_file(), "/usr/bin/python3")
        || !require_tool(uv(&kit.bin).is_some(), "uv in the tools venv")
    {
        return;
    }
    let daemon = tool_line(&kit, true);
    let inst = Instance::new(&daemon, "");
    setup(&inst);
    let d = inst.dir.path();
    let marks = d.join("marks");
    marker_dir(&marks);
    let _guard = LingerGuard(marks.join("lingering.pid"));
    let proj = d.join("proj");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(
        proj.join("pyproject.toml"),
        format!(
            "[project]\nname = \"lingerpkg\"\nversion = \"1.0\"\n\
             dependencies = [\"robotframework\"]\n\n\
             [build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
             [tool.uv]\nno-index = true\nfind-links = [\"{}\"]\n",
            kit.wheels.display()
        ),
    )
    .unwrap();
    // Spawned once, whichever backend hook runs setup.py first.
    std::fs::write(
        proj.join("setup.py"),
        format!(
            "import os, sys\n\
             tag = os.environ.get('ROBOTMK_RUN_DIR')\n\
             marks = {marks:?}\n\
             try:\n    \
                 os.close(os.open(os.path.join(marks, 'spawned'), os.O_CREAT | os.O_EXCL | os.O_WRONLY))\n    \
                 first = True\n\
             except FileExistsError:\n    \
                 first = False\n\
             seen = []\n\
             pid = os.getpid()\n\
             while pid > 1:\n    \
                 try:\n        \
                     env = open('/proc/%d/environ' % pid, 'rb').read()\n    \
                 except OSError:\n        \
                     break\n    \
                 seen.append((pid, {SECRET:?}.encode() in env))\n    \
                 pid = int(open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()[1])\n\
             with open(os.path.join(marks, 'environ-%d' % os.getpid()), 'w') as f:\n    \
                 f.write(repr(seen))\n\
             if tag and first:\n    \
                 pid = os.fork()\n    \
                 if pid == 0:\n        \
                     os.setsid()\n        \
                     if os.fork() == 0:\n            \
                         null = os.open(os.devnull, os.O_RDWR)\n            \
                         for fd in (0, 1, 2):\n                \
                             os.dup2(null, fd)\n            \
                         os.closerange(3, 65536)\n            \
                         os.execve(sys.executable, [sys.executable, '-c', {LINGER:?}, os.path.join(tag, 'venv'), marks], {{}})\n        \
                     os._exit(0)\n    \
                 os.waitpid(pid, 0)\n\
             from setuptools import setup\n\
             setup(py_modules=[])\n",
            marks = marks.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("ok.robot"),
        "*** Test Cases ***\nOk\n    Log    in the sealed environment\n",
    )
    .unwrap();
    inst.write_config(
        &daemon,
        &format!(
            "[[job]]\nname = \"p\"\nsuite = \"ok.robot\"\nevery = \"2s\"\ntimeout = \"60s\"\npyproject = \"proj/pyproject.toml\"\n{}",
            python_line(&kit)
        ),
    );
    let out = inst
        .cmd()
        .env("RMKD_I20_SECRET", SECRET)
        .arg("start")
        .output()
        .unwrap();
    assert!(out.status.success(), "start: {out:?}");
    let daemon = inst.daemon_pid().expect("the daemon's pid");
    let environ = std::fs::read(format!("/proc/{daemon}/environ")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&environ).contains(SECRET),
        "the daemon did not get the variable the test gave it"
    );
    let mut env = Value::Null;
    assert!(
        wait_for(Duration::from_secs(180), || {
            env = envs(&inst).into_iter().next().unwrap_or(Value::Null);
            env["state"] == "ready" || env["state"] == "failed"
        }),
        "{:?}\n{}",
        envs(&inst),
        inst.log()
    );
    assert_eq!(env["state"], "ready", "{env}");
    let key = env["key"].as_str().unwrap();
    let env_dir = envs_root(&inst).join(key);
    let venv = env_dir.join("venv");
    // The build ran as the build user, and left its process behind.
    let log = marks.join("lingering.log");
    assert!(
        wait_for(Duration::from_secs(10), || !linger_log(&log).is_empty()),
        "setup.py spawned nothing"
    );
    assert!(
        linger_log(&log).iter().all(|(_, uid, _)| *uid == builder),
        "{:?}",
        linger_log(&log)
    );
    // None of root's environment reached the build: not setup.py's, nor that of any process
    // above it it could read (the installer, the env-build process).
    let looks: Vec<String> = std::fs::read_dir(&marks)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("environ-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    assert!(!looks.is_empty(), "setup.py recorded no environment");
    for l in &looks {
        assert!(
            !l.contains("True"),
            "a build process carried the daemon's variable (pid, found): {l}"
        );
        // It saw its chain up to the env-build process (3 or more readable processes).
        assert!(l.matches("False").count() >= 3, "{l}");
    }
    // Sealed: root's, nothing writable by others, the key folder closed to all but root
    // (only root runs this environment).
    assert_sealed(&venv, 0o022);
    use std::os::unix::fs::MetadataExt;
    let key_mode = std::fs::metadata(&env_dir).unwrap().mode() & 0o777;
    assert_eq!(key_mode, 0o700, "{}", env_dir.display());
    assert_eq!(owner(&env_dir), 0);
    let sealed_cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    let seen = linger_log(&log).last().map_or(0, |l| l.0);
    let alive = std::fs::read_to_string(marks.join("lingering.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(pid_alive);
    if alive {
        // Five more rounds of writes after the environment was ready.
        assert!(
            wait_for(Duration::from_secs(30), || linger_log(&log)
                .last()
                .is_some_and(|l| l.0 >= seen + 5)),
            "{:?}",
            linger_log(&log)
        );
        assert_eq!(
            std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap(),
            sealed_cfg,
            "the lingering build process changed the sealed venv through its handle"
        );
        let later: Vec<_> = linger_log(&log)
            .into_iter()
            .filter(|l| l.0 > seen)
            .collect();
        assert!(
            later.iter().all(|l| l.2 == "denied"),
            "the lingering build process created files in the sealed venv: {later:?}"
        );
    } else {
        eprintln!("the lingering process was ended with the build (a cgroup held it)");
    }
    // The job runs in it.
    assert!(
        wait_for(Duration::from_secs(60), || !ran(&inst, "p").is_empty()),
        "{}",
        inst.log()
    );
    let rec = &ran(&inst, "p")[0];
    assert_eq!(rec["outcome"], "success", "{rec}");
}

/// The daemon never builds as root: without the build user on the host, the build fails and
/// says how to fix it; the daemon keeps running.
#[test]
fn a_missing_build_user_fails_the_build_with_the_fix() {
    if !is_root() {
        // Builds as the daemon's own user then: nothing to refuse.
        require_tool(false, "root (builds as another user)");
        return;
    }
    let daemon = "uv = \"off\"\nbuild_user = \"rmkd-no-such-builder\"\n";
    let inst = Instance::new(daemon, "");
    setup(&inst);
    std::fs::write(inst.dir.path().join("r.txt"), "--no-index\nnosuchpkg\n").unwrap();
    inst.write_config(daemon, &job("m", "r.txt", "1s"));
    let check = inst.run(&["check-config"]);
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains("rmkd-no-such-builder"), "{check:?}");
    start(&inst);
    assert!(
        wait_for(Duration::from_secs(30), || !ran(&inst, "m").is_empty()),
        "{}",
        inst.log()
    );
    let rec = &ran(&inst, "m")[0];
    assert_eq!(rec["outcome"], "error", "{rec}");
    let note = rec["note"].as_str().unwrap_or_default();
    assert!(note.contains("rmkd-no-such-builder"), "{note}");
    assert!(note.contains("never as root"), "{note}");
    assert!(note.contains("build_user"), "{note}");
    assert!(env_dirs(&inst).is_empty(), "{:?}", env_dirs(&inst));
}

/// A folder above the state dir that other users cannot pass (the default layout of older
/// versions made `robotmk-daemon/` 0700) stops the build user: the build is not started, and
/// the error names the folder and the fix.
#[test]
fn a_closed_folder_above_the_environments_is_named() {
    let Some(_) = system_user(BUILDER) else {
        return;
    };
    let daemon = format!("uv = \"off\"\n{}", build_user_line());
    let inst = Instance::new(&daemon, "");
    // A temp dir of 0700: the build user cannot reach the users' tree in it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(inst.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(inst.dir.path().join("r.txt"), "--no-index\nnosuchpkg\n").unwrap();
    std::fs::write(inst.dir.path().join("v.robot"), SUITE).unwrap();
    inst.write_config(&daemon, &job("c", "r.txt", "1s"));
    start(&inst);
    assert!(
        wait_for(Duration::from_secs(30), || !ran(&inst, "c").is_empty()),
        "{}",
        inst.log()
    );
    let rec = &ran(&inst, "c")[0];
    assert_eq!(rec["outcome"], "error", "{rec}");
    let note = rec["note"].as_str().unwrap_or_default();
    assert!(
        note.contains(&format!(
            "cannot pass through {} (mode 0700",
            inst.dir.path().display()
        )),
        "{note}"
    );
    assert!(note.contains("chmod o+x"), "{note}");
}

/// Issue 22: a daily job whose environment cannot be built shows it at once, CRIT, with the
/// tool's own error line first (not pip's raw log, not `UNKNOWN - no result yet` until the
/// next day).
#[test]
fn a_failed_build_is_a_result_at_once_with_the_tools_error_first() {
    let Some(kit) = kit() else { return };
    let daemon = tool_line(&kit, false);
    let inst = Instance::new(&daemon, "");
    setup(&inst);
    std::fs::write(
        inst.dir.path().join("bad.txt"),
        requirements(&kit, "nosuchpkg==9.9"),
    )
    .unwrap();
    inst.write_config(
        &daemon,
        &format!(
            "{}{}",
            job("daily", "bad.txt", "1d").replace("every = \"1d\"", "cron = \"0 3 * * *\""),
            python_line(&kit)
        ),
    );
    let mut check = None;
    assert!(
        wait_for(Duration::from_secs(120), || {
            let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
            let c = common::checkmk::parse_ok(&out).check(None, "Robotmk t daily");
            let done = c.state_num() != 3;
            check = Some(c);
            done
        }),
        "still no result: {check:?}\n{}",
        inst.log()
    );
    let c = check.unwrap();
    assert_eq!(c.state_num(), 2, "{c:?}");
    let reason = c
        .summary
        .split("could not be built: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{c:?}"));
    assert!(
        reason.starts_with("ERROR: No matching distribution found for nosuchpkg==9.9"),
        "{c:?}"
    );
    assert!(!c.summary.contains('\u{1b}'), "{c:?}");
}

/// Run as the job's user in the venv its failed build left (first argument): a chain of
/// folders as deep as the third argument (a remover that recurses once per level overflows
/// its thread's stack long before), with links to root's folder and file outside (the second)
/// at the top and at the bottom.
const DEEP_TREE: &str = r#"
import os, sys
top, bait, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.chdir(top)
os.symlink(bait, "bait-dir")
os.mkdir("deep"); os.chdir("deep")
for i in range(depth):
    os.mkdir("d"); os.chdir("d")
os.symlink(bait, "bait-dir"); os.symlink(os.path.join(bait, "file"), "bait-file")
open("bottom", "w").write("x")
"#;

/// Removes what the daemon may leave when the test fails (a deep tree, which the temp dir's
/// own recursive removal would overflow the test's stack on), after ending the instance's
/// processes; runs before the instance's guard, also on panic.
struct DeepCleanup {
    instance: PathBuf,
    trees: Vec<PathBuf>,
}

impl Drop for DeepCleanup {
    fn drop(&mut self) {
        end_processes_of(&self.instance);
        for t in &self.trees {
            // GNU rm walks any depth and stays on one file system.
            let _ = Command::new("rm")
                .args(["-rf", "--one-file-system"])
                .arg(t)
                .status();
        }
    }
}

/// The state of the instance's one environment, and when its latest build attempt started.
fn the_env(inst: &Instance) -> (Value, String) {
    let env = envs(inst).into_iter().next().unwrap_or(Value::Null);
    let started = env["started"].as_str().unwrap_or_default().to_string();
    (env, started)
}

/// Whether anything of the user's tree is left in `venv`: its own entries, or the parts of its
/// chain the remover moved up (`.rmkd-rm-…`, see `sys::tree`).
fn users_tree_left(venv: &Path) -> bool {
    std::fs::read_dir(venv).is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n == "deep" || n == "bait-dir" || n.starts_with(".rmkd-rm-")
        })
    })
}

/// Touches `path` (same content, a new stamp): the daemon tries a failed build again.
fn touch(path: &Path) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
}

/// A `user` job's failed build leaves `venv/` that user's. The user fills it with a
/// 30,000-level tree linked to root's files; the next attempt (here: the requirements file
/// touched) removes it before it builds again. std's recursive `remove_dir_all` overflowed the
/// `envs` thread's stack there: SIGSEGV, and the same at every start after (a crash loop, no
/// job ran). Now: the same daemon (PID) goes on, the tree is gone, root's files outside are
/// untouched, and the removal runs with the user's rights (root's folder moved into the
/// user's venv is left, and the environment says why, not root removing it for the user).
#[test]
fn a_users_deep_tree_in_a_failed_builds_venv_is_removed_without_a_crash() {
    let Some((uid, gid)) = runner_user() else {
        return;
    };
    let py = Path::new("/usr/bin/python3");
    if !require_tool(py.is_file(), "/usr/bin/python3") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let daemon = "uv = \"off\"\n";
    let inst = Instance::new(daemon, "");
    setup(&inst);
    let d = inst.dir.path();
    let _cleanup = DeepCleanup {
        instance: d.to_path_buf(),
        trees: vec![
            PathBuf::from(format!("{}.users", inst.state.display())),
            inst.state.clone(),
        ],
    };
    // Root's, outside the user's tree: what the links in it name.
    let bait = d.join("bait");
    std::fs::create_dir_all(bait.join("sub")).unwrap();
    std::fs::write(bait.join("file"), "root's file").unwrap();
    std::fs::write(bait.join("sub/file"), "root's other file").unwrap();
    for b in [&bait, &bait.join("sub")] {
        std::fs::set_permissions(b, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bait_intact = || {
        std::fs::read_to_string(bait.join("file")).ok().as_deref() == Some("root's file")
            && std::fs::read_to_string(bait.join("sub/file"))
                .ok()
                .as_deref()
                == Some("root's other file")
    };
    let req = d.join("r.txt");
    std::fs::write(&req, "--no-index\nnosuchpkg\n").unwrap();
    inst.write_config(
        daemon,
        &format!(
            "{}user = \"{RUNNER}\"\npython = \"{}\"\n",
            job("u", "r.txt", "1h"),
            py.display()
        ),
    );
    start(&inst);
    let pid = inst.daemon_pid().expect("the daemon's pid");
    // When the requirements file was last touched (the removal's start).
    let touched = std::cell::Cell::new(None::<Instant>);
    let alive = || {
        assert!(
            pid_alive(pid),
            "the daemon (PID {pid}) died {:?} after the touch:\n{}\n{}",
            touched.get().map(|t| t.elapsed()),
            std::fs::read_to_string(inst.state.join("daemon.stderr")).unwrap_or_default(),
            inst.log()
        );
    };
    // The first build fails (no such package) and leaves the user's venv.
    let (mut env, mut started) = (Value::Null, String::new());
    assert!(
        wait_for_every(Duration::from_secs(180), Duration::from_millis(200), || {
            alive();
            (env, started) = the_env(&inst);
            env["state"] == "failed"
        }),
        "{env}\n{}",
        inst.log()
    );
    let env_dir = envs_root(&inst).join(env["key"].as_str().unwrap());
    let venv = env_dir.join("venv");
    assert_eq!(owner(&venv), uid, "{}", venv.display());
    // The user fills it.
    let out = Command::new(py)
        .args(["-c", DEEP_TREE])
        .arg(&venv)
        .arg(&bait)
        .arg("30000")
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "the user's tree: {out:?}");
    // Made (the script succeeded); not looked at again here: a CI run found it gone already,
    // the daemon's next attempt begun (and survived, which `alive` below checks throughout).

    // The next attempt removes it first: the same daemon goes on, the tree goes, a new
    // build runs (and fails again, for its package).
    // A look at a time: a removal that does not finish within its limit (a minute; freeing
    // 30,000 folders took GNU rm 33 s on a loaded test host) says so, and the next attempt
    // goes on where it stopped, as the admin's next touch, reload or restart would.
    let t0 = Instant::now();
    let (mut gone_after, mut attempts) = (None, 0);
    loop {
        attempts += 1;
        touched.set(Some(Instant::now()));
        touch(&req);
        let before = started.clone();
        let tried = wait_for_every(Duration::from_secs(180), Duration::from_millis(100), || {
            alive();
            if gone_after.is_none() && !users_tree_left(&venv) {
                gone_after = Some(t0.elapsed());
            }
            (env, started) = the_env(&inst);
            started != before && env["state"] == "failed"
        });
        assert!(tried, "no new attempt: {env}\n{}", inst.log());
        let error = env["error"].as_str().unwrap_or_default();
        if !error.contains("not all removed within") || attempts == 4 {
            break;
        }
        assert!(
            error.contains(&format!("cannot prepare {}", venv.display())),
            "{env}"
        );
    }
    eprintln!(
        "the 30,000-level tree was gone after {gone_after:?}; {attempts} attempt(s), the last \
         failed (for its package) after {:?}",
        t0.elapsed()
    );
    assert!(
        !users_tree_left(&venv),
        "the user's tree is still there: {env}"
    );
    let error = env["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("nosuchpkg"),
        "not the build's own error: {env}"
    );
    assert!(bait_intact(), "root's files outside the tree were touched");
    assert_eq!(owner(&env_dir), 0);
    assert_eq!(inst.daemon_pid(), Some(pid), "{}", inst.log());

    // With the user's rights: root's folder in the user's venv (the owner cannot empty it) is
    // left, and the environment says why; everything else of the user's goes.
    assert_eq!(owner(&venv), uid, "{}", venv.display());
    let roots = venv.join("roots");
    std::fs::create_dir(&roots).unwrap();
    std::fs::write(roots.join("f"), "root's").unwrap();
    touched.set(Some(Instant::now()));
    touch(&req);
    let before = started.clone();
    assert!(
        wait_for_every(Duration::from_secs(120), Duration::from_millis(200), || {
            alive();
            (env, started) = the_env(&inst);
            started != before && env["state"] == "failed"
        }),
        "no new attempt: {env}\n{}",
        inst.log()
    );
    let error = env["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("cannot prepare {}", venv.display()))
            && error.contains("\"f\"")
            && error.contains("Permission denied"),
        "{env}"
    );
    assert_eq!(
        std::fs::read_to_string(roots.join("f")).ok().as_deref(),
        Some("root's"),
        "root's file in the user's venv was removed with root's rights"
    );
    assert_eq!(std::fs::metadata(&roots).unwrap().uid(), 0);
    let left: Vec<_> = std::fs::read_dir(&venv)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["roots"], "{}", venv.display());
    assert!(bait_intact(), "root's files outside the tree were touched");

    // Still the first daemon, and ctrl's daemon line is OK (no restart after a crash).
    assert_eq!(inst.daemon_pid(), Some(pid), "{}", inst.log());
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let line = local_lines(&out)
        .into_iter()
        .find(|l| l.contains(" daemon\""))
        .unwrap_or_else(|| panic!("no daemon line in {out}"));
    assert!(line.starts_with('0'), "{line}");
    assert!(!line.contains("crash"), "{line}");
}

/// Removes the user a test made, whatever happens to it.
struct UserMade {
    name: String,
    _db: std::sync::RwLockReadGuard<'static, ()>,
}

/// Held by a test while it adds or removes users and groups (each rewrites /etc/group by
/// rename, which detaches a mount over it in another namespace), taken whole by the test
/// whose daemon sees a hung /etc/group.
static USER_DB: std::sync::RwLock<()> = std::sync::RwLock::new(());

impl UserMade {
    /// Before the user is created: removed (and the lock let go) when dropped.
    fn new(user: String) -> UserMade {
        UserMade {
            name: user,
            _db: USER_DB.read().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl Drop for UserMade {
    fn drop(&mut self) {
        let _ = user_db("userdel", &[&self.name]);
    }
}

/// A job whose account expired is held (tests/security.rs f12); it asks for no environment.
/// Its requirements changed meanwhile are built by no one: not by the build user (the held
/// job has no `user` while held), whose sealed environment its user could not even open. Once
/// the account is valid again, the job runs in an environment its own user built: no run
/// fails on another builder's environment.
#[test]
fn a_held_jobs_changed_requirements_build_nothing_and_it_runs_in_its_users_environment_after() {
    if !is_root() {
        require_tool(false, "root (a user is created and expired)");
        return;
    }
    let Some(kit) = kit() else { return };
    if system_user(BUILDER).is_none()
        || !require_tool(Path::new("/usr/bin/python3").is_file(), "/usr/bin/python3")
    {
        return;
    }
    let user = format!("rmkd-held{}", std::process::id() % 100_000);
    let _made = UserMade::new(user.clone());
    let out = user_db("useradd", &["-M", "-s", "/usr/sbin/nologin", &user]);
    assert!(out.status.success(), "useradd: {out:?}");
    let chage = |expire: &str| {
        let out = Command::new("chage")
            .args(["-E", expire, &user])
            .output()
            .unwrap();
        assert!(out.status.success(), "chage -E {expire}: {out:?}");
    };
    let uid = String::from_utf8_lossy(
        &Command::new("id")
            .args(["-u", &user])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    let own = format!("{user} (uid {uid})");
    let daemon = tool_line(&kit, true);
    let inst = Instance::new(&daemon, "");
    setup(&inst);
    let req = inst.dir.path().join("r.txt");
    std::fs::write(&req, requirements(&kit, "mypkg==1.0")).unwrap();
    inst.write_config(
        &daemon,
        &format!(
            "{}python = \"/usr/bin/python3\"\nuser = \"{user}\"\n",
            job("h", "r.txt", "2s")
        ),
    );
    start(&inst);
    let newest = |after: &str, pick: &dyn Fn(&Value) -> bool| {
        ran(&inst, "h")
            .into_iter()
            .filter(|r| r["run_id"].as_str().unwrap_or("") > after && pick(r))
            .max_by_key(|r| r["run_id"].as_str().unwrap_or("").to_string())
    };
    let id_of = |r: &Value| r["run_id"].as_str().unwrap().to_string();
    let runs = || {
        ran(&inst, "h")
            .iter()
            .map(|r| format!("{} {} {}", r["run_id"], r["outcome"], r["note"]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ok_with = |v: &'static str| {
        // Robot wrote it beside its result, in the user's folder.
        move |r: &Value| {
            r["outcome"] == "success"
                && r["result"].as_str().is_some_and(|p| {
                    std::fs::read_to_string(Path::new(p).with_file_name("version.txt"))
                        .is_ok_and(|got| got == v)
                })
        }
    };
    assert!(
        wait_for(Duration::from_secs(120), || newest("", &ok_with("1.0"))
            .is_some()),
        "{}\n{}",
        runs(),
        inst.log()
    );
    // Expired: held, then its requirements change.
    chage("0");
    let why = format!("account {user} expired on 1970-01-01");
    let held = |r: &Value| {
        r["outcome"] == "error"
            && r["note"]
                .as_str()
                .is_some_and(|n| n.contains("not run") && n.contains(&why))
    };
    let mut first = None;
    assert!(
        wait_for(Duration::from_secs(30), || {
            first = newest("", &held);
            first.is_some()
        }),
        "{}",
        runs()
    );
    let first = id_of(&first.unwrap());
    write_atomic(&req, &requirements(&kit, "mypkg==2.0"));
    // Due runs go on being held (never waiting for an environment), and nothing is built:
    // not by the build user, not for the held job at all.
    let edited = id_of(&newest("", &held).unwrap());
    assert!(
        wait_for(Duration::from_secs(30), || {
            ran(&inst, "h")
                .iter()
                .filter(|r| r["run_id"].as_str().unwrap_or("") > edited.as_str() && held(r))
                .count()
                >= 2
        }),
        "{}",
        runs()
    );
    std::thread::sleep(Duration::from_secs(5));
    let log = inst.log();
    let foreign: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("building a Python environment") && !l.contains(&own))
        .collect();
    assert!(
        foreign.is_empty(),
        "built for the held job by another builder: {foreign:?}"
    );
    let builders: Vec<Value> = envs(&inst).iter().map(|e| e["builder"].clone()).collect();
    assert!(
        builders.iter().all(|b| b.as_str() == Some(&own)),
        "{builders:?}"
    );
    let building = log.matches("building a Python environment").count();
    // The job's line says why it is held, and nothing of an environment or a result.
    let ctrl = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let line = local_lines(&ctrl)
        .into_iter()
        .find(|l| l.contains("\"Robotmk t h\""))
        .unwrap_or_default();
    assert!(
        line.contains(&why)
            && line.ends_with("not run")
            && !line.contains("environment")
            && !line.contains("build_user"),
        "{line}"
    );
    assert!(newest(&first, &|r| !held(r)).is_none(), "{}", runs());
    // Valid again: the job runs, in its own user's environment (the new requirements, once
    // built); no run fails on an environment someone else built.
    let last_held = id_of(&newest("", &held).unwrap());
    chage("-1");
    assert!(
        wait_for(Duration::from_secs(120), || newest(
            &last_held,
            &ok_with("2.0")
        )
        .is_some()),
        "{}\n{}",
        runs(),
        inst.log()
    );
    let bad = newest(&last_held, &|r| r["outcome"] != "success");
    assert!(bad.is_none(), "{}\n{}", runs(), inst.log());
    let log = inst.log();
    assert!(
        log.matches("building a Python environment").count() > building,
        "{log}"
    );
    let foreign: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("building a Python environment") && !l.contains(&own))
        .collect();
    assert!(foreign.is_empty(), "{foreign:?}");
    let builders: Vec<Value> = envs(&inst).iter().map(|e| e["builder"].clone()).collect();
    assert!(
        !builders.is_empty() && builders.iter().all(|b| b.as_str() == Some(&own)),
        "{builders:?}"
    );
    assert!(inst.run(&["stop", "--now"]).status.success());
}

/// The same with no build user on the host: the held job's changed requirements are no
/// failed build of the build user's, and its runs say why it is held, never that
/// "environments of jobs without a `user` are built as" someone missing.
#[test]
fn a_held_jobs_runs_say_it_is_held_not_that_the_build_user_is_missing() {
    if !is_root() {
        require_tool(false, "root (a user is created and expired)");
        return;
    }
    let Some(kit) = kit() else { return };
    if !require_tool(Path::new("/usr/bin/python3").is_file(), "/usr/bin/python3") {
        return;
    }
    let user = format!("rmkd-heldb{}", std::process::id() % 100_000);
    let _made = UserMade::new(user.clone());
    let out = user_db("useradd", &["-M", "-s", "/usr/sbin/nologin", &user]);
    assert!(out.status.success(), "useradd: {out:?}");
    let daemon = "uv = \"off\"\nbuild_user = \"rmkd-no-such-builder\"\n";
    let inst = Instance::new(daemon, "");
    setup(&inst);
    let req = inst.dir.path().join("r.txt");
    std::fs::write(&req, requirements(&kit, "mypkg==1.0")).unwrap();
    let out = Command::new("chage")
        .args(["-E", "0", &user])
        .output()
        .unwrap();
    assert!(out.status.success(), "chage: {out:?}");
    inst.write_config(
        daemon,
        &format!(
            "{}python = \"/usr/bin/python3\"\nuser = \"{user}\"\n",
            job("h", "r.txt", "1s")
        ),
    );
    start(&inst);
    let why = format!("account {user} expired on 1970-01-01");
    let notes = || -> Vec<String> {
        ran(&inst, "h")
            .iter()
            .map(|r| r["note"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let held = |n: &String| n.contains("not run") && n.contains(&why);
    assert!(
        wait_for(Duration::from_secs(30), || notes()
            .iter()
            .filter(|n| held(n))
            .count()
            >= 2),
        "{:?}\n{}",
        notes(),
        inst.log()
    );
    write_atomic(&req, &requirements(&kit, "mypkg==2.0"));
    let seen = notes().len();
    assert!(
        wait_for(Duration::from_secs(30), || notes().len() >= seen + 3),
        "{:?}",
        notes()
    );
    let notes = notes();
    assert!(notes.iter().all(held), "{notes:?}");
    let log = inst.log();
    assert!(
        !log.contains("rmkd-no-such-builder") && !log.contains("environment failed"),
        "{log}"
    );
    assert!(env_dirs(&inst).is_empty(), "{:?}", env_dirs(&inst));
    assert!(inst.run(&["stop", "--now"]).status.success());
}

/// The environment of a live process, as `NAME=value` entries.
fn environ_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|e| {
            e.split(|b| *b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// An instance whose environment builds never end: no real Python needed, its "interpreter"
/// (the returned path) waits, so a build's processes stay to be seen. Returns the instance, its
/// daemon settings and the interpreter.
fn waiting_build() -> (Instance, String, PathBuf) {
    let daemon = format!(
        "uv = \"off\"\nenv_build_timeout = \"2m\"\n{}",
        build_user_line()
    );
    let inst = Instance::new(&daemon, "");
    setup(&inst);
    let fake = inst.dir.path().join("waits-python");
    std::fs::write(&fake, "#!/bin/sh\nsleep 120\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    (inst, daemon, fake)
}

/// F7/1: root's proxy password and index token reached a `user` job's user through its
/// environment build (the build runs as that user, who reads its own processes' environment).
/// Now only the build user's builds (jobs without `user`) get root's installer settings; a
/// `user` job's build gets those of the job's `env`, nothing of root's.
#[test]
fn a_user_jobs_build_gets_its_jobs_installer_settings_not_roots() {
    let Some((runner, _)) = runner_user() else {
        return;
    };
    let Some((builder, _)) = system_user(BUILDER) else {
        return;
    };
    let (inst, daemon, fake) = waiting_build();
    let d = inst.dir.path();
    std::fs::write(d.join("u.txt"), "u\n").unwrap();
    std::fs::write(d.join("b.txt"), "b\n").unwrap();
    let py = format!("python = \"{}\"\n", fake.display());
    inst.write_config(
        &daemon,
        &format!(
            "{}{py}user = \"{RUNNER}\"\nenv = {{ PIP_INDEX_URL = \"https://job:own@127.0.0.1:9/simple\" }}\n\n{}{py}",
            job("u", "u.txt", "1h"),
            job("b", "b.txt", "1h"),
        ),
    );
    let out = inst
        .cmd()
        .env("https_proxy", "http://admin:S3cret@127.0.0.1:9")
        .env("PIP_INDEX_URL", "https://robot:tok3n@127.0.0.1:9/simple")
        .arg("start")
        .output()
        .unwrap();
    assert!(out.status.success(), "start: {out:?}");
    // Both builds' processes: env-build and the "interpreter" below it, by their run tag.
    let envs_dir = envs_root(&inst).display().to_string();
    let of = |uid: u32| -> Vec<(u32, Vec<String>)> {
        processes_of(&envs_dir)
            .into_iter()
            .filter(|(p, _)| uid_of(u64::from(*p)) == Some(uid))
            .map(|(p, _)| (p, environ_of(p)))
            .collect()
    };
    let waiting = |procs: &[(u32, Vec<String>)]| procs.len() >= 2;
    assert!(
        wait_for(Duration::from_secs(60), || waiting(&of(runner))
            && waiting(&of(builder))),
        "runner's {:?}, builder's {:?}\n{}",
        of(runner),
        of(builder),
        inst.log()
    );
    for (pid, env) in of(runner) {
        let all = env.join(" ");
        assert!(
            !all.contains("S3cret") && !all.contains("tok3n"),
            "root's proxy password or index token reached the job's user (pid {pid}): {env:?}"
        );
        assert!(
            env.iter()
                .any(|v| v == "PIP_INDEX_URL=https://job:own@127.0.0.1:9/simple"),
            "the job's own index did not reach its build (pid {pid}): {env:?}"
        );
    }
    // The build user's build still gets the daemon's (an admin behind a proxy).
    for (pid, env) in of(builder) {
        assert!(
            env.iter()
                .any(|v| v == "https_proxy=http://admin:S3cret@127.0.0.1:9")
                && env
                    .iter()
                    .any(|v| v == "PIP_INDEX_URL=https://robot:tok3n@127.0.0.1:9/simple"),
            "the build user's build lost the daemon's installer settings (pid {pid}): {env:?}"
        );
    }
}

/// F7/4: a job whose `user` is root by uid (`root`, an alias such as `toor`) is built by the
/// build user (never as root), as `builder_for` says; the build user was looked up only for
/// jobs without `user`, so such a job's every run was "no build needs the build user".
#[test]
fn a_job_whose_user_is_root_is_built_by_the_build_user() {
    let Some((builder, _)) = system_user(BUILDER) else {
        return;
    };
    let (inst, daemon, fake) = waiting_build();
    let d = inst.dir.path();
    std::fs::write(d.join("r.txt"), "r\n").unwrap();
    inst.write_config(
        &daemon,
        &format!(
            "{}python = \"{}\"\nuser = \"root\"\n",
            job("r", "r.txt", "1h"),
            fake.display()
        ),
    );
    start(&inst);
    let label = format!("{BUILDER} (uid {builder})");
    let mut why = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            if let Some(r) = ran(&inst, "r").first() {
                why = r.to_string();
                return true;
            }
            envs(&inst)
                .iter()
                .any(|e| e["builder"] == label.as_str() && e["state"] == "building")
        }) && why.is_empty(),
        "no build by the build user: {why}\n{:?}\n{}",
        envs(&inst),
        inst.log()
    );
}

/// F7/3: a user database that does not answer (here /etc/group a FIFO in the daemon's mount
/// namespace: NSS's getgrouplist blocks on it as on a hung LDAP) held the lookup of the build
/// user on the environments' thread for ever: no build, env_build_timeout never applied,
/// nothing shown, and each due time "skipped: the previous run is still in flight" (none
/// was). Now the lookup is bounded: the job's runs are errors that name the user database.
#[test]
fn a_hung_user_database_fails_the_builds_it_holds_saying_why() {
    if !require_root("a mount namespace") || system_user(BUILDER).is_none() {
        return;
    }
    if !require_tool(
        have_tool("unshare") && have_tool("mkfifo"),
        "unshare, mkfifo",
    ) {
        return;
    }
    // No user or group added or removed while it runs: a rewritten /etc/group would detach
    // the FIFO mounted over it, and the database would answer. (The kept users are made.)
    let _ = (system_user(RUNNER), system_user(ATTACKER));
    let _db = USER_DB.write().unwrap_or_else(|e| e.into_inner());
    let daemon = format!(
        "uv = \"off\"\nenv_build_timeout = \"3s\"\n{}",
        build_user_line()
    );
    let inst = Instance::new(&daemon, "");
    setup(&inst);
    let d = inst.dir.path();
    std::fs::write(d.join("r.txt"), "r\n").unwrap();
    inst.write_config(
        &daemon,
        &format!(
            "{}\n[[job]]\nname = \"plain\"\ncommand = [\"/bin/true\"]\nevery = \"2s\"\ntimeout = \"2s\"\n",
            job("h", "r.txt", "2s"),
        ),
    );
    let fifo = d.join("group-fifo");
    let out = Command::new("mkfifo").arg(&fifo).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let script = format!(
        "mount --bind '{}' /etc/group && exec '{BIN}' --config '{}' start",
        fifo.display(),
        inst.config.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "start: {out:?}");
    let note = |r: &Value| r["note"].as_str().unwrap_or_default().to_string();
    assert!(
        wait_for(Duration::from_secs(60), || ran(&inst, "h").iter().any(
            |r| r["outcome"] == "error" && note(r).contains("user database")
        )),
        "{:?}\n{}",
        inst.finished_records("h"),
        inst.log()
    );
    let rec = ran(&inst, "h")
        .into_iter()
        .find(|r| note(r).contains("user database"))
        .unwrap();
    assert!(note(&rec).contains(BUILDER), "{rec}");
    // No due time of it was skipped for a run in flight: none was.
    let false_notes: Vec<String> = inst
        .finished_records("h")
        .iter()
        .map(note)
        .filter(|n| n.contains("in flight"))
        .collect();
    assert!(false_notes.is_empty(), "{false_notes:?}");
    // Jobs without an environment ran on meanwhile.
    assert!(!ran(&inst, "plain").is_empty(), "{}", inst.log());
}

/// A Python script that writes a stand-in Robot Framework wheel into OUTDIR (`python3 -c
/// STANDIN_ROBOT OUTDIR`): its `robot` prints "STANDIN-ROBOT-RAN" and its uid and gid.
const STANDIN_ROBOT: &str = r#"
import zipfile, hashlib, base64, sys
name, ver, out = 'robotframework', '7.0', sys.argv[1]
di = f'{name}-{ver}.dist-info'
files = {'robot/__init__.py': b'import os\ndef main():\n    print("STANDIN-ROBOT-RAN", os.getuid(), os.getgid())\n    return 0\n',
         f'{di}/METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n'.encode(),
         f'{di}/WHEEL': b'Wheel-Version: 1.0\nGenerator: rmkd-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
         f'{di}/entry_points.txt': b'[console_scripts]\nrobot = robot:main\n'}
rec = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}" for n, d in files.items()]
files[f'{di}/RECORD'] = ('\n'.join(rec + [f'{di}/RECORD,,']) + '\n').encode()
with zipfile.ZipFile(f'{out}/{name}-{ver}-py3-none-any.whl', 'w') as z:
    for n, d in files.items(): z.writestr(n, d)
"#;

/// Removes a group this test created, also when it fails.
struct GroupMade(String);

impl Drop for GroupMade {
    fn drop(&mut self) {
        let _ = user_db("groupdel", &[&self.0]);
    }
}

/// F7/5: the primary group of a job's user changed (`usermod -g`) and the job was locked out
/// of its own environment for good: `<key>/` stayed 0750 root:<the old group>, every run
/// "cannot start robot: Permission denied". The environment follows the user's group now.
#[test]
fn a_job_keeps_its_environment_when_its_users_primary_group_changes() {
    if !require_root("a user and a group are created") {
        return;
    }
    let py = Path::new("/usr/bin/python3");
    if !require_tool(py.is_file(), "/usr/bin/python3") {
        return;
    }
    let n = std::process::id() % 100_000;
    let (user, group) = (format!("rmkd-rg{n}"), format!("rmkd-rgg{n}"));
    let _made = UserMade::new(user.clone());
    let out = user_db("useradd", &["-M", "-U", "-s", "/bin/sh", &user]);
    assert!(out.status.success(), "useradd: {out:?}");
    let _own_group = GroupMade(user.clone());
    let out = user_db("groupadd", &[&group]);
    assert!(out.status.success(), "groupadd: {out:?}");
    let _group = GroupMade(group.clone());
    let daemon = "uv = \"off\"\n";
    let inst = Instance::new(daemon, "");
    open_to_builders(&inst);
    let d = inst.dir.path();
    let wheels = d.join("wheels");
    std::fs::create_dir(&wheels).unwrap();
    let out = Command::new(py)
        .args(["-c", STANDIN_ROBOT])
        .arg(&wheels)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(d.join("t.robot"), "*** Test Cases ***\nT\n    Log    hi\n").unwrap();
    std::fs::write(
        d.join("r.txt"),
        format!(
            "--no-index\n--find-links {}\nrobotframework\n",
            wheels.display()
        ),
    )
    .unwrap();
    chown_tree(&wheels, 0, 0);
    let out = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    inst.write_config(
        daemon,
        &format!(
            "[[job]]\nname = \"e\"\nsuite = \"t.robot\"\nevery = \"2s\"\ntimeout = \"20s\"\nrequirements = \"r.txt\"\npython = \"{}\"\nuser = \"{user}\"\n",
            py.display()
        ),
    );
    start(&inst);
    // The runs whose robot ran: its line in the run's stdout.log.
    let runs = inst.state.join("jobs/e/runs");
    let robot_ran = || -> usize {
        std::fs::read_dir(&runs)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        std::fs::read_to_string(e.path().join("stdout.log"))
                            .is_ok_and(|s| s.contains("STANDIN-ROBOT-RAN"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let notes = || -> Vec<String> {
        ran(&inst, "e")
            .iter()
            .map(|r| r["note"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(120), || robot_ran() >= 1),
        "{:?}\n{}",
        notes(),
        inst.log()
    );
    // The admin changes the user's primary group (retried while a run holds the user).
    assert!(
        wait_for(Duration::from_secs(10), || Command::new("usermod")
            .args(["-g", &group, &user])
            .output()
            .is_ok_and(|o| o.status.success())),
        "usermod -g failed"
    );
    let before = notes().len();
    let ran_before = robot_ran();
    assert!(
        wait_for(Duration::from_secs(30), || robot_ran() >= ran_before + 2),
        "robot no longer runs after the group change: {:?}\n{}",
        &notes()[before.min(notes().len())..],
        inst.log()
    );
    let denied: Vec<String> = notes()
        .into_iter()
        .skip(before)
        .filter(|n| n.contains("Permission denied"))
        .collect();
    assert!(denied.is_empty(), "{denied:?}");
}

/// The daemon, started in a mount namespace of its own, ended by PID whatever happens.
struct NsDaemon {
    pid: u32,
    config: PathBuf,
}

impl NsDaemon {
    /// `path` as the daemon sees it (its mount namespace's root, through /proc).
    fn path(&self, path: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.pid, path.display()))
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        let _ = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", BIN, "--config"])
            .arg(&self.config)
            .args(["stop", "--now", "--timeout", "10s"])
            .output();
        // SAFETY: kill on a PID this test started; gone already is fine.
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
    }
}

/// F9 (t6): the build fits on the state dir's disk but its seal (a second copy, root's) does
/// not. The seal fails with ENOSPC; the daemon must not keep the disk full with its own
/// leftovers (the builder's `venv.built` and the half copy `venv.sealing`): both go at once,
/// the environment's error says how much the seal needed, the build is not retried in a loop,
/// and a plain job records its runs again. A 90 MiB tmpfs in a private mount namespace holds
/// the state dir; the wheels (a 40 MiB package) are written by the test, offline.
#[test]
fn a_seal_out_of_space_removes_both_trees_and_jobs_record_again() {
    if !require_root("a build as another user and a private mount (unshare --mount) need root") {
        return;
    }
    let py = Path::new("/usr/bin/python3");
    let venv_ok = Command::new(py)
        .args(["-c", "import venv, ensurepip"])
        .status()
        .is_ok_and(|s| s.success());
    if !require_tool(venv_ok, "/usr/bin/python3 with venv and ensurepip")
        || !require_tool(system_user(BUILDER).is_some(), "the build user")
    {
        return;
    }
    let inst = Instance::new("", "");
    open_to_builders(&inst);
    let d = inst.dir.path();
    let wheels = d.join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let out = Command::new(py)
        .arg("-c")
        .arg(
            r#"
import zipfile, hashlib, base64, sys
def wheel(name, ver, files, out):
    files = dict(files)
    di = f'{name}-{ver}.dist-info'
    files[f'{di}/METADATA'] = f'Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n'.encode()
    files[f'{di}/WHEEL'] = b'Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n'
    rec = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}" for n, d in files.items()]
    files[f'{di}/RECORD'] = ('\n'.join(rec + [f'{di}/RECORD,,']) + '\n').encode()
    with zipfile.ZipFile(f'{out}/{name}-{ver}-py3-none-any.whl', 'w', zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items(): z.writestr(n, d)
wheel('robotframework', '7.0', {'robot/__init__.py': b''}, sys.argv[1])
wheel('bigpkg', '1.0', {'bigpkg/__init__.py': b'', 'bigpkg/blob.bin': b'\0' * (40 << 20)}, sys.argv[1])
"#,
        )
        .arg(&wheels)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(d.join("v.robot"), SUITE).unwrap();
    std::fs::write(
        d.join("r.txt"),
        format!(
            "--no-index\n--find-links {}\nrobotframework\nbigpkg\n",
            wheels.display()
        ),
    )
    .unwrap();
    let _ = Command::new("chmod").arg("-R").arg("a+rX").arg(d).status();
    let mnt = d.join("m");
    std::fs::create_dir_all(&mnt).unwrap();
    let state = mnt.join("state");
    std::fs::write(
        &inst.config,
        format!(
            "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nheartbeat_timeout = \"0\"\n\
             uv = \"off\"\nenv_build_timeout = \"3m\"\n{}\
             [[job]]\nname = \"envjob\"\nkind = \"robot\"\nsuite = \"v.robot\"\n\
             requirements = \"r.txt\"\npython = \"{}\"\nevery = \"1m\"\ntimeout = \"30s\"\n\
             [[job]]\nname = \"plain\"\ncommand = [\"true\"]\nevery = \"1s\"\ntimeout = \"1s\"\n",
            state.display(),
            build_user_line(),
            py.display()
        ),
    )
    .unwrap();
    // `start` detaches: the daemon stays in the namespace after unshare's shell has gone.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=90m,mode=755 rmkd-f9 \"$1\" && exec \"$2\" --config \"$3\" start")
        .arg("sh")
        .arg(&mnt)
        .arg(BIN)
        .arg(&inst.config)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare");
    assert!(out.status.success(), "{out:?}");
    let said = text(&out.stdout);
    let pid: u32 = said
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split([',', ')']).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said:?}"));
    let daemon = NsDaemon {
        pid,
        config: inst.config.clone(),
    };
    let status = || -> Value {
        std::fs::read(daemon.path(&state.join("status.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let env_error = || -> String {
        status()["envs"]
            .as_array()
            .and_then(|e| e.first())
            .and_then(|e| e["error"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        wait_for_every(Duration::from_secs(180), Duration::from_millis(500), || {
            env_error().contains("could not be sealed")
        }),
        "{:?}",
        status()["envs"]
    );
    let error = env_error();
    eprintln!("the environment's error: {error}");
    assert!(
        error.starts_with("the built environment could not be sealed: ")
            && error.contains("No space left on device")
            && error.contains("MiB) beside it"),
        "{error}"
    );
    // Both trees are gone: the builder's and the half copy.
    let envs = daemon.path(&PathBuf::from(format!("{}.users/envs", state.display())));
    let left: Vec<PathBuf> = std::fs::read_dir(&envs)
        .unwrap()
        .flatten()
        .flat_map(|k| std::fs::read_dir(k.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n == "venv.built" || n == "venv.sealing")
        })
        .collect();
    assert!(left.is_empty(), "left after the failed seal: {left:?}");
    // The plain job records again (the disk has room), and the build is not tried again.
    let runs = daemon.path(&state.join("jobs/plain/runs"));
    let count = || std::fs::read_dir(&runs).map_or(0, |r| r.count());
    let before = count();
    let failed_at = status()["envs"][0]["built"].clone();
    assert!(!failed_at.is_null(), "{:?}", status()["envs"]);
    assert!(
        wait_for(Duration::from_secs(20), || count() >= before + 3),
        "plain: {before} runs, then {}",
        count()
    );
    assert_eq!(status()["envs"][0]["state"], "failed");
    assert_eq!(status()["envs"][0]["built"], failed_at, "built again");
    drop(daemon);
}
