//! What a run leaves behind is untrusted input to the root daemon (issue 19, findings 1, 2, 8
//! and 9; docs/SECURITY.md explains the rules). Each test is one finding, played by a real
//! unprivileged user created by the test where a user is involved (CI runs as root; elsewhere
//! those tests skip with a reason, and fail under `CI=true`):
//!
//! - 1: a hostile `attempts.json` and links in the user's folder make root read nothing the
//!   user could not read: no file it names, no existence oracle, no forged attempt count, no
//!   uncut field — in `show`, `history --json`, ctrl's output or the record;
//! - 2: a 1 TB sparse result, or a slow one under the size cap, is bounded (a note says why),
//!   another job keeps reporting meanwhile, and `stop --now` and SIGTERM end the daemon
//!   within the grace whatever a parse is doing;
//! - 8: control characters and Unicode line separators from a result never reach the agent,
//!   on ctrl's full path or its fast path;
//! - 9: a runner that removed its own run folder is at least WARN, with the note.
#![cfg(unix)]

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// This test binary's job user (its own name: other test binaries create theirs).
const USER: &str = "rmkd-i19res";

/// The job user, created once (and kept, like the other tests' users). `None` (skip) where
/// this process is not root.
fn job_user() -> Option<&'static str> {
    static U: OnceLock<bool> = OnceLock::new();
    let ok = *U.get_or_init(|| {
        if !is_root() {
            return false;
        }
        let exists = || {
            Command::new("id")
                .args(["-u", USER])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !exists() {
            let out = Command::new("useradd")
                .args(["--system", "--no-create-home", "--home-dir", "/nonexistent"])
                .args(["--shell", "/usr/sbin/nologin", USER])
                .output()
                .expect("useradd");
            assert!(out.status.success() || exists(), "useradd {USER}: {out:?}");
        }
        true
    });
    if !ok {
        require_tool(false, "root (to create the user a job runs as)");
        return None;
    }
    Some(USER)
}

/// Runs `cmd`, killing it (and failing the test) if it takes longer than `limit`.
fn within(limit: Duration, cmd: &mut Command) -> (Output, Duration) {
    output_within(limit, cmd)
}

/// A process started in the background, ended by PID when the test ends (also on panic).
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ctrl_text(inst: &Instance) -> String {
    let (out, _) = within(Duration::from_secs(20), inst.cmd().arg("ctrl"));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("ctrl prints UTF-8")
}

/// The local check line of service `name` (exact) in ctrl's output.
fn check_line(out: &str, name: &str) -> String {
    let quoted = format!("\"{name}\"");
    out.lines()
        .find(|l| l.contains(&quoted))
        .unwrap_or_else(|| panic!("no check {quoted} in:\n{out}"))
        .to_string()
}

fn text_of(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file below `dir` as text (the records, latest.json, status.json, the view).
fn all_state_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(list) = fs::read_dir(&d) else { continue };
        for e in list.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                todo.push(p);
            } else if m.is_file() && !p.ends_with("daemon.log") {
                out.push_str(&String::from_utf8_lossy(&fs::read(&p).unwrap_or_default()));
                out.push('\n');
            }
        }
    }
    out
}

const GOOD_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Robot 7.0" schemaversion="5"><suite name="Mine"><test name="Mine Ok"><status status="PASS" elapsed="0.1"/></test><status status="PASS" elapsed="0.2"/></suite><statistics><total><stat pass="1" fail="0" skip="0">All Tests</stat></total></statistics></robot>
"#;

const SECRET_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Robot 7.0" schemaversion="5"><suite name="RootSecretSuite"><test name="RootOnlyTest"><status status="PASS" elapsed="0.1"/></test><status status="PASS" elapsed="0.2"/></suite><statistics><total><stat pass="4242" fail="0" skip="0">All Tests</stat></total></statistics></robot>
"#;

// ---- finding 1 ------------------------------------------------------------------------------

#[test]
fn f1_a_hostile_attempts_file_and_links_make_root_read_nothing_of_theirs() {
    let Some(user) = job_user() else { return };
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    // The user must reach the users' tree beside the state dir.
    chmod(inst.dir.path(), 0o755);
    let d = inst.dir.path();
    // What only root may read: a robot result the user can reach by path but not read.
    let secret_dir = d.join("secret");
    fs::create_dir(&secret_dir).unwrap();
    chmod(&secret_dir, 0o755);
    let secret = secret_dir.join("output.xml");
    fs::write(&secret, SECRET_XML).unwrap();
    chmod(&secret, 0o600);
    fs::write(secret_dir.join("log.html"), "root's log").unwrap();
    chmod(&secret_dir.join("log.html"), 0o600);
    let good = d.join("good.xml");
    fs::write(&good, GOOD_XML).unwrap();
    chmod(&good, 0o644);
    let q = "Q".repeat(3000);
    // Everything a hostile list can name: root-only files, a path that does not exist (an
    // existence oracle), a root-only robot result, a relative escape, fields of 3,000
    // characters, and more attempts than the job has.
    let forged = format!(
        r#"[{{"attempt":1,"ran":"{q}","exit_code":0,"outcome":"{q}","output":"/etc/shadow","log":"/etc/shadow","note":"{q}"}},
{{"attempt":2,"ran":"all","exit_code":0,"outcome":"passed","output":"/nonexistent-rmkd-i19/output.xml"}},
{{"attempt":3,"ran":"all","exit_code":0,"outcome":"passed","output":"{secret}"}},
{{"attempt":4,"ran":"all","exit_code":0,"outcome":"passed","output":"../../../../../../etc/shadow"}},
{{"attempt":5,"ran":"all","exit_code":0,"outcome":"passed","output":"attempt-1/output.xml"}}]"#,
        secret = secret.display()
    );
    // A list that looks like the wrapper's (two attempts, numbered, `all` then `failed`) with
    // the same payload in the fields the wrapper writes.
    let plausible = format!(
        r#"[{{"attempt":1,"ran":"all","exit_code":1,"outcome":"{q}","passed":4242,"output":"/etc/shadow","log":"/etc/shadow","note":"{q}"}},
{{"attempt":2,"ran":"failed","exit_code":0,"outcome":"passed","passed":4242,"output":"{secret}","log":"{secret_dir}/log.html"}}]"#,
        secret = secret.display(),
        secret_dir = secret_dir.display()
    );
    let lists = [("forged", forged), ("plausible", plausible)].map(|(name, text)| {
        let p = d.join(format!("{name}.json"));
        fs::write(&p, text).unwrap();
        chmod(&p, 0o644);
        p
    });
    // A fake robot and rebot for the jobs with retries: robot writes a good result, and
    // rebot (the last thing the wrapper runs, as the user) plants the list $LIST and links
    // in place of each attempt's result and log.
    let bin = d.join("bin");
    fs::create_dir(&bin).unwrap();
    let outdir_of =
        "out=; prev=; for a in \"$@\"; do [ \"$prev\" = --outputdir ] && out=$a; prev=$a; done\n";
    fs::write(
        bin.join("robot"),
        format!(
            "#!/bin/sh\n{outdir_of}mkdir -p \"$out\" && cp {good} \"$out/output.xml\"\n",
            good = good.display()
        ),
    )
    .unwrap();
    fs::write(
        bin.join("rebot"),
        format!(
            "#!/bin/sh\n{outdir_of}cp {good} \"$out/output.xml\"\ncp \"$LIST\" \"$out/attempts.json\"\n\
             rm -f \"$out/attempt-1/output.xml\" && ln -s {secret} \"$out/attempt-1/output.xml\"\n\
             ln -s {secret_dir}/log.html \"$out/attempt-1/log.html\"\n\
             rm -rf \"$out/attempt-2\" && ln -s {secret_dir} \"$out/attempt-2\"\n\
             ln -sf {secret_dir}/log.html \"$out/log.html\"\n",
            good = good.display(),
            secret = secret.display(),
            secret_dir = secret_dir.display(),
        ),
    )
    .unwrap();
    chmod(&bin.join("robot"), 0o755);
    chmod(&bin.join("rebot"), 0o755);
    let suite = d.join("s.robot");
    fs::write(&suite, "*** Test Cases ***\nT\n    No Operation\n").unwrap();
    chmod(&suite, 0o644);
    let plain = format!(
        "cp {} output.xml; cp {} attempts.json",
        good.display(),
        lists[0].display()
    );
    let linked = format!("ln -s {} out", secret_dir.display());
    let retry_job = |name: &str, list: &Path| {
        format!(
            "[[job]]\nname = \"{name}\"\nkind = \"robot\"\nsuite = \"{suite}\"\nrobot = \"{robot}\"\nattempts = 2\nevery = \"1h\"\nuser = \"{user}\"\nenv = {{ LIST = \"{list}\" }}\n\n",
            suite = suite.display(),
            robot = bin.join("robot").display(),
            list = list.display(),
        )
    };
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!(
            "[[job]]\nname = \"plain\"\ncommand = [\"sh\", \"-c\", {plain:?}]\nresult = \"{{run_dir}}/output.xml\"\nevery = \"1h\"\nuser = \"{user}\"\n\n\
             [[job]]\nname = \"linked\"\ncommand = [\"sh\", \"-c\", {linked:?}]\nresult = \"{{run_dir}}/out/output.xml\"\nevery = \"1h\"\nuser = \"{user}\"\n\n{}{}",
            retry_job("forged", &lists[0]),
            retry_job("retry", &lists[1]),
        ),
    );
    const JOBS: [&str; 4] = ["plain", "linked", "forged", "retry"];
    for job in JOBS {
        let (out, _) = within(Duration::from_secs(60), inst.cmd().args(["run-once", job]));
        assert!(
            inst.finished_records(job).len() == 1,
            "{job}: {out:?}\n{}",
            inst.log()
        );
    }
    let rec = |job: &str| inst.finished_records(job).remove(0);
    // What the user's own files say still counts.
    for job in ["plain", "forged", "retry"] {
        assert_eq!(rec(job)["tests"]["passed"], 1, "{}", rec(job));
    }
    // A job without retries has no attempts, whatever its folder holds: the list is not
    // even read.
    assert!(rec("plain")["attempts"].is_null(), "{}", rec("plain"));
    assert!(rec("plain")["note"].is_null(), "{}", rec("plain"));
    // A list that is not the wrapper's (more attempts than the job has, an unknown `ran`)
    // is dropped whole.
    let forged = rec("forged");
    assert!(forged["attempts"].is_null(), "{forged}");
    assert!(
        forged["note"]
            .as_str()
            .is_some_and(|n| n.contains("attempts.json ignored")),
        "{forged}"
    );
    // A plausible one keeps only what is checked: each attempt's result is read where the
    // wrapper puts it, and a link there is not followed.
    let retry = rec("retry");
    let attempts = retry["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 2, "{retry}");
    let folder = Path::new(retry["result"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    for (k, a) in attempts.iter().enumerate() {
        assert_eq!(a["outcome"], "no result", "{a}");
        assert_eq!(a["passed"], 0, "{a}");
        assert!(
            a["note"]
                .as_str()
                .is_some_and(|n| n.contains("symbolic link")),
            "{a}"
        );
        assert_eq!(
            a["output"].as_str().map(Path::new),
            Some(
                folder
                    .join(format!("attempt-{}/output.xml", k + 1))
                    .as_path()
            ),
            "{a}"
        );
        assert!(a["log"].is_null(), "{a}");
    }
    assert!(retry["log"].is_null(), "{retry}");
    // A link on the way to the result is not followed.
    assert!(rec("linked")["tests"].is_null(), "{}", rec("linked"));
    assert!(
        rec("linked")["note"]
            .as_str()
            .is_some_and(|n| n.contains("link")),
        "{}",
        rec("linked")
    );
    let shadow = fs::read_to_string("/etc/shadow").unwrap_or_default();
    let shadow_line = shadow.lines().next().unwrap_or("root:").to_string();
    let mut seen = Vec::new();
    for job in JOBS {
        seen.push((format!("show {job}"), text_of(&inst.run(&["show", job]))));
        seen.push((
            format!("history {job} --json"),
            text_of(&inst.run(&["history", job, "--json"])),
        ));
    }
    seen.push(("the state dir".into(), all_state_text(&inst.state)));
    let out = ctrl_text(&inst);
    // ctrl's metric: none for the job without retries and for the forged list; the real
    // count (at most the job's) for the plausible one.
    for job in ["plain", "forged"] {
        let line = check_line(&out, &format!("Robotmk t {job}"));
        assert!(!line.contains("attempts="), "{line}");
    }
    let line = check_line(&out, "Robotmk t retry");
    assert!(line.contains("|attempts=2|"), "{line}");
    seen.push(("ctrl".into(), out));
    // And a `user` job cannot be configured to have root read its result elsewhere.
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!("[[job]]\nname = \"x\"\ncommand = [\"true\"]\nresult = \"{{run_dir}}/../../x.xml\"\nevery = \"1h\"\nuser = \"{user}\"\n"),
    );
    let out = inst.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("job[0].result") && err.contains("outside {run_dir}"),
        "{err}"
    );
    for (what, text) in &seen {
        for leak in [
            "4242",
            "RootOnlyTest",
            "RootSecretSuite",
            "root's log",
            "QQQQQQQQ",
            "shadow",
            "nonexistent-rmkd-i19",
            "No such file",
            shadow_line.as_str(),
        ] {
            assert!(!text.contains(leak), "{what} shows {leak:?}:\n{text}");
        }
    }
}

// ---- finding 2 ------------------------------------------------------------------------------

const TICK: &str = "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n";

/// Finished records of `job`, counted.
fn finished(inst: &Instance, job: &str) -> usize {
    inst.finished_records(job).len()
}

/// `run-once job` in the background (the daemon runs it).
fn run_once_bg(inst: &Instance, job: &str) -> Bg {
    Bg(inst
        .cmd()
        .args(["run-once", job])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap())
}

/// The note of `job`'s first finished record, once there is one (within `limit`).
fn note_within(inst: &Instance, job: &str, limit: Duration) -> String {
    let mut note = None;
    assert!(
        wait_for(limit, || {
            note = inst
                .finished_records(job)
                .first()
                .map(|r| r["note"].as_str().unwrap_or_default().to_string());
            note.is_some()
        }),
        "no record of {job} written within {limit:?}: the finisher is still at its result\n{}",
        inst.log()
    );
    note.unwrap()
}

/// `tick` keeps reporting: three more of its records are written within 15 s.
fn tick_keeps_reporting(inst: &Instance, what: &str) {
    let n = finished(inst, "tick");
    assert!(
        wait_for(Duration::from_secs(15), || finished(inst, "tick") >= n + 3),
        "tick stopped reporting {what} ({} records, {n} before)\n{}",
        finished(inst, "tick"),
        inst.log()
    );
}

fn start_daemon_with_tick(inst: &Instance) {
    let out = ctrl_text(inst);
    assert!(out.contains("\"action\":\"started\""), "{out}");
    assert!(
        wait_for(Duration::from_secs(20), || finished(inst, "tick") >= 1),
        "{}",
        inst.log()
    );
}

#[test]
fn f2_a_sparse_terabyte_result_is_refused_at_once_and_stalls_nothing() {
    let huge = "[[job]]\nname = \"huge\"\ncommand = [\"sh\", \"-c\", \"truncate -s 1T \\\"$ROBOTMK_RUN_DIR/output.xml\\\"\"]\nresult = \"{run_dir}/output.xml\"\nevery = \"1h\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", &format!("{TICK}\n{huge}"));
    start_daemon_with_tick(&inst);
    let _once = run_once_bg(&inst, "huge");
    let note = note_within(&inst, "huge", Duration::from_secs(30));
    assert!(
        note.contains("result too large: 1099511627776 bytes, cap "),
        "{note}"
    );
    tick_keeps_reporting(&inst, "after a 1 TB result");
    let out = ctrl_text(&inst);
    let tick = check_line(&out, "Robotmk t tick");
    assert!(tick.starts_with("0 "), "{tick}");
    assert!(
        check_line(&out, "Robotmk t huge").contains("result too large"),
        "{out}"
    );
    let (out, took) = within(
        Duration::from_secs(30),
        inst.cmd().args(["stop", "--now", "--timeout", "20s"]),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(took < Duration::from_secs(8), "stop --now took {took:?}");
}

/// A result under the size cap that takes long to read: a robot head, then hundreds of GB of
/// a sparse file's zeros (no disk used).
const SLOW: &str = "[[job]]\nname = \"slow\"\ncommand = [\"sh\", \"-c\", \"printf '<robot><suite name=\\\"S\\\"><test name=\\\"T\\\">' > \\\"$ROBOTMK_RUN_DIR/output.xml\\\"; truncate -s 900G \\\"$ROBOTMK_RUN_DIR/output.xml\\\"\"]\nresult = \"{run_dir}/output.xml\"\nevery = \"1h\"\n";

/// Waits until the daemon has started reading `slow`'s result.
fn reading_slow(inst: &Instance) {
    assert!(
        wait_for(Duration::from_secs(30), || inst
            .log()
            .contains("reading the result of run")),
        "{}",
        inst.log()
    );
}

#[test]
fn f2_a_slow_result_under_the_size_cap_runs_into_the_time_cap() {
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nresult_max_size = \"1000GB\"\nresult_parse_timeout = \"15s\"",
        &format!("{TICK}\n{SLOW}"),
    );
    start_daemon_with_tick(&inst);
    let _once = run_once_bg(&inst, "slow");
    reading_slow(&inst);
    // While it is read, the other job reports: three records before the slow one is done.
    let n = finished(&inst, "tick");
    assert!(
        wait_for(Duration::from_secs(30), || finished(&inst, "tick") >= n + 3
            || finished(&inst, "slow") > 0),
        "{}",
        inst.log()
    );
    assert_eq!(
        finished(&inst, "slow"),
        0,
        "tick waited for another job's result ({} records, {n} before)\n{}",
        finished(&inst, "tick"),
        inst.log()
    );
    let note = note_within(&inst, "slow", Duration::from_secs(40));
    assert!(
        note.contains("result not read: reading it took longer than 15s (output.xml)"),
        "{note}"
    );
}

#[test]
fn f2_more_slow_results_than_the_finishers_usual_workers_still_hold_up_only_their_jobs() {
    // The finisher keeps a few workers for every job's records and starts one more only when
    // all of them are in reads (issue 25's soak: a worker per record in flight cost a MiB).
    // Five results read at once, more than those few: the other job still reports.
    let slow: String = (0..5)
        .map(|i| SLOW.replace("name = \"slow\"", &format!("name = \"slow{i}\"")))
        .collect();
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nresult_max_size = \"1000GB\"\nresult_parse_timeout = \"10m\"",
        &format!("{TICK}\n{slow}"),
    );
    start_daemon_with_tick(&inst);
    let _once: Vec<Bg> = (0..5)
        .map(|i| run_once_bg(&inst, &format!("slow{i}")))
        .collect();
    assert!(
        wait_for(Duration::from_secs(60), || inst
            .log()
            .matches("reading the result of run")
            .count()
            >= 5),
        "{}",
        inst.log()
    );
    tick_keeps_reporting(&inst, "while five results are read");
    for i in 0..6 {
        assert_eq!(finished(&inst, &format!("slow{i}")), 0, "{}", inst.log());
    }
}

#[test]
fn f2_stop_now_and_sigterm_end_the_daemon_within_the_grace_whatever_a_parse_does() {
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nresult_max_size = \"1000GB\"\nresult_parse_timeout = \"10m\"",
        &format!("{TICK}\n{SLOW}"),
    );
    start_daemon_with_tick(&inst);
    let _once = run_once_bg(&inst, "slow");
    reading_slow(&inst);
    // stop_grace is 1s (the test config): a second of grace, and the writing of the records.
    let (out, took) = within(
        Duration::from_secs(40),
        inst.cmd().args(["stop", "--now", "--timeout", "30s"]),
    );
    assert!(out.status.success(), "{out:?}\n{}", inst.log());
    assert!(took < Duration::from_secs(6), "stop --now took {took:?}");
    let note = note_within(&inst, "slow", Duration::from_secs(1));
    assert!(
        note.contains("result not read: the daemon was stopping"),
        "{note}"
    );
    drop(_once);
    // SIGTERM, on a parse under way, ends the daemon just as well.
    start_daemon_with_tick(&inst);
    let _once = run_once_bg(&inst, "slow");
    assert!(
        wait_for(Duration::from_secs(30), || inst
            .log()
            .matches("reading the result of run")
            .count()
            >= 2),
        "{}",
        inst.log()
    );
    let pid = inst.daemon_pid().expect("a daemon");
    let t = Instant::now();
    // SAFETY: the daemon this test started, by its PID.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    assert!(
        inst.wait_daemon_gone(Duration::from_secs(30)),
        "{}",
        inst.log()
    );
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "SIGTERM took {:?}",
        t.elapsed()
    );
}

#[test]
fn f2_a_slow_result_of_a_run_interrupted_by_a_crash_holds_up_the_restart_briefly_only() {
    // The daemon dies while the run is in flight; the next one records it as interrupted,
    // reading its result before its loop starts: briefly, whatever the file.
    let job = "[[job]]\nname = \"slowrun\"\ncommand = [\"sh\", \"-c\", \"printf '<robot><suite name=\\\"S\\\"><test name=\\\"T\\\">' > \\\"$ROBOTMK_RUN_DIR/output.xml\\\"; truncate -s 900G \\\"$ROBOTMK_RUN_DIR/output.xml\\\"; exec sleep 300\"]\nresult = \"{run_dir}/output.xml\"\nevery = \"1h\"\n";
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nresult_max_size = \"1000GB\"\nresult_parse_timeout = \"10m\"",
        &format!("{TICK}\n{job}"),
    );
    start_daemon_with_tick(&inst);
    let _once = run_once_bg(&inst, "slowrun");
    let mut runner = None;
    assert!(
        wait_for(Duration::from_secs(30), || {
            let s = inst.status_json();
            runner = s["jobs"]
                .as_array()
                .and_then(|j| j.iter().find(|j| j["name"] == "slowrun"))
                .and_then(|j| j["running"][0]["pid"].as_u64());
            runner.is_some()
        }),
        "{}",
        inst.log()
    );
    let runner = runner.unwrap() as i32;
    let daemon = inst.daemon_pid().expect("a daemon");
    kill9(daemon);
    assert!(inst.wait_daemon_gone(Duration::from_secs(20)));
    // SAFETY: the run's process group, started by this test's daemon.
    unsafe {
        libc::kill(-runner, libc::SIGKILL);
    }
    assert!(wait_for(Duration::from_secs(10), || !pid_alive(
        runner as u32
    )));
    let t = Instant::now();
    let out = ctrl_text(&inst);
    assert!(out.contains("\"action\":\"started\""), "{out}");
    let mut rec = None;
    assert!(
        wait_for(Duration::from_secs(40), || {
            rec = inst.finished_records("slowrun").into_iter().next();
            rec.is_some()
        }),
        "{}",
        inst.log()
    );
    let rec = rec.unwrap();
    assert_eq!(rec["outcome"], "interrupted", "{rec}");
    assert!(
        rec["note"]
            .as_str()
            .is_some_and(|n| n.contains("reading it took longer than 10s")),
        "{rec}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    tick_keeps_reporting(&inst, "after the restart");
}

// ---- finding 8 ------------------------------------------------------------------------------

/// Every character a line splitter (Python's `splitlines`, what Checkmk uses) or a `sep(0)`
/// section treats as a break, and other controls: NUL, BEL, VT, FF, FS, GS, RS, ESC, DEL, NEL,
/// U+2028, U+2029, TAB, CR.
const HOSTILE: &str =
    "A\\x00B\\x0bC\\x0cD\\x1cE\\x1dF\\x1eG\\x85H\\u2028I\\u2029J\\x07K\\x1bL\\x7fM\\tN\\rO";

fn bad_char(c: char) -> bool {
    (c.is_control() && c != '\n') || c == '\u{2028}' || c == '\u{2029}'
}

fn assert_printable(out: &str, what: &str) {
    for (i, c) in out.char_indices() {
        assert!(
            !bad_char(c),
            "{what}: U+{:04X} at byte {i}, in the line {:?}",
            c as u32,
            out[out[..i].rfind('\n').map_or(0, |n| n + 1)..]
                .lines()
                .next()
                .unwrap_or_default()
        );
    }
    // Not vacuous: the tests are there, their names and messages shown.
    assert!(out.contains("Name A"), "{what}: {out}");
    assert!(out.contains("msg A"), "{what}: {out}");
}

#[test]
fn f8_control_characters_from_results_never_reach_the_agent() {
    let Some(robot) = test_robot() else {
        require_tool(false, "Robot Framework ($ROBOTMK_TEST_ROBOT)");
        return;
    };
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let d = inst.dir.path();
    fs::write(d.join("vars.py"), format!("C = \"{HOSTILE}\"\n")).unwrap();
    fs::write(
        d.join("s.robot"),
        "*** Test Cases ***\nName ${C} End\n    [Tags]    tag${C}x\n    Fail    msg ${C} end\n\nPlain\n    Log    hi\n",
    )
    .unwrap();
    let vars = d.join("vars.py").display().to_string();
    let suite = d.join("s.robot").display().to_string();
    let robot = robot.display().to_string();
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!(
            // XML keeps NEL, U+2028/2029, DEL, TAB and CR; JSON keeps every one of them.
            "[[job]]\nname = \"xml\"\nkind = \"robot\"\nsuite = {suite:?}\nrobot = {robot:?}\nrobot_args = [\"--variablefile\", {vars:?}]\nservices = \"per-test\"\nevery = \"1h\"\n\n\
             [[job]]\nname = \"json\"\ncommand = [{robot:?}, \"--variablefile\", {vars:?}, \"--outputdir\", \"{{run_dir}}\", \"--output\", \"output.json\", {suite:?}]\nresult = \"{{run_dir}}/output.json\"\nservices = \"per-test\"\nevery = \"1h\"\n\n\
             [[job]]\nname = \"pig\"\ncommand = [{robot:?}, \"--variablefile\", {vars:?}, \"--outputdir\", \"{{run_dir}}\", \"--output\", \"output.json\", {suite:?}]\nresult = \"{{run_dir}}/output.json\"\nhost = \"pig.example.com\"\nevery = \"1h\"\n",
        ),
    );
    for job in ["xml", "json", "pig"] {
        let (out, _) = within(Duration::from_secs(120), inst.cmd().args(["run-once", job]));
        let rec = inst.finished_records(job);
        assert!(
            rec.len() == 1 && !rec[0]["tests"].is_null(),
            "{job}: {out:?} {rec:?}"
        );
    }
    // The JSON result really carries them (else the test proves nothing).
    let json_rec = &inst.finished_records("json")[0];
    let name = json_rec["tests"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| t["name"].as_str().filter(|n| n.starts_with("Name")))
        .unwrap()
        .to_string();
    assert!(
        name.contains('\0') && name.contains('\u{2028}') && name.contains('\u{85}'),
        "{name:?}"
    );
    // ctrl's full path (no daemon yet: it starts one and renders from the state files).
    let out = ctrl_text(&inst);
    assert!(out.contains("\"action\":\"started\""), "{out}");
    assert_printable(&out, "ctrl (full path)");
    // The fast path, once the daemon wrote its pre-rendered view.
    assert!(
        wait_for(Duration::from_secs(20), || inst
            .state
            .join("ctrl-view")
            .is_file()
            && inst.status_json()["daemon"]["phase"] == "running"),
        "{}",
        inst.log()
    );
    let out = ctrl_text(&inst);
    assert!(out.contains("\"action\":\"running\""), "{out}");
    assert_printable(&out, "ctrl (fast path)");
    // The JSON section keeps the characters, escaped.
    let section = parse_section(&out);
    let names: Vec<String> = section["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| {
            j["last"]["tests"]["results"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    assert!(names.iter().any(|n| n.contains('\u{2028}')), "{names:?}");
    let (out, _) = within(Duration::from_secs(30), inst.cmd().args(["stop", "--now"]));
    assert!(out.status.success(), "{out:?}");
}

// ---- finding 9 ------------------------------------------------------------------------------

#[test]
fn f9_a_run_whose_output_is_lost_is_at_least_warn_with_the_note() {
    let job = "[[job]]\nname = \"rm\"\ncommand = [\"sh\", \"-c\", \"rm -rf \\\"$ROBOTMK_RUN_DIR\\\"\"]\nevery = \"1s\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", job);
    let out = ctrl_text(&inst);
    assert!(out.contains("\"action\":\"started\""), "{out}");
    assert!(
        wait_for(Duration::from_secs(20), || inst
            .finished_records("rm")
            .iter()
            .any(|r| r["note"]
                .as_str()
                .is_some_and(|n| n.contains("its output is lost")))),
        "{}",
        inst.log()
    );
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            line = check_line(&ctrl_text(&inst), "Robotmk t rm");
            line.contains("output is lost")
        }),
        "the note does not reach the check: {line}"
    );
    assert!(
        line.starts_with("1 "),
        "a lost output is at least WARN: {line}"
    );
    assert!(line.contains("WARN - last run"), "{line}");
    let (out, _) = within(Duration::from_secs(30), inst.cmd().args(["stop", "--now"]));
    assert!(out.status.success(), "{out:?}");
}
