//! What an admin sees in Checkmk (issue 22): every test its own visible service whatever
//! robot allows in its name (quotes, duplicates, `${\n}`, names equal up to the length cap),
//! per-test states equal to robot's own API (`robot.api.ExecutionResult(...).suite.all_tests`,
//! failed and skipped suite teardowns included), per-test services of piggybacked jobs in
//! their host's block, and the job's check listing its tests in the details. Every line ctrl
//! prints goes through the parser of Checkmk's rules (tests/common/checkmk.rs).
#![cfg(unix)]

mod common;

use common::checkmk::{parse_ok, LocalCheck};
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn need_robot() -> Option<PathBuf> {
    let r = test_robot();
    require_tool(
        r.is_some(),
        "Robot Framework (.venv/bin/robot or $ROBOTMK_TEST_ROBOT)",
    );
    r
}

/// (suite full name, name, status) of every test, as robot's own API reads `result`.
fn robot_api(robot: &Path, result: &Path) -> Vec<(String, String, String)> {
    let code = r#"
import sys, json
from robot.api import ExecutionResult
r = ExecutionResult(sys.argv[1])
print(json.dumps([[t.parent.full_name, t.name, t.status] for t in r.suite.all_tests]))
"#;
    let out = Command::new(robot.with_file_name("python"))
        .args(["-c", code])
        .arg(result)
        .output()
        .expect("run robot's python");
    assert!(out.status.success(), "robot API on {result:?}: {out:?}");
    let v: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|t| (t[0].clone(), t[1].clone(), t[2].clone()))
        .collect()
}

/// A suite folder with every kind of name robot allows that a local check cannot carry as
/// it is, and suites whose teardown fails or is skipped.
fn write_suites(root: &Path) -> PathBuf {
    let dir = root.join("names");
    std::fs::create_dir_all(&dir).unwrap();
    let long = "L".repeat(210);
    let files = [
        (
            "1_quotes.robot",
            format!(
                "*** Test Cases ***\n\
                 UTF-8 Name Äöå §½€\"\n    Fail    quoted \"name\" failed\n\
                 Keywords aren't run\n    Fail    it's broken\n\
                 Twin\n    Fail    first twin\n\
                 Twin\n    No Operation\n\
                 Line${{\\n}}Break\n    Fail    with a newline\n\
                 Line Break\n    No Operation\n\
                 Back\\\\nslash\n    Fail    C:\\\\new\\\\folder\n\
                 {long}1\n    Fail    long one\n\
                 {long}2\n    No Operation\n"
            ),
        ),
        (
            "2_other.robot",
            "*** Test Cases ***\nTwin\n    Fail    other twin\n".to_string(),
        ),
        (
            "3_teardown_fails.robot",
            "*** Settings ***\nSuite Teardown    Fail    teardown broke\n\n\
             *** Test Cases ***\nPasses\n    No Operation\nFails\n    Fail    own reason\n\
             Skips\n    Skip    not today\n"
                .to_string(),
        ),
        (
            "4_teardown_skips.robot",
            "*** Settings ***\nSuite Teardown    Skip    maintenance\n\n\
             *** Test Cases ***\nPasses Too\n    No Operation\nFails Too\n    Fail    own reason\n"
                .to_string(),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn checks_of(out: &str, host: Option<&str>, prefix: &str) -> Vec<LocalCheck> {
    parse_ok(out)
        .local(host)
        .into_iter()
        .filter(|c| c.name.starts_with(prefix))
        .collect()
}

/// The status word a per-test check's summary starts with.
fn status_of(c: &LocalCheck) -> String {
    c.summary
        .split(" - ")
        .nth(1)
        .and_then(|t| t.split([' ', ':']).next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn every_test_is_its_own_service_with_robots_status() {
    let Some(robot) = need_robot() else { return };
    let inst = Instance::new("", "");
    let suites = write_suites(inst.dir.path());
    let r = robot.display();
    let s = suites.display();
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"xml\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"{s}\"\n\
             every = \"1h\"\ntimeout = \"120s\"\nservices = \"per-test\"\n\n\
             [[job]]\nname = \"json\"\ncommand = [\"{r}\", \"--outputdir\", \"{{run_dir}}\", \
             \"--output\", \"output.json\", \"{s}\"]\nresult = \"{{run_dir}}/output.json\"\n\
             every = \"1h\"\ntimeout = \"120s\"\nservices = \"per-test\"\nhost = \"shop.example.com\"\n"
        ),
    );
    for job in ["xml", "json"] {
        assert_eq!(inst.run(&["run-once", job]).status.code(), Some(1), "{job}");
    }
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    // Every line, through Checkmk's rules: no quote in a name, no second service of a name.
    parse_ok(&out);
    for (job, file, host) in [
        ("xml", "output.xml", None),
        ("json", "output.json", Some("shop.example.com")),
    ] {
        let rec = &inst.finished_records(job)[0];
        let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
        let want = robot_api(&robot, &run_dir.join(file));
        assert_eq!(want.len(), 15, "{want:?}");
        let prefix = format!("Robotmk t {job} ");
        let job_check = checks_of(&out, host, &format!("Robotmk t {job}"))
            .into_iter()
            .find(|c| c.name == format!("Robotmk t {job}"))
            .unwrap_or_else(|| panic!("no check of {job} in {out}"));
        let tests = checks_of(&out, host, &prefix);
        // One service per test, in robot's order, each with robot's status.
        let got: Vec<String> = tests.iter().map(status_of).collect();
        let statuses: Vec<String> = want.iter().map(|t| t.2.clone()).collect();
        assert_eq!(
            got, statuses,
            "{job}: per-test statuses vs robot's API\n{out}"
        );
        for (c, w) in tests.iter().zip(&want) {
            let state = match w.2.as_str() {
                "FAIL" => 2,
                _ => 0,
            };
            assert_eq!(c.state_num(), state, "{job}: {c:?} vs {w:?}");
        }
        let names: Vec<&str> = tests.iter().map(|c| &c.name[prefix.len()..]).collect();
        for expected in [
            "UTF-8 Name Äöå §½€”",
            "Keywords aren’t run",
            "Names.1 Quotes.Twin",
            "Names.1 Quotes.Twin #2",
            "Names.2 Other.Twin",
            "Names.1 Quotes.Line Break",
            "Names.1 Quotes.Line Break #2",
            "Back⧵nslash",
        ] {
            assert!(
                names.contains(&expected),
                "{job}: {expected:?} in {names:?}"
            );
        }
        assert_eq!(
            names.iter().filter(|n| n.contains("LLLL")).count(),
            2,
            "{names:?}"
        );
        // Robot's parent-suite rules: a failed teardown fails the suite's tests (a skipped
        // test stays skipped), a skipped one skips them all.
        let by = |n: &str| {
            tests
                .iter()
                .find(|c| c.name == format!("{prefix}{n}"))
                .unwrap_or_else(|| panic!("{n} in {names:?}"))
        };
        let passes = by("Passes");
        assert_eq!(passes.state_num(), 2, "{passes:?}");
        assert!(
            passes
                .summary
                .contains("Parent suite teardown failed: teardown broke"),
            "{passes:?}"
        );
        assert_eq!(status_of(by("Skips")), "SKIP");
        assert_eq!(status_of(by("Fails Too")), "SKIP");
        assert!(by("Passes Too")
            .summary
            .contains("Skipped in parent suite teardown: maintenance"));
        // The backslash-n of a message does not cut the summary.
        assert!(
            by("Back⧵nslash").details.is_empty(),
            "{:?}",
            by("Back⧵nslash")
        );
        // The job's own check lists its tests in the details, failures first.
        let failed = statuses.iter().filter(|s| *s == "FAIL").count();
        assert_eq!(job_check.details.len(), want.len(), "{job_check:?}");
        assert!(
            job_check.details[..failed]
                .iter()
                .all(|d| d.starts_with("FAIL ")),
            "{job_check:?}"
        );
        assert!(
            job_check
                .details
                .iter()
                .any(|d| d.starts_with("FAIL Twin (") && d.ends_with("s): first twin")),
            "{job_check:?}"
        );
        assert!(!job_check.summary.contains("FAIL Twin"), "{job_check:?}");
    }
    // The piggybacked job's tests are on its host only.
    assert!(checks_of(&out, None, "Robotmk t json").is_empty(), "{out}");
    let section: Value = parse_section(&out);
    assert_eq!(section["jobs"].as_array().unwrap().len(), 2);
}

/// The job's check (on the agent's host) in ctrl's output.
fn job_check(inst: &Instance, job: &str) -> LocalCheck {
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    parse_ok(&out).check(None, &format!("Robotmk t {job}"))
}

#[test]
fn a_retried_test_shows_its_own_message_first() {
    let Some(robot) = need_robot() else { return };
    let inst = Instance::new("", "");
    let suite = inst.dir.path().join("shop.robot");
    std::fs::write(
        &suite,
        "*** Test Cases ***\nCheckout Works\n    Should Be Equal    cart    empty\n",
    )
    .unwrap();
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"shop\"\nkind = \"robot\"\nrobot = \"{}\"\nsuite = \"{}\"\n\
             every = \"1h\"\ntimeout = \"2m\"\nattempts = 2\nretry = \"failed\"\nservices = \"per-test\"\n",
            robot.display(),
            suite.display()
        ),
    );
    assert_eq!(inst.run(&["run-once", "shop"]).status.code(), Some(1));
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    let t = parse_ok(&out).check(None, "Robotmk t shop Checkout Works");
    assert!(
        t.summary.contains("FAIL in ")
            && t.summary
                .contains(": cart != empty (re-run, results merged, was FAIL)"),
        "{t:?}"
    );
    assert!(!t.text.contains("re-executed"), "{t:?}");
    let j = parse_ok(&out).check(None, "Robotmk t shop");
    assert!(
        j.details
            .iter()
            .any(|d| d.starts_with("FAIL Checkout Works (") && d.contains("): cart != empty")),
        "{j:?}"
    );
}

#[test]
fn an_empty_result_file_says_what_happened() {
    let job = "[[job]]\nname = \"empty\"\ncommand = [\"sh\", \"-c\", \": > $ROBOTMK_RUN_DIR/output.xml; exit 1\"]\nresult = \"{run_dir}/output.xml\"\nevery = \"1h\"\n";
    let inst = Instance::new("", job);
    inst.run(&["run-once", "empty"]);
    let c = job_check(&inst, "empty");
    assert_eq!(c.state_num(), 2, "{c:?}");
    assert!(
        c.summary.contains(
            "output.xml is empty: the run exited with code 1 (no signal) without writing a result into it"
        ),
        "{c:?}"
    );
    for wrong in ["killed", "1 test failed", "signal 1"] {
        assert!(!c.summary.contains(wrong), "{wrong}: {c:?}");
    }
}

#[test]
fn a_run_an_admin_stopped_leaves_the_last_result_with_a_note() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let slow = inst.dir.path().join("slow");
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!(
            "[[job]]\nname = \"long\"\ncommand = [\"sh\", \"-c\", \"if [ -e {0} ]; then sleep 300; fi\"]\n\
             every = \"2s\"\ntimeout = \"10m\"\n",
            slow.display()
        ),
    );
    inst.ctrl_json();
    assert!(
        wait_for(Duration::from_secs(30), || !inst
            .finished_records("long")
            .is_empty()),
        "a first complete run"
    );
    std::fs::write(&slow, "").unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || inst
            .records("long")
            .iter()
            .any(|r| r["outcome"].is_null() && r["pid"].is_u64())),
        "a slow run in flight"
    );
    let out = inst.run(&["stop", "--now", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
    let recs = inst.finished_records("long");
    let stopped = recs
        .iter()
        .find(|r| r["outcome"] == "killed")
        .unwrap_or_else(|| panic!("{recs:?}"));
    assert!(
        stopped["note"]
            .as_str()
            .unwrap_or_default()
            .contains("stopped by an admin (stop --now)"),
        "{stopped}"
    );
    std::fs::remove_file(&slow).unwrap();
    // No run of its own before ctrl prints (every 1h goes on from the last due time).
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        "[[job]]\nname = \"long\"\ncommand = [\"true\"]\nevery = \"1h\"\ntimeout = \"10m\"\n",
    );
    // ctrl starts a daemon again; the job's check shows the last complete result.
    let c = job_check(&inst, "long");
    assert_eq!(c.state_num(), 0, "{c:?}");
    assert!(c.summary.contains(": success"), "{c:?}");
    let id = stopped["run_id"].as_str().unwrap();
    assert!(
        c.summary.contains(&format!(
            "a later run ({id}) was stopped by an admin (stop --now) at "
        )),
        "{c:?}"
    );
}

/// Runs ctrl as the Linux agent runs a cached plugin: from `<dir>/plugins` as `300/NAME`.
fn cached_ctrl(inst: &Instance) -> String {
    use std::os::unix::process::CommandExt;
    let plugins = inst.dir.path().join("plugins");
    let link = plugins.join("300/robotmk_daemon_ctrl");
    if !link.exists() {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(BIN, &link).unwrap();
    }
    let out = Command::new(&link)
        .arg0("300/robotmk_daemon_ctrl")
        .current_dir(&plugins)
        .env("ROBOTMK_DAEMON_CONFIG", &inst.config)
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn in_cached_mode_times_are_absolute_and_a_first_result_is_announced() {
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"",
        "[[job]]\nname = \"done\"\ncommand = [\"true\"]\nevery = \"1h\"\n\n\
         [[job]]\nname = \"fresh\"\ncommand = [\"true\"]\ncron = \"0 3 * * *\"\n",
    );
    assert_eq!(inst.run(&["run-once", "done"]).status.code(), Some(0));
    // The first output after the daemon's start (the full path), then one from the view the
    // daemon pre-rendered (the fast path): both the same way.
    for call in ["first", "second"] {
        let out = cached_ctrl(&inst);
        let a = parse_ok(&out);
        let done = a.check(None, "Robotmk t done");
        assert_eq!(done.state_num(), 0, "{call}: {out}");
        assert!(
            done.summary.contains("last run at 20") && done.summary.contains(" UTC: success"),
            "{call}: {done:?}"
        );
        assert!(!done.summary.contains(" ago"), "{call}: {done:?}");
        let fresh = a.check(None, "Robotmk t fresh");
        assert_eq!(fresh.state_num(), 0, "{call}: not UNKNOWN: {fresh:?}");
        assert!(
            fresh.summary.contains("no result yet, first run due at 20")
                && fresh.summary.contains(
                    "its result follows with the agent's next refresh of this output (cached 300s (plugins/300/))"
                ),
            "{call}: {fresh:?}"
        );
    }
    // The synchronous agent sees the age and UNKNOWN as before.
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let a = parse_ok(&out);
    assert!(
        a.check(None, "Robotmk t done")
            .summary
            .contains(" ago: success"),
        "{out}"
    );
    let fresh = a.check(None, "Robotmk t fresh");
    assert_eq!(fresh.state_num(), 3, "{out}");
    assert!(fresh.summary.contains("first run due in "), "{out}");
}
