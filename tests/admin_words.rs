//! Issue 24, "words, not types": what the admin reads from config errors, from a command
//! whose reader went away, from `status` and ctrl, and from the shell completions.
#![cfg(unix)]

mod common;

use common::{wait_for, Instance};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn check_err(inst: &Instance, text: &str) -> String {
    inst.write_raw_config(text);
    let out = inst.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn config_errors_say_what_to_write() {
    let inst = Instance::new("", "");
    let sd = format!("[daemon]\nstate_dir = \"{}\"\n", inst.state.display());
    let err = check_err(&inst, &format!("{sd}max_parallel = \"4\"\n"));
    assert!(
        err.contains("expected a whole number (0 or more), found the text \"4\"; write the number without quotes"),
        "{err}"
    );
    assert!(!err.contains("usize"), "{err}");
    let err = check_err(
        &inst,
        &format!(
            "{sd}[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"1m\"\nattempts = 1.5\n"
        ),
    );
    assert!(err.contains("expected a whole number"), "{err}");
    assert!(!err.contains("u32"), "{err}");
    let err = check_err(
        &inst,
        &format!("{sd}[job]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"1m\"\n"),
    );
    assert!(
        err.contains("write `[[job]]` (double brackets) above each job"),
        "{err}"
    );
    let err = check_err(
        &inst,
        &format!("{sd}[[job]]\nname = \"a\"\ncommand = [\"C:\\Tools\\x.exe\"]\nevery = \"1m\"\n"),
    );
    assert!(err.contains("use single quotes for Windows paths"), "{err}");
    let err = check_err(
        &inst,
        &format!("{sd}[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevry = \"1m\"\n"),
    );
    assert!(
        err.contains("unknown key `evry`; did you mean `every`?"),
        "{err}"
    );
    assert!(!err.contains("expected one of"), "{err}");
    let err = check_err(
        &inst,
        &format!("{sd}[[job]]\nname = \"café\"\ncommand = [\"true\"]\nevery = \"1m\"\n"),
    );
    assert!(
        err.contains("only the ASCII letters a-z and A-Z, the digits 0-9, '_', '.' and '-'"),
        "{err}"
    );
}

#[test]
fn check_config_spells_settings_as_the_config_does() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"1m\"\n",
    );
    let out = inst.run(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("overlap:  skip, catch_up: once"), "{text}");
}

/// The command with its stdout a pipe whose reading end is already closed.
fn with_closed_stdout(inst: &Instance, args: &[&str]) -> std::process::Output {
    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    let mut c = inst.cmd();
    c.args(args).stdout(w).stderr(Stdio::piped());
    c.output().unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_every_command_quietly() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"1m\"\n",
    );
    assert!(inst.run(&["run-once", "a"]).status.success());
    for args in [
        &["check-config"][..],
        &["status"],
        &["history", "a"],
        &["show", "a"],
        &["completions", "bash"],
        &["logs"],
        &["run-once", "a"],
    ] {
        let out = with_closed_stdout(&inst, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(0),
            "{args:?}: ended by SIGPIPE (the shell's 141) or exit 0: {:?}",
            out.status
        );
    }
    // Through a real shell pipe, as the admin types it.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' --config '{}' check-config | head -1; echo \"status=${{PIPESTATUS:-?}}\"",
            common::BIN,
            inst.config.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn status_says_running_once_in_colour_and_ctrl_counts_in_words() {
    let robot = common::test_robot();
    let inst = Instance::new("", "");
    let suite = inst.dir.path().join("one.robot");
    std::fs::write(&suite, "*** Test Cases ***\nOnly\n    No Operation\n").unwrap();
    let jobs = match &robot {
        Some(r) => format!(
            "[[job]]\nname = \"one\"\nsuite = \"{}\"\nrobot = \"{}\"\nevery = \"1h\"\n",
            suite.display(),
            r.display()
        ),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no robot under CI"
            );
            eprintln!("SKIP (plural part): no robot (set ROBOTMK_TEST_ROBOT)");
            "[[job]]\nname = \"one\"\ncommand = [\"true\"]\nevery = \"1h\"\n".to_string()
        }
    };
    inst.write_config("", &jobs);
    assert!(inst.ctrl().status.success());
    let out = inst.run(&["run-once", "one"]);
    assert!(out.status.success(), "{out:?}");
    if robot.is_some() {
        // The daemon's view follows the record a moment later.
        let mut ctrl = String::new();
        let said = wait_for(Duration::from_secs(90), || {
            ctrl = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
            ctrl.contains("(1 test passed, 0 failed, 0 skipped)")
        });
        assert!(said, "{ctrl}");
    }
    let status = |tty: &str, no_color: Option<&str>| {
        let mut c = inst.cmd();
        c.arg("status").env("ROBOTMK_DAEMON_TTY", tty);
        match no_color {
            Some(v) => c.env("NO_COLOR", v),
            None => c.env_remove("NO_COLOR"),
        };
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    };
    let plain = status("0", None);
    assert!(plain.contains("daemon:     running, pid"), "{plain}");
    assert!(!plain.contains(", running (via"), "said twice: {plain}");
    assert!(!plain.contains('\x1b'), "no colour into a pipe: {plain}");
    let mut colour = String::new();
    let painted = wait_for(Duration::from_secs(60), || {
        colour = status("1", None);
        colour.contains("\x1b[32msuccess")
    });
    assert!(painted, "{colour:?}");
    assert!(colour.contains("\x1b[32mrunning\x1b[0m, pid"), "{colour:?}");
    let no_color = status("1", Some("1"));
    assert!(!no_color.contains('\x1b'), "NO_COLOR: {no_color:?}");
    // The log says exit_code=0, not Rust's Some(0).
    assert!(
        wait_for(Duration::from_secs(10), || inst
            .log()
            .contains("run finished")),
        "{}",
        inst.log()
    );
    let log = inst.log();
    assert!(!log.contains("Some("), "{log}");
    assert!(log.contains("exit_code=0"), "{log}");
    assert!(inst.run(&["stop", "--now"]).status.success());
}

#[test]
fn a_running_run_shows_its_start_in_history() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"slow\"\ncommand = [\"sleep\", \"30\"]\nevery = \"1h\"\n",
    );
    assert!(inst.ctrl().status.success());
    let mut once = inst.cmd();
    let mut child = once
        .args(["run-once", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = wait_for(Duration::from_secs(20), || {
        let out = inst.run(&["history", "slow"]);
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        t.lines().any(|l| {
            l.contains(" running ")
                && l.split_whitespace()
                    .nth(2)
                    .is_some_and(|s| s.len() == 8 && s.contains(':'))
        })
    });
    let _ = inst.run(&["stop", "--now"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        running,
        "{}",
        String::from_utf8_lossy(&inst.run(&["history", "slow"]).stdout)
    );
}

#[test]
fn completions_hide_internal_commands_and_complete_job_names() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"web\"\ncommand = [\"true\"]\nevery = \"1m\"\n\n[[job]]\nname = \"wash\"\ncommand = [\"true\"]\nevery = \"1m\"\n",
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = inst.run(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout).into_owned();
        for internal in ["robot-attempts", "parse-result", "env-build", "'daemon"] {
            assert!(!script.contains(internal), "{shell} offers {internal}");
        }
        assert!(script.contains("complete-jobs"), "{shell}: no job names");
    }
    let out = inst.run(&["complete-jobs"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\nwash\n");
    // bash, run for real: `robotmk-daemon --config X history w<TAB>`.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::BIN, bin.path().join("robotmk-daemon")).unwrap();
    let script = inst.dir.path().join("comp.bash");
    std::fs::write(&script, inst.run(&["completions", "bash"]).stdout).unwrap();
    let probe = format!(
        "source '{}'; COMP_WORDS=(robotmk-daemon --config '{}' history w); COMP_CWORD=4; _robotmk_daemon_jobs robotmk-daemon w history; echo \"${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(robotmk-daemon r); COMP_CWORD=1; _robotmk_daemon_jobs robotmk-daemon r robotmk-daemon; echo \"${{COMPREPLY[*]}}\"",
        script.display(),
        inst.config.display()
    );
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(probe)
        .env("PATH", path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("web wash"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let subs = lines.next().unwrap_or_default();
    assert!(
        subs.contains("run-once") && subs.contains("resume"),
        "{subs}"
    );
    assert!(!subs.contains("robot-attempts"), "{subs}");
}
