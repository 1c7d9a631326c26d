//! `ctrl-view`: the agent output, pre-rendered by the daemon whenever its status changes, so
//! that ctrl's fast path copies bytes instead of parsing `status.json` and formatting every
//! job on each agent call (issue 14: at 1,000 jobs that was 7× the cost of `/bin/true`).
//!
//! Only what depends on the time of the agent's call is left to ctrl: the JSON section's
//! `daemon` and `ctrl` parts and `generated` (small), the daemon's line, and in each local
//! check the age of the result ("last run 2m ago"), the time to a first run, and the
//! staleness (WARN/CRIT once a due run has not reported: see [`crate::logic::staleness`]). The output
//! is the same, byte for byte, as [`crate::logic::agent::render`] of the same status at the same
//! instant (a unit test holds it to that).
//!
//! The file (replaced atomically, written only by the daemon, read with the state dir's cap):
//!
//! ```text
//! robotmk-ctrl-view 3
//! {"status":{…status.json without jobs and envs…},"cut":null}
//! [ …the environments… ]            (an empty line when there are none)
//! =<a line printed as it is>        (piggyback markers, section headers, job JSON)
//! L<template of a local check>      (see `encode_check`)
//! J[ …the jobs, as the JSON section carries them… ]
//! ```
//!
//! The jobs' JSON comes last and has already passed [`crate::model::printable`] (when the
//! daemon wrote it): at 1,000 jobs it is half a MiB, which ctrl copies to its output as it is,
//! without a search for its end or a second pass through the filter.

use crate::logic::agent::{self, BodyLine, Clock, LineTemplate};
use crate::logic::pause_view::PauseView;
use crate::model::moment::Moment;
use crate::model::report::Report;
use crate::model::status::Status;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::{self, Write};

/// Version 2: each check carries its job's name (a pause is an input to the rendering, see
/// [`crate::logic::pause_view`]). Version 3: the jobs' JSON last, filtered. A view of another
/// version is no view: ctrl takes its full path until the daemon writes one of its own.
pub(crate) const MAGIC: &str = "robotmk-ctrl-view 3";

#[derive(Serialize, Deserialize)]
struct Header {
    /// The status with no jobs and no environments (those follow, pre-rendered).
    status: Status,
    /// Set when the jobs' JSON was cut to keep the section under [`agent::MAX_SECTION`]
    /// ([`agent::fit_jobs`]).
    cut: Option<String>,
}

/// Writes the view of `status` (the daemon's, as it writes `status.json`) to `w`, one line
/// at a time: the daemon never holds the whole file (as large as `status.json`). The strings
/// of `status` are cut to the agent's lengths ([`crate::model::report::clip_job`]) on the way.
/// Fails with `FileTooLarge` when the jobs' JSON is over its cap: [`write_cut`] then cuts it.
pub(crate) fn write(status: &mut Status, w: &mut dyn Write) -> io::Result<()> {
    write_with(status, false, w)
}

/// [`write`], with the jobs' JSON cut to its cap as [`agent::render`] cuts it
/// ([`agent::fit_jobs`]); the local checks stay whole, every job's.
pub(crate) fn write_cut(status: &mut Status, w: &mut dyn Write) -> io::Result<()> {
    write_with(status, true, w)
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

fn write_with(status: &mut Status, fit: bool, w: &mut dyn Write) -> io::Result<()> {
    status
        .jobs
        .iter_mut()
        .for_each(crate::model::report::clip_job);
    status
        .envs
        .iter_mut()
        .for_each(crate::model::report::clip_env);
    let budget = agent::jobs_budget(&status.envs);
    let fitted = if fit {
        agent::fit_jobs(&status.jobs, budget)
    } else {
        None
    };
    let (jobs, cut) = match fitted {
        Some((jobs, note)) => (std::borrow::Cow::Owned(jobs), Some(note)),
        None => (std::borrow::Cow::Borrowed(&status.jobs[..]), None),
    };
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
    if !status.envs.is_empty() {
        serde_json::to_writer(&mut *w, &status.envs)?;
    }
    w.write_all(b"\n")?;
    let mut line = String::new();
    let mut result = Ok(());
    // Every job's local check, from the whole jobs: a cut leaves out JSON only.
    agent::body_each(&status.jobs, &status.instance, &mut |l| {
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
    result?;
    w.write_all(b"J")?;
    // Filtered here, once, instead of by every ctrl; the cap counts what serde_json writes,
    // as `agent::render`'s does, so that the two cut alike.
    let mut printable = crate::model::printable::Printable::new(&mut *w);
    let mut capped = Capped {
        inner: &mut printable,
        left: budget,
    };
    serde_json::to_writer(&mut capped, &*jobs).map_err(io::Error::from)?;
    printable.finish()?;
    w.write_all(b"\n")
}

/// The view of `status` in memory (tests).
#[cfg(test)]
pub(crate) fn render(mut status: Status) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut status, &mut out).unwrap();
    out
}

pub(crate) fn encode_time(out: &mut String, t: DateTime<Utc>) {
    let _ = write!(out, "{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
}

/// `<seconds>.<nanoseconds>` as [`encode_time`] writes it, parsed by hand (three per job on
/// every agent call) and without the calendar: what ctrl compares with its `now`.
pub(crate) fn decode_moment(s: &str) -> Option<Moment> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    // `SECS.NNNNNNNNN`: whole seconds (none is 0), a point, exactly nine digits. Three per
    // check on every agent call: a plain loop over bytes (a match on the digit and the part
    // it is in took 400 instructions a moment, a sixth of a 1,000-job ctrl's).
    let digits = digits.as_bytes();
    let point = digits.len().checked_sub(10)?;
    let (whole, frac) = (&digits[..point], &digits[point..]);
    if frac[0] != b'.' {
        return None;
    }
    let mut secs: i64 = 0;
    for &b in whole {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        secs = secs.checked_mul(10)?.checked_add(i64::from(d))?;
    }
    let mut nanos: u32 = 0;
    for &b in &frac[1..] {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        nanos = nanos * 10 + u32::from(d);
    }
    let secs = if neg { -secs } else { secs };
    // What `DateTime` holds.
    const MIN: i64 = DateTime::<Utc>::MIN_UTC.timestamp();
    const MAX: i64 = DateTime::<Utc>::MAX_UTC.timestamp();
    // The moment's whole seconds are `secs` (its nanoseconds add up to less than one), and
    // the least `DateTime` falls on a whole second, the greatest at its last nanosecond.
    (MIN..=MAX)
        .contains(&secs)
        .then(|| Moment::from_parts(secs, nanos))
}

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
    let parts =
        [&t.name_metrics, &t.head, &t.mid, &t.tail, &t.job].map(|s| s.replace(['\n', '\r'], " "));
    for p in &parts {
        let _ = write!(out, " {}", p.len());
    }
    out.push(' ');
    for p in &parts {
        out.push_str(p);
    }
    out.push('\n');
}

/// The `updated` of the status a view was rendered from, read from the view's first two
/// lines (`head`, the rest of the file may follow or not); `None` if `head` does not begin a
/// view of this version (ctrl then renders `status.json` itself).
pub(crate) fn rendered_from(head: &str) -> Option<DateTime<Utc>> {
    let (magic, rest) = head.split_once('\n')?;
    // Only a whole second line: a header cut where `head` ends is no header.
    let (header, _) = rest.split_once('\n')?;
    if magic != MAGIC {
        return None;
    }
    let header: Header = serde_json::from_str(header).ok()?;
    Some(header.status.updated)
}

/// A view as ctrl reads it: the header parsed, the rest borrowed from the file's text.
pub(crate) struct View<'a> {
    pub(crate) status: Status,
    cut: Option<String>,
    pub(crate) jobs: &'a str,
    envs: &'a str,
    body: &'a str,
}

/// Parses the parts of a view; `None` if it is not one (ctrl then takes its other paths).
pub(crate) fn parse(text: &str) -> Option<View<'_>> {
    let mut parts = text.splitn(4, '\n');
    if parts.next()? != MAGIC {
        return None;
    }
    let header: Header = serde_json::from_str(parts.next()?).ok()?;
    let envs = parts.next()?;
    let rest = parts.next()?;
    // The checks' lines, up to the one of the jobs' JSON, which runs to the end: found by the
    // lines' first bytes, never by a search through the JSON.
    let mut at = 0;
    while !rest[at..].starts_with('J') {
        at += crate::model::bytes::find(b'\n', &rest.as_bytes()[at..])? + 1;
    }
    let body = &rest[..at];
    let jobs = rest[at + 1..].strip_suffix('\n')?;
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
    pub(crate) fn annotate(&self, report: &mut Report) {
        if self.cut.is_some() {
            report.section_cut.clone_from(&self.cut);
        }
    }

    /// Writes both sections at `report.generated` to `w`, every byte printable
    /// ([`crate::model::printable`]); `report` has no jobs (they are in the view). `None`, with
    /// nothing written, when the body is malformed. The jobs' JSON goes from the file's text
    /// to `w` as it is (through the printable filter), without a copy. With `pause`, as
    /// [`agent::render_paused`] shows it.
    pub(crate) fn write_to(
        &self,
        report: &Report,
        pause: Option<&PauseView>,
        w: &mut dyn Write,
    ) -> Option<io::Result<()>> {
        let _mode = crate::logic::cached_view::Scope::new(agent::cached_mode(report).as_deref());
        let now = Moment::of(report.generated);
        let json = serde_json::to_string(report).ok()?;
        // Serialized strings escape their quotes, so this key occurs once, at the top level.
        const EMPTY: &str = "\"jobs\":[]";
        let at = json.rfind(EMPTY)?;
        let mut lines = String::with_capacity(self.body.len() + 4096);
        lines.push('\n');
        lines.push_str(agent::LOCAL_HEADER);
        lines.push('\n');
        let instance = report.instance.as_deref().unwrap_or("unknown");
        lines.push_str(&agent::daemon_line(report, instance, pause));
        lines.push('\n');
        let mut rest = self.body;
        while !rest.is_empty() {
            rest = match rest.as_bytes()[0] {
                b'=' => {
                    let (line, next) = rest[1..].split_once('\n')?;
                    lines.push_str(line);
                    next
                }
                b'L' => decode_check(&rest[1..], &mut lines, now, pause)?,
                _ => return None,
            };
            lines.push('\n');
        }
        // The one gate to the agent, as on the full path (`agent::render`).
        let mut w = crate::model::printable::Printable::new(w);
        let mut write = || {
            w.write_all(agent::SECTION_HEADER.as_bytes())?;
            w.write_all(b"\n")?;
            w.write_all(&json.as_bytes()[..at])?;
            w.write_all(b"\"jobs\":")?;
            // Filtered when the daemon wrote the view (see the module doc).
            w.write_filtered(self.jobs.as_bytes())?;
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
    #[cfg(test)]
    pub(crate) fn render(&self, report: &Report, pause: Option<&PauseView>) -> Option<String> {
        let mut out = Vec::new();
        self.write_to(report, pause, &mut out)?.ok()?;
        String::from_utf8(out).ok()
    }
}

/// Renders one encoded check into `out`; returns the text after it.
/// The fields of a check's template: `str::splitn(9, ' ')` without its searcher's setup per
/// field (eight short fields a check, on every agent call: a fifth of a 1,000-job ctrl's
/// instructions went to splitting). The last field is the rest, spaces and all.
struct Fields<'a>(Option<&'a str>);

impl<'a> Fields<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let s = self.0?;
        match s.bytes().position(|b| b == b' ') {
            Some(i) => {
                self.0 = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => self.0.take(),
        }
    }

    /// What is left, whole (the ninth field of `splitn(9, ' ')`).
    fn rest(&mut self) -> Option<&'a str> {
        self.0.take()
    }
}

fn decode_check<'a>(
    s: &'a str,
    out: &mut String,
    now: Moment,
    pause: Option<&PauseView>,
) -> Option<&'a str> {
    let mut fields = Fields(Some(s));
    let base: u8 = fields.next()?.parse().ok()?;
    let clock = match fields.next()? {
        "-" => Clock::None,
        c if c.starts_with('s') => Clock::Since(decode_moment(&c[1..])?),
        c if c.starts_with('u') => Clock::Until(decode_moment(&c[1..])?),
        _ => return None,
    };
    let deadlines = match fields.next()? {
        "-" => None,
        d => {
            let (e, c) = d.split_once(',')?;
            Some(agent::Window {
                expected_by: decode_moment(e)?,
                crit_after: decode_moment(c)?,
            })
        }
    };
    let mut lens = [0usize; 5];
    for l in &mut lens {
        *l = fields.next()?.parse().ok()?;
    }
    let data = fields.rest()?;
    let mut strs = [""; 5];
    let mut at = 0usize;
    for (i, l) in lens.iter().enumerate() {
        strs[i] = data.get(at..at.checked_add(*l)?)?;
        at += l;
    }
    let rest = data.get(at..)?.strip_prefix('\n')?;
    let paused = pause.and_then(|p| p.check(strs[4]));
    agent::render_check(
        out,
        agent::CheckParts {
            base,
            clock,
            deadlines,
            name_metrics: strs[0],
            head: strs[1],
            mid: strs[2],
            tail: strs[3],
            paused: paused.as_ref().map(|(s, lead)| (*s, lead.as_str())),
        },
        now,
    );
    Some(rest)
}
