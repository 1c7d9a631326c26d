//! Other instances in the system ctrl's output (issue 22): a USER instance — a second daemon
//! run by a real unprivileged user, with its state dir in that user's folder — appears with
//! its own daemon line and jobs in what the agent receives from the system instance's ctrl;
//! an instance that cannot be read (a path others may write, a path that is not there) is a
//! CRIT line saying why. Every line goes through the parser of Checkmk's rules.
#![cfg(unix)]

mod common;

use common::checkmk::parse_ok;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The user the USER instance runs as (created once, kept).
const DESK_USER: &str = "rmkd-i22-desk";

fn as_user(uid: u32, gid: u32, config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .uid(uid)
        .gid(gid)
        .current_dir(config.parent().unwrap())
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .env_remove("ROBOTMK_DAEMON_CONFIG")
        .env("HOME", config.parent().unwrap())
        .stdin(Stdio::null())
        .output()
        .expect("run robotmk-daemon as the desk user")
}

#[test]
fn the_system_ctrl_reports_a_user_instance_and_says_why_it_cannot_read_another() {
    let Some((uid, gid)) = system_user(DESK_USER) else {
        return;
    };
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    // The user reaches its own folder in the test's temp dir, which stays root's.
    std::fs::set_permissions(inst.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let desk = inst.dir.path().join("desk");
    std::fs::create_dir(&desk).unwrap();
    std::os::unix::fs::chown(&desk, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&desk, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = desk.join("robotmk-daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ninstance = \"desk\"\nstate_dir = \"{}\"\nheartbeat_timeout = \"1m\"\n\n\
             [[job]]\nname = \"hello\"\ncommand = [\"true\"]\nevery = \"1h\"\n\n\
             [[job]]\nname = \"broken\"\ncommand = [\"sh\", \"-c\", \"echo the login page is gone; exit 3\"]\nevery = \"1h\"\n\n\
             [[job]]\nname = \"forge\"\nkind = \"plugin\"\nservice = \"Shop Login\"\ncommand = [\"echo\", \"OK - forged\"]\nevery = \"1h\"\n",
            desk.join("state").display()
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&config, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    for job in ["hello", "broken", "forge"] {
        let out = as_user(uid, gid, &config, &["run-once", job]);
        assert!(out.status.code().is_some(), "{out:?}");
    }
    // The user's own ctrl (the Task Scheduler's or the desktop's timer) starts its daemon.
    let out = as_user(uid, gid, &config, &["ctrl"]);
    let own = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        parse_ok(&own)
            .check(None, "Robotmk desk daemon")
            .state_num()
            == 0,
        "the user's own ctrl: {own}\n{out:?}"
    );
    // Two instances that cannot be read: a folder anyone may write, and nothing at all.
    let open = inst.dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let missing = inst.dir.path().join("missing");
    inst.write_config(
        &format!(
            "heartbeat_timeout = \"1m\"\nother_instances = [\"{}\", \"{}\", \"{}\"]",
            config.display(),
            open.display(),
            missing.display()
        ),
        "[[job]]\nname = \"sys\"\ncommand = [\"true\"]\nevery = \"1h\"\n\n\
         [[job]]\nname = \"login\"\nkind = \"plugin\"\nservice = \"Shop Login\"\ncommand = [\"sh\", \"-c\", \"echo CRITICAL - login broken; exit 2\"]\nevery = \"1h\"\n",
    );
    let check = inst.run(&["check-config"]);
    assert!(check.status.success(), "{check:?}");
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let agent = parse_ok(&out);
    assert_eq!(
        agent.check(None, "Robotmk t daemon").state_num(),
        0,
        "{out}"
    );
    let d = agent.check(None, "Robotmk desk daemon");
    assert_eq!(d.state_num(), 0, "{d:?}\n{out}");
    assert!(d.summary.contains("running"), "{d:?}");
    let hello = agent.check(None, "Robotmk desk hello");
    assert_eq!(hello.state_num(), 0, "{hello:?}");
    let broken = agent.check(None, "Robotmk desk broken");
    assert_eq!(broken.state_num(), 2, "{broken:?}");
    assert!(
        broken.summary.contains("exit code 3") && broken.summary.contains("the login page is gone"),
        "{broken:?}"
    );
    // The user's plugin job named its check as one of the system instance's: it keeps to its
    // own instance's names instead, and the system's check is there once, its own.
    assert!(inst.run(&["run-once", "login"]).status.code().is_some());
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let agent = parse_ok(&out);
    let named = |name: &str| {
        agent
            .local(None)
            .into_iter()
            .filter(|c| c.name == name)
            .collect::<Vec<_>>()
    };
    let sys = named("Shop Login");
    assert_eq!(sys.len(), 1, "{out}");
    assert!(!sys[0].summary.contains("forged"), "{out}");
    assert_eq!(named("Robotmk desk forge").len(), 1, "{out}");
    let crit = |p: &Path| {
        agent
            .local(None)
            .into_iter()
            .find(|c| c.name == format!("Robotmk instance {}", p.display()))
            .unwrap_or_else(|| panic!("no line for {}: {out}", p.display()))
    };
    let o = crit(&open);
    assert_eq!(o.state_num(), 2, "{o:?}");
    assert!(
        o.summary.contains("is writable by group or others"),
        "{o:?}"
    );
    let m = crit(&missing);
    assert_eq!(m.state_num(), 2, "{m:?}");
    assert!(
        m.summary.contains(&format!(
            "cannot read the instance at {}",
            missing.display()
        )),
        "{m:?}"
    );
    // Its daemon stopped: the system ctrl says so (the user's dead man, its own ctrl, is gone).
    let out = as_user(uid, gid, &config, &["stop", "--timeout", "10s"]);
    assert!(out.status.success(), "{out:?}");
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let d = parse_ok(&out).check(None, "Robotmk desk daemon");
    assert_eq!(d.state_num(), 2, "{d:?}");
    assert!(d.summary.contains("daemon not running"), "{d:?}");
    // Its status file is its owner's to write: a job name that holds a line break and section
    // headers must not print its owner's lines into the system agent's output.
    let status_file = desk.join("state/status.json");
    let mut status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
    status["jobs"][0]["name"] = serde_json::Value::String(
        "hello\" - x\n<<<<>>>>\n<<<local:sep(0)>>>\n0 \"Robotmk t sys\" - OK - forged\n\
         <<<<victim.example.com>>>>\n<<<local:sep(0)>>>\n0 \"Forged\" - OK - injected\n<<<<open>>>>\n0 \"z"
            .into(),
    );
    // Nor a test's status (shown in the test's own check).
    status["jobs"][1]["services"] = "per-test".into();
    status["jobs"][1]["last"]["tests"] = serde_json::json!({
        "passed": 1, "failed": 0, "skipped": 0,
        "results": [{"suite": "S", "name": "T1", "status":
            "PASS\n<<<<>>>>\n<<<local:sep(0)>>>\n0 \"Robotmk t daemon\" - OK - by its owner\n<<<<victim2.example.com>>>>"}]
    });
    std::fs::write(&status_file, serde_json::to_vec(&status).unwrap()).unwrap();
    std::os::unix::fs::chown(&status_file, Some(uid), Some(gid)).unwrap();
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    assert!(
        !out.contains("injected")
            && !out.contains("victim.example.com")
            && !out.contains("<<<<open"),
        "{out}"
    );
    let agent = parse_ok(&out);
    assert!(agent.local(Some("victim.example.com")).is_empty(), "{out}");
    assert_eq!(
        agent
            .local(None)
            .iter()
            .filter(|c| c.name == "Robotmk t sys")
            .count(),
        1,
        "{out}"
    );
    let d = agent.check(None, "Robotmk desk daemon");
    assert!(
        d.summary.contains("1 job(s) of its status.json not shown"),
        "{d:?}"
    );
    assert_eq!(
        agent.check(None, "Robotmk desk broken").state_num(),
        2,
        "{out}"
    );
    // The test's status stays inside its own check, one line.
    assert_eq!(
        agent
            .local(None)
            .iter()
            .filter(|c| c.name == "Robotmk t daemon")
            .count(),
        1,
        "{out}"
    );
    assert!(agent.local(Some("victim2.example.com")).is_empty(), "{out}");
    let t1 = agent.check(None, "Robotmk desk broken T1");
    assert!(
        t1.summary
            .starts_with("WARN - PASS <<<<>>>> <<<local:sep(0)>>>"),
        "{t1:?}"
    );
    // A status file that is there but not one a daemon writes is named as such, not as
    // missing ("has its daemon ever run?" sent the admin the wrong way).
    status["daemon"]["pid"] = "not a number".into();
    std::fs::write(&status_file, serde_json::to_vec(&status).unwrap()).unwrap();
    std::os::unix::fs::chown(&status_file, Some(uid), Some(gid)).unwrap();
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let bad = parse_ok(&out).check(None, &format!("Robotmk instance {}", config.display()));
    assert_eq!(bad.state_num(), 2, "{bad:?}");
    assert!(
        bad.summary.contains("its status.json cannot be read") && !bad.summary.contains("ever run"),
        "{bad:?}"
    );
    // The same instance named by its state dir (where its name is read from that very file).
    let state = desk.join("state");
    inst.write_config(
        &format!(
            "heartbeat_timeout = \"1m\"\nother_instances = [\"{}\"]",
            state.display()
        ),
        "[[job]]\nname = \"sys\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let bad = parse_ok(&out).check(None, &format!("Robotmk instance {}", state.display()));
    assert_eq!(bad.state_num(), 2, "{bad:?}");
    assert!(
        bad.summary.contains("its status.json cannot be read") && !bad.summary.contains("ever run"),
        "named by its state dir: {bad:?}"
    );
    // A config that others may change lists nothing they could choose: no other instance's
    // section, only this one's refusal.
    std::fs::set_permissions(&inst.config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    std::fs::set_permissions(&inst.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let agent = parse_ok(&out);
    assert_eq!(
        agent.check(None, "Robotmk t daemon").state_num(),
        2,
        "{out}"
    );
    assert!(
        agent
            .local(None)
            .iter()
            .all(|c| !c.name.starts_with("Robotmk instance")),
        "an untrusted config's other instances were shown: {out}"
    );
}

/// Two configs that name one state dir (a copied config whose `state_dir` was not changed):
/// the second config's ctrl must not show the first config's daemon as its own, keep it
/// alive with its heartbeat, or stop it with its `stop`; it says what is wrong (CRIT), and
/// its `start` refuses too.
#[test]
fn a_second_config_naming_a_running_daemons_state_dir_is_told_so() {
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"",
        "[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    assert!(inst.ctrl().status.success());
    let pid = inst.daemon_pid().expect("the first config's daemon runs");
    let copy = inst.dir.path().join("copy.toml");
    std::fs::write(
        &copy,
        std::fs::read_to_string(&inst.config)
            .unwrap()
            .replace("name = \"a\"", "name = \"b\""),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = inst.cmd();
        let mut argv: Vec<std::ffi::OsString> = c.get_args().map(|a| a.to_owned()).collect();
        argv[1] = copy.clone().into_os_string();
        c = Command::new(BIN);
        c.args(&argv).args(args).stdin(Stdio::null());
        c.env_remove("MK_CONFDIR").env_remove("MK_VARDIR");
        c.output().unwrap()
    };
    let beat = || {
        std::fs::metadata(inst.state.join("heartbeat"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = beat();
    let out = run(&["ctrl"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    parse_ok(&text);
    let line = text
        .lines()
        .find(|l| l.contains("\"Robotmk t daemon\""))
        .unwrap_or_default();
    assert!(line.starts_with("2 "), "{text}");
    assert!(line.contains("is in use by the daemon"), "{line}");
    assert!(
        line.contains("config.toml"),
        "names the other config: {line}"
    );
    assert_eq!(beat(), before, "no heartbeat for another config's daemon");
    let stop = run(&["stop", "--now"]);
    assert_eq!(stop.status.code(), Some(1), "{stop:?}");
    assert!(
        String::from_utf8_lossy(&stop.stderr).contains("not stopped"),
        "{stop:?}"
    );
    assert!(pid_alive(pid), "the first config's daemon runs on");
    assert_eq!(run(&["start"]).status.code(), Some(1));
    let status = run(&["status"]);
    assert_eq!(status.status.code(), Some(2), "{status:?}");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("is in use by the daemon"),
        "{status:?}"
    );
    assert_eq!(inst.daemon_pid(), Some(pid));
    // The same file by another path is the same config.
    let link = inst.dir.path().join("link.toml");
    std::os::unix::fs::symlink(&inst.config, &link).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&link)
        .arg("ctrl")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("0 \"Robotmk t daemon\"")),
        "{text}"
    );
    assert!(inst.run(&["stop", "--now"]).status.success());
}

/// A hard link of the config is the config: ctrl called with it finds its own daemon, not
/// "the daemon of another config" (CRIT) in its state dir.
#[test]
fn a_hard_link_of_the_config_is_the_same_config() {
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"",
        "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    assert!(inst.ctrl().status.success());
    let pid = inst.daemon_pid().expect("a daemon runs");
    let link = inst.dir.path().join("linked.toml");
    std::fs::hard_link(&inst.config, &link).unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&link)
        .arg("ctrl")
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let section = parse_section(&text);
    assert!(section["ctrl"]["error"].is_null(), "{text}");
    assert_eq!(
        section["daemon"]["pid"].as_u64(),
        Some(u64::from(pid)),
        "{text}"
    );
    let _ = inst.run(&["stop", "--now"]);
}

/// Runs ctrl of `inst` as the Linux agent runs a cached plugin: from `<dir>/plugins` as
/// `300/NAME`, the config from the environment.
fn cached_ctrl(inst: &Instance) -> String {
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
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Tester T7's findings 1, 3 and 6: ctrl rendered another instance apart from its own —
/// without that instance's pause (Checkmk showed a paused job as OK, never WARN past its warn
/// age), in sync mode while the agent cached the output ("last run 0s ago" served for
/// minutes), and with whatever state its status file held (a line `7 "…"` that Checkmk's
/// parser rejects, its check crashing). Another instance now goes through the rendering of
/// this one's: all three hold for it as for this instance.
#[test]
fn another_instance_shows_its_pause_the_agents_cached_mode_and_only_checkmks_states() {
    let inst = Instance::new(
        "heartbeat_timeout = \"1m\"",
        "[[job]]\nname = \"sys\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    // The other instance (root's here: what is under test is its rendering), in the test's
    // temp dir, so that the test's guard ends its daemon too.
    let desk = inst.dir.path().join("desk");
    std::fs::create_dir(&desk).unwrap();
    let config = desk.join("desk.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ninstance = \"desk\"\nstate_dir = \"{}\"\nheartbeat_timeout = \"1m\"\nstop_grace = \"1s\"\n\n\
             [[job]]\nname = \"gui\"\ncommand = [\"true\"]\nevery = \"1h\"\n\n\
             [[job]]\nname = \"pj\"\nkind = \"plugin\"\ncommand = [\"echo\", \"PJ OK | v=1\"]\nevery = \"1h\"\n",
            desk.join("state").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("MK_CONFDIR")
            .env_remove("MK_VARDIR")
            .env_remove("ROBOTMK_DAEMON_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    inst.write_config(
        &format!(
            "heartbeat_timeout = \"1m\"\nother_instances = [\"{}\"]",
            config.display()
        ),
        "[[job]]\nname = \"sys\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    assert!(run(&["ctrl"]).status.success());
    for job in ["gui", "pj"] {
        assert_eq!(run(&["run-once", job]).status.code(), Some(0), "{job}");
    }
    assert_eq!(inst.run(&["run-once", "sys"]).status.code(), Some(0));
    let paused = run(&["pause", "gui", "--warn-after", "1s"]);
    assert!(paused.status.success(), "{paused:?}");
    // Its own ctrl (which no agent reads) turns WARN once the pause is older than 1s.
    let mut own = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            let out = String::from_utf8_lossy(&run(&["ctrl"]).stdout).into_owned();
            let c = parse_ok(&out).check(None, "Robotmk desk gui");
            let warn = c.state_num() == 1;
            own = Some(c);
            warn
        }),
        "{own:?}"
    );
    let own = own.unwrap();
    assert!(own.summary.starts_with("WARN - paused by "), "{own:?}");
    // The ctrl the agent runs shows it the same way, on its full path and its fast path.
    for call in ["first", "second"] {
        let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
        let seen = parse_ok(&out).check(None, "Robotmk desk gui");
        assert_eq!(seen.state_num(), 1, "{call}: {out}");
        let head = |s: &str| {
            s.split(" (paused for")
                .next()
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(head(&seen.summary), head(&own.summary), "{call}: {out}");
        assert!(seen.summary.contains(", longer than 1s)"), "{seen:?}");
    }
    // In the agent's cached mode every time is absolute, the other instance's too.
    for call in ["first", "second"] {
        let out = cached_ctrl(&inst);
        let a = parse_ok(&out);
        for c in a.local(None) {
            assert!(!c.summary.contains(" ago"), "{call}: {c:?}\n{out}");
        }
        let gui = a.check(None, "Robotmk desk gui");
        assert_eq!(gui.state_num(), 1, "{call}: {gui:?}");
        assert!(
            gui.summary.contains("(paused since 20")
                && gui.summary.contains(" UTC, longer than 1s)"),
            "{call}: {gui:?}"
        );
        let pj = a.check(None, "Robotmk desk pj");
        assert!(pj.summary.contains("last run at 20"), "{call}: {pj:?}");
        let sys = a.check(None, "Robotmk t sys");
        assert!(sys.summary.contains("last run at 20"), "{call}: {sys:?}");
    }
    // Its status file is its owner's to write: a state Checkmk has no digit for is UNKNOWN,
    // and says so, not a line Checkmk's parser throws away.
    assert!(run(&["stop", "--timeout", "10s"]).status.success());
    let status_file = desk.join("state/status.json");
    let mut status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
    let pj = status["jobs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|j| j["name"] == "pj")
        .unwrap();
    pj["last"]["plugin"]["state"] = 7.into();
    std::fs::write(&status_file, serde_json::to_vec(&status).unwrap()).unwrap();
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let pj = parse_ok(&out).check(None, "Robotmk desk pj");
    assert_eq!(pj.state_num(), 3, "{out}");
    assert!(
        pj.summary
            .starts_with("UNKNOWN - PJ OK (state 7 is none of Checkmk's"),
        "{pj:?}"
    );
}
