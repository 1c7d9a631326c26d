//! The `ctrl-view` file (see `logic::ctrl_view` for what it holds): written by the daemon
//! whenever its status changes, replaced atomically, cut to the agent section's cap; and the
//! tests that hold its output, byte for byte, to the full rendering of a report built from
//! the state dir.

use crate::logic::ctrl_view::{write, write_cut};
use crate::model::status::Status;
use crate::service::state::{write_atomic_with, Durability};
use std::io;
use std::path::Path;

/// The largest view header read by [`rendered_from`]: the status without its jobs and
/// environments (the daemon's part, its notes cut to the agent's lengths).
const HEADER_CAP: u64 = 1024 * 1024;

/// When the status that the view at `path` shows was written (its `updated`), from the
/// view's first two lines only (a view is as large as `status.json`); `None` when there is
/// no view, or none that ctrl would print (ctrl then renders `status.json` itself).
pub(crate) fn rendered_from(path: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    use std::io::BufRead;
    let f = crate::service::sys::file::open_read(path).ok()?;
    let mut r = io::BufReader::new(io::Read::take(f, HEADER_CAP));
    let mut head = Vec::new();
    for _ in 0..2 {
        r.read_until(b'\n', &mut head).ok()?;
    }
    crate::logic::ctrl_view::rendered_from(std::str::from_utf8(&head).ok()?)
}

/// [`write`] to `path` (the state dir's `ctrl-view`), replaced atomically.
pub(crate) fn save(mut status: Status, path: &Path) -> io::Result<()> {
    save_with(path, &mut |cut, w| {
        if cut {
            write_cut(&mut status, w)
        } else {
            write(&mut status, w)
        }
    })
}

/// [`save`] with the writer given (`true`: cut the jobs' JSON to its cap). When no view can
/// be written the one before is removed: ctrl's fast path would print it as current (jobs
/// OK with a result runs old), and without one ctrl takes its full path, which renders the
/// latest `status.json`.
fn save_with(
    path: &Path,
    write: &mut dyn FnMut(bool, &mut dyn io::Write) -> io::Result<()>,
) -> io::Result<()> {
    let durability = Durability::NoSync;
    let r = match write_atomic_with(path, durability, |w| write(false, w)) {
        // The section must stay under its cap: the jobs' JSON cut as `agent::render` cuts
        // it, with a note (jobs with much per-test detail, or absurdly many jobs). The file
        // starts over; the first try spares the daemon the sizing of every job.
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            write_atomic_with(path, durability, |w| write(true, w))
        }
        r => r,
    };
    if let Err(e) = &r {
        match std::fs::remove_file(path) {
            Err(gone) if gone.kind() != io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{e}; the previous view stays, and cannot be removed: {gone}"),
                ));
            }
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::agent;
    use crate::logic::ctrl_view::{decode_moment, encode_time, parse, render, View, MAGIC};
    use crate::logic::pause_view::PauseView;
    use crate::model::config::Services;
    use crate::model::pause::{Pause, PauseState};
    use crate::model::record::{Outcome, TestResult, TestService, TestStats, TestStatus};
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
            signal: None,
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
                    index: Some(2),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        // The list of every test: tests 1 and 3 have no detail (beyond its cap), one named
        // with quotes, a line break and non-ASCII letters.
        let mut per_test = crit.clone();
        per_test.name = "per-test".into();
        let t = per_test.last.as_mut().unwrap().tests.as_mut().unwrap();
        t.results[0].index = Some(0);
        t.results_omitted = 2;
        t.services_omitted = 3;
        t.services = Some(vec![
            TestService("Login".into(), TestStatus::Pass),
            TestService("Ünïcode 'x' \"y\"\nz".into(), TestStatus::Skip),
            TestService("Pay ”now”".into(), TestStatus::Fail),
            TestService("Not run".into(), TestStatus::NotRun),
        ]);
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
                config_error_kind: None,
                state_error: None,
                behind: None,
                heartbeat_timeout_s: Some(300.0),
                agent_mode: Some(AgentMode::Sync),
                starts: Vec::new(),
                previous_crash: None,
                previous_stop: None,
                time_zone: None,
                clock_set_back_since: None,
            },
            jobs: vec![fresh, warn, crit, per_test, shop, never, unscheduled],
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
            action: crate::model::report::CtrlAction::Running,
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
            let got = view.render(&r, None).expect("renders");
            assert_eq!(got, expected, "{later}s later");
        }
        assert!(text.contains("\nL"), "{text}");
        assert_eq!(jobs_of(&parse(&text).unwrap()).len(), 7);
        // Every listed test has its line, with or without detail, on both paths alike.
        let out = agent::render(&report(Some(s.clone()), now));
        for name in ["Login", "Ünïcode ’x’ ”y” z", "Pay ”now”", "Not run"] {
            let quoted = format!("\"Robotmk sys per-test {name}\"");
            assert_eq!(out.matches(&quoted).count(), 1, "{quoted} in {out}");
        }
        assert!(out.contains("no per-test service for 3 tests"), "{out}");
    }

    /// The view saved to a file and printed at `now`, and the full path's output of the same
    /// status at the same instant (which must be the same).
    fn both_paths(s: &Status, now: DateTime<Utc>) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctrl-view");
        save(s.clone(), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let view = parse(&text).unwrap();
        assert!(view.jobs.len() < agent::MAX_SECTION, "{}", view.jobs.len());
        let mut r = report(Some(view.status.clone()), now);
        view.annotate(&mut r);
        let got = view.render(&r, None).unwrap();
        (got, agent::render(&report(Some(s.clone()), now)))
    }

    /// `a == b`, or the first line where they differ (the outputs are megabytes).
    fn assert_same(a: &str, b: &str) {
        if a != b {
            let (x, y) = a
                .lines()
                .zip(b.lines())
                .find(|(x, y)| x != y)
                .unwrap_or_default();
            let head = |s: &str| s.chars().take(600).collect::<String>();
            panic!("the paths differ:\n{}\n{}", head(x), head(y));
        }
    }

    /// ctrl's output with a pause as ctrl made it before the pause was an input to the
    /// rendering: the rendered lines rewritten (the reference the new rendering is held to).
    fn paused_as_before(out: String, r: &Report, v: &PauseView) -> String {
        let (state, warn, now) = (&v.state, v.warn_after, v.now);
        let instance = r.instance.as_deref().unwrap_or("?");
        let daemon = format!("Robotmk {instance} daemon");
        let all = state.all.as_ref().filter(|p| p.holds(now));
        let custom: Vec<(String, &str)> = r
            .jobs
            .iter()
            .map(|j| (agent::service_name(j, instance), j.name.as_str()))
            .collect();
        let pause_of = |svc: &str| -> Option<&Pause> {
            if svc == daemon {
                return None;
            }
            let job = custom
                .iter()
                .find(|(s, _)| s == svc)
                .map(|(_, j)| *j)
                .or_else(|| {
                    let rest = svc.strip_prefix(&format!("Robotmk {instance} "))?;
                    Some(rest.split(' ').next().unwrap_or(rest))
                })?;
            all.or_else(|| state.jobs.get(job).filter(|p| p.holds(now)))
        };
        let text = crate::logic::check_details::text;
        let mut o = String::new();
        for line in out.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            let svc = body
                .get(3..)
                .filter(|_| body.get(1..3) == Some(" \""))
                .and_then(|b| b.split_once('"'))
                .map(|(svc, _)| svc);
            let rewritten = match svc {
                Some(svc) if svc == daemon && body.starts_with("0 ") => {
                    all.map(|p| format!("{body}, all jobs {}", text(&p.words())))
                }
                Some(svc) => pause_of(svc).map(|p| {
                    let rest = &body[2 + svc.len() + 3..];
                    let (metrics, t) = rest.split_once(' ').unwrap_or((rest, ""));
                    let t = t.split_once(" - ").map_or(t, |(_, t)| t);
                    let age = (now - p.since).to_std().unwrap_or_default();
                    let (state, word, old) = if age > warn {
                        let old = format!(
                            " (paused for {}, longer than {})",
                            crate::model::duration::human_age(age.as_secs_f64()),
                            crate::model::duration::format(warn)
                        );
                        (1, "WARN", old)
                    } else {
                        (0, "OK", String::new())
                    };
                    format!(
                        "{state} \"{svc}\" {metrics} {word} - {}{old}; before the pause: {t}",
                        text(&p.words())
                    )
                }),
                None => None,
            };
            match rewritten {
                Some(l) => {
                    o.push_str(&l);
                    o.push('\n');
                }
                None => o.push_str(line),
            }
        }
        o
    }

    /// A pause is an input to the rendering (`logic::pause_view`), on both paths alike: the
    /// view prints what the full path prints, and both print what ctrl printed when it
    /// rewrote the rendered lines — a paused job's checks (its tests' too, on a piggyback
    /// host too) OK or WARN past the warn age, the result before the pause after; a pause
    /// that ended shows nothing; the daemon's line names a pause of every job.
    #[test]
    fn a_pause_shows_alike_on_both_paths_and_as_before() {
        let now = Utc::now();
        let secs = chrono::Duration::seconds;
        let s = status(now);
        let text = String::from_utf8(render(s.clone())).unwrap();
        let view = parse(&text).expect("a view");
        let p = |ago: i64, until: Option<DateTime<Utc>>| Pause {
            by: "CORP\\nina".into(),
            since: now - secs(ago),
            until,
        };
        let mut some = PauseState::default();
        some.jobs.insert("crit".into(), p(100, None));
        some.jobs.insert("shop".into(), p(90_000, None));
        some.jobs
            .insert("never".into(), p(60, Some(now + secs(60))));
        some.jobs.insert("fresh".into(), p(60, Some(now - secs(1))));
        let every = PauseState {
            all: Some(p(5, Some(now + secs(600)))),
            ..Default::default()
        };
        for (state, paused) in [(some, 5), (every, 14)] {
            let v = PauseView {
                state,
                warn_after: std::time::Duration::from_secs(24 * 3600),
                now,
            };
            let full = agent::render_paused(&report(Some(s.clone()), now), Some(&v));
            let mut r = report(Some(view.status.clone()), now);
            view.annotate(&mut r);
            assert_same(&view.render(&r, Some(&v)).expect("renders"), &full);
            let r = report(Some(s.clone()), now);
            assert_same(&full, &paused_as_before(agent::render(&r), &r, &v));
            assert_eq!(
                full.matches("paused by CORP⧵nina").count(),
                paused,
                "{full}"
            );
        }
    }

    /// Defect 6: the full path cut the local checks with the JSON (jobs after the 4096th
    /// vanished) and its daemon line stayed OK, while the view's was CRIT.
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
        let got = view.render(&r, None).expect("renders");
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
        let (out, full) = both_paths(&s, now);
        assert_same(&out, &full);
        let json = out.lines().nth(1).unwrap();
        assert!(json.len() <= agent::MAX_SECTION, "{}", json.len());
        let kept = serde_json::from_str::<serde_json::Value>(json).unwrap()["jobs"]
            .as_array()
            .unwrap()
            .len();
        assert!((8000..14_000).contains(&kept), "{kept}");
        let daemon = out
            .lines()
            .find(|l| l.contains("\"Robotmk sys daemon\""))
            .unwrap();
        assert!(
            daemon.starts_with("1 \"Robotmk sys daemon\" - WARN - running")
                && daemon.ends_with(&format!(
                    "; the section was cut to stay under {} bytes: the JSON of only the \
                     first {kept} of 14000 jobs (every job's local check is printed whole)",
                    agent::MAX_SECTION
                )),
            "{daemon}"
        );
        // Every job's check, none left out.
        assert_eq!(out.matches("\"Robotmk sys job").count(), 14_000);
    }

    /// Defect 1: 36 jobs with much per-test detail made the view over its cap; cut to the
    /// first 4096 jobs it stayed so, the write failed, and ctrl went on printing the view
    /// before (the jobs OK with a result runs old, a failed one among them).
    #[test]
    fn a_view_of_jobs_with_much_detail_cuts_the_detail_and_shows_every_result() {
        let now = Utc::now();
        let mut s = status(now);
        let one = s.jobs[0].clone();
        let test = |i: usize, status| TestResult {
            name: format!("T{i} {}", "x".repeat(200)),
            suite: "S".into(),
            status,
            elapsed_s: Some(0.5),
            message: Some("m".repeat(200)),
            ..Default::default()
        };
        s.jobs = (1..=36)
            .map(|i| {
                let mut j = one.clone();
                j.name = format!("j{i:02}");
                let failed = i == 36;
                let l = j.last.as_mut().unwrap();
                l.outcome = Some(if failed {
                    Outcome::Failure
                } else {
                    Outcome::Success
                });
                let status = if failed {
                    crate::model::record::TestStatus::Fail
                } else {
                    crate::model::record::TestStatus::Pass
                };
                // And the list of every test, 1,200 of them (the last 200 without detail).
                let services = (0..1200)
                    .map(|t| TestService(format!("T{t} {}", "x".repeat(200)), status.clone()))
                    .collect();
                l.tests = Some(TestStats {
                    passed: if failed { 0 } else { 1200 },
                    failed: if failed { 1200 } else { 0 },
                    results: (0..1000)
                        .map(|t| TestResult {
                            index: Some(t as u32),
                            ..test(t, status.clone())
                        })
                        .collect(),
                    results_omitted: 200,
                    services: Some(services),
                    ..Default::default()
                });
                if failed {
                    j.services = Services::PerTest;
                }
                j
            })
            .collect();
        let (out, full) = both_paths(&s, now);
        assert_same(&out, &full);
        let json: serde_json::Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
        assert_eq!(json["jobs"].as_array().unwrap().len(), 36);
        let cut = json["section_cut"].as_str().unwrap();
        assert!(cut.contains(" the per-test detail of "), "{cut}");
        let daemon = out
            .lines()
            .find(|l| l.contains("\"Robotmk sys daemon\""))
            .unwrap();
        assert!(
            daemon.starts_with("1 ") && daemon.ends_with(cut),
            "{daemon}"
        );
        let j36 = out
            .lines()
            .find(|l| l.contains("\"Robotmk sys j36\""))
            .unwrap();
        assert!(
            j36.starts_with("2 \"Robotmk sys j36\"")
                && j36.contains("CRIT - last run 5s ago: failure (0 tests passed, 1200 failed"),
            "{}",
            &j36[..300]
        );
        // j36's 1,200 per-test lines, from the whole job whatever the JSON left out.
        assert_eq!(out.matches("\"Robotmk sys j").count(), 36 + 1200);
        assert_eq!(out.matches("\"Robotmk sys j36 T").count(), 1200);
        assert_eq!(
            out.matches("(runtime unknown: beyond the per-test detail")
                .count(),
            200
        );
    }

    /// A view that cannot be written leaves none behind: ctrl would print the one before as
    /// current.
    #[test]
    fn a_view_that_cannot_be_written_removes_the_one_before() {
        let now = Utc::now();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctrl-view");
        save(status(now), &path).unwrap();
        assert!(path.exists());
        let mut tries = Vec::new();
        let e = save_with(&path, &mut |cut, _| {
            tries.push(cut);
            Err(io::Error::new(io::ErrorKind::FileTooLarge, "over its cap"))
        })
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(tries, [false, true]);
        assert!(!path.exists());
        // Any other failure too, and no view is no failure of its own.
        save(status(now), &path).unwrap();
        let e = save_with(&path, &mut |_, _| Err(io::Error::other("disk full"))).unwrap_err();
        assert!(e.to_string().ends_with(": disk full"), "{e}");
        assert!(!path.exists());
        assert!(save_with(&path, &mut |_, _| Err(io::Error::other("again"))).is_err());
    }

    /// `run-once` waits for the view of the status that shows its run (see `app::once`): the
    /// view says which status it shows, read from its header only; no view, or one cut
    /// inside its header or of another kind, says none.
    #[test]
    fn a_view_says_which_status_it_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctrl-view");
        assert_eq!(rendered_from(&path), None);
        let now = Utc::now();
        let mut st = status(now);
        st.updated = now - chrono::Duration::milliseconds(1500);
        save(st, &path).unwrap();
        assert_eq!(
            rendered_from(&path),
            Some(now - chrono::Duration::milliseconds(1500))
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let second_end = text.match_indices('\n').nth(1).unwrap().0;
        for (head, why) in [
            (&text[..second_end], "header cut before its end"),
            (&text[..second_end - 5], "header cut inside"),
            (&text[MAGIC.len() + 1..], "no first line"),
        ] {
            std::fs::write(&path, head).unwrap();
            assert_eq!(rendered_from(&path), None, "{why}");
        }
        std::fs::write(&path, text.replacen(MAGIC, "robotmk-ctrl-view 2", 1)).unwrap();
        assert_eq!(rendered_from(&path), None, "another version");
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
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
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
            "1.2.000000000",
            "--1.000000000",
        ] {
            assert_eq!(decode_moment(bad), None, "{bad}");
        }
        // A second beyond what `DateTime` holds, either way.
        let max = DateTime::<Utc>::MAX_UTC.timestamp();
        let min = DateTime::<Utc>::MIN_UTC.timestamp();
        assert_eq!(decode_moment(&format!("{}.000000000", max + 1)), None);
        assert_eq!(decode_moment(&format!("{}.999999999", min - 1)), None);
        assert!(decode_moment(&format!("{max}.999999999")).is_some());
    }

    #[test]
    fn a_damaged_view_is_refused() {
        let now = Utc::now();
        let text = String::from_utf8(render(status(now))).unwrap();
        let r = report(None, now);
        for bad in [
            text.replacen(MAGIC, "robotmk-ctrl-view 0", 1),
            text.replacen("\nJ[", "\nJ{", 1),
            // The jobs' JSON cut short, or no line of it.
            text[..text.len() - 3].to_string(),
            text.replacen("\nJ[", "\n[", 1),
        ] {
            assert!(parse(&bad).is_none());
        }
        // A check cut short, a length past the end, an unknown line kind.
        let at = text.find("\nL").unwrap() + 1;
        let last = text.rfind("\nL").unwrap() + 1;
        let end = last + text[last..].find('\n').unwrap();
        for bad in [
            format!("{}{}", &text[..end - 3], &text[end..]),
            format!(
                "{}L0 - - {} 0 0 0 0 x\n{}",
                &text[..at],
                text.len(),
                &text[at..]
            ),
            format!("{}?x\n{}", &text[..at], &text[at..]),
        ] {
            assert!(parse(&bad).unwrap().render(&r, None).is_none(), "{bad}");
        }
    }
}
