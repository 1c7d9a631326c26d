//! What Checkmk receives (issue 4): real Robot Framework suites scheduled by the daemon, the
//! agent sections ctrl prints, local-check states and metrics, broken output.xml, staleness.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Robot Framework (see `common::test_robot`).
fn robot() -> Option<PathBuf> {
    test_robot()
}

fn suite(name: &str) -> String {
    format!("{}/examples/demo/suites/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Checks the agent output against Checkmk's grammar (tests/common/checkmk.rs): the two
/// sections of the agent's own host, one JSON line, and well-formed local checks.
fn assert_valid_agent_output(out: &str) -> (Value, Vec<String>) {
    let a = checkmk::parse_ok(out);
    assert_eq!(a.sections[0].name, "robotmk_daemon", "{out}");
    assert_eq!(a.sections[0].sep, Some(0), "{out}");
    assert_eq!(a.sections[0].lines.len(), 1, "one line of JSON: {out}");
    let json: Value = serde_json::from_str(&a.sections[0].lines[0]).expect("one line of JSON");
    let local = a.section("local").expect("a local section");
    assert_eq!(local.sep, Some(0), "{out}");
    assert_eq!(a.local(None).len(), local.lines.len());
    (json, local.lines.clone())
}

fn line_of<'a>(local: &'a [String], name: &str) -> &'a str {
    let quoted = format!("\"{name}\"");
    local
        .iter()
        .find(|l| l.contains(&quoted))
        .unwrap_or_else(|| panic!("no line for {name}: {local:?}"))
}

#[test]
fn robot_suites_scheduled_by_the_daemon_show_up_as_local_checks() {
    let Some(robot) = robot() else {
        require_tool(
            false,
            "Robot Framework (.venv/bin/robot or $ROBOTMK_TEST_ROBOT)",
        );
        return;
    };
    let r = robot.display();
    let jobs = format!(
        "[[job]]\nname = \"pass\"\nkind = \"robot\"\nsuite = \"{}\"\nrobot = \"{r}\"\nevery = \"2s\"\ntimeout = \"30s\"\n\n\
         [[job]]\nname = \"fail\"\nkind = \"robot\"\nsuite = \"{}\"\nrobot = \"{r}\"\nevery = \"2s\"\ntimeout = \"30s\"\n\n\
         [[job]]\nname = \"slow\"\nkind = \"robot\"\nsuite = \"{}\"\nrobot = \"{r}\"\nevery = \"1h\"\ntimeout = \"2s\"\n\n\
         [[job]]\nname = \"never\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
        suite("passing.robot"),
        suite("failing.robot"),
        suite("slow.robot"),
    );
    let inst = Instance::new("heartbeat_timeout = \"1m\"\nmax_parallel = 0", &jobs);
    // The slow suite runs once now, through run-once, and times out.
    let out = inst.run(&["run-once", "slow"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    inst.ctrl_json();
    // Wait for what the agent sees, not for the files: status.json follows the records.
    let mut out = String::new();
    let shown = wait_for(Duration::from_secs(30), || {
        out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
        let j = parse_section(&out);
        let has = |n: &str| {
            j["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == n && x["last"]["outcome"].is_string())
        };
        has("pass") && has("fail") && has("slow")
    });
    assert!(
        shown,
        "no robot results in ctrl's output: {out}\n{}",
        inst.log()
    );
    let (json, local) = assert_valid_agent_output(&out);
    assert_eq!(json["instance"], "t");
    assert_eq!(json["daemon"]["running"], true);
    assert!(
        json["daemon"]["uptime_s"].is_number() && json["daemon"]["heartbeat_age_s"].is_number()
    );
    assert_eq!(json["ctrl"]["action"], "running");
    let jobs = json["jobs"].as_array().unwrap();
    // In config order (the daemon's status, which this ctrl read, keeps it).
    let names: Vec<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pass", "fail", "slow", "never"]);
    let pass = jobs.iter().find(|j| j["name"] == "pass").unwrap();
    assert_eq!(pass["last"]["outcome"], "success");
    assert_eq!(pass["last"]["exit_code"], 0);
    assert_eq!(pass["last"]["tests"]["passed"], 3);
    assert!(pass["next_due"].is_string() && pass["schedule"] == "every 2s");

    assert!(local[0].starts_with("0 \"Robotmk t daemon\""), "{local:?}");
    let p = line_of(&local, "Robotmk t pass");
    assert!(
        p.starts_with("0 ") && p.contains("tests_passed=3|tests_failed=0|tests_skipped=0"),
        "{p}"
    );
    let f = line_of(&local, "Robotmk t fail");
    assert!(
        f.starts_with("2 ") && f.contains("tests_passed=1|tests_failed=1"),
        "{f}"
    );
    assert!(f.contains("failure (1 test passed, 1 failed"), "{f}");
    let s = line_of(&local, "Robotmk t slow");
    assert!(s.starts_with("2 ") && s.contains("timeout"), "{s}");
    let n = line_of(&local, "Robotmk t never");
    assert!(n.starts_with("3 ") && n.contains("no result yet"), "{n}");
    // Robot's exit code 1 = one test failed, as robot defines it.
    let fail_rec = &inst.finished_records("fail")[0];
    assert_eq!(fail_rec["exit_code"], 1);
    assert_eq!(fail_rec["tests"]["suite"], "Failing");
}

#[test]
fn a_broken_output_xml_is_noted_and_ctrl_still_prints() {
    let job = "[[job]]\nname = \"killed\"\ncommand = [\"sh\", \"-c\", \"printf '<?xml version=\\\"1.0\\\"?><robot><suite name=\\\"x\\\"><test' > $ROBOTMK_RUN_DIR/output.xml; exit 253\"]\nevery = \"1h\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", job);
    let out = inst.run(&["run-once", "killed"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let rec = &inst.finished_records("killed")[0];
    assert_eq!(rec["outcome"], "failure");
    assert_eq!(rec["exit_code"], 253);
    let note = rec["note"].as_str().unwrap();
    assert!(note.contains("output.xml unreadable"), "{note}");
    assert!(
        note.contains("stopped by the user"),
        "robot's exit code 253 explained: {note}"
    );
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
    let (_, local) = assert_valid_agent_output(&out);
    let l = line_of(&local, "Robotmk t killed");
    assert!(
        l.starts_with("2 ") && l.contains("output.xml unreadable"),
        "{l}"
    );
}

#[test]
fn results_turn_warn_then_crit_when_due_runs_do_not_report() {
    // One slot (max_parallel = 1): once the flag exists, "hog" holds it for a minute and the
    // due runs of "ager" wait in the queue, so its last result ages while its runs are due.
    let flag = "hang.flag";
    let jobs = format!(
        "[[job]]\nname = \"ager\"\ncommand = [\"true\"]\nevery = \"1s\"\ntimeout = \"1s\"\n\n\
         [[job]]\nname = \"hog\"\ncommand = [\"sh\", \"-c\", \"test -e ../../../../{flag} && exec sleep 60; exit 0\"]\nevery = \"1s\"\ntimeout = \"1m\"\n"
    );
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"\nmax_parallel = 1\nstale_margin = \"1s\"",
        &jobs,
    );
    inst.ctrl_json();
    assert!(wait_for(Duration::from_secs(5), || !inst
        .finished_records("ager")
        .is_empty()));
    std::fs::write(inst.state.join(flag), b"").unwrap();
    let state_of = || {
        let out = String::from_utf8_lossy(&inst.ctrl().stdout).to_string();
        let (json, local) = assert_valid_agent_output(&out);
        let ager = json["jobs"][0].clone();
        (line_of(&local, "Robotmk t ager").to_string(), ager)
    };
    let mut seen = Vec::new();
    let reached_crit = wait_for(Duration::from_secs(15), || {
        let (l, _) = state_of();
        let s = l.chars().next().unwrap();
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        s == '2'
    });
    let (line, ager) = state_of();
    assert!(reached_crit, "states seen: {seen:?}; last line: {line}");
    assert!(seen.contains(&'1'), "WARN before CRIT: {seen:?}");
    assert!(line.contains("result stale"), "{line}");
    // The daemon published the deadlines ctrl judged by (its fast path parses no schedule).
    assert_eq!(ager["name"], "ager");
    let t = |v: &Value| {
        let s = v.as_str().unwrap_or_else(|| panic!("not a time: {ager}"));
        chrono::DateTime::parse_from_rfc3339(s).unwrap()
    };
    // Due every 1s, timeout 1s, stop_grace 1s, stale_margin 1s.
    let due = t(&ager["last"]["due"]);
    assert_eq!(
        t(&ager["expected_by"]) - due,
        chrono::Duration::seconds(4),
        "{ager}"
    );
    assert_eq!(
        t(&ager["crit_after"]) - due,
        chrono::Duration::seconds(5),
        "{ager}"
    );
}
