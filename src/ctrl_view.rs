//! `ctrl-view`: the agent output, pre-rendered by the daemon whenever its status changes, so
//! that ctrl's fast path copies bytes instead of parsing `status.json` and formatting every
//! job on each agent call (issue 14: at 1,000 jobs that was 7× the cost of `/bin/true`).
//!
//! Only what depends on the time of the agent's call is left to ctrl: the JSON section's
//! `daemon` and `ctrl` parts and `generated` (small), the daemon's line, and in each local
//! check the age of the result ("last run 2m ago"), the time to a first run, and the
//! staleness (WARN/CRIT once a due run has not reported: see [`crate::staleness`]). The output
//! is the same, byte for byte, as [`crate::agent::render`] of the same status at the same
//! instant (a unit test holds it to that).
//!
//! The file (replaced atomically, written only by the daemon, read with the state dir's cap):
//!
//! ```text
//! robotmk-ctrl-view 1
//! {"status":{…status.json without jobs and envs…},"cut":null}
//! [ …the jobs, as the JSON section carries them… ]
//! [ …the environments… ]            (an empty line when there are none)
//! =<a line printed as it is>        (piggyback markers, section headers, job JSON)
//! L<template of a local check>      (see `encode_check`)
//! ```

use crate::agent::{self, BodyLine, Clock, LineTemplate};
use crate::report::Report;
use crate::staleness::Deadlines;
use crate::state::status::Status;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::{self, Write};

const MAGIC: &str = "robotmk-ctrl-view 1";

#[derive(Serialize, Deserialize)]
struct Header {
    /// The status with no jobs and no environments (those follow, pre-rendered).
    status: Status,
    /// Set when the jobs were cut to keep the section under [`agent::MAX_SECTION`].
    cut: Option<String>,
}

/// Writes the view of `status` (the daemon's, as it writes `status.json`) to `w`, one line
/// at a time: the daemon never holds the whole file (as large as `status.json`). The strings
/// of `status` are cut to the agent's lengths ([`crate::report::clip_job`]) on the way.
pub fn write(status: &mut Status, w: &mut dyn Write) -> io::Result<()> {
    write_cut(status, None, w)
}

/// [`write`] to `path` (the state dir's `ctrl-view`), replaced atomically.
pub fn save(mut status: Status, path: &std::path::Path) -> io::Result<()> {
    let durability = crate::state::Durability::NoSync;
    match crate::state::write_atomic_with(path, durability, |w| write(&mut status, w)) {
        // The section must stay under its cap: the jobs that fit, and a note (a status of
        // absurdly many or large jobs). The file starts over.
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            let keep = Some(agent::MAX_SECTION / 4096);
            crate::state::write_atomic_with(path, durability, |w| write_cut(&mut status, keep, w))
        }
        r => r,
    }
}

/// Counts what passes, and refuses past `left` bytes (`FileTooLarge`).
struct Capped<'a> {
    inner: &'a mut dyn Write,
    left: usize,
}

impl Write for Capped<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.left {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "the section would be over its cap",
            ));
        }
        let n = self.inner.write(buf)?;
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_cut(status: &mut Status, keep: Option<usize>, w: &mut dyn Write) -> io::Result<()> {
    let all = status.jobs.len();
    status.jobs.iter_mut().for_each(crate::report::clip_job);
    status.envs.iter_mut().for_each(crate::report::clip_env);
    let jobs = &status.jobs[..keep.unwrap_or(all).min(all)];
    let cut = keep.map(|_| {
        format!(
            "the section was cut to the first {} of {all} jobs (over {} bytes)",
            jobs.len(),
            agent::MAX_SECTION
        )
    });
    let header = Header {
        status: Status {
            version: status.version,
            instance: status.instance.clone(),
            updated: status.updated,
            daemon: status.daemon.clone(),
            jobs: Vec::new(),
            envs: Vec::new(),
        },
        cut,
    };
    writeln!(w, "{MAGIC}")?;
    serde_json::to_writer(&mut *w, &header)?;
    w.write_all(b"\n")?;
    // The rest of the section (daemon, ctrl) is a few KiB at most.
    let mut capped = Capped {
        inner: &mut *w,
        left: agent::MAX_SECTION - 64 * 1024,
    };
    serde_json::to_writer(&mut capped, jobs).map_err(io::Error::from)?;
    capped.write_all(b"\n")?;
    if !status.envs.is_empty() {
        serde_json::to_writer(&mut capped, &status.envs).map_err(io::Error::from)?;
    }
    w.write_all(b"\n")?;
    let mut line = String::new();
    let mut result = Ok(());
    agent::body_each(jobs, &status.instance, &mut |l| {
        if result.is_err() {
            return;
        }
        line.clear();
        match l {
            BodyLine::Fixed(l) => {
                line.push('=');
                line.push_str(&l.replace(['\n', '\r'], " "));
                line.push('\n');
            }
            BodyLine::Check(t) => encode_check(&mut line, &t),
        }
        result = w.write_all(line.as_bytes());
    });
    result
}

/// The view of `status` in memory (tests).
#[cfg(test)]
pub fn render(mut status: Status) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut status, &mut out).unwrap();
    out
}

fn encode_time(out: &mut String, t: DateTime<Utc>) {
    let _ = write!(out, "{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
}

/// `<seconds>.<nanoseconds>`, parsed by hand: three per job on every agent call.
fn decode_time(s: &str) -> Option<DateTime<Utc>> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut secs: i64 = 0;
    let mut nanos: u32 = 0;
    let mut frac = None;
    for b in digits.bytes() {
        match (b, frac) {
            (b'0'..=b'9', None) => {
                secs = secs.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
            }
            (b'0'..=b'9', Some(n)) if n < 9 => {
                nanos = nanos * 10 + u32::from(b - b'0');
                frac = Some(n + 1);
            }
            (b'.', None) => frac = Some(0),
            _ => return None,
        }
    }
    if frac != Some(9) {
        return None;
    }
    DateTime::from_timestamp(if neg { -secs } else { secs }, nanos)
}

/// `L<base> <clock> <deadlines> <n1> <n2> <n3> <n4> <the four strings>\n`: clock `-`,
/// `s<time>` (since) or `u<time>` (until); deadlines `-` or `<expected_by>,<crit_after>`;
/// times `<unix seconds>.<nanoseconds>`; the strings (name and metrics, head, mid, tail) one
/// after the other, `n1`…`n4` bytes long, newlines made spaces.
fn encode_check(out: &mut String, t: &LineTemplate) {
    let _ = write!(out, "L{} ", t.base);
    match t.clock {
        Clock::None => out.push('-'),
        Clock::Since(at) => {
            out.push('s');
            encode_time(out, at);
        }
        Clock::Until(at) => {
            out.push('u');
            encode_time(out, at);
        }
    }
    out.push(' ');
    match &t.deadlines {
        None => out.push('-'),
        Some(d) => {
            encode_time(out, d.expected_by);
            out.push(',');
            encode_time(out, d.crit_after);
        }
    }
    let parts = [&t.name_metrics, &t.head, &t.mid, &t.tail].map(|s| s.replace(['\n', '\r'], " "));
    for p in &parts {
        let _ = write!(out, " {}", p.len());
    }
    out.push(' ');
    for p in &parts {
        out.push_str(p);
    }
    out.push('\n');
}

/// A view as ctrl reads it: the header parsed, the rest borrowed from the file's text.
pub struct View<'a> {
    pub status: Status,
    cut: Option<String>,
    jobs: &'a str,
    envs: &'a str,
    body: &'a str,
}

/// Parses the parts of a view; `None` if it is not one (ctrl then takes its other paths).
pub fn parse(text: &str) -> Option<View<'_>> {
    let mut parts = text.splitn(5, '\n');
    if parts.next()? != MAGIC {
        return None;
    }
    let header: Header = serde_json::from_str(parts.next()?).ok()?;
    let jobs = parts.next()?;
    let envs = parts.next()?;
    let body = parts.next().unwrap_or_default();
    let array = |s: &str| s.starts_with('[') && s.ends_with(']');
    if !array(jobs) || !(envs.is_empty() || array(envs)) {
        return None;
    }
    Some(View {
        status: header.status,
        cut: header.cut,
        jobs,
        envs,
        body,
    })
}

impl View<'_> {
    /// Carries the cut note (if any) into `report`, as [`agent::render`] does.
    pub fn annotate(&self, report: &mut Report) {
        if self.cut.is_some() {
            report.config_error.clone_from(&self.cut);
        }
    }

    /// Writes both sections at `report.generated` to `w`, every byte printable
    /// ([`crate::printable`]); `report` has no jobs (they are in the view). `None`, with
    /// nothing written, when the body is malformed. The jobs' JSON goes from the file's text
    /// to `w` as it is (through the printable filter), without a copy.
    pub fn write_to(&self, report: &Report, w: &mut dyn Write) -> Option<io::Result<()>> {
        let now = report.generated;
        let json = serde_json::to_string(report).ok()?;
        // Serialized strings escape their quotes, so this key occurs once, at the top level.
        const EMPTY: &str = "\"jobs\":[]";
        let at = json.rfind(EMPTY)?;
        let mut lines = String::with_capacity(self.body.len() + 4096);
        lines.push('\n');
        lines.push_str(agent::LOCAL_HEADER);
        lines.push('\n');
        let instance = report.instance.as_deref().unwrap_or("unknown");
        lines.push_str(&agent::daemon_line(report, instance));
        lines.push('\n');
        let mut rest = self.body;
        while !rest.is_empty() {
            rest = match rest.as_bytes()[0] {
                b'=' => {
                    let (line, next) = rest[1..].split_once('\n')?;
                    lines.push_str(line);
                    next
                }
                b'L' => decode_check(&rest[1..], &mut lines, now)?,
                _ => return None,
            };
            lines.push('\n');
        }
        // The one gate to the agent, as on the full path (`agent::render`).
        let mut w = crate::printable::Printable::new(w);
        let mut write = || {
            w.write_all(agent::SECTION_HEADER.as_bytes())?;
            w.write_all(b"\n")?;
            w.write_all(&json.as_bytes()[..at])?;
            w.write_all(b"\"jobs\":")?;
            w.write_all(self.jobs.as_bytes())?;
            if !self.envs.is_empty() {
                w.write_all(b",\"envs\":")?;
                w.write_all(self.envs.as_bytes())?;
            }
            w.write_all(&json.as_bytes()[at + EMPTY.len()..])?;
            w.write_all(lines.as_bytes())
        };
        Some(write().and_then(|_| w.finish().map(drop)))
    }

    /// [`View::write_to`] in memory.
    pub fn render(&self, report: &Report) -> Option<String> {
        let mut out = Vec::new();
        self.write_to(report, &mut out)?.ok()?;
        String::from_utf8(out).ok()
    }
}

/// Renders one encoded check into `out`; returns the text after it.
fn decode_check<'a>(s: &'a str, out: &mut String, now: DateTime<Utc>) -> Option<&'a str> {
    let mut fields = s.splitn(8, ' ');
    let base: u8 = fields.next()?.parse().ok()?;
    let clock = match fields.next()? {
        "-" => Clock::None,
        c if c.starts_with('s') => Clock::Since(decode_time(&c[1..])?),
        c if c.starts_with('u') => Clock::Until(decode_time(&c[1..])?),
        _ => return None,
    };
    let deadlines = match fields.next()? {
        "-" => None,
        d => {
            let (e, c) = d.split_once(',')?;
            Some(Deadlines {
                expected_by: decode_time(e)?,
                crit_after: decode_time(c)?,
            })
        }
    };
    let mut lens = [0usize; 4];
    for l in &mut lens {
        *l = fields.next()?.parse().ok()?;
    }
    let data = fields.next()?;
    let mut strs = [""; 4];
    let mut at = 0usize;
    for (i, l) in lens.iter().enumerate() {
        strs[i] = data.get(at..at.checked_add(*l)?)?;
        at += l;
    }
    let rest = data.get(at..)?.strip_prefix('\n')?;
    agent::render_check(
        out,
        agent::CheckParts {
            base,
            clock,
            deadlines: deadlines.as_ref(),
            name_metrics: strs[0],
            head: strs[1],
            mid: strs[2],
            tail: strs[3],
        },
        now,
    );
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Services;
    use crate::report::{build_from, ConfigView, CtrlReport};
    use crate::state::record::{Outcome, TestResult, TestStats};
    use crate::state::status::{CheckmkView, DaemonInfo, JobStatus, LastRun, RunningRun};

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
                    status: "PASS".into(),
                    elapsed_s: Some(1.5),
                    message: None,
                    ..Default::default()
                },
                TestResult {
                    name: "Pay \"now\"".into(),
                    suite: "S".into(),
                    status: "FAIL".into(),
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
            version: crate::state::status::STATUS_VERSION,
            instance: "sys".into(),
            updated: now,
            daemon: DaemonInfo {
                pid: 42,
                pid_start: Some(1),
                started: now - secs(600),
                build: crate::BUILD_ID.into(),
                config: "/c.toml".into(),
                config_stamp: Some("1:2:3".into()),
                route: "fork".into(),
                acks_heartbeat: true,
                phase: "running".into(),
                reason: None,
                config_error: None,
                state_error: None,
                behind: None,
                heartbeat_timeout_s: Some(300.0),
                agent_mode: Some("sync".into()),
                starts: Vec::new(),
                previous_crash: None,
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
            mode: Some("sync".into()),
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
            assert_eq!(decode_time(&s), Some(t), "{s}");
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
            assert_eq!(decode_time(bad), None, "{bad}");
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
