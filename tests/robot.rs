//! Robot Framework jobs with the real robot (issue 11): where results go, JSON results, the
//! state following the suite, exit codes explained, one polite signal, empty results,
//! robot's own elapsed times, retries merged with rebot, per-test detail and services, and
//! bounded memory on hostile result files. Counts are compared with robot's own API
//! (`robot.api.ExecutionResult`), run by the venv's python, never with typed-in numbers.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Robot Framework (see `common::test_robot`).
fn robot() -> Option<PathBuf> {
    test_robot()
}

/// robot, or a skip (a failure in CI).
fn need_robot() -> Option<PathBuf> {
    let r = robot();
    require_tool(
        r.is_some(),
        "Robot Framework (.venv/bin/robot or $ROBOTMK_TEST_ROBOT)",
    );
    r
}

/// The python of robot's venv.
fn python(robot: &Path) -> PathBuf {
    robot.with_file_name("python")
}

/// What robot's own API reads from a result file: (passed, failed, skipped), the root
/// suite's elapsed seconds, and (suite longname, name, status, elapsed, first message line)
/// per test.
struct Api {
    counts: (u64, u64, u64),
    elapsed: f64,
    tests: Vec<(String, String, String, f64, String)>,
}

fn api(robot: &Path, result: &Path) -> Api {
    let code = r#"
import sys, json
from robot.api import ExecutionResult, ResultVisitor
r = ExecutionResult(sys.argv[1])
t = r.statistics.total
tests = []
class V(ResultVisitor):
    def visit_test(self, test):
        tests.append([test.parent.full_name, test.name, test.status,
                      test.elapsed_time.total_seconds(),
                      (test.message.strip().splitlines() or [""])[0]])
r.visit(V())
print(json.dumps({"counts": [t.passed, t.failed, t.skipped],
                  "elapsed": r.suite.elapsed_time.total_seconds(), "tests": tests}))
"#;
    let out = Command::new(python(robot))
        .args(["-c", code])
        .arg(result)
        .output()
        .expect("run robot's python");
    assert!(out.status.success(), "robot API on {result:?}: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = |i: usize| v["counts"][i].as_u64().unwrap();
    Api {
        counts: (n(0), n(1), n(2)),
        elapsed: v["elapsed"].as_f64().unwrap(),
        tests: v["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t[0].as_str().unwrap().to_string(),
                    t[1].as_str().unwrap().to_string(),
                    t[2].as_str().unwrap().to_string(),
                    t[3].as_f64().unwrap(),
                    t[4].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    }
}

fn counts(rec: &Value) -> (u64, u64, u64) {
    let t = &rec["tests"];
    (
        t["passed"].as_u64().unwrap(),
        t["failed"].as_u64().unwrap(),
        t["skipped"].as_u64().unwrap(),
    )
}

/// Writes a suite file into the instance's temp dir; returns its path.
fn suite(inst: &Instance, name: &str, text: &str) -> String {
    let p = inst.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const MIXED: &str = "*** Test Cases ***\n\
Passes\n    [Tags]    smoke    web\n    Sleep    0.05s\n\n\
Fails\n    Fail    first line of the reason\\nsecond line\n\n\
Is Skipped\n    Skip    not today\n";

fn local_line<'a>(local: &'a [String], name: &str) -> &'a str {
    let quoted = format!("\"{name}\"");
    local
        .iter()
        .find(|l| l.contains(&quoted))
        .unwrap_or_else(|| panic!("no line for {name}: {local:?}"))
}

#[test]
fn result_options_in_robot_args_are_config_errors_naming_the_option() {
    for args in [
        r#"["--output", "custom.xml"]"#,
        r#"["--output", "output.json"]"#,
        r#"["--outputdir", "/elsewhere"]"#,
        r#"["-d", "/elsewhere"]"#,
        r#"["--outputd=/elsewhere"]"#,
        r#"["--log", "/tmp/x.html"]"#,
    ] {
        let job = format!(
            "[[job]]\nname = \"r\"\nkind = \"robot\"\nsuite = \"s.robot\"\nevery = \"1h\"\nrobot_args = {args}\n"
        );
        let inst = Instance::new("", &job);
        let out = inst.run(&["check-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args}: {out:?}");
        let opt: Vec<&str> = serde_json::from_str(args).unwrap();
        assert!(
            err.contains(opt[0].split('=').next().unwrap()) && err.contains("robot_args"),
            "{args}: {err}"
        );
    }
    // Turning log and report off sends nothing elsewhere.
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"r\"\nkind = \"robot\"\nsuite = \"s.robot\"\nrobot = \"/bin/true\"\nevery = \"1h\"\nrobot_args = [\"--log\", \"NONE\", \"--report\", \"NONE\"]\n",
    );
    // check-config also wants the suite and the program to be there (issue 24).
    std::fs::write(inst.dir.path().join("s.robot"), "").unwrap();
    let out = inst.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn command_jobs_name_their_result_xml_or_json() {
    let Some(robot) = need_robot() else { return };
    let r = robot.display();
    let inst = Instance::new("", "");
    let s = suite(&inst, "mixed.robot", MIXED);
    let jobs = format!(
        "[[job]]\nname = \"xml\"\ncommand = [\"{r}\", \"--outputdir\", \"{{run_dir}}/out\", \"--output\", \"custom.xml\", \"{s}\"]\nresult = \"{{run_dir}}/out/custom.xml\"\nevery = \"1h\"\ntimeout = \"60s\"\n\n\
         [[job]]\nname = \"json\"\ncommand = [\"{r}\", \"--outputdir\", \"{{run_dir}}\", \"--output\", \"output.json\", \"{s}\"]\nresult = \"{{run_dir}}/output.json\"\nevery = \"1h\"\ntimeout = \"60s\"\n\n\
         [[job]]\nname = \"inferred\"\ncommand = [\"{r}\", \"--outputdir\", \"{{run_dir}}\", \"--output\", \"custom.xml\", \"{s}\"]\nevery = \"1h\"\ntimeout = \"60s\"\n"
    );
    inst.write_config("", &jobs);
    // `inferred` names no result: robot's own options say where it went.
    for (job, file) in [
        ("xml", "out/custom.xml"),
        ("json", "output.json"),
        ("inferred", "custom.xml"),
    ] {
        let out = inst.run(&["run-once", job]);
        assert_eq!(out.status.code(), Some(1), "{job}: {out:?}");
        let rec = &inst.finished_records(job)[0];
        let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
        let api = api(&robot, &run_dir.join(file));
        assert_eq!(counts(rec), api.counts, "{job}: {rec}");
        assert_eq!(rec["outcome"], "failure");
        let note = rec["note"].as_str().unwrap_or_default();
        let rc = format!("robot exit code {0}: {0} test", api.counts.1);
        assert!(note.contains(&rc), "every exit code explained: {note}");
        let results = rec["tests"]["results"].as_array().unwrap();
        assert_eq!(results.len(), api.tests.len(), "{job}");
        for (got, want) in results.iter().zip(&api.tests) {
            assert_eq!(got["suite"], want.0.as_str());
            assert_eq!(got["name"], want.1.as_str());
            assert_eq!(got["status"], want.2.as_str());
        }
        assert!(
            (rec["tests"]["elapsed_s"].as_f64().unwrap() - api.elapsed).abs() < 0.002,
            "{job}: {rec}"
        );
        assert!(rec["log"].as_str().unwrap().ends_with("log.html"), "{rec}");
    }
}

#[test]
fn exit_code_252_is_explained_with_robots_error_line() {
    let Some(robot) = need_robot() else { return };
    let r = robot.display();
    let inst = Instance::new("", "");
    let empty = suite(&inst, "notests.robot", "*** Test Cases ***\n");
    let jobs = format!(
        "[[job]]\nname = \"empty\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"{empty}\"\nevery = \"1h\"\ntimeout = \"60s\"\n\n\
         [[job]]\nname = \"missing\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"/no/such/suite.robot\"\nevery = \"1h\"\ntimeout = \"60s\"\n"
    );
    inst.write_config("", &jobs);
    for (job, says) in [
        (
            "empty",
            "[ ERROR ] Suite 'Notests' contains no tests or tasks.",
        ),
        ("missing", "[ ERROR ] Parsing '/no/such/suite.robot' failed"),
    ] {
        let out = inst.run(&["run-once", job]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let rec = &inst.finished_records(job)[0];
        assert_eq!(rec["exit_code"], 252);
        let note = rec["note"].as_str().unwrap();
        assert!(
            note.contains("robot exit code 252: invalid test data"),
            "{note}"
        );
        assert!(note.contains("robot wrote no result"), "{note}");
        assert!(note.contains(says), "{job}: {note}");
        // A daemon ctrl started picks run-once's result up within its tick.
        let mut line = String::new();
        let shown = wait_for(Duration::from_secs(10), || {
            let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
            line = local_line(&local_lines(&out), &format!("Robotmk t {job}")).to_string();
            line.starts_with("2 ")
        });
        assert!(shown && line.contains(says), "{line}");
    }
}

#[test]
fn a_failed_test_is_crit_even_with_nostatusrc() {
    let Some(robot) = need_robot() else { return };
    let r = robot.display();
    let inst = Instance::new("", "");
    let s = suite(&inst, "mixed.robot", MIXED);
    inst.write_config(
        "",
        &format!("[[job]]\nname = \"quiet\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"{s}\"\nrobot_args = [\"--nostatusrc\"]\nevery = \"1h\"\ntimeout = \"60s\"\n"),
    );
    let out = inst.run(&["run-once", "quiet"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let rec = &inst.finished_records("quiet")[0];
    assert_eq!(rec["exit_code"], 0, "robot hid the failure: {rec}");
    assert_eq!(rec["outcome"], "failure", "{rec}");
    let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    assert_eq!(counts(rec), api(&robot, &run_dir.join("output.xml")).counts);
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    let line = local_line(&local_lines(&out), "Robotmk t quiet").to_string();
    assert!(
        line.starts_with("2 ") && line.contains("failure ("),
        "{line}"
    );
}

#[test]
fn a_timed_out_run_gets_one_signal_and_stays_timeout_when_stopped_in_its_grace() {
    let Some(robot) = need_robot() else { return };
    let r = robot.display();
    let inst = Instance::new("", "");
    // The teardown runs on after robot's first signal; a second one would cut it short.
    let s = suite(
        &inst,
        "slow.robot",
        "*** Test Cases ***\nSlow\n    Sleep    60s\n    [Teardown]    Sleep    3s\n",
    );
    inst.write_raw_config(&format!(
        "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nstop_grace = \"30s\"\nheartbeat_timeout = \"1m\"\n\n\
         [[job]]\nname = \"slow\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"{s}\"\nevery = \"2s\"\ntimeout = \"2s\"\n",
        inst.state.display()
    ));
    assert!(inst.run(&["start"]).status.success());
    // Robot announces its first signal: the run is now in its grace period.
    let mut signalled: Option<String> = None;
    let seen = wait_for(Duration::from_secs(30), || {
        signalled = inst.records("slow").iter().find_map(|rec| {
            let d = PathBuf::from(rec["run_dir"].as_str().unwrap_or_default());
            let said = |f: &str| {
                std::fs::read_to_string(d.join(f))
                    .unwrap_or_default()
                    .contains("Second signal will force exit")
            };
            (rec["outcome"].is_null() && (said("stdout.log") || said("stderr.log")))
                .then(|| rec["run_id"].as_str().unwrap_or_default().to_string())
        });
        signalled.is_some()
    });
    assert!(seen, "robot never got the timeout's signal: {}", inst.log());
    let out = inst.run(&["stop", "--now", "--timeout", "40s"]);
    assert!(out.status.success(), "{out:?}");
    let recs = inst.finished_records("slow");
    let rec = recs
        .iter()
        .find(|r| r["run_id"].as_str() == signalled.as_deref())
        .expect("the signalled run's record");
    assert_eq!(rec["outcome"], "timeout", "{rec}");
    let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    let api = api(&robot, &run_dir.join("output.xml"));
    assert_eq!(counts(rec), api.counts, "a complete result: {rec}");
    assert_eq!(api.tests[0].4, "Execution terminated by signal");
}

/// Issue D9b: a robot that exits 0 without writing output.xml (a wrapper, a stub) tested
/// nothing: the job is not OK, and the line says why. No real robot needed.
#[test]
fn a_robot_that_exits_0_without_a_result_is_not_ok() {
    use std::os::unix::fs::PermissionsExt;
    let inst = Instance::new("", "");
    let stub = inst.dir.path().join("robot");
    std::fs::write(&stub, "#!/bin/sh\necho fake robot \"$@\"\nexit 0\n").unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = suite(
        &inst,
        "s.robot",
        "*** Test Cases ***\nT\n    No Operation\n",
    );
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"stub\"\nkind = \"robot\"\nrobot = \"{}\"\nsuite = \"{s}\"\nevery = \"1h\"\ntimeout = \"60s\"\n",
            stub.display()
        ),
    );
    let out = inst.run(&["run-once", "stub"]);
    let mut line = String::new();
    let shown = wait_for(Duration::from_secs(10), || {
        let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
        line = local_line(&local_lines(&out), "Robotmk t stub").to_string();
        !line.is_empty() && !line.contains("no result yet")
    });
    assert!(shown, "{line}");
    assert!(
        line.starts_with("2 ") && line.contains("robot wrote no result (output.xml)"),
        "{line}"
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let rec = &inst.finished_records("stub")[0];
    assert_eq!(rec["exit_code"], 0, "{rec}");
    assert_eq!(rec["outcome"], "failure", "{rec}");
}

#[test]
fn an_empty_result_says_robot_was_killed_before_writing() {
    let job = "[[job]]\nname = \"zero\"\ncommand = [\"sh\", \"-c\", \": > $ROBOTMK_RUN_DIR/output.xml; kill -9 $$\"]\nresult = \"{run_dir}/output.xml\"\nevery = \"1h\"\n";
    let inst = Instance::new("", job);
    inst.run(&["run-once", "zero"]);
    let rec = &inst.finished_records("zero")[0];
    let note = rec["note"].as_str().unwrap();
    // Issue 22: said as it happened (the empty file, the signal), once.
    assert!(
        note.contains(
            "output.xml is empty: the run was ended by signal 9 before it wrote a result"
        ),
        "{note}"
    );
    assert_eq!(note.matches("signal").count(), 1, "{note}");
    assert!(!note.contains("statistics"), "{note}");
}

#[test]
fn per_test_detail_suite_runtime_and_per_test_services() {
    let Some(robot) = need_robot() else { return };
    let r = robot.display();
    let inst = Instance::new("", "");
    let s = suite(&inst, "mixed.robot", MIXED);
    inst.write_config(
        "",
        &format!("[[job]]\nname = \"web\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"{s}\"\nevery = \"1h\"\ntimeout = \"60s\"\nservices = \"per-test\"\ntest_runtime_warn = \"1ms\"\ntest_runtime_crit = \"1h\"\n"),
    );
    assert_eq!(inst.run(&["run-once", "web"]).status.code(), Some(1));
    let rec = &inst.finished_records("web")[0];
    let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    let api = api(&robot, &run_dir.join("output.xml"));
    assert_eq!(counts(rec), api.counts);
    let log = run_dir.join("log.html");
    assert_eq!(rec["log"], log.display().to_string());
    assert_eq!(
        rec["report"],
        run_dir.join("report.html").display().to_string()
    );

    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    let section = parse_section(&out);
    let last = &section["jobs"][0]["last"];
    let results = last["tests"]["results"].as_array().unwrap();
    assert_eq!(results.len(), api.tests.len());
    for (got, want) in results.iter().zip(&api.tests) {
        assert_eq!(got["suite"], want.0.as_str());
        assert_eq!(got["name"], want.1.as_str());
        assert_eq!(got["status"], want.2.as_str());
        assert!((got["elapsed_s"].as_f64().unwrap() - want.3).abs() < 0.002);
        assert_eq!(got["message"].as_str().unwrap_or(""), want.4.as_str());
    }
    assert_eq!(results[0]["tags"], serde_json::json!(["smoke", "web"]));

    let local = local_lines(&out);
    let job = local_line(&local, "Robotmk t web");
    assert!(job.starts_with("2 "), "{job}");
    let suite_runtime = format!("suite_runtime={:.3}", api.elapsed);
    assert!(job.contains(&suite_runtime), "{suite_runtime} in {job}");
    assert!(job.contains("runtime="), "{job}");
    // Issue 22: the per-test list follows as details (after a literal `\n`).
    assert!(
        job.split("\\n")
            .next()
            .unwrap()
            .ends_with(&format!("; log: {}", log.display())),
        "the summary ends with the log: {job}"
    );
    // Passes sleeps past the 1ms warning level; a failure is CRIT whatever its runtime.
    for (name, state) in [("Passes", '1'), ("Fails", '2')] {
        let l = local_line(&local, &format!("Robotmk t web {name}"));
        assert_eq!(l.chars().next(), Some(state), "{l}");
        assert!(l.contains(";0.001;3600.000"), "levels in the metric: {l}");
    }
    let skipped = local_line(&local, "Robotmk t web Is Skipped");
    assert!(
        !skipped.starts_with('2') && skipped.contains("SKIP"),
        "{skipped}"
    );
    let f = local_line(&local, "Robotmk t web Fails");
    assert!(
        f.contains("first line of the reason") && !f.contains("second line"),
        "{f}"
    );
}

#[test]
fn retries_rerun_the_failed_test_and_merge_with_rebot() {
    let Some(robot) = need_robot() else { return };
    let r = robot.display();
    let inst = Instance::new("", "");
    let counter = inst.dir.path().join("counter");
    let s = suite(
        &inst,
        "flaky.robot",
        "*** Settings ***\nLibrary    OperatingSystem\n\n*** Test Cases ***\n\
         Stable\n    Log    fine\n\n\
         Flaky\n    ${seen}=    Run Keyword And Return Status    File Should Exist    %{COUNTER}\n\
         \x20   IF    not ${seen}\n        Create File    %{COUNTER}    1\n        Fail    fails on its first attempt\n    END\n",
    );
    inst.write_config(
        "",
        &format!("[[job]]\nname = \"flaky\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"{s}\"\nevery = \"1h\"\ntimeout = \"120s\"\nattempts = 3\nretry = \"failed\"\nenv = {{ COUNTER = \"{}\" }}\n", counter.display()),
    );
    let out = inst.run(&["run-once", "flaky"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rec = &inst.finished_records("flaky")[0];
    assert_eq!(rec["outcome"], "success", "{rec}");
    let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    let merged = api(&robot, &run_dir.join("output.xml"));
    assert_eq!(counts(rec), merged.counts, "{rec}");
    assert_eq!(merged.counts.1, 0);
    let attempts = rec["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{rec}");
    assert_eq!(attempts[0]["outcome"], "failed");
    assert_eq!(attempts[1]["outcome"], "passed");
    assert_eq!(attempts[1]["ran"], "failed");
    // The second attempt ran the failed test only.
    let second = api(&robot, Path::new(attempts[1]["output"].as_str().unwrap()));
    assert_eq!(second.tests.len(), 1);
    assert_eq!(second.tests[0].1, "Flaky");
    let first = api(&robot, Path::new(attempts[0]["output"].as_str().unwrap()));
    assert_eq!(
        (
            attempts[0]["passed"].as_u64().unwrap(),
            attempts[0]["failed"].as_u64().unwrap()
        ),
        (first.counts.0, first.counts.1)
    );
    assert!(run_dir.join("log.html").is_file() && run_dir.join("report.html").is_file());
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    let line = local_line(&local_lines(&out), "Robotmk t flaky").to_string();
    assert!(
        line.starts_with("0 ") && line.contains("attempts=2"),
        "{line}"
    );
}

/// Runs `parse-result` on `file`; returns (exit success, its own peak RSS in KiB, as the
/// kernel's VmHWM of that process reports it).
fn parse_peak_kib(file: &Path) -> (bool, i64) {
    let out = Command::new(BIN)
        .args(["parse-result", "--peak-rss"])
        .arg(file)
        .output()
        .expect("run parse-result");
    let err = String::from_utf8_lossy(&out.stderr);
    let kib = err
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {err}"));
    (out.status.success(), kib)
}

/// Writes `parts` to `path` through a buffer (the big part repeated `times`).
fn write_file(path: &Path, head: &str, big: &str, times: usize, tail: &str) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    w.write_all(head.as_bytes()).unwrap();
    for _ in 0..times {
        w.write_all(big.as_bytes()).unwrap();
    }
    w.write_all(tail.as_bytes()).unwrap();
}

#[test]
fn hostile_result_files_stay_within_8_mib_of_idle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = d.join("small.xml");
    write_file(
        &small,
        "<robot><suite name=\"S\"><test name=\"T\"><status status=\"PASS\"/></test></suite>",
        "",
        0,
        "</robot>",
    );
    let (ok, idle) = parse_peak_kib(&small);
    assert!(ok);
    let chunk = "x".repeat(1024);
    let cases = [
        (
            "message.xml",
            "<robot><suite name=\"S\"><test name=\"T\"><kw name=\"Log\"><msg level=\"INFO\">",
            chunk.as_str(),
            40 * 1024,
            "</msg></kw><status status=\"FAIL\">m</status></test></suite></robot>",
            true,
        ),
        (
            "message.json",
            "{\"suite\":{\"tests\":[{\"body\":[{\"type\":\"MESSAGE\",\"message\":\"",
            chunk.as_str(),
            40 * 1024,
            "\"}],\"name\":\"T\",\"status\":\"FAIL\"}],\"name\":\"S\"}}",
            true,
        ),
        ("deep.xml", "<robot>", "<kw>", 300_000, "", false),
        ("deep.json", "{\"suite\":", "[", 300_000, "", false),
    ];
    for (name, head, big, times, tail, parses) in cases {
        let p = d.join(name);
        write_file(&p, head, big, times, tail);
        let (ok, peak) = parse_peak_kib(&p);
        eprintln!("{name}: peak RSS {peak} KiB (idle {idle} KiB)");
        assert_eq!(ok, parses, "{name}");
        assert!(
            peak - idle <= 8 * 1024,
            "{name}: peak RSS {peak} KiB is more than 8 MiB above idle ({idle} KiB)"
        );
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn retries_stay_within_the_jobs_timeout() {
    let Some(robot) = need_robot() else { return };
    let r = robot.display();
    let inst = Instance::new("", "");
    let s = suite(
        &inst,
        "always.robot",
        "*** Test Cases ***\nAlways Fails\n    Sleep    0.5s\n    Fail    never passes\n",
    );
    inst.write_config(
        "",
        &format!("[[job]]\nname = \"bounded\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"{s}\"\nevery = \"1h\"\ntimeout = \"3s\"\nattempts = 10\nretry = \"all\"\n"),
    );
    let out = inst.run(&["run-once", "bounded"]);
    assert_eq!(out.status.code(), Some(3), "timeout: {out:?}");
    let rec = &inst.finished_records("bounded")[0];
    assert_eq!(rec["outcome"], "timeout", "{rec}");
    let attempts = rec["attempts"].as_array().unwrap();
    assert!(
        !attempts.is_empty() && attempts.len() < 10,
        "the timeout ended the attempts: {rec}"
    );
    assert!(attempts.iter().all(|a| a["ran"] == "all"), "{rec}");
    // Timeout plus the test config's 1s grace, and some slack for a busy machine.
    assert!(rec["duration_s"].as_f64().unwrap() < 8.0, "{rec}");
    // Nothing of the run is left behind.
    let run_dir = rec["run_dir"].as_str().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || processes_of(run_dir).is_empty()),
        "{:?}",
        processes_of(run_dir)
    );
}

/// A suite of 1,203 tests in two files, each test failing when its name is in `fails.txt`
/// (`|name|`): `Twin` in both files, one name with quotes and non-ASCII letters.
fn big_suite(dir: &Path) -> PathBuf {
    let top = dir.join("big");
    std::fs::create_dir_all(&top).unwrap();
    let head = "*** Settings ***\nLibrary    OperatingSystem\n\n\
        *** Keywords ***\nCheck\n    ${fails}=    Get File    ${CURDIR}/fails.txt\n    \
        Should Not Contain    ${fails}    |${TEST NAME}|    failed on purpose\n\n\
        *** Test Cases ***\n";
    let mut a = String::from(head);
    a.push_str("Twin\n    Check\n\nQuote \"d 'single' Ünïcode\n    Check\n\n");
    for i in 0..600 {
        a.push_str(&format!("A {i}\n    Check\n\n"));
    }
    let mut b = String::from(head);
    for i in 0..600 {
        b.push_str(&format!("B {i}\n    Check\n\n"));
    }
    b.push_str("Twin\n    Check\n\n");
    std::fs::write(top.join("a.robot"), a).unwrap();
    std::fs::write(top.join("b.robot"), b).unwrap();
    top
}

/// T7 finding 5: per-test services were made from the per-test detail (at most 1,000 tests,
/// failed ones first), so in a suite of 1,203 tests some had no service, which ones depended
/// on what failed, and so did the names (`Twin` was `Big.A.Twin` in a run where the other
/// `Twin` kept its detail, else plain `Twin`). Now, run through the daemon twice with other
/// tests failing, every test robot ran has its service, named the same in both runs.
#[test]
fn per_test_services_cover_every_test_and_keep_their_names_across_runs() {
    let Some(robot) = need_robot() else { return };
    let r = robot.display();
    let inst = Instance::new("", "");
    let top = big_suite(inst.dir.path());
    // Results come from run-once only: the schedule (January 1st) never fires meanwhile.
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"big\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"{}\"\n\
             cron = \"0 0 1 1 *\"\ntimeout = \"300s\"\nservices = \"per-test\"\n",
            top.display()
        ),
    );
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    let fails = |names: &[String]| {
        let text: String = names.iter().map(|n| format!("|{n}|\n")).collect();
        std::fs::write(top.join("a.robot").with_file_name("fails.txt"), text).unwrap();
    };
    // Run 1: the last tests of b.robot fail (and both Twins): their detail is kept, and the
    // passed tests before them lose theirs. Run 2: the first tests of a.robot fail.
    let run1: Vec<String> = (550..600)
        .map(|i| format!("B {i}"))
        .chain(["Twin".to_string()])
        .collect();
    let run2: Vec<String> = (0..50).map(|i| format!("A {i}")).collect();
    let mut seen: Vec<Vec<String>> = Vec::new();
    for failing in [run1, run2] {
        fails(&failing);
        let out = inst.run(&["run-once", "big"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}\n{}", inst.log());
        let rec = inst
            .finished_records("big")
            .into_iter()
            .max_by(|a, b| a["run_id"].as_str().cmp(&b["run_id"].as_str()))
            .unwrap();
        let run_id = rec["run_id"].as_str().unwrap().to_string();
        let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
        let api = api(&robot, &run_dir.join("output.xml"));
        assert_eq!(api.tests.len(), 1203);
        // What ctrl prints once the daemon's view holds this run (the fast path).
        let view = inst.state.join("ctrl-view");
        let current =
            || std::fs::read_to_string(&view).is_ok_and(|v| v.contains(&format!("\"{run_id}\"")));
        assert!(wait_for(Duration::from_secs(60), current), "{}", inst.log());
        let out = inst.ctrl();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // Checkmk's parser takes every line, and no service comes twice.
        let parsed = common::checkmk::parse_ok(&text);
        let checks = parsed.local(None);
        let job = checks.iter().find(|c| c.name == "Robotmk t big").unwrap();
        assert!(
            job.summary
                .contains("per-test detail for 1000 of 1203 tests")
                && !job.summary.contains("no per-test service"),
            "{}",
            job.summary
        );
        let tests: Vec<_> = checks
            .iter()
            .filter(|c| c.name.starts_with("Robotmk t big "))
            .collect();
        // Every test robot ran, by its name (its suite path where two share one), in its
        // state: FAIL CRIT, PASS OK.
        let twins = api.tests.iter().filter(|t| t.1 == "Twin").count();
        assert_eq!(twins, 2);
        for (suite, name, status, ..) in &api.tests {
            let service = if name == "Twin" {
                format!("Robotmk t big {suite}.{name}")
            } else {
                format!(
                    "Robotmk t big {}",
                    name.replace('"', "”").replace('\'', "’")
                )
            };
            let c = tests
                .iter()
                .find(|c| c.name == service)
                .unwrap_or_else(|| panic!("no service {service:?}: {}", job.summary));
            let want = if status == "FAIL" { 2 } else { 0 };
            assert_eq!(c.state_num(), want, "{service}: {}", c.text);
            assert!(
                c.text.contains(&format!(" - {status}")),
                "{service}: {}",
                c.text
            );
        }
        assert_eq!(tests.len(), api.tests.len(), "one service per test");
        seen.push(tests.iter().map(|c| c.name.clone()).collect());
    }
    assert_eq!(seen[0], seen[1], "the same services, in the same order");
    assert!(
        seen[0].contains(&"Robotmk t big Big.A.Twin".to_string())
            && seen[0].contains(&"Robotmk t big Quote ”d ’single’ Ünïcode".to_string()),
        "{:?}",
        &seen[0][..5]
    );
}
