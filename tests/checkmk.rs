//! What Checkmk sees (issue 12): no false alarms for crons with gaps, the agent's cached
//! (asynchronous) plugin mode, piggyback hosts and runtime levels — each checked on the real
//! binary's output with a parser that follows Checkmk's grammar (tests/common/checkmk.rs).
#![cfg(unix)]

mod common;

use chrono::{DateTime, Datelike, Local, TimeZone, Timelike, Utc};
use common::checkmk::{self, parse, parse_ok, Level};
use common::*;
use serde_json::Value;
use std::time::Duration;

#[test]
fn the_parser_follows_the_grammar() {
    let out = "<<<check_mk>>>\nVersion: 2.4\n<<<local:sep(0):cached(1700000000,300)>>>\n\
               0 \"My service\" runtime=12.3s;60;90;0;|x=1 OK - fine\n\
               P \"Levels\" t=5;3:7;2:8 from levels\n\
               cached(1700000000,60) 2 plain - CRIT\n\
               <<<<shop.example.com>>>>\n<<<local:sep(0)>>>\n1 \"Robotmk a b\" - WARN\n<<<<>>>>\n";
    let a = parse_ok(out);
    let l = a.local(None);
    assert_eq!(l[0].name, "My service");
    assert_eq!(l[0].cached, Some((1_700_000_000, 300)));
    let m = l[0].metric("runtime").unwrap();
    assert_eq!((m.value, m.unit.as_str()), (12.3, "s"));
    assert_eq!(
        (m.warn, m.crit, m.min, m.max),
        (
            Some(Level::Upper(60.0)),
            Some(Level::Upper(90.0)),
            Some(0.0),
            None
        )
    );
    assert_eq!(l[1].state_num(), 0);
    assert_eq!(l[2].cached, Some((1_700_000_000, 60)));
    assert_eq!(a.piggyback_hosts(), ["shop.example.com"]);
    assert_eq!(
        a.check(Some("shop.example.com"), "Robotmk a b").state_num(),
        1
    );
    for bad in [
        "x\n",
        "<<<local>>>\n4 \"a\" - t\n",
        "<<<local>>>\n0 \"a - t\n",
        "<<<local>>>\n0 \"a\" r=x t\n",
        "<<<local>>>\n0 \"a\" fs-used=1 t\n",
        "<<<local>>>\n0 \"it's\" - t\n",
        "<<<local>>>\n0 \"a\" r=1;2;3;4;5;6 t\n",
        // Checkmk's `float()` takes these; the core's graphs take no such value.
        "<<<local>>>\n0 \"a\" r=inf t\n",
        "<<<local>>>\n0 \"a\" r=NaN t\n",
        "<<<local>>>\n0 \"a\" r=-inf t\n",
        "<<<local>>>\n0 \"a\" r=1e999 t\n",
        "<<<local>>>\n0 \"a\" r=1;inf;nan t\n",
        "<<<a:sep(x)>>>\n",
        "<<<a:bogus>>>\n",
        "<<<<h>>>>\n<<<a>>>\n",
        "<<<<h x>>>>\n<<<<>>>>\n",
        "<<<a b>>>\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

/// Plants a finished, successful run of `job` due at `due` (as if an earlier daemon ran it).
fn plant_result(inst: &Instance, job: &str, due: DateTime<Utc>) {
    use std::os::unix::fs::DirBuilderExt;
    let id = format!("{}-1", due.format("%Y%m%dT%H%M%SZ"));
    let dir = inst.state.join("jobs").join(job).join("runs").join(&id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .unwrap();
    let finished = due + chrono::Duration::seconds(2);
    let rec = serde_json::json!({
        "version": 1, "job": job, "run_id": id, "due": due, "trigger": "schedule",
        "started": due, "finished": finished, "duration_s": 2.0, "exit_code": 0,
        "outcome": "success", "run_dir": dir, "pid": null, "timeout_s": 60.0,
    });
    let text = serde_json::to_vec(&rec).unwrap();
    std::fs::write(dir.join("record.json"), &text).unwrap();
    std::fs::write(inst.state.join("jobs").join(job).join("latest.json"), &text).unwrap();
}

fn ctrl_output(inst: &Instance) -> (String, checkmk::AgentOutput) {
    let out = inst.ctrl();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let parsed = checkmk::parse_ok(&text);
    (text, parsed)
}

fn json_of(a: &checkmk::AgentOutput) -> Value {
    serde_json::from_str(&a.section("robotmk_daemon").unwrap().lines[0]).unwrap()
}

#[test]
fn a_cron_with_a_gap_is_not_stale_in_the_gap() {
    // Problem 1: a job that runs every minute during one hour of the day. Its last result is
    // from that hour (an hour or two ago); the next run is due tomorrow. The old rule (age
    // against the gap between the next two due times, 1 minute) was CRIT all night.
    let window = Local::now() - chrono::Duration::hours(2);
    let hour = window.hour();
    let last_due = Local
        .with_ymd_and_hms(window.year(), window.month(), window.day(), hour, 59, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc);
    let job = format!("[[job]]\nname = \"office\"\ncommand = [\"true\"]\ncron = \"* {hour} * * *\"\ntimeout = \"30s\"\n");
    let inst = Instance::new("heartbeat_timeout = \"1m\"", &job);
    std::fs::create_dir_all(&inst.state).unwrap();
    plant_result(&inst, "office", last_due);
    // The first ctrl judges from the config (no daemon yet), the next ones from the
    // deadlines the daemon publishes (ctrl's fast path).
    for round in ["from the config", "from the daemon's status"] {
        let (text, a) = ctrl_output(&inst);
        let c = a.check(None, "Robotmk t office");
        assert_eq!(c.state_num(), 0, "{round}: {text}");
        assert!(!c.text.contains("stale"), "{round}: {text}");
        let j = json_of(&a);
        let office = &j["jobs"][0];
        assert_eq!(office["last"]["outcome"], "success", "{round}: {office}");
        let expected: DateTime<Utc> = office["expected_by"].as_str().unwrap().parse().unwrap();
        let next = last_due + chrono::Duration::hours(23) + chrono::Duration::minutes(1);
        // Tomorrow's first slot + 30s timeout + 10s stop_grace... (Instance: 1s) + 30s margin,
        // give or take a DST change tonight.
        let off = (expected - next).num_seconds() - 61;
        assert!(
            off.abs() <= 3600,
            "{round}: expected_by {expected}, next due {next}"
        );
        assert!(office["crit_after"].is_string(), "{round}: {office}");
        assert!(wait_for(Duration::from_secs(5), || inst
            .daemon_pid()
            .is_some()));
    }
}

#[test]
fn piggyback_hosts_and_runtime_levels() {
    let jobs = "[[job]]\nname = \"shop\"\ncommand = [\"sh\", \"-c\", \"sleep 0.3\"]\nevery = \"1h\"\nhost = \"shop.example.com\"\nruntime_warn = \"100ms\"\nruntime_crit = \"1m\"\n\n\
                [[job]]\nname = \"crm\"\ncommand = [\"true\"]\nevery = \"1h\"\nhost = \"crm.example.com\"\n\n\
                [[job]]\nname = \"local\"\ncommand = [\"true\"]\nevery = \"1h\"\nruntime_crit = \"5m\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    for j in ["shop", "crm", "local"] {
        assert!(inst.run(&["run-once", j]).status.success(), "{j}");
    }
    let (text, a) = ctrl_output(&inst);
    assert_eq!(
        a.piggyback_hosts(),
        ["shop.example.com", "crm.example.com"],
        "{text}"
    );
    // The daemon line and the agent's own jobs stay on the agent's host.
    let own: Vec<String> = a.local(None).into_iter().map(|c| c.name).collect();
    assert_eq!(own, ["Robotmk t daemon", "Robotmk t local"], "{text}");
    let shop = a.check(Some("shop.example.com"), "Robotmk t shop");
    assert_eq!(shop.state_num(), 1, "runtime above 100ms: {text}");
    let rt = shop.metric("runtime").unwrap();
    assert!(rt.value >= 0.3, "{text}");
    assert_eq!(
        (rt.warn, rt.crit),
        (Some(Level::Upper(0.1)), Some(Level::Upper(60.0)))
    );
    assert!(shop.text.contains("warning level of 100ms"), "{text}");
    let crm = a.check(Some("crm.example.com"), "Robotmk t crm");
    assert_eq!(crm.state_num(), 0, "{text}");
    assert_eq!(crm.metric("runtime").unwrap().warn, None);
    let local = a.check(None, "Robotmk t local");
    assert_eq!(
        local.metric("runtime").unwrap().crit,
        Some(Level::Upper(300.0))
    );
    // Each piggybacked job has its JSON on its host too; the agent's section lists them all.
    let s = a.sections(Some("shop.example.com"), "robotmk_daemon_job");
    let doc: Value = serde_json::from_str(&s[0].lines[0]).unwrap();
    assert_eq!(doc["instance"], "t");
    assert_eq!(doc["job"]["name"], "shop");
    assert_eq!(doc["job"]["runtime_warn_s"], 0.1);
    assert_eq!(json_of(&a)["jobs"].as_array().unwrap().len(), 3);
    // The same from the daemon's status (fast path) once it runs.
    assert!(wait_for(Duration::from_secs(5), || inst
        .daemon_pid()
        .is_some()));
    let (text, a) = ctrl_output(&inst);
    assert_eq!(json_of(&a)["ctrl"]["action"], "running", "{text}");
    assert_eq!(
        a.check(Some("shop.example.com"), "Robotmk t shop")
            .state_num(),
        1,
        "{text}"
    );
}

#[test]
fn bad_hosts_and_levels_are_config_errors() {
    // Checkmk's parser drops a piggyback block whose host name is over 240 characters.
    let long = format!("host = \"{}\"", "h".repeat(241));
    for (bad, word) in [
        (long.as_str(), "longer than 240 characters"),
        ("host = \"shop example\"", "contains ' '"),
        ("host = \"<<<<x>>>>\"", "contains '<'"),
        ("host = \"\"", "must not be empty"),
        (
            "runtime_warn = \"2m\"\nruntime_crit = \"1m\"",
            "must not be shorter",
        ),
        ("runtime_crit = \"0s\"", "longer than 0"),
    ] {
        let inst = Instance::new(
            "",
            &format!("[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n{bad}\n"),
        );
        let out = inst.run(&["check-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(word), "{bad}: {err}");
    }
}

/// Runs ctrl as the Linux agent runs a plugin: from `<dir>/plugins`, as `./NAME` (sync) or
/// `<seconds>/NAME` (cached), without arguments; the config comes from the environment.
fn agent_runs_ctrl(inst: &Instance, folder: Option<u64>) -> (String, checkmk::AgentOutput) {
    use std::os::unix::process::CommandExt;
    let plugins = inst.dir.path().join("plugins");
    let rel = match folder {
        Some(n) => format!("{n}/robotmk_daemon_ctrl"),
        None => "robotmk_daemon_ctrl".to_string(),
    };
    let link = plugins.join(&rel);
    if !link.exists() {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(BIN, &link).unwrap();
    }
    let argv0 = if folder.is_some() {
        rel
    } else {
        format!("./{rel}")
    };
    let out = std::process::Command::new(&link)
        .arg0(&argv0)
        .current_dir(&plugins)
        .env("ROBOTMK_DAEMON_CONFIG", &inst.config)
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let parsed = checkmk::parse_ok(&text);
    (text, parsed)
}

#[test]
fn cached_mode_keeps_one_daemon_between_refreshes() {
    // Problem 2: the agent runs a plugin in plugins/3/ only every 3 s or more; with
    // heartbeat_timeout = "2s" the daemon exited between refreshes and came back with a new
    // PID each time. Now its dead man timeout is 2 x 3s + 60s.
    let inst = Instance::new(
        "heartbeat_timeout = \"2s\"",
        "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    let (text, a) = agent_runs_ctrl(&inst, Some(3));
    let j = json_of(&a);
    assert_eq!(j["ctrl"]["action"], "started", "{text}");
    assert_eq!(j["ctrl"]["mode"], "cached 3s (plugins/3/)", "{text}");
    let pid = j["daemon"]["pid"].as_u64().unwrap();
    let status = inst.status_json();
    assert_eq!(
        status["daemon"]["agent_mode"], "cached 3s (plugins/3/)",
        "{status}"
    );
    assert_eq!(status["daemon"]["heartbeat_timeout_s"], 66.0, "{status}");
    // No ctrl for longer than heartbeat_timeout (and a refresh): the daemon stays.
    let died = wait_for(Duration::from_secs(5), || {
        inst.daemon_processes().is_empty()
    });
    assert!(
        !died,
        "the daemon exited between refreshes:\n{}",
        inst.log()
    );
    let (text, a) = agent_runs_ctrl(&inst, Some(3));
    let j = json_of(&a);
    assert_eq!(j["ctrl"]["action"], "running", "{text}");
    assert_eq!(
        j["daemon"]["pid"].as_u64(),
        Some(pid),
        "one daemon throughout: {text}"
    );
    let daemon = a.check(None, "Robotmk t daemon");
    assert_eq!(daemon.state_num(), 0, "{text}");
    assert!(
        daemon
            .text
            .contains("mode: cached 3s (plugins/3/), heartbeat timeout 66s"),
        "{text}"
    );
    assert_eq!(inst.daemon_processes(), [pid as u32], "exactly one daemon");
}

#[test]
fn a_ctrl_run_by_hand_keeps_the_cached_agents_timeout() {
    // T3: one `robotmk-daemon ctrl` by an admin (sync: no plugins folder) cut the cached
    // agent's dead man timeout (66 s here) to heartbeat_timeout, and the daemon exited 2 s
    // later between the agent's refreshes. Now the cached mode stays in force until the agent
    // has been silent for its own timeout (its lapse, 66 s, is unit-tested in
    // logic::agent_mode); the call by hand only adds a beat, and its line says how it ran.
    let inst = Instance::new(
        "heartbeat_timeout = \"2s\"",
        "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    let (text, a) = agent_runs_ctrl(&inst, Some(3));
    let j = json_of(&a);
    assert_eq!(j["ctrl"]["action"], "started", "{text}");
    let pid = j["daemon"]["pid"].as_u64().unwrap();
    let (text, a) = ctrl_output(&inst);
    assert_eq!(json_of(&a)["ctrl"]["mode"], "sync", "{text}");
    let daemon = a.check(None, "Robotmk t daemon");
    assert!(
        daemon
            .text
            .contains("mode: cached 3s (plugins/3/), heartbeat timeout 66s, this call: sync"),
        "{text}"
    );
    // Past heartbeat_timeout after the call by hand: the cached agent's timeout holds.
    let died = wait_for(Duration::from_secs(5), || {
        inst.daemon_processes().is_empty()
    });
    assert!(
        !died,
        "the daemon exited after a ctrl by hand:\n{}",
        inst.log()
    );
    let status = inst.status_json();
    assert_eq!(
        status["daemon"]["agent_mode"], "cached 3s (plugins/3/)",
        "{status}"
    );
    assert_eq!(status["daemon"]["heartbeat_timeout_s"], 66.0, "{status}");
    let (text, a) = agent_runs_ctrl(&inst, Some(3));
    let j = json_of(&a);
    assert_eq!(j["daemon"]["pid"].as_u64(), Some(pid), "one daemon: {text}");
    let daemon = a.check(None, "Robotmk t daemon");
    assert!(
        daemon
            .text
            .contains("mode: cached 3s (plugins/3/), heartbeat timeout 66s")
            && !daemon.text.contains("this call"),
        "{text}"
    );
    assert!(!inst.log().contains("heartbeat stale"), "{}", inst.log());
}

#[test]
fn a_daemon_started_after_a_ctrl_by_hand_keeps_the_cached_agents_timeout() {
    // F2: the cached mode held over a call by hand lived only in the daemon's memory. A daemon
    // started after it (`stop`/`start` by the admin, a crash and the next ctrl, an upgrade, a
    // reboot) knew only the sync beat and exited heartbeat_timeout (2 s) later, between the
    // agent's runs. ctrl now carries the last cached beat, with its wall time, in the sync
    // beats after it; a new daemon holds that mode until the agent's own timeout lapses.
    let inst = Instance::new(
        "heartbeat_timeout = \"2s\"",
        "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    let holds = |what: &str| {
        let status = inst.status_json();
        assert_eq!(status["daemon"]["running"], true, "{what}: {status}");
        assert_eq!(
            (
                &status["daemon"]["agent_mode"],
                &status["daemon"]["heartbeat_timeout_s"]
            ),
            (&Value::from("cached 3s (plugins/3/)"), &Value::from(66.0)),
            "{what}: {status}"
        );
        let pid = status["daemon"]["pid"].as_u64().unwrap() as u32;
        // Past heartbeat_timeout: the cached agent's timeout holds.
        let died = wait_for(Duration::from_secs(5), || !pid_alive(pid));
        assert!(!died, "{what}: the daemon exited:\n{}", inst.log());
        pid
    };
    let (text, a) = agent_runs_ctrl(&inst, Some(3));
    assert_eq!(json_of(&a)["ctrl"]["action"], "started", "{text}");
    let (text, a) = ctrl_output(&inst);
    assert_eq!(json_of(&a)["ctrl"]["mode"], "sync", "{text}");
    // The admin stops and starts the daemon.
    assert_eq!(inst.run(&["stop"]).status.code(), Some(0));
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)), "stop");
    assert_eq!(inst.run(&["start"]).status.code(), Some(0));
    let pid = holds("after stop and start");
    // A crash, and the next ctrl (by hand again) starts a daemon.
    kill9(pid);
    let (text, a) = ctrl_output(&inst);
    let j = json_of(&a);
    assert_ne!(j["daemon"]["pid"].as_u64(), Some(u64::from(pid)), "{text}");
    holds("after a crash and a ctrl by hand");
    assert!(!inst.log().contains("heartbeat stale"), "{}", inst.log());

    // A cached mode that lapsed before the start still lapses: the agent's last cached run
    // was 2 minutes ago (its timeout is 66 s), then only sync calls.
    assert_eq!(inst.run(&["stop"]).status.code(), Some(0));
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)), "stop");
    let (text, _) = agent_runs_ctrl(&inst, Some(3));
    assert_eq!(inst.run(&["stop"]).status.code(), Some(0), "{text}");
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)), "stop");
    let hb = inst.state.join("heartbeat");
    std::fs::File::options()
        .write(true)
        .open(&hb)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    let (text, a) = ctrl_output(&inst);
    assert_eq!(json_of(&a)["ctrl"]["action"], "started", "{text}");
    assert!(
        inst.wait_daemon_gone(Duration::from_secs(15)),
        "the lapsed cached mode held:\n{}",
        inst.log()
    );
    assert!(
        inst.log()
            .contains("heartbeat stale: no ctrl for 2s (heartbeat_timeout, agent mode sync)"),
        "{}",
        inst.log()
    );
}

#[test]
fn agent_cache_age_covers_the_windows_agent() {
    // The Windows agent passes nothing to an async plugin: the admin repeats its cache_age.
    let inst = Instance::new(
        "heartbeat_timeout = \"2s\"\nagent_cache_age = \"2m\"",
        "[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    let (text, a) = agent_runs_ctrl(&inst, None);
    assert_eq!(json_of(&a)["ctrl"]["action"], "started", "{text}");
    let status = inst.status_json();
    assert_eq!(
        status["daemon"]["agent_mode"], "cached 120s (agent_cache_age)",
        "{status}"
    );
    assert_eq!(status["daemon"]["heartbeat_timeout_s"], 300.0, "{status}");
    let died = wait_for(Duration::from_secs(4), || {
        inst.daemon_processes().is_empty()
    });
    assert!(!died, "{}", inst.log());
}

/// The output with what depends on the instant of the call blanked: ages, durations, times.
fn timeless(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.split_once(" ago: ") {
            Some((head, tail)) => format!("{}<age> ago: {tail}", head.rsplit_once(' ').unwrap().0),
            None => line.to_string(),
        };
        let line = if line.starts_with('{') {
            let mut v: Value = serde_json::from_str(&line).unwrap();
            for k in ["uptime_s", "heartbeat_age_s"] {
                v["daemon"][k] = Value::Null;
            }
            v["ctrl"]["duration_ms"] = Value::Null;
            v["generated"] = Value::Null;
            v.to_string()
        } else {
            line.replace(|c: char| c.is_ascii_digit(), "#")
                .split(", up ")
                .next()
                .unwrap()
                .to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn ctrl_prints_the_daemons_view_and_the_same_without_it() {
    // Issue 14: with a daemon running, ctrl prints what the daemon pre-rendered (ctrl-view)
    // and adds only ages and staleness; a damaged or missing view takes the full path, which
    // prints the same sections.
    let jobs = "[[job]]\nname = \"ok\"\ncommand = [\"true\"]\nevery = \"1h\"\nruntime_crit = \"5m\"\n\n\
                [[job]]\nname = \"bad\"\ncommand = [\"false\"]\nevery = \"1h\"\n\n\
                [[job]]\nname = \"shop\"\ncommand = [\"true\"]\nevery = \"1h\"\nhost = \"shop.example.com\"\n\n\
                [[job]]\nname = \"never\"\ncommand = [\"true\"]\ncron = \"0 0 1 1 *\"\n";
    let inst = Instance::new("heartbeat_timeout = \"1m\"", jobs);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    for j in ["ok", "bad", "shop"] {
        inst.run(&["run-once", j]);
    }
    let view = inst.state.join("ctrl-view");
    let has_results = || {
        std::fs::read_to_string(&view).is_ok_and(|v| {
            ["\"ok\"", "\"bad\"", "\"shop\""]
                .iter()
                .all(|n| v.contains(&format!("{{\"name\":{n},")))
                && v.matches("\"outcome\":").count() >= 3
        })
    };
    assert!(
        wait_for(Duration::from_secs(10), has_results),
        "no view with the results: {:?}\n{}",
        std::fs::read_to_string(&view),
        inst.log()
    );
    let (fast, a) = ctrl_output(&inst);
    assert_eq!(json_of(&a)["ctrl"]["action"], "running", "{fast}");
    assert_eq!(a.check(None, "Robotmk t ok").state_num(), 0, "{fast}");
    assert_eq!(a.check(None, "Robotmk t bad").state_num(), 2, "{fast}");
    assert_eq!(a.check(None, "Robotmk t never").state_num(), 3, "{fast}");
    assert_eq!(
        a.check(Some("shop.example.com"), "Robotmk t shop")
            .state_num(),
        0,
        "{fast}"
    );
    // Damaged (cut short in a check line), then missing: the same sections from status.json.
    let text = std::fs::read_to_string(&view).unwrap();
    let cut = text.rfind("\nL").unwrap() + 12;
    for (what, damaged) in [("damaged", Some(&text[..cut])), ("missing", None)] {
        match damaged {
            Some(d) => std::fs::write(&view, d).unwrap(),
            None => std::fs::remove_file(&view).unwrap(),
        }
        let (full, _) = ctrl_output(&inst);
        assert_eq!(timeless(&full), timeless(&fast), "{what} view");
    }
}

/// A result file is the runner's to write: `elapsed="inf"`, `"NaN"` or `"-5"` parse as
/// numbers, and so does an `endtime` before its `starttime`. Such a time is unknown: no
/// `runtime=inf` for the core, no level it reaches, no `suite_runtime`, a text that says so,
/// and the same lines whether ctrl prints the daemon's view (rendered from memory) or the
/// full path's (from status.json, where JSON has no infinity).
#[test]
fn an_elapsed_time_that_is_no_time_is_unknown_on_both_paths() {
    let inst = Instance::new("heartbeat_timeout = \"1m\"", "");
    let xml = inst.dir.path().join("prepared.xml");
    std::fs::write(
        &xml,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Rebot 7.1" generated="2026-11-27T10:00:00" rpa="false" schemaversion="5">
<suite id="s1" name="S" source="/s">
<test id="s1-t1" name="endless"><status status="PASS" start="x" elapsed="inf"/></test>
<test id="s1-t2" name="undefined"><status status="FAIL" start="x" elapsed="NaN">boom</status></test>
<test id="s1-t3" name="backwards"><status status="PASS" start="x" elapsed="-5"/></test>
<test id="s1-t4" name="robot6"><status status="PASS" starttime="20231127 10:00:02.000" endtime="20231127 10:00:01.000"/></test>
<test id="s1-t5" name="fine"><status status="PASS" start="x" elapsed="0.5"/></test>
<status status="FAIL" start="x" elapsed="inf"/></suite>
<statistics><total><stat pass="4" fail="1" skip="0">All Tests</stat></total></statistics><errors></errors></robot>"#,
    )
    .unwrap();
    inst.write_config(
        "heartbeat_timeout = \"1m\"",
        &format!(
            "[[job]]\nname = \"r\"\ncommand = [\"/bin/cp\", \"{}\", \"{{run_dir}}/output.xml\"]\n\
             result = \"{{run_dir}}/output.xml\"\nservices = \"per-test\"\n\
             test_runtime_warn = \"2s\"\ntest_runtime_crit = \"3s\"\nevery = \"1h\"\n",
            xml.display()
        ),
    );
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    inst.run(&["run-once", "r"]);
    let view = inst.state.join("ctrl-view");
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(&view)
            .is_ok_and(|v| v.contains("\"outcome\":"))),
        "no view with the result: {:?}\n{}",
        std::fs::read_to_string(&view),
        inst.log()
    );
    let (fast, a) = ctrl_output(&inst);
    assert_eq!(json_of(&a)["ctrl"]["action"], "running", "{fast}");
    for (test, state, word) in [
        ("endless", 0, "PASS"),
        ("undefined", 2, "FAIL"),
        ("backwards", 0, "PASS"),
        ("robot6", 0, "PASS"),
    ] {
        let c = a.check(None, &format!("Robotmk t r {test}"));
        assert_eq!(c.state_num(), state, "{c:?}");
        assert!(c.metrics.is_empty(), "{c:?}");
        assert!(
            c.summary.contains(&format!(" - {word} (runtime unknown)")),
            "{c:?}"
        );
        assert!(!c.summary.contains("level"), "{c:?}");
    }
    let fine = a.check(None, "Robotmk t r fine");
    assert_eq!(fine.metric("runtime").unwrap().value, 0.5, "{fine:?}");
    let job = a.check(None, "Robotmk t r");
    assert!(job.metric("suite_runtime").is_none(), "{job:?}");
    assert!(job.metric("tests_failed").is_some(), "{job:?}");
    // Without the view, ctrl renders status.json: the same lines.
    std::fs::remove_file(&view).unwrap();
    let (full, _) = ctrl_output(&inst);
    assert_eq!(timeless(&full), timeless(&fast));
}

/// A Robot Framework output.xml of `tests` tests (`status` each) with 200-character names
/// and messages: about 450 KiB of per-test detail in the job's status.
fn long_result(tests: usize, status: &str) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<robot generator=\"Rebot 7.1\" \
         generated=\"2026-11-27T10:00:00\" rpa=\"false\" schemaversion=\"5\">\n\
         <suite id=\"s1\" name=\"S\" source=\"/s\">\n",
    );
    for i in 0..tests {
        x.push_str(&format!(
            "<test id=\"s1-t{}\" name=\"T{i} {}\"><status status=\"{status}\" start=\"x\" \
             elapsed=\"0.5\">{}</status></test>\n",
            i + 1,
            "x".repeat(200),
            "m".repeat(200)
        ));
    }
    x.push_str(&format!(
        "<status status=\"{status}\" start=\"x\" elapsed=\"1.0\"/>\n</suite>\n</robot>\n"
    ));
    x
}

/// Defect: 36 jobs with much per-test detail put the daemon's pre-rendered view over the
/// section's cap. The write failed (cut to the first 4096 jobs, it was no smaller), the view
/// before it stayed, and ctrl printed it: a job whose latest run failed showed the result
/// before (here: no result yet), only the daemon line said "cannot write state". Now the
/// view leaves out per-test detail from the JSON, says so on the daemon line, and every
/// job's check shows its latest result.
#[test]
fn jobs_with_much_detail_show_their_latest_results() {
    let daemon = "heartbeat_timeout = \"1h\"\nmax_parallel = 8";
    let inst = Instance::new(daemon, "");
    let dir = inst.dir.path();
    let cur = dir.join("cur.xml");
    std::fs::write(&cur, long_result(1000, "PASS")).unwrap();
    let names: Vec<String> = (1..=36).map(|i| format!("j{i:02}")).collect();
    // Results come from run-once only; the schedule (January 1st) never fires while the test
    // runs (hourly ones all ran when a run crossed a full hour, and overwrote its results).
    let jobs: String = names
        .iter()
        .map(|n| {
            format!(
                "[[job]]\nname = \"{n}\"\ncommand = [\"/bin/cp\", \"{}\", \"{{run_dir}}/output.xml\"]\n\
                 result = \"{{run_dir}}/output.xml\"\ncron = \"0 0 1 1 *\"\n\n",
                cur.display()
            )
        })
        .collect();
    inst.write_config(daemon, &jobs);
    assert_eq!(inst.ctrl_json()["ctrl"]["action"], "started");
    // All at once: the daemon writes the (large) status once for many of them.
    let children: Vec<_> = names[..35]
        .iter()
        .map(|n| {
            let mut c = inst.cmd();
            c.args(["run-once", n]).stdout(std::process::Stdio::piped());
            (n, c.stderr(std::process::Stdio::piped()).spawn().unwrap())
        })
        .collect();
    for (n, c) in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{n}: {out:?}\n{}", inst.log());
    }
    std::fs::write(&cur, long_result(1000, "FAIL")).unwrap();
    assert_eq!(inst.run(&["run-once", "j36"]).status.code(), Some(1));
    let status = inst.state.join("status.json");
    let outcome = |s: &Value, n: &str| {
        s["jobs"]
            .as_array()
            .and_then(|j| j.iter().find(|j| j["name"] == n))
            .map(|j| j["last"]["outcome"].clone())
    };
    let failed = || {
        std::fs::read(&status)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|s| outcome(&s, "j36") == Some(Value::from("failure")))
    };
    assert!(wait_for(Duration::from_secs(60), failed), "{}", inst.log());
    // The daemon's view of that status (the fast path), not only the full path's.
    let view = inst.state.join("ctrl-view");
    let viewed = || {
        std::fs::read_to_string(&view)
            .is_ok_and(|v| v.contains("\"Robotmk t j36\" ") && v.contains("failure (0 tests"))
    };
    let current = wait_for(Duration::from_secs(30), viewed);
    // What Checkmk sees: every job's latest result.
    let (text, a) = ctrl_output(&inst);
    let daemon = a.check(None, "Robotmk t daemon");
    let s: Value = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    for n in &names {
        let c = a.check(None, &format!("Robotmk t {n}"));
        let want = if n == "j36" { "failure" } else { "success" };
        assert_eq!(outcome(&s, n), Some(Value::from(want)), "{n}");
        assert!(
            c.state_num() == if n == "j36" { 2 } else { 0 }
                && c.summary.contains(&format!(": {want} (")),
            "{n}: {} {}\n{daemon:?}",
            c.state_num(),
            c.summary
        );
    }
    // Said on the daemon's line (WARN: no check is missing), and the same in the view.
    let section = json_of(&a);
    let cut = section["section_cut"].as_str().expect("a cut, said");
    assert!(cut.contains("the per-test detail of "), "{cut}");
    assert_eq!(daemon.state_num(), 1, "{daemon:?}");
    assert!(daemon.text.ends_with(cut), "{daemon:?}");
    assert!(
        current,
        "no view with j36's failure: {}\n{}",
        &text[..text.len().min(2000)],
        inst.log()
    );
    // The full path (no view: from status.json) cuts alike.
    let old = std::fs::read(&view).unwrap();
    std::fs::remove_file(&view).unwrap();
    let (full, _) = ctrl_output(&inst);
    assert_eq!(timeless(&full), timeless(&text));
    // A view older than status.json (one the daemon could neither replace nor remove) is
    // not taken for the current one: j36 passes again, the view of its failure is put back.
    std::fs::write(&cur, long_result(1000, "PASS")).unwrap();
    assert!(inst.run(&["run-once", "j36"]).status.success());
    let passed = || {
        std::fs::read_to_string(&view)
            .is_ok_and(|v| v.contains("\"Robotmk t j36\" ") && !v.contains("failure (0 tests"))
    };
    assert!(wait_for(Duration::from_secs(30), passed), "{}", inst.log());
    std::fs::write(&view, &old).unwrap();
    let then = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&view)
        .unwrap()
        .set_modified(then)
        .unwrap();
    let (text, a) = ctrl_output(&inst);
    let c = a.check(None, "Robotmk t j36");
    assert_eq!(c.state_num(), 0, "{}", &text[..text.len().min(2000)]);
}
