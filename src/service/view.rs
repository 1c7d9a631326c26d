//! The `ctrl-view` file (see `logic::ctrl_view` for what it holds): written by the daemon
//! whenever its status changes, replaced atomically, cut to the agent section's cap; and the
//! tests that hold its output, byte for byte, to the full rendering of a report built from
//! the state dir.

use crate::logic::agent;
use crate::logic::ctrl_view::{write, write_cut};
use crate::model::status::Status;
use crate::service::state::{write_atomic_with, Durability};
use std::io;

/// [`write`] to `path` (the state dir's `ctrl-view`), replaced atomically.
pub(crate) fn save(mut status: Status, path: &std::path::Path) -> io::Result<()> {
    let durability = Durability::NoSync;
    match write_atomic_with(path, durability, |w| write(&mut status, w)) {
        // The section must stay under its cap: the jobs that fit, and a note (a status of
        // absurdly many or large jobs). The file starts over.
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            let keep = Some(agent::MAX_SECTION / 4096);
            write_atomic_with(path, durability, |w| write_cut(&mut status, keep, w))
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::agent;
    use crate::logic::ctrl_view::{decode_moment, encode_time, parse, render, View, MAGIC};
    use crate::model::config::Services;
    use crate::model::record::{Outcome, TestResult, TestStats};
    use crate::model::report::Report;
    use crate::model::report::{ConfigView, CtrlReport};
    use crate::model::status::{AgentMode, Phase};
    use crate::model::status::{CheckmkView, DaemonInfo, JobStatus, LastRun, RunningRun};
    use crate::service::report::build_from;
    use chrono::{DateTime, Utc};

    fn jobs_of(view: &View) -> Vec<JobStatus> {
        serde_json::from_str(view.jobs).unwrap()
    }

    fn status(now: DateTime<Utc>) -> Status {
        let secs = chrono::Duration::seconds;
        let last = |outcome, ago: i64| LastRun {
            run_id: "r-1".into(),
            due: now - secs(ago + 3),
            started: Some(now - secs(ago + 3)),
            finished: Some(now - secs(ago)),
            duration_s: Some(3.25),
            exit_code: Some(1),
            outcome: Some(outcome),
            tests: None,
            note: Some("a note\nwith\r\na newline \"quoted\"".into()),
            log: Some("/r/log.html".into()),
            report: None,
            attempts: Some(2),
            output_lost: false,
            plugin: None,
            output_head: None,
            log_url: None,
        };
        let job = |name: &str, last: Option<LastRun>| JobStatus {
            name: name.into(),
            schedule: "every 1m".into(),
            interval_s: 60.0,
            timeout_s: 30.0,
            next_due: Some(now + secs(95)),
            running: vec![],
            queued: 0,
            last,
            last_skipped: None,
            skipped_total: 0,
            services: Services::Job,
            test_runtime_warn_s: None,
            test_runtime_crit_s: None,
            checkmk: CheckmkView::default(),
        };
        let mut fresh = job("fresh", Some(last(Outcome::Success, 5)));
        fresh.checkmk.expected_by = Some(now + secs(10));
        fresh.checkmk.crit_after = Some(now + secs(70));
        fresh.checkmk.runtime_warn_s = Some(3.0);
        let mut warn = job("warn", Some(last(Outcome::Failure, 200)));
        warn.checkmk.expected_by = Some(now - secs(100));
        warn.checkmk.crit_after = Some(now + secs(70));
        warn.running.push(RunningRun {
            run_id: "x".into(),
            due: now,
            started: None,
            pid: Some(7),
        });
        let mut crit = job("crit", Some(last(Outcome::Success, 9000)));
        crit.checkmk.expected_by = Some(now - secs(8000));
        crit.checkmk.crit_after = Some(now - secs(1));
        crit.services = Services::PerTest;
        crit.test_runtime_warn_s = Some(1.0);
        crit.last.as_mut().unwrap().tests = Some(TestStats {
            passed: 1,
            failed: 1,
            results: vec![
                TestResult {
                    name: "Login".into(),
                    suite: "S".into(),
                    status: crate::model::record::TestStatus::Pass,
                    elapsed_s: Some(1.5),
                    message: None,
                    ..Default::default()
                },
                TestResult {
                    name: "Pay \"now\"".into(),
                    suite: "S".into(),
                    status: crate::model::record::TestStatus::Fail,
                    elapsed_s: None,
                    message: Some("boom\nbang".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let mut shop = job("shop", Some(last(Outcome::Success, 30)));
        shop.checkmk.host = Some("shop.example.com".into());
        let mut never = job("never", None);
        never.next_due = Some(now + secs(3 * 3600));
        let mut unscheduled = job("unscheduled", None);
        unscheduled.next_due = None;
        Status {
            version: crate::model::status::STATUS_VERSION,
            instance: "sys".into(),
            updated: now,
            daemon: DaemonInfo {
                pid: 42,
                pid_start: Some(1),
                started: now - secs(600),
                build: crate::model::BUILD_ID.into(),
                config: "/c.toml".into(),
                config_stamp: Some("1:2:3".into()),
                route: crate::model::status::Route::Fork,
                acks_heartbeat: true,
                phase: Phase::Running,
                reason: None,
                config_error: None,
                state_error: None,
                behind: None,
                heartbeat_timeout_s: Some(300.0),
                agent_mode: Some(AgentMode::Sync),
                starts: Vec::new(),
                previous_crash: None,
                previous_stop: None,
            },
            jobs: vec![fresh, warn, crit, shop, never, unscheduled],
            envs: Vec::new(),
        }
    }

    fn report(status: Option<Status>, now: DateTime<Utc>) -> Report {
        let dir = std::env::temp_dir();
        let mut r = build_from(
            "/c.toml".into(),
            ConfigView::VouchedByDaemon,
            Some(("sys".into(), dir)),
            true,
            status,
        );
        // The parts ctrl works out from the clock, fixed: the two sides are built apart.
        r.generated = now;
        r.daemon.heartbeat_age_s = Some(1.0);
        r.daemon.uptime_s = Some(600.0);
        r.ctrl = Some(CtrlReport {
            action: "running",
            mode: Some(AgentMode::Sync),
            route: None,
            note: None,
            error: None,
            duration_ms: 1.5,
        });
        r
    }

    #[test]
    fn the_view_prints_what_render_prints() {
        let now = Utc::now();
        let s = status(now);
        let bytes = render(s.clone());
        let text = String::from_utf8(bytes).unwrap();
        // At the time of writing, and later, when ages grew and results went stale.
        for later in [0, 7, 65, 4000, 90_000] {
            let at = now + chrono::Duration::seconds(later);
            let expected = agent::render(&report(Some(s.clone()), at));
            let view = parse(&text).expect("a view");
            assert_eq!(view.status.daemon.pid, 42);
            let mut r = report(Some(view.status.clone()), at);
            view.annotate(&mut r);
            let got = view.render(&r).expect("renders");
            assert_eq!(got, expected, "{later}s later");
        }
        assert!(text.contains("\nL"), "{text}");
        assert_eq!(jobs_of(&parse(&text).unwrap()).len(), 6);
    }

    #[test]
    fn a_draining_daemon_is_warn_and_says_why_on_both_paths() {
        let now = Utc::now();
        let mut s = status(now);
        s.daemon.phase = Phase::Draining;
        s.daemon.reason = Some("the config now names instance web2 with state dir /s2".into());
        // A draining daemon plans nothing (see `build_status`).
        s.jobs.iter_mut().for_each(|j| j.next_due = None);
        let text = String::from_utf8(render(s.clone())).unwrap();
        let expected = agent::render(&report(Some(s.clone()), now));
        let view = parse(&text).expect("a view");
        let mut r = report(Some(view.status.clone()), now);
        view.annotate(&mut r);
        let got = view.render(&r).expect("renders");
        assert_eq!(got, expected);
        let line = got
            .lines()
            .find(|l| l.contains("\"Robotmk sys daemon\""))
            .expect("a daemon line");
        assert!(
            line.starts_with("1 \"Robotmk sys daemon\" - WARN - running, pid 42")
                && line.ends_with(
                    ", draining: no run starts until the runs in flight end (the config now names instance web2 with state dir /s2)"
                ),
            "{line}"
        );
    }

    #[test]
    fn the_section_stays_under_its_cap() {
        let now = Utc::now();
        let mut s = status(now);
        let one = s.jobs[1].clone();
        s.jobs = (0..14_000)
            .map(|i| {
                let mut j = one.clone();
                j.name = format!("job{i:05}");
                // Cut to MAX_TEXT (1 KiB) in the section: about 1.5 KiB per job.
                j.last.as_mut().unwrap().note = Some("x".repeat(5000));
                j
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctrl-view");
        save(s, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let view = parse(&text).unwrap();
        assert!(view.jobs.len() < agent::MAX_SECTION, "{}", view.jobs.len());
        assert_eq!(jobs_of(&view).len(), agent::MAX_SECTION / 4096);
        let mut r = report(Some(view.status.clone()), now);
        view.annotate(&mut r);
        let out = view.render(&r).unwrap();
        assert!(
            out.len() < agent::MAX_SECTION + 4 * 1024 * 1024,
            "{}",
            out.len()
        );
        assert!(
            out.contains(
                "CRIT - config error: the section was cut to the first 4096 of 14000 jobs"
            ),
            "{}",
            &out[out.len() - 500..]
        );
        assert_eq!(out.matches("\"Robotmk sys job").count(), 4096);
    }

    #[test]
    fn times_survive_the_round_trip() {
        let epoch = DateTime::UNIX_EPOCH;
        for t in [
            Utc::now(),
            epoch,
            epoch - chrono::Duration::nanoseconds(1),
            epoch - chrono::Duration::days(40_000) + chrono::Duration::nanoseconds(7),
            DateTime::from_timestamp(253_402_300_799, 999_999_999).unwrap(),
        ] {
            let mut s = String::new();
            encode_time(&mut s, t);
            assert_eq!(
                decode_moment(&s).and_then(|m| m.to_datetime()),
                Some(t),
                "{s}"
            );
        }
        for bad in [
            "",
            "1",
            "1.",
            "1.12345678",
            "1.1234567890",
            "x.000000000",
            "1.00000000x",
        ] {
            assert_eq!(decode_moment(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_damaged_view_is_refused() {
        let now = Utc::now();
        let text = String::from_utf8(render(status(now))).unwrap();
        let r = report(None, now);
        for bad in [
            text.replacen(MAGIC, "robotmk-ctrl-view 0", 1),
            text.replacen("\n[", "\n{", 1),
        ] {
            assert!(parse(&bad).is_none());
        }
        // A check cut short, a length past the end, an unknown line kind.
        let at = text.find("\nL").unwrap() + 1;
        for bad in [
            text[..text.len() - 3].to_string(),
            format!("{}L0 - - 999 0 0 0 x\n", &text[..at]),
            format!("{}?x\n", &text[..at]),
        ] {
            assert!(parse(&bad).unwrap().render(&r).is_none(), "{bad}");
        }
    }
}
