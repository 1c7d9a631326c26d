//! Python environments per job (issue 13) with the real robot and real venvs: jobs with
//! clashing versions of a library, jobs sharing one environment, a changed requirements file
//! switching atomically, a failing build reported with its error, a hanging build ended at
//! `env_build_timeout`, `start_delay`, and the build time with uv and with pip.
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

const MKWHEEL: &str = r#"
import sys, zipfile, hashlib, base64, os
name, version, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
files = {
    f"{name}.py": f"VERSION = {version!r}\n",
    f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: robotmk-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = f"{name}-{version}.dist-info/RECORD"
lines = []
for path, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    lines.append(f"{path},sha256={digest},{len(text.encode())}")
lines.append(f"{record},,")
files[record] = "\n".join(lines) + "\n"
os.makedirs(outdir, exist_ok=True)
tmp = os.path.join(outdir, f".{name}-{version}.tmp")
with zipfile.ZipFile(tmp, "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
os.replace(tmp, os.path.join(outdir, f"{name}-{version}-py3-none-any.whl"))
"#;

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
    std::fs::write(inst.dir.path().join("v.robot"), SUITE).unwrap();
}

/// `[daemon]` lines choosing the build tool.
fn tool_line(kit: &Kit, with_uv: bool) -> String {
    match (with_uv, uv(&kit.bin)) {
        (true, Some(u)) => format!("uv = \"{}\"", u.display()),
        _ => "uv = \"off\"".into(),
    }
}

fn job(name: &str, req: &str, every: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nsuite = \"v.robot\"\nevery = \"{every}\"\ntimeout = \"60s\"\nrequirements = \"{req}\"\n"
    )
}

fn python_line(kit: &Kit) -> String {
    format!("python = \"{}\"\n", kit.bin.join("python3").display())
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
    std::fs::read_dir(inst.state.join("envs"))
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
    let inst = Instance::new("uv = \"off\"\nenv_build_timeout = \"2s\"", "");
    let d = inst.dir.path();
    let fake = d.join("hangs-python");
    std::fs::write(&fake, "#!/bin/sh\nsleep 300\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(d.join("r.txt"), "x\n").unwrap();
    std::fs::write(d.join("v.robot"), SUITE).unwrap();
    inst.write_config(
        "uv = \"off\"\nenv_build_timeout = \"2s\"",
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
    let envs_dir = inst.state.join("envs").display().to_string();
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
        figures.push((e["tool"].clone(), e["duration_s"].as_f64().unwrap()));
    }
    eprintln!("environment build time (robotframework + one local wheel, offline): {figures:?}");
}

const RUNNER: &str = "rmkd-runner";

/// The unprivileged user jobs run as, created once (and kept, like tests/security.rs's
/// attacker). `None` (a skip; a failure in CI) where this process is not root.
fn runner_user() -> Option<(u32, u32)> {
    static U: Mutex<Option<Option<(u32, u32)>>> = Mutex::new(None);
    let mut u = U.lock().unwrap_or_else(|e| e.into_inner());
    if u.is_none() {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, RUNNER]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if root && id("-u").is_none() {
            let out = Command::new("useradd")
                .args(["--system", "--no-create-home", "--home-dir", "/nonexistent"])
                .args(["--shell", "/usr/sbin/nologin", RUNNER])
                .output()
                .expect("useradd");
            assert!(
                out.status.success() || id("-u").is_some(),
                "useradd: {out:?}"
            );
        }
        *u = Some(if root { id("-u").zip(id("-g")) } else { None });
    }
    let got = *u.as_ref().unwrap();
    if got.is_none() {
        require_tool(false, "root (to create the user a job runs as)");
    }
    got
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
    // Its folder is its own; the record, the output files and the state dir stay root's.
    assert_eq!(owner(&work), uid);
    assert_eq!(owner(&run_dir.join("record.json")), 0);
    assert_eq!(owner(&run_dir.join("stdout.log")), 0);
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
    let Some((uid, _)) = runner_user() else {
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
    assert_eq!(uid_of(pid.unwrap()), Some(uid));
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
    // The environment is readable, not writable, by the user.
    let key = envs[0]["key"].as_str().unwrap();
    let env_dir = PathBuf::from(format!("{}.users/envs/{key}", inst.state.display()));
    assert_eq!(owner(&env_dir), 0);
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
    let lib = inst.state.join("envs").join(key).join("venv/lib");
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
    let inst = Instance::new("uv = \"off\"", "");
    let d = inst.dir.path();
    std::fs::write(d.join("v.robot"), SUITE).unwrap();
    let req = d.join("r.txt");
    // Offline: once fixed, the build fails quickly on the missing package.
    std::fs::write(&req, "--no-index\nnosuchpkg\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&req, std::fs::Permissions::from_mode(0o666)).unwrap();
    inst.write_config("uv = \"off\"", &job("w", "r.txt", "1s"));
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
