//! A daemon that dies, or keeps restarting, must not read OK (issue 19.4), and ctrl itself
//! prints a CRIT line whatever kills it (issue 20.1: Checkmk got no section at all when ctrl
//! crashed). Crashes are made with the test-only hook `ROBOTMK_DAEMON_TEST_CRASH=<point>:<how>`
//! (`daemon::lifecycle::test_crash`): a real panic, abort, SIGSEGV or stack overflow of the real
//! binary at a chosen point.
#![cfg(unix)]

mod common;

use common::*;
use std::process::Output;
use std::time::Duration;

const HOOK: &str = "ROBOTMK_DAEMON_TEST_CRASH";
const HOURLY: &str =
    "[[job]]\nname = \"hourly\"\ncommand = [\"true\"]\nevery = \"1h\"\ncatch_up = \"skip\"\n";

fn ctrl_with(inst: &Instance, hook: Option<&str>) -> Output {
    let mut c = inst.cmd();
    if let Some(h) = hook {
        c.env(HOOK, h);
    }
    c.arg("ctrl").output().expect("run ctrl")
}

/// ctrl's daemon line for instance `t`.
fn daemon_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    local_lines(&text)
        .into_iter()
        .find(|l| l.contains("\"Robotmk t daemon\""))
        .unwrap_or_else(|| panic!("no daemon line in:\n{text}"))
}

/// Makes the running daemon reload (an edit of the config) and waits until it is gone.
fn crash_on_reload(inst: &Instance, round: usize) {
    let pid = inst.daemon_pid().expect("a daemon runs");
    inst.write_config("", &format!("# edit {round}\n{HOURLY}"));
    assert!(
        wait_for(Duration::from_secs(30), || !pid_alive(pid)),
        "the daemon (pid {pid}) did not die on the reload"
    );
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
}

#[test]
fn a_daemon_that_dies_on_every_reload_turns_its_line_crit_naming_the_cause() {
    let inst = Instance::new("", HOURLY);
    let hook = Some("reload:segv");
    let first = ctrl_with(&inst, hook);
    let line = daemon_line(&first);
    assert!(line.starts_with("0 "), "a fresh daemon is fine: {line}");

    for round in 1..=3 {
        crash_on_reload(&inst, round);
        let out = ctrl_with(&inst, hook);
        let line = daemon_line(&out);
        assert!(
            line.starts_with("2 ") && line.contains("fatal signal 11 (SIGSEGV)"),
            "round {round}: the line after a crash is CRIT and names the signal: {line}"
        );
        // When: the time of death is read from the note.
        let json = parse_section(&String::from_utf8_lossy(&out.stdout));
        let crash = &json["daemon"]["previous_crash"];
        assert!(crash["died"].is_string(), "{json}");
        if round == 3 {
            // Four starts within the window: the count says so.
            assert!(line.contains("started 4 times in the last"), "{line}");
        } else {
            assert!(line.contains("restarted after a crash"), "{line}");
        }
    }
    // `status` shows it too, and the log says the predecessor died.
    let status = inst.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("UNSTABLE:") && text.contains("SIGSEGV"),
        "{text}"
    );
    assert!(
        inst.log()
            .contains("the previous daemon did not exit cleanly"),
        "{}",
        inst.log()
    );
}

#[test]
fn the_cause_of_a_panic_an_abort_and_a_stack_overflow_is_named() {
    for (how, want) in [
        ("panic", "test crash at reload"),
        ("overflow", "has overflowed its stack"),
        ("abort", "fatal signal 6 (SIGABRT)"),
    ] {
        let inst = Instance::new("", HOURLY);
        let hook = format!("reload:{how}");
        let first = ctrl_with(&inst, Some(&hook));
        assert!(daemon_line(&first).starts_with("0 "));
        crash_on_reload(&inst, 1);
        let line = daemon_line(&ctrl_with(&inst, Some(&hook)));
        assert!(
            line.starts_with("2 ") && line.contains(want),
            "{how}: the line names {want:?}: {line}"
        );
    }
}

#[test]
fn a_clean_restart_stays_ok() {
    let inst = Instance::new("", HOURLY);
    assert!(daemon_line(&inst.ctrl()).starts_with("0 "));
    let stop = inst.run(&["stop"]);
    assert!(stop.status.success(), "{stop:?}");
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
    let line = daemon_line(&inst.ctrl());
    assert!(
        line.starts_with("0 "),
        "a stop and a start is no crash: {line}"
    );
    let json = parse_section(&String::from_utf8_lossy(&inst.ctrl().stdout));
    assert!(json["daemon"]["previous_crash"].is_null(), "{json}");
}

#[test]
fn a_daemon_killed_by_sigkill_is_reported_as_leaving_no_cause() {
    let inst = Instance::new("", HOURLY);
    inst.ctrl();
    let pid = inst.daemon_pid().expect("a daemon runs");
    kill9(pid);
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
    let line = daemon_line(&inst.ctrl());
    assert!(
        line.starts_with("2 ") && line.contains("SIGKILL"),
        "a daemon that vanished is a crash with no cause left: {line}"
    );
}

#[test]
fn ctrl_prints_a_crit_line_whatever_kills_it() {
    let inst = Instance::new("", HOURLY);
    for (how, want) in [
        ("segv", "fatal signal 11 (SIGSEGV)"),
        ("panic", "test crash at ctrl"),
        ("abort", "fatal signal 6 (SIGABRT)"),
    ] {
        let out = ctrl_with(&inst, Some(&format!("ctrl:{how}")));
        assert!(!out.status.success(), "{how}: ctrl was to die: {out:?}");
        let line = daemon_line(&out);
        assert!(
            line.starts_with("2 ")
                && line.contains("ctrl (the agent plugin) died")
                && line.contains(want),
            "{how}: {line}"
        );
    }
}

#[test]
fn a_crash_inside_a_piggyback_block_still_reports_on_this_host() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"far\"\ncommand = [\"true\"]\nevery = \"1h\"\ncatch_up = \"skip\"\nhost = \"pig.example\"\n",
    );
    let first = inst.ctrl();
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("<<<<pig.example>>>>"),
        "the job's block goes to its host"
    );
    let out = ctrl_with(&inst, Some("ctrl-piggyback:segv"));
    assert!(!out.status.success(), "ctrl was to die: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let crit = text
        .rfind("\"Robotmk t daemon\" - CRIT - ctrl (the agent plugin) died")
        .unwrap_or_else(|| panic!("no CRIT line after the crash:\n{text}"));
    // The host Checkmk gives a line to is the last piggyback marker before it.
    let marker = text[..crit].rfind("<<<<").expect("the block was opened");
    assert!(
        text[marker..].starts_with("<<<<>>>>"),
        "the CRIT line must be this host's, not the piggybacked one's:\n{}",
        &text[text[..marker].rfind("<<<<").unwrap_or(0)..]
    );
}
