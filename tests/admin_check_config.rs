//! Issue 24: `check-config` says what will fail at run time (a suite, a program, an
//! environment without Robot Framework) and warns about what will not do what the admin meant,
//! as the admin reads it; the daemon logs the warnings once and `status` shows them.
#![cfg(unix)]

mod common;

use common::{wait_for, Instance};
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

fn check(inst: &Instance) -> (i32, String, String) {
    let out: Output = inst.run(&["check-config"]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_suite_is_an_error_naming_the_key() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"shop\"\nsuite = \"/no/such/suite\"\nrobot = \"/bin/true\"\nevery = \"5m\"\n",
    );
    let (code, _, err) = check(&inst);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("job \"shop\": the suite /no/such/suite does not exist; fix `suite`"),
        "{err}"
    );
}

#[test]
fn a_missing_or_unexecutable_program_is_an_error() {
    let inst = Instance::new("", "");
    let suite = inst.dir.path().join("s.robot");
    std::fs::write(&suite, "*** Test Cases ***\nT\n    No Operation\n").unwrap();
    let plain = inst.dir.path().join("plain.sh");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (job, want) in [
        (
            format!("suite = \"{}\"\nrobot = \"/no/robot\"", suite.display()),
            "\"/no/robot\" does not exist; fix `robot` (or `python`)",
        ),
        (
            format!("suite = \"{}\"\npython = \"/no/python3\"", suite.display()),
            "\"/no/python3\" does not exist; fix `python`",
        ),
        (
            format!("command = [\"{}\"]", plain.display()),
            "is not executable; chmod +x",
        ),
        (
            "command = [\"no-such-program-rmkd\"]".to_string(),
            "\"no-such-program-rmkd\" is not found on PATH",
        ),
    ] {
        inst.write_config(
            "",
            &format!("[[job]]\nname = \"j\"\n{job}\nevery = \"5m\"\n"),
        );
        let (code, _, err) = check(&inst);
        assert_eq!(code, 2, "{job}: {err}");
        assert!(err.contains(want), "{job}: want {want:?} in {err}");
        assert!(err.contains("will make runs fail"), "{err}");
    }
    // And a good one is still valid.
    inst.write_config(
        "",
        "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"5m\"\n",
    );
    let (code, out, err) = check(&inst);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn requirements_without_robotframework_are_an_error() {
    let inst = Instance::new("", "");
    let suite = inst.dir.path().join("s.robot");
    std::fs::write(&suite, "").unwrap();
    let req = inst.dir.path().join("requirements.txt");
    std::fs::write(&req, "# libraries\nrobotframework-requests==0.9\n").unwrap();
    let job = format!(
        "[[job]]\nname = \"r\"\nsuite = \"{}\"\nrequirements = \"{}\"\npython = \"/usr/bin/env\"\nevery = \"5m\"\n",
        suite.display(),
        req.display()
    );
    inst.write_config("", &job);
    let (code, _, err) = check(&inst);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not list `robotframework`"), "{err}");
    assert!(err.contains("add a line `robotframework`"), "{err}");
    std::fs::write(&req, "Robot_Framework >= 7\nrobotframework-requests\n").unwrap();
    let (code, _, err) = check(&inst);
    assert_eq!(code, 2, "robot_framework is not robotframework: {err}");
    std::fs::write(&req, "robotframework>=7 # the runner\n").unwrap();
    let (code, out, err) = check(&inst);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn warnings_are_printed_and_the_exit_code_stays_0() {
    let inst = Instance::new("", "");
    let suite = inst.dir.path().join("s.robot");
    std::fs::write(&suite, "").unwrap();
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"slow\"\ncommand = [\"true\"]\nevery = \"1m\"\ntimeout = \"5m\"\n\n\
             [[job]]\nname = \"pb\"\nsuite = \"{}\"\nrobot = \"/bin/true\"\nevery = \"5m\"\nhost = \"shop\"\nservices = \"per-test\"\nvariables = {{ PASSWORD = \"x\" }}\n",
            suite.display()
        ),
    );
    std::fs::set_permissions(&inst.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = check(&inst);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "warning: job \"slow\": timeout 5m is longer than its interval 1m",
        "skipped",
        "holds `variables` (often passwords) and is readable by other users (mode 644); chmod 600",
        "is in the temporary folder",
    ] {
        assert!(err.contains(want), "want {want:?} in {err}");
    }
    assert!(out.contains("is valid"), "{out}");
    // Per-test checks go to the job's piggyback host with its own check: nothing to warn of.
    assert!(!err.contains("per-test"), "{err}");

    inst.write_config("", "");
    let (code, _, err) = check(&inst);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("has no [[job]]: the daemon will start and sit idle"),
        "{err}"
    );
}

#[test]
fn the_daemon_logs_the_warnings_once_and_status_shows_them() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"slow\"\ncommand = [\"true\"]\nevery = \"1h\"\ntimeout = \"2h\"\n",
    );
    let out = inst.ctrl();
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_for(Duration::from_secs(20), || inst
            .log()
            .contains("timeout 2h is longer than its interval 1h")),
        "log: {}",
        inst.log()
    );
    // A second ctrl does not log it again.
    inst.ctrl();
    let log = inst.log();
    assert_eq!(
        log.matches("timeout 2h is longer").count(),
        1,
        "logged once: {log}"
    );
    let out = inst.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("note: job \"slow\": timeout 2h is longer than its interval 1h"),
        "{text}"
    );
    assert_eq!(
        text.matches("timeout 2h is longer").count(),
        1,
        "not again among the log's problems: {text}"
    );
    let out = inst.run(&["stop", "--now"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_folder_in_tmp_owned_by_another_user_is_not_to_be_adopted() {
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "needs root under CI"
        );
        eprintln!("SKIP: needs root to make a folder another user owns");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("rmkd-i24-foreign-")
        .tempdir_in("/tmp")
        .unwrap();
    // nobody's folder in /tmp: what any local user can make there.
    let (uid, gid) = (65534, 65534);
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    let inst = Instance::new("", "");
    let cfg = format!(
        "[daemon]\ninstance = \"t\"\nstate_dir = \"{}/state\"\n\n[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"5m\"\n",
        dir.path().display()
    );
    inst.write_raw_config(&cfg);
    let (code, _, err) = check(&inst);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("belongs to uid 65534"), "{err}");
    assert!(
        err.contains("choose a path outside world-writable folders such as /tmp"),
        "{err}"
    );
    assert!(!err.contains("chown root"), "{err}");
}
