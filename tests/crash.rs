//! A daemon that dies, or keeps restarting, must not read OK (issue 19.4), and ctrl itself
//! prints a CRIT line whatever kills it (issue 20.1: Checkmk got no section at all when ctrl
//! crashed). Crashes are made with the test-only hook `ROBOTMK_DAEMON_TEST_CRASH=<point>:<how>`
//! (`app::test_crash`): a real panic, abort, SIGSEGV or stack overflow of the real binary at a
//! chosen point. The hook is only in builds with debug assertions, as the one `cargo test`
//! builds (not with `cargo test --release`).
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

/// A child process of the test, ended by its PID (and reaped) when the guard goes, also on a
/// panic.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Robot Framework output.xml with `n` failed tests with long names and messages: ctrl's
/// per-test lines for it are far more than a pipe holds.
fn big_robot_output(n: usize) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<robot generator=\"Robot 7.1 (Python 3.11)\" generated=\"2026-12-06T01:00:00\" rpa=\"false\" schemaversion=\"5\">\n<suite id=\"s1\" name=\"Big\">\n",
    );
    for i in 0..n {
        out.push_str(&format!(
            "<test id=\"s1-t{}\" name=\"Test number {i:05} {}\" line=\"1\"><status status=\"FAIL\" start=\"2026-12-06T01:00:00.000\" elapsed=\"1\">{}</status></test>\n",
            i + 1,
            "x".repeat(150),
            "m".repeat(150)
        ));
    }
    out.push_str(
        "<status status=\"FAIL\" start=\"2026-12-06T01:00:00.000\" elapsed=\"5\"/></suite>\n",
    );
    out.push_str(&format!("<statistics><total><stat pass=\"0\" fail=\"{n}\" skip=\"0\">All Tests</stat></total></statistics></robot>\n"));
    out
}

/// Bytes waiting in the pipe behind `fd`.
fn pipe_fill(fd: std::os::fd::RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD with a valid out pointer on a descriptor this test owns.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } != 0 {
        return 0;
    }
    n.max(0) as usize
}

/// The agent (or `timeout(1)`, or systemd) ends ctrl with SIGTERM while it waits on the agent
/// reading its large output, inside a piggyback block: ctrl still closes the block on a line
/// boundary and leaves a CRIT daemon line on this host, so the next plugin's sections stay
/// the agent host's.
#[test]
fn ctrl_ended_by_sigterm_inside_a_piggyback_block_closes_it_and_reports_crit() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let inst = Instance::new("heartbeat_timeout = \"0\"", "");
    let d = inst.dir.path();
    let xml = d.join("big.xml");
    std::fs::write(&xml, big_robot_output(3000)).unwrap();
    inst.write_config(
        "heartbeat_timeout = \"0\"",
        &format!(
            "[[job]]\nname = \"big\"\ncommand = [\"/bin/cp\", \"{}\", \"{{run_dir}}/output.xml\"]\nresult = \"{{run_dir}}/output.xml\"\nevery = \"1h\"\ntimeout = \"1m\"\nservices = \"per-test\"\nhost = \"shop\"\n",
            xml.display()
        ),
    );
    inst.ctrl();
    // Every test fails, so run-once exits 1; the result is recorded all the same.
    let once = inst.run(&["run-once", "big"]);
    assert!(
        String::from_utf8_lossy(&once.stdout).contains("3000 tests failed"),
        "run-once: {once:?}"
    );
    let full = String::from_utf8(inst.ctrl().stdout).unwrap();
    let shop = full.find("\n<<<<shop>>>>\n").expect("the job's block") + 1;
    let shop_end = shop
        + full[shop..]
            .find("\n<<<<>>>>\n")
            .expect("the block is closed")
        + 1;
    // The agent reads into the block, then stops reading: ctrl fills the pipe (64 KiB) and
    // waits, with the block's end far beyond what the pipe and ctrl's buffer hold.
    let read_to = shop + 64 * 1024;
    assert!(
        shop_end > read_to + 512 * 1024,
        "the block must be far larger than a pipe: {shop}..{shop_end}"
    );

    let mut child = ChildGuard(
        inst.cmd()
            .arg("ctrl")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start ctrl"),
    );
    let pid = child.0.id();
    let mut pipe = child.0.stdout.take().unwrap();
    let mut got = vec![0u8; read_to];
    pipe.read_exact(&mut got).expect("read ctrl's output");
    assert!(
        wait_for(Duration::from_secs(30), || pipe_fill(pipe.as_raw_fd())
            >= 60 * 1024),
        "ctrl did not fill the pipe (it holds {} bytes)",
        pipe_fill(pipe.as_raw_fd())
    );
    // SAFETY: signalling the ctrl this test started, by its PID (not yet reaped).
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    pipe.read_to_end(&mut got).expect("read the rest");
    let status = child.0.wait().expect("wait for ctrl");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "ctrl ends by the signal: {status:?}"
    );
    let part = String::from_utf8(got).expect("whole UTF-8 characters");
    assert!(
        part.len() < shop_end,
        "ctrl was ended before the block's end"
    );

    // What came before the note ends with a whole line (checked below: every line parses).
    let note = part
        .rfind("<<<<>>>>\n<<<local:sep(0)>>>\n2 \"Robotmk t daemon\" - CRIT")
        .unwrap_or_else(|| panic!("no closing note at the end:\n{}", tail(&part)));
    let before = &part[..note];
    assert!(
        before.ends_with('\n'),
        "a cut line before the note:\n{}",
        tail(&part)
    );
    assert!(
        before[before.rfind("\n<<<<").expect("a piggyback block")..]
            .starts_with("\n<<<<shop>>>>\n"),
        "the note closes the open block of shop"
    );

    // The agent sends the next plugin's output after ctrl's: Checkmk reads it as this host's.
    let agent = format!(
        "{part}<<<uptime>>>\n12345.6 678.9\n<<<local:sep(0)>>>\n0 \"Other plugin check\" - all fine\n"
    );
    let parsed = checkmk::parse_later_hides_earlier(&agent)
        .unwrap_or_else(|e| panic!("Checkmk cannot read it: {e}\n{}", tail(&agent)));
    assert_eq!(
        parsed.sections(None, "uptime").len(),
        1,
        "the next plugin's section is this host's"
    );
    assert!(parsed.sections(Some("shop"), "uptime").is_empty());
    // No cut line: the shop's JSON lines are whole (its local lines the parser checked).
    let jobs = parsed.sections(Some("shop"), "robotmk_daemon_job");
    assert!(!jobs.is_empty(), "the block was under way");
    for l in jobs.iter().flat_map(|s| &s.lines) {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "a cut JSON line: ...{}",
            tail(l)
        );
    }
    assert_eq!(
        parsed
            .shown(None, "Other plugin check")
            .map(|c| c.state_num()),
        Some(0)
    );
    let daemon = parsed
        .shown(None, "Robotmk t daemon")
        .expect("the daemon's service on this host");
    assert_eq!(daemon.state_num(), 2, "{}", daemon.text);
    assert!(
        daemon.text.contains("ended by signal 15 (SIGTERM)"),
        "{}",
        daemon.text
    );
}

/// The last few lines of `s`, for a failure message.
fn tail(s: &str) -> String {
    let from = s.len().saturating_sub(600);
    let from = (from..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s[from..].to_string()
}
