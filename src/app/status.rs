//! `status`: the daemon's health, its jobs and its Python environments, as a table or JSON.

use crate::app::findings;
// Words from files and other processes (a daemon's recorded stop reason, the words of a
// daemon of this config elsewhere, errors naming paths) are shown, not executed: see
// docs/SECURITY.md, "What reaches the admin's terminal".
use crate::app::term::sanitize;
use crate::model::report::Report;
use crate::model::status::JobStatus;
use crate::service::config::{self};
use crate::service::state::StateDir;
use chrono::Utc;
use std::path::Path;

/// `status [--json]`: exits 0 when the daemon runs, 2 on a config error, 3 when no daemon runs,
/// [`findings::CANNOT_TELL`] when this user cannot tell.
pub(crate) fn status(path: &Path, json: bool) -> i32 {
    let cfg = config::load(path);
    let located = match &cfg {
        Ok(c) => Some((c.daemon.instance.clone(), c.daemon.state_dir.clone())),
        Err(_) => crate::service::one_daemon::locate(path),
    };
    let trust = crate::service::security::check_config(path).and_then(|_| match &located {
        Some((_, dir)) => crate::service::security::check_state_dir(dir),
        None => Ok(()),
    });
    if let Err(e) = trust {
        eprintln!("robotmk-daemon: {e}");
        return 2;
    }
    if let Some(why) = findings::cannot_tell(path, cfg.is_ok(), located.as_ref()) {
        println!("daemon:     cannot tell whether it runs: {why}");
        eprintln!("robotmk-daemon: run status as root (sudo robotmk-daemon status)");
        return findings::CANNOT_TELL;
    }
    // Another config's daemon in this config's state dir is not this config's daemon.
    let foreign = located.as_ref().and_then(|(_, dir)| {
        crate::service::report::daemon_of_another_config(&StateDir::new(dir), path)
    });
    let mut r = crate::service::report::build(path.to_path_buf(), (&cfg).into(), located);
    if let Some(why) = foreign {
        r.config_error = Some(why);
    }
    r.paused = crate::app::pause::report(&r);
    if let Ok(c) = &cfg {
        r.config_warnings = crate::service::preflight::warnings_of(c);
    }
    if json {
        // serde_json leaves C1 controls and U+2028/9 raw; a build's log (the builder's
        // to steer) may hold them: escaped, the document is the same, the terminal safe.
        let text = serde_json::to_string_pretty(&r).unwrap_or_default();
        println!("{}", crate::app::term::json_escaped(&text));
    } else {
        // No daemon here, but one of this config may run with another state dir (another
        // MK_VARDIR, see `service::one_daemon`): said, rather than a bare "not running".
        // Or none can start: the config's lock has no safe folder.
        let elsewhere = match (&r.state_dir, r.daemon.running) {
            (Some(dir), false) => match crate::service::one_daemon::probe(path, dir) {
                crate::service::one_daemon::Probe::Elsewhere(w) => Some(("elsewhere: ", w)),
                crate::service::one_daemon::Probe::Unsafe(w) => Some(("cannot run:", w)),
                _ => None,
            },
            _ => None,
        };
        print!(
            "{}",
            table(&r, elsewhere.as_ref().map(|(l, w)| (*l, w.as_str())))
        );
        print!("{}", crate::app::pause::status_lines(&r));
        print!("{}", findings::status_notes(&r.config_warnings));
        if let Some(dir) = &r.state_dir {
            // As `systemctl status` does: the last problems under the state, for context.
            print!("{}", crate::app::logs::problems_block(dir));
        }
    }
    if r.config_error.is_some() {
        2
    } else if r.daemon.running {
        0
    } else {
        3
    }
}

/// The status as a table for people.
/// `elsewhere`: the label and words for a daemon of this config that runs with another state
/// dir, or for why none can start here.
fn table(r: &Report, elsewhere: Option<(&str, &str)>) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let d = &r.daemon;
    let s = crate::app::term::Style::stdout();
    let _ = writeln!(o, "instance:   {}", r.instance.as_deref().unwrap_or("?"));
    let _ = writeln!(o, "config:     {}", r.config.display());
    if let Some(e) = &r.config_error {
        let _ = writeln!(o, "{} {}", s.paint("31", "CONFIG ERROR:"), sanitize(e));
        if d.running {
            let from = d.config_from.map_or(String::new(), |t| {
                format!(" from {}", crate::model::record::ts(t))
            });
            let _ = writeln!(
                o,
                "            the daemon is running the last good config{from} (WARN in Checkmk)"
            );
        }
    }
    if let Some(sd) = &r.state_dir {
        let _ = writeln!(o, "state dir:  {}", sd.display());
    }
    if d.running {
        let _ = writeln!(
            o,
            "daemon:     {}, pid {}, up {}{} (via {})",
            s.paint("32", "running"),
            d.pid.map_or("?".into(), |p| p.to_string()),
            crate::model::duration::human_age(d.uptime_s.unwrap_or(0.0)),
            findings::phase_words(d),
            d.route.as_ref().map_or("?", |r| r.as_str())
        );
        // A crash of the predecessor has its own line ("previous:") below.
        if let (Some(why), None) = (&d.last_stop, &d.previous_crash) {
            let _ = writeln!(o, "last stop:  {}", sanitize(why));
        }
    } else {
        let _ = writeln!(o, "daemon:     {}", s.paint("31", "not running"));
        if let Some((label, w)) = elsewhere {
            let _ = writeln!(o, "{label} {}", sanitize(w));
        }
        if let Some(why) = &d.last_stop {
            let _ = writeln!(o, "last stop:  {}", sanitize(why));
        }
    }
    health_lines(&mut o, d);
    // The running daemon's word; with none running, the host's zone a launch would take.
    match (&d.time_zone, d.running) {
        (Some(tz), _) => {
            let _ = writeln!(o, "cron time:  local time, {tz}");
        }
        (None, false) => {
            let _ = writeln!(
                o,
                "cron time:  local time, {} (of a daemon started by ctrl or start)",
                crate::service::zone::host()
            );
        }
        (None, true) => {}
    }
    let _ = writeln!(o);
    jobs_table(&mut o, &r.jobs, &s);
    envs_table(&mut o, &r.envs);
    o
}

/// The daemon's heartbeat, and what went wrong with it or its state.
fn health_lines(o: &mut String, d: &crate::model::report::DaemonReport) {
    use std::fmt::Write as _;
    let hb = match (d.heartbeat_age_s, d.heartbeat_timeout_s) {
        (Some(a), Some(t)) => format!(
            "{} ago (timeout {})",
            crate::model::duration::human_age(a),
            crate::model::duration::human_age(t)
        ),
        (Some(a), None) => format!("{} ago (switch off)", crate::model::duration::human_age(a)),
        (None, _) => "never".into(),
    };
    let _ = writeln!(*o, "heartbeat:  {hb}");
    if let Some(e) = &d.config_error {
        let from = d.config_from.map_or(String::new(), |t| {
            format!(" from {}", crate::model::record::ts(t))
        });
        let _ = writeln!(
            *o,
            "daemon config error (running the last good config{from}): {}",
            sanitize(e)
        );
    }
    if let Some(e) = &d.state_error {
        let _ = writeln!(*o, "STATE ERROR: {}", sanitize(e));
    }
    if let Some(why) = &d.unstable {
        let _ = writeln!(*o, "UNSTABLE: {}", sanitize(why));
    } else if let Some(c) = &d.previous_crash {
        let _ = writeln!(
            *o,
            "previous:   the daemon before this one (pid {}, started {}) did not exit cleanly{}: {}",
            c.pid,
            crate::model::record::ts(c.started),
            c.died
                .map(|t| format!(", died {}", crate::model::record::ts(t)))
                .unwrap_or_default(),
            sanitize(&c.cause)
        );
    }
    if let Some(t) = d.not_responding_since {
        let _ = writeln!(
            *o,
            "NOT RESPONDING: no answer to ctrl's heartbeat of {} (stopped or hung)",
            crate::model::record::ts(t)
        );
    }
}

/// One line per job: schedule, next due, runs in flight, the last result.
fn jobs_table(o: &mut String, jobs: &[JobStatus], s: &crate::app::term::Style) {
    use std::fmt::Write as _;
    let _ = writeln!(
        *o,
        "{:<24} {:<22} {:<20} {:>7} {:<12} {:>9} WHEN",
        "JOB", "SCHEDULE", "NEXT DUE", "RUNNING", "LAST", "RUNTIME"
    );
    let now = Utc::now();
    for j in jobs {
        let next = j.next_due.map_or("-".into(), |n| {
            n.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        });
        let (last, runtime, when) = match &j.last {
            Some(l) => (
                l.outcome.map_or("?", |o| o.as_str()).to_string(),
                l.duration_s.map_or("-".into(), |d| format!("{d:.1}s")),
                l.finished.map_or("-".into(), |f| {
                    format!(
                        "{} ago",
                        crate::model::duration::human_age((now - f).num_seconds() as f64)
                    )
                }),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let colour = findings::outcome_colour(j.last.as_ref().and_then(|l| l.outcome));
        let _ = writeln!(
            *o,
            "{:<24} {:<22} {:<20} {:>7} {} {:>9} {}",
            j.name,
            j.schedule,
            next,
            j.running.len(),
            match colour {
                Some(c) => s.paint(c, &format!("{last:<12}")),
                None => format!("{last:<12}"),
            },
            runtime,
            when
        );
    }
}

/// The Python environments under the jobs' table.
fn envs_table(o: &mut String, envs: &[crate::model::env::EnvState]) {
    use std::fmt::Write as _;
    if envs.is_empty() {
        return;
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<34} {:<9} {:<5} {:>8} {:<20} JOBS",
        "ENVIRONMENT", "STATE", "TOOL", "BUILD", "BUILT"
    );
    // Every field through the terminal filter: the tool and the Python version come from the
    // builder's own file, the builder's name from the user database, the source's path and
    // the jobs' names from the admin; none of it may steer the admin's terminal.
    let t = crate::app::term::sanitize;
    for e in envs {
        let state = serde_json::to_value(e.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{:<34} {:<9} {:<5} {:>8} {:<20} {}",
            t(&e.key),
            t(&state),
            t(e.tool.as_deref().unwrap_or("-")),
            e.duration_s.map_or("-".into(), |d| format!("{d:.1}s")),
            e.built.map_or("-".into(), |b| b
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()),
            t(&e.jobs.join(", "))
        );
        let from = t(&e.source.display().to_string());
        match &e.builder {
            Some(b) => {
                let _ = writeln!(o, "  from {from}, built as {}", t(b));
            }
            None => {
                let _ = writeln!(o, "  from {from}");
            }
        }
        if let Some(err) = &e.error {
            // The end of the build's log: what the installers printed, steered by the job
            // user's pip config; shown, never executed, on the admin's terminal.
            for line in err.lines() {
                let _ = writeln!(o, "  {}", crate::app::term::sanitize(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// A failed build's error holds the end of its log, which the job user's pip config can
    /// steer: C1 controls (CSI U+009B, OSC U+009D) are shown, not sent to the terminal.
    #[test]
    fn a_build_error_reaches_the_terminal_as_text() {
        let env: crate::model::env::EnvState = serde_json::from_value(serde_json::json!({
            "key": "k", "source": "/r.txt", "kind": "requirements", "python": "python3",
            "state": "failed", "error": "pip failed\n\u{9b}2J\u{9d}0;owned\u{7}",
        }))
        .unwrap();
        let mut o = String::new();
        super::envs_table(&mut o, &[env]);
        assert!(!o.chars().any(|c| c.is_control() && c != '\n'), "{o:?}");
        assert!(o.contains("\\x9b2J\\x9d0;owned\\x07"), "{o}");
    }

    /// T5 F3: the words of a daemon of this config elsewhere and a recorded stop reason carry
    /// paths (a folder name may hold any byte but `/` and NUL): shown, not executed, and no
    /// line of their own.
    #[test]
    fn words_from_files_reach_the_terminal_as_text() {
        let evil = "/tmp/x\n<<<local:sep(0)>>>\n0 \"Fake\" - ok \x1b]0;retitled\x07\x1b[2J";
        let r = crate::model::report::Report {
            instance: Some("t".into()),
            config: "/etc/c.toml".into(),
            config_error: Some(format!("another config's daemon in {evil}")),
            section_cut: None,
            state_dir: Some("/var/s".into()),
            daemon: crate::model::report::DaemonReport {
                last_stop: Some(format!("the config was replaced: {evil}")),
                ..Default::default()
            },
            ctrl: None,
            jobs: Vec::new(),
            envs: Vec::new(),
            paused: None,
            config_warnings: Vec::new(),
            generated: chrono::Utc::now(),
        };
        let o = super::table(
            &r,
            Some((
                "elsewhere: ",
                &format!("run elsewhere with the state dir {evil}"),
            )),
        );
        assert!(!o.contains('\x1b'), "{o:?}");
        assert!(!o.lines().any(|l| l.starts_with("<<<")), "{o}");
        assert_eq!(o.matches("\\x1b]0;retitled").count(), 3, "{o}");
    }

    /// F7/2: every field of the table reaches the terminal as text, the tool (from the
    /// builder's own file in a status.json an older daemon wrote) among them: no escape
    /// sequence, no line break that starts a line of the user's.
    #[test]
    fn every_field_of_the_environments_table_reaches_the_terminal_as_text() {
        let raw = "x\u{1b}]0;t\u{7}\u{1b}[2J\nFORGED LINE\r\u{9b}";
        let env: crate::model::env::EnvState = serde_json::from_value(serde_json::json!({
            "key": raw, "source": format!("/r{raw}.txt"), "kind": "requirements",
            "python": "python3", "state": "ready", "tool": format!("pip{raw}"),
            "python_version": raw, "builder": format!("u{raw} (uid 1)"), "jobs": [raw],
        }))
        .unwrap();
        let mut o = String::new();
        super::envs_table(&mut o, &[env]);
        assert!(!o.chars().any(|c| c.is_control() && c != '\n'), "{o:?}");
        assert!(
            !o.lines().any(|l| l.starts_with("FORGED")),
            "a line of the user's: {o}"
        );
        assert_eq!(o.lines().count(), 4, "{o}");
    }
}
