//! The agent sections ctrl prints: `<<<robotmk_daemon:sep(0)>>>` with the report as one JSON
//! line, and `<<<local:sep(0)>>>` with one local check per job plus one for the daemon, so
//! results show up in Checkmk with no plugin on the server.
//!
//! Local check states: a job is OK after a success, CRIT after a failure, timeout or error,
//! WARN after an interrupted run (a run an admin stopped leaves the last complete result in
//! place, with a note: see `logic::stopped`), UNKNOWN before its first result; a run whose
//! output is lost (the runner removed its folder) is at least WARN; a result is at least WARN
//! once the next due run is overdue and CRIT once the one after it is too (see
//! [`crate::logic::staleness`]), and WARN or CRIT when its runtime reaches the job's levels.
//!
//! A job with `host = "…"` reports to that Checkmk host: its local check, and a section with
//! its JSON, go between the piggyback markers `<<<<host>>>>` and `<<<<>>>>` after the agent
//! host's own sections (the daemon's line stays on the agent's host).
//!
//! A Robot Framework job with `services = "per-test"` adds a check per test of its latest
//! result: PASS and SKIP OK, FAIL CRIT, raised to its runtime levels and by staleness like the
//! job's. Everything from a result that reaches these lines is cut to a bounded length, and
//! every byte of the output is printable ([`crate::model::printable`]).

use crate::logic::pause_view::PauseView;
use crate::logic::staleness::{self, Staleness};
use crate::model::config::Services;
use crate::model::duration::{human_age, push_human_age};
use crate::model::env::EnvState;
use crate::model::moment::Moment;
use crate::model::record::{Outcome, TestStatus};
use crate::model::report::{CtrlAction, Report};
use crate::model::status::{AgentMode, ConfigErrorKind, JobStatus, LastRun};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

pub const SECTION_HEADER: &str = "<<<robotmk_daemon:sep(0)>>>";
pub(crate) const LOCAL_HEADER: &str = "<<<local:sep(0)>>>";
/// The section of one piggybacked job: `{"instance":…,"job":{…}}`, one line per job.
pub(crate) const JOB_SECTION_HEADER: &str = "<<<robotmk_daemon_job:sep(0)>>>";

/// The most the JSON section may carry. Every string in it is already capped
/// ([`Report::clip`]); this bounds the whole (jobs with much per-test detail, a status file
/// listing absurdly many jobs): see [`fit_jobs`].
pub(crate) const MAX_SECTION: usize = 16 * 1024 * 1024;

/// What the section holds besides the jobs and the environments (daemon, ctrl, the note of
/// a cut): a few KiB at most.
const REST_OF_SECTION: usize = 64 * 1024;

/// Bytes `v` takes as JSON, counted without keeping them.
pub(crate) fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The bytes the jobs' JSON array may take, next to `envs`: the one rule both paths apply
/// (the daemon's view, `logic::ctrl_view`, and [`render`]), so that they cut alike.
pub(crate) fn jobs_budget(envs: &[EnvState]) -> usize {
    let envs = if envs.is_empty() { 0 } else { json_len(envs) };
    (MAX_SECTION - REST_OF_SECTION).saturating_sub(envs + 1)
}

/// The jobs as the JSON section carries them, when all of them whole take more than `budget`
/// bytes (`None` when they fit): first the per-test detail (`results`, which only the JSON
/// carries in full) of the jobs with the most of it is left out — their counts stay, and
/// `results_omitted` says how many tests were left out —, then, if that is not enough, only
/// the first jobs that fit are kept. The note says what was cut, for the daemon's line.
///
/// Only the JSON is cut: the local checks are rendered from the whole jobs, so that every job
/// shows its latest result whatever the section had to leave out.
pub(crate) fn fit_jobs(jobs: &[JobStatus], budget: usize) -> Option<(Vec<JobStatus>, String)> {
    let array = |sizes: &[usize]| sizes.iter().sum::<usize>() + sizes.len().max(1) + 1;
    let mut sizes: Vec<usize> = jobs.iter().map(json_len).collect();
    if array(&sizes) <= budget {
        return None;
    }
    let mut fitted = jobs.to_vec();
    // The list of a result's tests (`services`) goes with its detail.
    let detail = |j: &JobStatus| {
        j.last
            .as_ref()
            .and_then(|l| l.tests.as_ref())
            .map_or(0, |t| {
                let list = t.services.as_ref().filter(|l| !l.is_empty());
                json_len(&t.results) + list.map_or(0, json_len)
            })
    };
    // The most detail first; among equals, the later jobs first.
    let mut order: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (detail(j), i))
        .filter(|(d, _)| *d > 2)
        .collect();
    order.sort_by(|a, b| b.cmp(a));
    let mut stripped = Vec::new();
    for (_, i) in order {
        if array(&sizes) <= budget {
            break;
        }
        if let Some(t) = fitted[i].last.as_mut().and_then(|l| l.tests.as_mut()) {
            t.results_omitted += t.results.len() as u64;
            t.results = Vec::new();
            if let Some(list) = t.services.as_mut() {
                t.services_omitted += list.len() as u64;
                *list = Vec::new();
            }
        }
        sizes[i] = json_len(&fitted[i]);
        stripped.push(i);
    }
    let all = jobs.len();
    let mut note = format!("the section was cut to stay under {MAX_SECTION} bytes:");
    if !stripped.is_empty() {
        stripped.sort_unstable();
        let names: Vec<&str> = stripped
            .iter()
            .take(5)
            .map(|i| jobs[*i].name.as_str())
            .collect();
        let more = stripped.len() - names.len();
        let _ = write!(
            note,
            " the per-test detail of {} of {all} jobs left out ({}{})",
            stripped.len(),
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    if array(&sizes) > budget {
        // `[`, `]`, the jobs and a comma before each but the first.
        let (mut keep, mut used) = (0, 2);
        while keep < all && used + sizes[keep] + usize::from(keep > 0) <= budget {
            used += sizes[keep] + usize::from(keep > 0);
            keep += 1;
        }
        fitted.truncate(keep);
        if !stripped.is_empty() {
            note.push(';');
        }
        let _ = write!(note, " the JSON of only the first {keep} of {all} jobs");
    }
    note.push_str(" (every job's local check is printed whole)");
    Some((fitted, note))
}

/// Both sections, ready to print: every byte printable ([`crate::model::printable`]).
pub fn render(report: &Report) -> String {
    render_paused(report, None)
}

/// [`render`], with the paused jobs' checks and the daemon's line showing `pause`
/// ([`PauseView`]).
pub(crate) fn render_paused(report: &Report, pause: Option<&PauseView>) -> String {
    render_as(report, pause, cached_mode(report).as_deref())
}

/// [`render_paused`] in the agent's mode `cached` (`None`: sync), whatever mode the report
/// itself knows of: ctrl prints other instances' sections in the output the agent caches for
/// its own instance (`cached_mode` of that one's report), and their times must read as its
/// own do ([`crate::logic::cached_view`]).
pub(crate) fn render_as(
    report: &Report,
    pause: Option<&PauseView>,
    cached: Option<&str>,
) -> String {
    let _mode = crate::logic::cached_view::Scope::new(cached);
    let mut out = String::with_capacity(4096);
    out.push_str(SECTION_HEADER);
    out.push('\n');
    // The JSON cut to its cap; the local checks from the whole jobs, whatever it left out.
    let cut = fit_jobs(&report.jobs, jobs_budget(&report.envs)).map(|(jobs, note)| Report {
        jobs,
        section_cut: Some(note),
        ..report.without_jobs()
    });
    let shown = cut.as_ref().unwrap_or(report);
    let json = serde_json::to_string(shown)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize report: {e}\"}}"));
    out.push_str(&json);
    out.push('\n');
    out.push_str(LOCAL_HEADER);
    out.push('\n');
    let instance = report.instance.as_deref().unwrap_or("unknown");
    out.push_str(&daemon_line(shown, instance, pause));
    out.push('\n');
    for line in body(&report.jobs, instance) {
        line.render_into(&mut out, report.generated, pause);
        out.push('\n');
    }
    // The one gate to the agent (the fast path passes it too: `ctrl_view`).
    crate::model::printable::string(out)
}

/// The agent's cached mode as this report knows it: ctrl's own view (the plugin's folder),
/// else `agent_cache_age` (the Windows agent tells a plugin nothing), as the daemon says.
pub(crate) fn cached_mode(report: &Report) -> Option<String> {
    let ctrl = report.ctrl.as_ref().and_then(|c| c.mode.as_ref());
    let daemon =
        report.daemon.agent_mode.as_ref().filter(
            |m| matches!(m, AgentMode::Cached { source, .. } if source == crate::logic::agent_mode::CONFIGURED),
        );
    ctrl.filter(|m| m.is_cached())
        .or(daemon)
        .map(ToString::to_string)
}

/// A line after the daemon's local check: fixed, or a local check open in `now`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BodyLine {
    Fixed(String),
    Check(LineTemplate),
}

impl BodyLine {
    pub(crate) fn render_into(
        &self,
        out: &mut String,
        now: DateTime<Utc>,
        pause: Option<&PauseView>,
    ) {
        match self {
            BodyLine::Fixed(l) => out.push_str(l),
            BodyLine::Check(t) => t.render_into(out, now, pause),
        }
    }
}

/// Everything after the daemon line: the agent host's job checks (and per-test checks),
/// then the piggyback blocks, one per host in the order the jobs come.
pub(crate) fn body(jobs: &[JobStatus], instance: &str) -> Vec<BodyLine> {
    let mut out = Vec::with_capacity(jobs.len());
    body_each(jobs, instance, &mut |l| out.push(l));
    out
}

/// [`body`], one line at a time (the daemon writes them out as they come).
pub(crate) fn body_each(jobs: &[JobStatus], instance: &str, f: &mut dyn FnMut(BodyLine)) {
    for job in jobs.iter().filter(|j| piggyback_host(j).is_none()) {
        f(BodyLine::Check(job_template(job, instance)));
        if job.services == Services::PerTest {
            test_templates(job, instance)
                .into_iter()
                .for_each(|t| f(BodyLine::Check(t)));
        }
    }
    let mut hosts: Vec<&str> = Vec::new();
    for h in jobs.iter().filter_map(piggyback_host) {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    for host in hosts {
        let mine: Vec<&JobStatus> = jobs
            .iter()
            .filter(|j| piggyback_host(j) == Some(host))
            .collect();
        f(BodyLine::Fixed(format!("<<<<{host}>>>>")));
        f(BodyLine::Fixed(JOB_SECTION_HEADER.into()));
        for job in &mine {
            let doc = serde_json::json!({ "instance": instance, "job": job });
            f(BodyLine::Fixed(doc.to_string()));
        }
        f(BodyLine::Fixed(LOCAL_HEADER.into()));
        for job in &mine {
            f(BodyLine::Check(job_template(job, instance)));
            // The per-test checks belong to the same host as the job's.
            if job.services == Services::PerTest {
                test_templates(job, instance)
                    .into_iter()
                    .for_each(|t| f(BodyLine::Check(t)));
            }
        }
        f(BodyLine::Fixed("<<<<>>>>".into()));
    }
}

/// The host a job reports to, if it is another one and a valid name (a status file is only
/// trusted so far: a name that could break the markers stays on the agent's host).
fn piggyback_host(job: &JobStatus) -> Option<&str> {
    job.checkmk
        .host
        .as_deref()
        .filter(|h| crate::logic::config::check_host(h).is_ok())
}

/// Longest note shown in a local check's text (the record keeps it whole).
const MAX_NOTE: usize = 500;

/// `s` cut to `max` characters, on one line, without the quote that ends a service name.
fn one_line(s: &str, max: usize) -> String {
    // Nor a literal `\n`, which would start the check's details there.
    let mut out: String = crate::logic::check_details::text(s)
        .chars()
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// How stale the job's latest result is at `now`, from the deadlines the daemon (or ctrl,
/// from the config) worked out for it (see [`crate::logic::staleness`]): the state it forces and
/// the words for it. Shared by the job's check and its per-test checks.
fn stale_words(d: Option<Window>, now: Moment) -> (u8, Option<String>) {
    let Some(d) = d else {
        return (0, None);
    };
    // In cached mode an absolute time: the output is shown for minutes (`cached_view`).
    let late = |t: Moment| match crate::logic::cached_view::absolute() {
        Some(_) => format!("at {}", moment_time(t)),
        None => format!("{} ago", human_age(now.secs_since(t) as f64)),
    };
    match staleness::judge(d.expected_by, d.crit_after, now) {
        Staleness::Fresh => (0, None),
        Staleness::Overdue => (
            1,
            Some(format!(
                "result stale: the next due run has not reported (expected {})",
                late(d.expected_by)
            )),
        ),
        Staleness::MissedTwice => (
            2,
            Some(format!(
                "result stale: two due runs have not reported (the first was expected {})",
                late(d.expected_by)
            )),
        ),
    }
}

/// A [`LineTemplate`] borrowed (from the daemon's pre-rendered view, see
/// [`crate::logic::ctrl_view`]).
pub(crate) struct CheckParts<'a> {
    pub(crate) base: u8,
    pub(crate) clock: Clock<Moment>,
    pub(crate) deadlines: Option<Window>,
    pub(crate) name_metrics: &'a str,
    pub(crate) head: &'a str,
    pub(crate) mid: &'a str,
    pub(crate) tail: &'a str,
    /// The job's pause: the state it shows and what the text starts with
    /// ([`PauseView::check`]).
    pub(crate) paused: Option<(u8, &'a str)>,
}

/// A job's [`crate::model::status::Deadlines`] as ctrl compares them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub(crate) expected_by: Moment,
    pub(crate) crit_after: Moment,
}

impl Window {
    pub(crate) fn of(d: &crate::model::status::Deadlines) -> Window {
        Window {
            expected_by: Moment::of(d.expected_by),
            crit_after: Moment::of(d.crit_after),
        }
    }
}

/// A time as the cached mode shows it (`?` for one past what a calendar holds: never
/// written by the daemon).
fn moment_time(t: Moment) -> String {
    t.to_datetime()
        .map_or_else(|| "?".into(), crate::logic::cached_view::time)
}

/// A local check line at `now`.
pub(crate) fn render_check(out: &mut String, c: CheckParts, now: Moment) {
    let start = out.len();
    let (stale_state, stale_text) = stale_words(c.deadlines, now);
    let mut state = c.base.max(stale_state);
    let cached = crate::logic::cached_view::absolute();
    // In cached mode a job without a result is not UNKNOWN: its result follows with the
    // agent's next refresh of this output (see `cached_view`).
    let pending = cached.as_deref().filter(|_| {
        c.base == 3 && c.head.starts_with("no result yet") && !matches!(c.clock, Clock::Since(_))
    });
    if pending.is_some() {
        state = stale_state;
    }
    // A paused job's state is the pause's; what it would be follows the pause's words.
    let lead = match c.paused {
        Some((paused, lead)) => {
            state = paused;
            lead
        }
        None => "",
    };
    // Pieces pushed one by one, not `write!`: this runs for every job on every agent call.
    out.push(state_digit(state));
    out.push(' ');
    out.push_str(c.name_metrics);
    out.push(' ');
    out.push_str(state_word(state));
    out.push_str(" - ");
    out.push_str(lead);
    let mut mid = c.mid;
    match (c.clock, cached.is_some()) {
        (Clock::None, _) => out.push_str(c.head),
        // A result from the future (the wall clock ran ahead and was set back): its age is
        // not "0s", and the reader must learn why no newer one comes (see `staleness::seen`).
        (Clock::Since(t), _) if now.millis_since(t) < -1000 => {
            out.push_str(c.head);
            out.push_str("at ");
            out.push_str(&moment_time(t));
            out.push_str(", which lies in the future (the wall clock was set back)");
            mid = mid.strip_prefix(" ago").unwrap_or(mid);
        }
        (Clock::Since(t), false) => {
            out.push_str(c.head);
            push_human_age(out, now.millis_since(t) as f64 / 1000.0);
        }
        (Clock::Until(t), false) => {
            out.push_str(c.head);
            push_human_age(out, t.secs_since(now) as f64);
        }
        (Clock::Since(t), true) => {
            out.push_str(c.head);
            out.push_str("at ");
            out.push_str(&moment_time(t));
            mid = mid.strip_prefix(" ago").unwrap_or(mid);
        }
        (Clock::Until(t), true) => {
            out.push_str(c.head.strip_suffix("in ").unwrap_or(c.head));
            out.push_str("at ");
            out.push_str(&moment_time(t));
        }
    }
    out.push_str(mid);
    if let Some(s) = stale_text {
        out.push_str(", ");
        out.push_str(&s);
    }
    if let Some(mode) = pending {
        out.push_str(&crate::logic::cached_view::pending(mode));
    }
    out.push_str(c.tail);
    end_line(out, start);
}

/// Makes the check begun at `start` in `out` one line, whatever a part held: a line break
/// inside would let the rest be read as lines of its own (other checks, section headers, a
/// piggyback host). Each text that reaches a part is made one line where it is made; this
/// holds for any that was not (another instance's status file is its owner's to write: a
/// test's status with a line break forged the system instance's checks).
fn end_line(out: &mut String, start: usize) {
    let line = &out.as_bytes()[start..];
    if line.contains(&b'\n') || line.contains(&b'\r') {
        let fixed = out[start..].replace(['\n', '\r'], " ");
        out.truncate(start);
        out.push_str(&fixed);
    }
}

/// A local check line, `STATE "SERVICE" METRICS WORD - TEXT`, for every line that is not a
/// job's or a test's template ([`render_check`]): the daemon's, an instance that cannot be
/// shown, ctrl's own death. The one place besides [`render_check`] that knows the grammar,
/// so that each line ctrl prints keeps its guarantees: one line (a line break anywhere
/// becomes a space), and a service name that ends where its quote does (a `"` in it becomes
/// `”`, as [`crate::logic::checkmk_names::clean`] makes it). `metrics` empty is `-`. The
/// text is the caller's to shape otherwise: a literal `\n` in it starts the check's details
/// (see [`crate::logic::check_details::text`] for a text that has none).
pub(crate) fn local_line(state: u8, service: &str, metrics: &str, text: &str) -> String {
    let mut out = String::with_capacity(service.len() + metrics.len() + text.len() + 16);
    out.push(state_digit(state));
    out.push_str(" \"");
    out.extend(service.chars().map(|c| if c == '"' { '”' } else { c }));
    out.push_str("\" ");
    // A space would end the metrics early: the rest would be read as the state word.
    match metrics {
        "" => out.push('-'),
        m => out.extend(m.chars().map(|c| if c.is_whitespace() { '_' } else { c })),
    }
    out.push(' ');
    out.push_str(state_word(state));
    out.push_str(" - ");
    out.push_str(text);
    end_line(&mut out, 0);
    out
}

/// The local section of an instance ctrl cannot show: its CRIT line under service name
/// `service`, saying `why` (on one line, clipped, with no literal `\n`).
pub(crate) fn error_section(service: &str, why: &str) -> String {
    let mut why = why.replace(['\n', '\r'], " ");
    crate::model::clip::clip(&mut why, crate::model::clip::MAX_TEXT);
    let line = local_line(2, service, "-", &crate::logic::check_details::text(&why));
    crate::model::printable::string(format!("{LOCAL_HEADER}\n{line}\n"))
}

/// The part of a line that depends on `now` besides staleness.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Clock<T = DateTime<Utc>> {
    None,
    /// `human_age(now - t)`: how long ago the result came.
    Since(T),
    /// `human_age(t - now)`: how long until the first run.
    Until(T),
}

impl Clock {
    pub(crate) fn moments(self) -> Clock<Moment> {
        match self {
            Clock::None => Clock::None,
            Clock::Since(t) => Clock::Since(Moment::of(t)),
            Clock::Until(t) => Clock::Until(Moment::of(t)),
        }
    }
}

/// A local check line with its `now`-dependent parts left open: everything else is worked
/// out once (by the daemon, when its status changes: see [`crate::logic::ctrl_view`]), and ctrl only
/// fills in the age and the staleness at the time of the agent's call.
///
/// The line is `STATE "NAME" METRICS WORD - HEAD[CLOCK]MID[, STALE]TAIL`, with STATE the
/// worse of `base` and the staleness.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LineTemplate {
    /// The job the check is of (its own or a test's): what a pause is looked up by.
    pub(crate) job: String,
    pub(crate) base: u8,
    pub(crate) clock: Clock,
    pub(crate) deadlines: Option<crate::model::status::Deadlines>,
    /// `"NAME" METRICS` (the name quoted).
    pub(crate) name_metrics: String,
    pub(crate) head: String,
    pub(crate) mid: String,
    pub(crate) tail: String,
}

impl LineTemplate {
    /// The line at `now`, as `pause` shows it.
    pub(crate) fn render_into(
        &self,
        out: &mut String,
        now: DateTime<Utc>,
        pause: Option<&PauseView>,
    ) {
        let paused = pause.and_then(|p| p.check(&self.job));
        render_check(
            out,
            CheckParts {
                base: self.base,
                clock: self.clock.moments(),
                deadlines: self.deadlines.as_ref().map(Window::of),
                name_metrics: &self.name_metrics,
                head: &self.head,
                mid: &self.mid,
                tail: &self.tail,
                paused: paused.as_ref().map(|(s, lead)| (*s, lead.as_str())),
            },
            Moment::of(now),
        );
    }

    #[cfg(test)]
    pub(crate) fn render(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        self.render_into(&mut out, now, None);
        out
    }
}

/// How much of a test status that is none of robot's words is shown.
const MAX_STATUS_TEXT: usize = 40;

/// One local check per test of the job's latest result (`services = "per-test"`), named
/// `Robotmk <instance> <job> <test>` (`<suite>.<test>` where two tests share a name), with
/// the staleness left open: one per test of the result's list of them
/// ([`crate::model::record::TestStats::services`], in robot's order, names unique over the
/// whole list), with its detail where the result kept it; a result from before that list
/// was kept has one per test of its detail.
pub(crate) fn test_templates(job: &JobStatus, instance: &str) -> Vec<LineTemplate> {
    let Some(last) = &job.last else {
        return Vec::new();
    };
    let Some(t) = &last.tests else {
        return Vec::new();
    };
    let Some(list) = &t.services else {
        // Unique, acceptable to Checkmk and stable from run to run: see `checkmk_names`.
        let names = crate::logic::checkmk_names::test_names(
            t.results
                .iter()
                .map(|r| (r.suite.as_str(), r.name.as_str())),
        );
        return t
            .results
            .iter()
            .zip(names)
            .map(|(r, name)| test_template(job, instance, &name, &r.status, Some(r)))
            .collect();
    };
    let detail: std::collections::HashMap<u32, &crate::model::record::TestResult> = t
        .results
        .iter()
        .filter_map(|r| Some((r.index?, r)))
        .collect();
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let r = u32::try_from(i).ok().and_then(|i| detail.get(&i)).copied();
            // Made as `checkmk_names` makes them: the same name for the daemon's own list,
            // and none that breaks a line from any other status file.
            let name = crate::logic::checkmk_names::clean(&s.0);
            test_template(job, instance, &name, &s.1, r)
        })
        .collect()
}

/// The line of one test named `name` (as `checkmk_names` makes names), of `status`, with its
/// detail `r` if the result kept it.
fn test_template(
    job: &JobStatus,
    instance: &str,
    name: &str,
    status: &TestStatus,
    r: Option<&crate::model::record::TestResult>,
) -> LineTemplate {
    let level = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let mut state = match status {
        TestStatus::Pass | TestStatus::Skip => 0,
        TestStatus::Fail => 2,
        _ => 1,
    };
    // What robot wrote, or another instance's status file: one line, short.
    let mut text = one_line(
        &crate::logic::check_details::text(status.as_str()),
        MAX_STATUS_TEXT,
    );
    // A time the result did not give, or gave as no time (`inf`, `NaN`, negative:
    // `record::known_seconds`), is said to be unknown: no metric, no level.
    let elapsed = r
        .and_then(|r| r.elapsed_s)
        .and_then(crate::model::record::known_seconds);
    match (r, elapsed) {
        (None, _) => {
            let _ = write!(
                text,
                " (runtime unknown: beyond the per-test detail kept, at most {} tests and {} KiB, failed tests first)",
                crate::logic::robot::MAX_TESTS,
                crate::logic::robot::MAX_RESULTS_BYTES / 1024
            );
        }
        (Some(_), None) => text.push_str(" (runtime unknown)"),
        (Some(_), Some(e)) => {
            let _ = write!(text, " in {e:.2}s");
            if job.test_runtime_crit_s.is_some_and(|c| e >= c) {
                state = state.max(2);
                text.push_str(" (runtime at or above its critical level)");
            } else if job.test_runtime_warn_s.is_some_and(|w| e >= w) {
                state = state.max(1);
                text.push_str(" (runtime at or above its warning level)");
            }
        }
    }
    if let Some(m) = r.and_then(|r| r.message.as_ref()) {
        let m = crate::logic::check_details::text(m);
        let _ = write!(text, ": {}", one_line(&m, crate::logic::robot::MAX_TEXT));
    }
    let metrics = elapsed.map_or("-".into(), |e| {
        let (w, c) = (
            level(job.test_runtime_warn_s),
            level(job.test_runtime_crit_s),
        );
        if w.is_empty() && c.is_empty() {
            format!("runtime={e:.3}")
        } else {
            format!("runtime={e:.3};{w};{c}")
        }
    });
    LineTemplate {
        job: job.name.clone(),
        base: state,
        clock: Clock::None,
        deadlines: job.checkmk.deadlines(),
        name_metrics: format!("\"Robotmk {instance} {} {name}\" {metrics}", job.name),
        head: text,
        mid: String::new(),
        // The test's place in the published log, last (see the job's line).
        tail: r.and_then(|r| r.url.as_deref()).map_or(String::new(), |u| {
            format!("; log: {}", crate::logic::plugin_view::url_text(u))
        }),
    }
}

/// The digit a line starts with: Checkmk's local grammar has four states, and a line with
/// any other digit is rejected by its parser ("Invalid plug-in status"), its service's check
/// crashing instead of showing a state. A state past 3 (a plugin's state from another
/// instance's status file, its owner's to write, or a newer build's) is UNKNOWN, as
/// [`state_word`] already says.
fn state_digit(state: u8) -> char {
    char::from(b'0' + state.min(3))
}

fn state_word(state: u8) -> &'static str {
    match state {
        0 => "OK",
        1 => "WARN",
        2 => "CRIT",
        _ => "UNKNOWN",
    }
}

pub(crate) fn daemon_line(r: &Report, instance: &str, pause: Option<&PauseView>) -> String {
    let d = &r.daemon;
    // ctrl could not load the config (its action says so; a section cut to size also uses
    // `config_error`) while a daemon runs on.
    let edit_rejected = d.running
        && r.ctrl
            .as_ref()
            .is_some_and(|c| c.action == CtrlAction::ConfigError);
    let (state, text) = if let (Some(e), true) = (&r.config_error, edit_rejected) {
        // The daemon runs on with the config it had: WARN, as the README says; CRIT is for a
        // config that keeps the daemon from running at all.
        let from = d.config_from.map_or(String::new(), |t| {
            format!(" from {}", crate::model::record::ts(t))
        });
        (
            1,
            format!(
                "running the last good config{from}, pid {}; the config now has an error: {e}",
                d.pid.map_or("?".into(), |p| p.to_string())
            ),
        )
    } else if let Some(e) = &r.config_error {
        (2, format!("config error: {e}"))
    } else if let Some(e) = r.ctrl.as_ref().and_then(|c| c.error.as_ref()) {
        (2, e.clone())
    } else if !d.running {
        (2, "daemon not running".to_string())
    } else if d.pid.is_none() || d.phase == Some(crate::model::status::Phase::Stopped) {
        // A process holds the instance's lock, but the status is none or its predecessor's:
        // a daemon before its first status (it reads its config and looks up the jobs' users
        // after it took the lock), not one to vouch for.
        (
            1,
            "starting: a daemon holds the instance lock but has not written its status yet (it loads its config and looks up the jobs' users; if this lasts, is the user database answering?)".to_string(),
        )
    } else if let Some(since) = d.not_responding_since {
        (
            2,
            format!(
                "not responding since {} ({} without an answer to ctrl's heartbeat), pid {}",
                crate::model::record::ts(since),
                human_age((r.generated - since).num_milliseconds() as f64 / 1000.0),
                d.pid.map_or("?".into(), |p| p.to_string()),
            ),
        )
    } else if let Some(e) = &d.state_error {
        (2, format!("cannot write state: {e}"))
    } else if let Some(why) = &d.unstable {
        // A daemon that crashed or keeps restarting is not fine just because one runs now.
        (
            2,
            format!(
                "running, pid {}, {}, {why}",
                d.pid.map_or("?".into(), |p| p.to_string()),
                up(d)
            ),
        )
    } else if let Some(e) = d.config_error.as_ref().filter(|_| {
        matches!(
            d.config_error_kind,
            Some(ConfigErrorKind::UsersChanged | ConfigErrorKind::UsersHeld)
        )
    }) {
        // No edit: the config runs on, but a user it names is gone (see `reload_config`).
        (
            1,
            format!("{e}; the jobs of users not found or expired are held, not run"),
        )
    } else if let Some(e) = &d.config_error {
        let from = d.config_from.map_or(String::new(), |t| {
            format!(" from {}", crate::model::record::ts(t))
        });
        (
            1,
            format!("config edit rejected, running the last good config{from}: {e}"),
        )
    } else {
        healthy_line(r)
    };
    // Never silently: what the section left out (its local checks are all there, so WARN).
    let (state, text) = match &r.section_cut {
        Some(cut) => (state.max(1), format!("{text}; {cut}")),
        None => (state, text),
    };
    // One line, and no literal `\n` (a config error quoting `"a\nb"`, a Windows path), which
    // Checkmk would take for the start of the details.
    let mut text = crate::logic::check_details::text(&text);
    if let Some(note) = pause
        .filter(|_| state == 0)
        .and_then(PauseView::daemon_note)
    {
        text.push_str(&note);
    }
    local_line(state, &daemon_service(instance), "-", &text)
}

/// The service name of the daemon's check.
pub(crate) fn daemon_service(instance: &str) -> String {
    format!("Robotmk {instance} daemon")
}

/// The daemon line of a daemon that runs as it should: its mode and phase, a backlog, and
/// what this ctrl call did to it.
fn healthy_line(r: &Report) -> (u8, String) {
    let d = &r.daemon;
    let mut t = format!(
        "running, pid {}, {}",
        d.pid.map_or("?".into(), |p| p.to_string()),
        up(d)
    );
    if let Some(mode) = &d.agent_mode {
        let _ = write!(t, ", mode: {mode}");
        if let (true, Some(hb)) = (mode.is_cached(), d.heartbeat_timeout_s) {
            let _ = write!(t, ", heartbeat timeout {}", human_age(hb));
        }
        // The mode is the daemon's; a call it does not describe (one run by hand while a
        // cached agent's mode stays in force) says its own, as its JSON does.
        let call = r.ctrl.as_ref().and_then(|c| c.mode.as_ref());
        if let Some(call) = call.filter(|c| !crate::logic::agent_mode::describes(mode, c)) {
            let _ = write!(t, ", this call: {call}");
        }
    }
    let mut state = 0;
    // `run-once` holds the instance (no daemon runs): the job it runs runs, no scheduled one
    // starts until it ends, and ctrl starts no daemon meanwhile (W2 F7).
    if d.route == Some(crate::model::status::Route::RunOnce) {
        state = 1;
        t.push_str(
            ", a run-once of an admin's: no scheduled run starts until it ends (a daemon starts at the first ctrl after it)",
        );
    }
    match d.phase.as_ref() {
        // No job starts while it drains (a stop, an upgrade, a handover): never OK, and the
        // line says why, whatever path of ctrl renders it.
        Some(crate::model::status::Phase::Draining) => {
            state = 1;
            let _ = write!(
                t,
                ", draining: no run starts until the runs in flight end ({})",
                d.reason.as_deref().unwrap_or("no reason given")
            );
        }
        Some(phase) if *phase != crate::model::status::Phase::Running => {
            let _ = write!(t, ", {phase}");
            if let Some(why) = &d.reason {
                let _ = write!(t, " ({why})");
            }
        }
        _ => {}
    }
    if let Some(behind) = &d.behind {
        // Past the rate of runs the machine sustains: never silently (issue 25).
        state = 1;
        let _ = write!(t, ", {behind}");
    }
    if let Some(c) = &r.ctrl {
        if c.action == CtrlAction::Started {
            let _ = write!(
                t,
                ", started {} via {}",
                now_words(r),
                c.route.as_ref().map_or("?", |r| r.as_str())
            );
        }
        if c.action == CtrlAction::Restarted {
            // WARN once: where the agent caches ctrl's output, the call that ends a hung
            // daemon may be the first to notice it, and the event must not go unseen.
            state = 1;
            let via = c
                .route
                .as_ref()
                .map(|r| format!(" via {r}"))
                .unwrap_or_default();
            let _ = write!(
                t,
                ", restarted {}{via}: {}",
                now_words(r),
                c.note
                    .as_deref()
                    .unwrap_or("the previous daemon did not answer")
            );
        }
    }
    (state, t)
}

/// How long the daemon has run: `up 2h`, or where the agent caches this output (Checkmk
/// shows it for minutes, see `cached_view`) `up since 2026-12-04 17:03:21 UTC`.
fn up(d: &crate::model::report::DaemonReport) -> String {
    match (crate::logic::cached_view::absolute(), d.started) {
        (Some(_), Some(t)) => format!("up since {}", crate::logic::cached_view::time(t)),
        _ => format!("up {}", human_age(d.uptime_s.unwrap_or(0.0))),
    }
}

/// When this ctrl call did what it says: `now`, or in cached mode the time of the call.
fn now_words(r: &Report) -> String {
    match crate::logic::cached_view::absolute() {
        Some(_) => format!("at {}", crate::logic::cached_view::time(r.generated)),
        None => "now".into(),
    }
}

/// `killed by signal 9 (SIGKILL)`: a failed run ended by a signal the daemon did not send
/// (a timeout's or an admin's stop has its own outcome). Whether it was the OOM killer the
/// record does not know, so it is not said.
fn killed_by(last: &crate::model::status::LastRun) -> Option<String> {
    if last.outcome != Some(Outcome::Failure) {
        return None;
    }
    let sig = last.signal?;
    Some(match signal_name(sig) {
        Some(name) => format!("killed by signal {sig} ({name})"),
        None => format!("killed by signal {sig}"),
    })
}

/// The name of signal `sig` where POSIX systems agree on its number.
fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// The state a job's last result deserves on its own (before staleness).
fn outcome_state(o: Outcome) -> u8 {
    match o {
        Outcome::Success => 0,
        Outcome::Failure | Outcome::Timeout | Outcome::Error => 2,
        // An admin's stop (`stop --now`) is no finding; its note says what happened.
        Outcome::Killed => 0,
        Outcome::Interrupted | Outcome::Skipped => 1,
    }
}

/// The local check line of one job at `now` (the tests' view of [`job_template`]).
#[cfg(test)]
pub(crate) fn job_line(job: &JobStatus, instance: &str, now: DateTime<Utc>) -> String {
    job_template(job, instance).render(now)
}

/// The local check line of one job, with the age and the staleness left open.
pub(crate) fn job_template(job: &JobStatus, instance: &str) -> LineTemplate {
    let name = service_name(job, instance);
    let Some(last) = &job.last else {
        // A first run under way is what the admin waits for, not the next due time after it
        // (W3 F4: "first run due in 58m" while it ran).
        let in_flight;
        let (head, clock) = match (job.running.len(), job.next_due) {
            (1, _) => ("no result yet, first run in flight", Clock::None),
            (n @ 2.., _) => {
                in_flight = format!("no result yet, {n} runs in flight");
                (in_flight.as_str(), Clock::None)
            }
            (0, Some(n)) => ("no result yet, first run due in ", Clock::Until(n)),
            (0, None) => ("no result yet", Clock::None),
        };
        return LineTemplate {
            job: job.name.clone(),
            base: 3,
            clock,
            deadlines: None,
            name_metrics: format!("\"{name}\" -"),
            head: head.into(),
            mid: String::new(),
            tail: String::new(),
        };
    };
    let outcome = last.outcome.unwrap_or(Outcome::Interrupted);
    let mut state = outcome_state(outcome);
    if last.output_lost {
        // Whatever the exit code said, nothing of the run can be looked at.
        state = state.max(1);
    }
    let at = last.finished.unwrap_or(last.due);
    let mut text = format!(" ago: {}", outcome.as_str());
    if let Some(t) = &last.tests {
        let _ = write!(
            text,
            " ({} passed, {} failed, {} skipped)",
            crate::model::plural(t.passed, "test", "tests"),
            t.failed,
            t.skipped
        );
        if t.results_omitted > 0 {
            let _ = write!(
                text,
                ", per-test detail for {} of {} tests",
                t.results.len(),
                t.results.len() as u64 + t.results_omitted
            );
            // A result from before the list of its tests was kept has per-test services
            // made from that detail: the tests left out of it have none, never silently
            // (and which ones changes with the failures of a run).
            if job.services == Services::PerTest && t.services.is_none() {
                state = state.max(1);
                let _ = write!(
                    text,
                    "; no per-test service for {} (per-test services come from that detail: at most {} tests and {} KiB of it, failed tests first)",
                    crate::model::plural(t.results_omitted, "test", "tests"),
                    crate::logic::robot::MAX_TESTS,
                    crate::logic::robot::MAX_RESULTS_BYTES / 1024
                );
            }
        }
        // The tests beyond the list's bound have no per-test service: never silently.
        if job.services == Services::PerTest && t.services.is_some() && t.services_omitted > 0 {
            state = state.max(1);
            let _ = write!(
                text,
                "; no per-test service for {} (per-test services are listed for the first {} tests robot ran and {} KiB of their names)",
                crate::model::plural(t.services_omitted, "test", "tests"),
                crate::logic::robot::MAX_SERVICES,
                crate::logic::robot::MAX_SERVICES_BYTES / 1024
            );
        }
    } else if let Some(code) = last.exit_code.filter(|c| *c != 0) {
        match &last.output_head {
            Some(head) => {
                let _ = write!(text, " (exit code {code}: {})", one_line(head, MAX_NOTE));
            }
            None => {
                let _ = write!(text, " (exit code {code})");
            }
        }
    } else if let Some(sig) = killed_by(last) {
        // Ended by a signal nobody here sent (the OOM killer, an admin's `kill -9`): the
        // signal is the cause, not an exit code the runner never gave.
        match &last.output_head {
            Some(head) => {
                let _ = write!(text, " ({sig}: {})", one_line(head, MAX_NOTE));
            }
            None => {
                let _ = write!(text, " ({sig})");
            }
        }
    } else if let Some(head) = &last.output_head {
        let _ = write!(text, " ({})", one_line(head, MAX_NOTE));
    }
    if last.tests.is_some() {
        if let Some(sig) = killed_by(last) {
            let _ = write!(text, ", {sig}");
        }
    }
    if let Some(n) = last.attempts.filter(|n| *n > 1) {
        let _ = write!(text, " after {n} attempts");
    }
    let (runtime_state, runtime_text) = runtime_levels(job, last);
    state = state.max(runtime_state);
    text.push_str(&runtime_text);
    let mut tail = String::new();
    if !job.running.is_empty() {
        let _ = write!(tail, ", {} run(s) in flight", job.running.len());
    }
    if let Some(note) = &last.note {
        let _ = write!(tail, "; {}", one_line(note, MAX_NOTE));
    }
    // Last, so it is easy to find and to copy; a URL (which Checkmk shows as a link) ends
    // the line, as nothing after it may be taken for part of it.
    match (&last.log_url, &last.log) {
        (Some(url), _) => {
            let _ = write!(tail, "; log: {}", crate::logic::plugin_view::url_text(url));
        }
        (None, Some(log)) => {
            // A Windows path may hold `\n` (`C:\…\nightly`), which would start the details.
            let log = crate::logic::check_details::text(&log.display().to_string());
            let _ = write!(tail, "; log: {log}");
        }
        _ => {}
    }
    let mut metrics = metrics(job, last);
    let mut head = "last run ".to_string();
    // Which tests failed, in the details (Checkmk's long output), for every robot result.
    let mut details = last
        .tests
        .as_ref()
        .map(crate::logic::check_details::tests)
        .unwrap_or_default();
    if let Some(p) = &last.plugin {
        // The plugin's word decides, like Checkmk's MRPE: its exit code (or the timeout's
        // configured state), not the run's outcome.
        state = p.state.max(u8::from(last.output_lost)).max(runtime_state);
        head = crate::logic::plugin_view::head(p);
        text = format!(" ago{runtime_text}");
        metrics = crate::logic::plugin_view::metrics(&metrics, p);
        details = crate::logic::plugin_view::details(p);
    }
    LineTemplate {
        job: job.name.clone(),
        base: state,
        clock: Clock::Since(at),
        deadlines: job.checkmk.deadlines(),
        name_metrics: format!("\"{name}\" {metrics}"),
        // Only the details may hold a literal `\n` (each one starts a line of them): a
        // plugin's summary or a note quoting `C:\new` must not.
        head: crate::logic::check_details::text(&head),
        mid: crate::logic::check_details::text(&text),
        tail: crate::logic::check_details::text(&tail) + &details,
    }
}

/// The service name of a job's check: the config's `service` (plugin jobs), if it is one a
/// local check can carry (a status file is trusted only so far), else `Robotmk <instance>
/// <job>`.
pub(crate) fn service_name(job: &JobStatus, instance: &str) -> String {
    match job
        .checkmk
        .service
        .as_deref()
        .filter(|s| crate::logic::config::check_service(s).is_ok())
    {
        Some(s) => s.to_string(),
        None => format!("Robotmk {instance} {}", job.name),
    }
}

/// Runtime levels (seconds), for a job's run and — with the same rules — for anything else
/// with a runtime (a Robot Framework test's check).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Levels {
    pub(crate) warn: Option<f64>,
    pub(crate) crit: Option<f64>,
}

impl Levels {
    /// The state `value` gets (Checkmk's rule: at or above a level), and a note when it
    /// reaches one.
    pub(crate) fn judge(&self, value: f64) -> (u8, String) {
        let (state, level) = match (self.warn, self.crit) {
            (_, Some(crit)) if value >= crit => (2, crit),
            (Some(warn), _) if value >= warn => (1, warn),
            _ => return (0, String::new()),
        };
        let which = if state == 2 { "critical" } else { "warning" };
        let level = crate::model::duration::format(std::time::Duration::from_secs_f64(level));
        (
            state,
            format!(", runtime {value:.1}s reached the {which} level of {level}"),
        )
    }

    /// The metric `name=value;warn;crit` (just `name=value` without levels).
    pub(crate) fn metric(&self, name: &str, value: f64) -> String {
        let level = |l: Option<f64>| l.map(|v| v.to_string()).unwrap_or_default();
        match (self.warn, self.crit) {
            (None, None) => format!("{name}={value:.3}"),
            (w, c) => format!("{name}={value:.3};{};{}", level(w), level(c)),
        }
    }
}

fn job_levels(job: &JobStatus) -> Levels {
    Levels {
        warn: job.checkmk.runtime_warn_s,
        crit: job.checkmk.runtime_crit_s,
    }
}

/// The state the runtime levels give `last`, and a note when it reaches one.
fn runtime_levels(job: &JobStatus, last: &LastRun) -> (u8, String) {
    match last.duration_s {
        Some(d) => job_levels(job).judge(d),
        None => (0, String::new()),
    }
}

fn metrics(job: &JobStatus, last: &LastRun) -> String {
    let mut m = Vec::new();
    if let Some(d) = last.duration_s {
        m.push(job_levels(job).metric("runtime", d));
    }
    if let Some(e) = last
        .tests
        .as_ref()
        .and_then(|t| t.elapsed_s)
        .and_then(crate::model::record::known_seconds)
    {
        m.push(format!("suite_runtime={e:.3}"));
    }
    if let Some(n) = last.attempts {
        m.push(format!("attempts={n}"));
    }
    if let Some(t) = &last.tests {
        m.push(format!("tests_passed={}", t.passed));
        m.push(format!("tests_failed={}", t.failed));
        m.push(format!("tests_skipped={}", t.skipped));
    }
    if m.is_empty() {
        "-".into()
    } else {
        m.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::{RunRecord, TestStats, Trigger};

    fn job(last: Option<RunRecord>) -> JobStatus {
        JobStatus {
            name: "web".into(),
            schedule: "every 1m".into(),
            interval_s: 60.0,
            timeout_s: 30.0,
            next_due: None,
            running: vec![],
            queued: 0,
            last: last.as_ref().map(Into::into),
            last_skipped: None,
            skipped_total: 0,
            services: Services::Job,
            test_runtime_warn_s: None,
            test_runtime_crit_s: None,
            checkmk: Default::default(),
        }
    }

    /// A job's first run under way is said, not the due time after it (W3 F4).
    #[test]
    fn a_first_run_in_flight_is_said_not_the_next_due_time() {
        let now = Utc::now();
        let mut j = job(None);
        j.next_due = Some(now + chrono::Duration::minutes(58));
        assert!(job_line(&j, "i", now).contains("no result yet, first run due in 58m"));
        let running = |id: &str| crate::model::status::RunningRun {
            run_id: id.into(),
            due: now,
            started: Some(now),
            pid: Some(7),
        };
        j.running.push(running("a"));
        let line = job_line(&j, "i", now);
        assert_eq!(
            line,
            "3 \"Robotmk i web\" - UNKNOWN - no result yet, first run in flight"
        );
        j.running.push(running("b"));
        assert!(job_line(&j, "i", now).ends_with("no result yet, 2 runs in flight"));
    }

    fn rec(outcome: Outcome, finished: DateTime<Utc>) -> RunRecord {
        let journal = RunRecord::journal(
            "web",
            "x-1".into(),
            "/r".into(),
            finished,
            Trigger::Schedule,
            30.0,
        );
        RunRecord {
            started: Some(finished),
            finished: Some(finished),
            duration_s: Some(12.3),
            exit_code: Some(0),
            outcome: Some(outcome),
            tests: Some(TestStats {
                passed: 3,
                ..Default::default()
            }),
            ..journal
        }
    }

    /// A job named `name` whose latest result has `tests` per-test results of about 400
    /// bytes each (long names and messages).
    fn detailed(name: &str, outcome: Outcome, tests: usize) -> JobStatus {
        let mut j = job(Some(rec(outcome, Utc::now())));
        j.name = name.into();
        let t = j.last.as_mut().unwrap().tests.as_mut().unwrap();
        t.results = (0..tests)
            .map(|i| crate::model::record::TestResult {
                suite: "S".into(),
                name: format!("T{i} {}", "x".repeat(200)),
                status: if outcome == Outcome::Success {
                    TestStatus::Pass
                } else {
                    TestStatus::Fail
                },
                elapsed_s: Some(0.5),
                message: Some("m".repeat(200)),
                ..Default::default()
            })
            .collect();
        t.passed = tests as u64;
        j
    }

    fn detail_of(j: &JobStatus) -> (usize, u64) {
        let t = j.last.as_ref().unwrap().tests.as_ref().unwrap();
        (t.results.len(), t.results_omitted)
    }

    #[test]
    fn fitting_leaves_out_the_largest_detail_first_then_jobs() {
        let jobs = vec![
            detailed("a", Outcome::Success, 10),
            detailed("b", Outcome::Success, 30),
            detailed("c", Outcome::Failure, 20),
        ];
        let whole = json_len(&jobs);
        assert!(fit_jobs(&jobs, whole).is_none());
        let js = |v: &[JobStatus]| serde_json::to_string(v).unwrap();
        // One byte short: b's detail (the most) goes, nothing else.
        let (fitted, note) = fit_jobs(&jobs, whole - 1).expect("a cut");
        assert_eq!(fitted.len(), 3);
        assert_eq!(detail_of(&fitted[0]), (10, 0));
        assert_eq!(detail_of(&fitted[1]), (0, 30));
        assert_eq!(detail_of(&fitted[2]), (20, 0));
        assert!(json_len(&fitted) < whole - 1, "{note}");
        assert_eq!(
            note,
            format!(
                "the section was cut to stay under {MAX_SECTION} bytes: the per-test detail \
                 of 1 of 3 jobs left out (b) (every job's local check is printed whole)"
            )
        );
        // Room for the jobs without any detail: all of it goes, every job stays.
        let bare: Vec<JobStatus> = fit_jobs(&jobs, 0).unwrap().0;
        assert!(bare.is_empty());
        let mut none = jobs.clone();
        for j in &mut none {
            let t = j.last.as_mut().unwrap().tests.as_mut().unwrap();
            t.results_omitted = t.results.len() as u64;
            t.results.clear();
        }
        let (fitted, note) = fit_jobs(&jobs, json_len(&none)).unwrap();
        assert_eq!(js(&fitted), js(&none), "{note}");
        assert!(note.contains("of 3 of 3 jobs left out (a, b, c)"), "{note}");
        assert!(!note.contains("JSON of only"), "{note}");
        // Less: the first jobs that fit, and the note says how many.
        let (fitted, note) = fit_jobs(&jobs, json_len(&none) - 1).unwrap();
        assert_eq!(js(&fitted), js(&none[..2]), "{note}");
        assert!(
            note.ends_with(
                "left out (a, b, c); the JSON of only the first 2 of 3 jobs \
                 (every job's local check is printed whole)"
            ),
            "{note}"
        );
    }

    /// Defect: jobs whose results carry much per-test detail made the section cut to the
    /// first 4096 jobs, which shrank nothing at 36 (the view was then not written at all),
    /// and the full path cut the local checks with the JSON, the daemon line staying OK.
    #[test]
    fn an_oversized_section_keeps_every_jobs_check_and_says_what_it_cut() {
        let now = Utc::now();
        // 40 jobs of about 450 KiB of detail each: 18 MB.
        let mut jobs: Vec<JobStatus> = (0..40)
            .map(|i| detailed(&format!("j{i:02}"), Outcome::Success, 1000))
            .collect();
        jobs[39] = detailed("j39", Outcome::Failure, 1000);
        jobs[39]
            .last
            .as_mut()
            .unwrap()
            .tests
            .as_mut()
            .unwrap()
            .failed = 1000;
        assert!(json_len(&jobs) > MAX_SECTION);
        let report = Report {
            instance: Some("sys".into()),
            config: "/c".into(),
            config_error: None,
            section_cut: None,
            state_dir: None,
            daemon: crate::model::report::DaemonReport {
                running: true,
                pid: Some(7),
                ..Default::default()
            },
            ctrl: None,
            jobs: jobs.clone(),
            envs: Vec::new(),
            paused: None,
            config_warnings: Vec::new(),
            generated: now,
        };
        let out = render(&report);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(SECTION_HEADER));
        let json = lines.next().unwrap();
        assert!(json.len() <= MAX_SECTION, "{}", json.len());
        let section: serde_json::Value = serde_json::from_str(json).unwrap();
        // Every job's JSON stays; the detail of the first ones (equal sizes: the later
        // first) is what goes.
        assert_eq!(section["jobs"].as_array().unwrap().len(), 40);
        assert_eq!(section["config_error"], serde_json::Value::Null);
        let cut = section["section_cut"].as_str().expect("the note");
        assert!(cut.contains("the per-test detail of "), "{cut}");
        let j39 = &section["jobs"][39]["last"]["tests"];
        assert_eq!(j39["results_omitted"], 1000, "{cut}");
        assert_eq!(j39["failed"], 1000);
        let local: Vec<&str> = lines.skip_while(|l| *l != LOCAL_HEADER).skip(1).collect();
        assert!(
            local[0].starts_with("1 \"Robotmk sys daemon\" - WARN - running, pid 7")
                && local[0].ends_with(&format!("; {cut}")),
            "{}",
            local[0]
        );
        // Every job's check, as it is when nothing is cut, details included.
        assert_eq!(local.len(), 41);
        for (j, line) in jobs.iter().zip(&local[1..]) {
            assert_eq!(*line, job_line(j, "sys", now));
        }
        assert!(
            local[40].starts_with("2 \"Robotmk sys j39\""),
            "{}",
            &local[40][..80]
        );
        assert!(local[40].contains("\\nFAIL T0 x"), "{}", &local[40][..300]);
    }

    /// Checkmk reads a literal `\n` (backslash, `n`) in a local check's text as the start of
    /// a details line. Only the daemon's own details may make one: a plugin's summary, its
    /// long output, a note or a path that holds one (`C:\new\nightly`) stays one line.
    #[test]
    fn a_literal_backslash_n_in_a_text_never_starts_a_details_line() {
        let now = Utc::now();
        let mut r = rec(Outcome::Success, now);
        r.tests = None;
        r.note = Some("see C:\\new\\nightly".into());
        r.plugin = Some(Box::new(crate::logic::nagios::parse(
            "OK - report in C:\\new\\nightly\nfirst C:\\nightly\nsecond",
            0,
            None,
        )));
        let line = job_line(&job(Some(r)), "i", now);
        let lines: Vec<&str> = line.split("\\n").collect();
        assert_eq!(lines.len(), 3, "the summary and two details lines: {line}");
        assert!(lines[0].contains("C:⧵new⧵nightly"), "{line}");
        assert!(lines[1].starts_with("first C:⧵nightly"), "{line}");
        assert!(lines[2].starts_with("second"), "{line}");
    }

    #[test]
    fn states_follow_outcome_and_age() {
        let now = Utc::now();
        let s = |l: String| l.chars().next().unwrap();
        assert_eq!(s(job_line(&job(None), "i", now)), '3');
        assert_eq!(
            s(job_line(&job(Some(rec(Outcome::Success, now))), "i", now)),
            '0'
        );
        assert_eq!(
            s(job_line(&job(Some(rec(Outcome::Failure, now))), "i", now)),
            '2'
        );
        assert_eq!(
            s(job_line(&job(Some(rec(Outcome::Timeout, now))), "i", now)),
            '2'
        );
        // Age alone never alarms (a nightly gap is not an outage) ...
        let old = now - chrono::Duration::days(3);
        let mut j = job(Some(rec(Outcome::Success, old)));
        assert_eq!(s(job_line(&j, "i", now)), '0');
        // ... a due run that has not reported does.
        let secs = chrono::Duration::seconds;
        j.checkmk.expected_by = Some(now - secs(1));
        j.checkmk.crit_after = Some(now + secs(60));
        let l = job_line(&j, "i", now);
        assert!(l.starts_with("1 ") && l.contains("result stale"), "{l}");
        j.checkmk.crit_after = Some(now - secs(1));
        let l = job_line(&j, "i", now);
        assert!(l.starts_with("2 ") && l.contains("two due runs"), "{l}");
        j.checkmk.expected_by = Some(now);
        j.checkmk.crit_after = Some(now + secs(60));
        assert_eq!(s(job_line(&j, "i", now)), '0', "on the deadline");
        let line = job_line(&job(Some(rec(Outcome::Success, now))), "sys", now);
        assert!(
            line.starts_with("0 \"Robotmk sys web\" runtime=12.300|tests_passed=3|"),
            "{line}"
        );
        assert!(line.contains("3 tests passed"), "{line}");
    }

    /// F5: a result from the future (the clock ran a year ahead, then was set back) is not
    /// "last run 0s ago": its time is shown and why no newer result comes.
    #[test]
    fn a_result_from_the_future_is_not_0s_ago() {
        let now = Utc::now();
        let ahead = now + chrono::Duration::days(365);
        let j = job(Some(rec(Outcome::Success, ahead)));
        let l = job_line(&j, "i", now);
        assert!(!l.contains("0s ago") && !l.contains(" ago"), "{l}");
        assert!(
            l.contains("which lies in the future (the wall clock was set back): success"),
            "{l}"
        );
        // This very second is no step.
        let j = job(Some(rec(
            Outcome::Success,
            now + chrono::Duration::milliseconds(500),
        )));
        let l = job_line(&j, "i", now);
        assert!(l.contains("last run 0s ago: success"), "{l}");
    }

    /// Issue D9a: a runner ended by a signal the daemon did not send (the OOM killer's
    /// SIGKILL) says so in the summary, not only a bare "failure".
    #[test]
    fn a_run_killed_by_a_signal_says_which() {
        let now = Utc::now();
        let mut r = rec(Outcome::Failure, now);
        r.exit_code = None;
        r.signal = Some(9);
        r.tests = None;
        let l = job_line(&job(Some(r.clone())), "i", now);
        assert!(l.starts_with("2 "), "{l}");
        assert!(
            l.contains(": failure (killed by signal 9 (SIGKILL))"),
            "{l}"
        );
        r.output_head = Some("allocating".into());
        let l = job_line(&job(Some(r.clone())), "i", now);
        assert!(
            l.contains(": failure (killed by signal 9 (SIGKILL): allocating)"),
            "{l}"
        );
        // A robot run with (partial) test counts: the counts, then the signal.
        r.output_head = None;
        r.tests = Some(TestStats {
            passed: 1,
            ..Default::default()
        });
        r.signal = Some(64);
        let l = job_line(&job(Some(r.clone())), "i", now);
        assert!(l.contains("skipped), killed by signal 64"), "{l}");
        // A timeout's or an admin's stop is the daemon's own signal: its outcome says it.
        for o in [Outcome::Timeout, Outcome::Killed] {
            r.outcome = Some(o);
            let l = job_line(&job(Some(r.clone())), "i", now);
            assert!(!l.contains("killed by signal"), "{l}");
        }
    }

    #[test]
    fn a_lost_output_is_at_least_warn() {
        let now = Utc::now();
        let mut r = rec(Outcome::Success, now);
        r.output_lost = true;
        assert!(job_line(&job(Some(r.clone())), "i", now).starts_with("1 "));
        r.outcome = Some(Outcome::Failure);
        assert!(job_line(&job(Some(r)), "i", now).starts_with("2 "));
    }

    #[test]
    fn runtime_levels_set_the_metric_and_the_state() {
        let now = Utc::now();
        let mut j = job(Some(rec(Outcome::Success, now)));
        j.checkmk.runtime_warn_s = Some(10.0);
        j.checkmk.runtime_crit_s = Some(90.0);
        let l = job_line(&j, "i", now);
        assert!(
            l.starts_with("1 \"Robotmk i web\" runtime=12.300;10;90|"),
            "{l}"
        );
        assert!(l.contains("reached the warning level of 10s"), "{l}");
        j.checkmk.runtime_crit_s = Some(12.0);
        let l = job_line(&j, "i", now);
        assert!(
            l.starts_with("2 ") && l.contains("critical level of 12s"),
            "{l}"
        );
        j.checkmk.runtime_warn_s = None;
        j.checkmk.runtime_crit_s = Some(60.0);
        let l = job_line(&j, "i", now);
        assert!(
            l.starts_with("0 \"Robotmk i web\" runtime=12.300;;60|"),
            "{l}"
        );
        // A failure stays CRIT whatever the runtime.
        let mut f = job(Some(rec(Outcome::Failure, now)));
        f.checkmk.runtime_warn_s = Some(100.0);
        assert!(job_line(&f, "i", now).starts_with("2 "));
    }

    /// A time that is no time (`inf`, `NaN`, negative, as a result file may hold it, or a
    /// record from before the readers checked) is unknown: no `runtime=inf` for the core, no
    /// level it reaches, no `suite_runtime`, and the text says so.
    #[test]
    fn a_runtime_that_is_no_number_is_unknown() {
        use crate::model::record::{TestResult, TestStatus};
        let now = Utc::now();
        let mut r = rec(Outcome::Failure, now);
        let test = |name: &str, status: TestStatus, e: f64| TestResult {
            suite: "S".into(),
            name: name.into(),
            status,
            elapsed_s: Some(e),
            ..Default::default()
        };
        r.tests = Some(TestStats {
            passed: 3,
            failed: 1,
            elapsed_s: Some(f64::INFINITY),
            results: vec![
                test("endless", TestStatus::Pass, f64::INFINITY),
                test("undefined", TestStatus::Fail, f64::NAN),
                test("backwards", TestStatus::Pass, -5.0),
                test("ok", TestStatus::Pass, 0.5),
            ],
            ..Default::default()
        });
        let mut j = job(Some(r));
        j.services = Services::PerTest;
        j.test_runtime_warn_s = Some(2.0);
        j.test_runtime_crit_s = Some(3.0);
        let lines: Vec<String> = test_templates(&j, "i")
            .iter()
            .map(|t| t.render(now))
            .collect();
        assert_eq!(
            lines[..3],
            [
                "0 \"Robotmk i web endless\" - OK - PASS (runtime unknown)",
                "2 \"Robotmk i web undefined\" - CRIT - FAIL (runtime unknown)",
                "0 \"Robotmk i web backwards\" - OK - PASS (runtime unknown)",
            ],
            "{lines:?}"
        );
        assert_eq!(
            lines[3],
            "0 \"Robotmk i web ok\" runtime=0.500;2.000;3.000 OK - PASS in 0.50s"
        );
        let l = job_line(&j, "i", now);
        assert!(
            !l.contains("suite_runtime")
                && !l.contains("inf")
                && !l.contains("NaN")
                && !l.contains("-5"),
            "{l}"
        );
    }

    /// A config error quotes the file (`"a\nb" contains '\n'`): the daemon line stays one
    /// line for Checkmk, with no details.
    /// What a local line must be for Checkmk: `STATE "NAME" METRICS WORD - TEXT` on one line,
    /// the name ending at its closing quote.
    fn well_formed(line: &str, state: u8, name: &str) {
        assert!(!line.contains(['\n', '\r']), "{line:?}");
        let rest = line
            .strip_prefix(&format!("{state} \""))
            .unwrap_or_else(|| panic!("{line:?}"));
        let (got, rest) = rest.split_once("\" ").unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(got, name, "{line:?}");
        let (metrics, rest) = rest.split_once(' ').unwrap();
        assert!(!metrics.is_empty(), "{line:?}");
        assert!(
            rest.starts_with(&format!("{} - ", state_word(state))),
            "{line:?}"
        );
    }

    /// The lines not made from a job's template — the daemon's, an instance that cannot be
    /// shown (`service::others`), ctrl's death (`app::ctrl`'s safety net), a paused check —
    /// stay one well-formed line whatever their parts hold: a line break would start a line
    /// (a check, a section) of its own, a quote would end the service name early.
    #[test]
    fn every_local_line_is_one_line_with_its_name_quoted() {
        for bad in ["a\nb", "a\rb", "a\"b", "a\r\n2 \"Robotmk x\" - OK - forged"] {
            let plain = bad.replace(['\n', '\r'], " ").replace('"', "”");
            // ctrl's safety net: the instance as the config said it, not yet checked.
            let line = local_line(
                2,
                &daemon_service(bad),
                "-",
                "ctrl (the agent plugin) died: ",
            );
            well_formed(&line, 2, &format!("Robotmk {plain} daemon"));
            // A paused check: its metrics and the text before the pause as they came.
            let line = local_line(1, bad, &format!("runtime=1 {bad}"), bad);
            well_formed(&line, 1, &plain);
            // An instance that cannot be shown: the error quotes whatever its path holds.
            let section = error_section(bad, &format!("cannot read the instance at /x/{bad}"));
            let lines: Vec<&str> = section.lines().collect();
            assert_eq!(lines.len(), 2, "{section:?}");
            assert_eq!(lines[0], LOCAL_HEADER);
            well_formed(lines[1], 2, &plain);
            assert!(!lines[1].contains("\\n"), "{section:?}");
        }
    }

    /// The report of instance `sys` with nothing in it: each test sets what it looks at.
    fn bare_report() -> Report {
        Report {
            instance: Some("sys".into()),
            config: "/c".into(),
            config_error: None,
            state_dir: None,
            daemon: Default::default(),
            ctrl: None,
            jobs: Vec::new(),
            envs: Vec::new(),
            paused: None,
            config_warnings: Vec::new(),
            section_cut: None,
            generated: Utc::now(),
        }
    }

    /// A process holds the lock but no status of its own is there yet: a daemon starting (or
    /// stuck before its first status), WARN, never OK with "pid ?".
    #[test]
    fn a_locked_instance_without_its_status_is_starting() {
        let mut report = bare_report();
        report.daemon.running = true;
        let l = daemon_line(&report, "sys", None);
        assert!(
            l.starts_with("1 \"Robotmk sys daemon\" - WARN - starting: "),
            "{l}"
        );
        report.daemon.pid = Some(7);
        report.daemon.phase = Some(crate::model::status::Phase::Stopped);
        assert!(daemon_line(&report, "sys", None).contains("WARN - starting: "));
        report.daemon.phase = Some(crate::model::status::Phase::Running);
        assert!(daemon_line(&report, "sys", None).contains("OK - running, pid 7"));
    }

    /// An admin's `run-once` holding the instance is no daemon running the schedule (W2 F7).
    #[test]
    fn a_run_once_holding_the_instance_is_warn_and_says_so() {
        let mut report = bare_report();
        report.daemon.running = true;
        report.daemon.pid = Some(7);
        report.daemon.phase = Some(crate::model::status::Phase::Running);
        assert!(daemon_line(&report, "sys", None).contains("OK - running, pid 7"));
        report.daemon.route = Some(crate::model::status::Route::RunOnce);
        let l = daemon_line(&report, "sys", None);
        assert!(
            l.starts_with("1 \"Robotmk sys daemon\" - WARN - running, pid 7"),
            "{l}"
        );
        assert!(l.contains("no scheduled run starts until it ends"), "{l}");
    }

    /// The daemon line goes by what kind of error the daemon reported, never by its words: a
    /// reworded message changes no state, and an edit whose error happens to quote "the user
    /// database changed" is a rejected edit.
    #[test]
    fn the_daemon_line_goes_by_the_kind_of_config_error() {
        let line = |kind, text: &str| {
            let mut report = bare_report();
            report.daemon.running = true;
            report.daemon.pid = Some(7);
            report.daemon.config_error = Some(text.into());
            report.daemon.config_error_kind = kind;
            daemon_line(&report, "sys", None)
        };
        let held = "; the jobs of users not found or expired are held, not run";
        for kind in [ConfigErrorKind::UsersChanged, ConfigErrorKind::UsersHeld] {
            let l = line(Some(kind), "user robot: no such user");
            assert!(
                l.starts_with("1 \"Robotmk sys daemon\" - WARN - user robot"),
                "{l}"
            );
            assert!(l.ends_with(held), "{l}");
        }
        for kind in [Some(ConfigErrorKind::Rejected), None] {
            let l = line(kind, "the user database changed: line 3: bad key");
            assert!(l.contains("WARN - config edit rejected"), "{l}");
            assert!(!l.contains(held), "{l}");
        }
    }

    #[test]
    fn the_daemon_line_has_no_details_whatever_the_error_quotes() {
        let report = Report {
            config_error: Some("job name \"a\\nb\" contains '\\n'".into()),
            ..bare_report()
        };
        let line = daemon_line(&report, "sys", None);
        assert!(
            line.starts_with("2 \"Robotmk sys daemon\" - CRIT - config error"),
            "{line}"
        );
        assert!(!line.contains("\\n"), "{line}");
        assert!(line.contains("a⧵nb"), "{line}");
    }

    #[test]
    fn piggybacked_jobs_go_between_the_markers() {
        let now = Utc::now();
        let mut shop = job(Some(rec(Outcome::Success, now)));
        shop.name = "shop".into();
        shop.checkmk.host = Some("shop.example.com".into());
        let mut bad = job(None);
        bad.name = "bad".into();
        bad.checkmk.host = Some("x>>>>\n<<<evil>>>".into());
        let report = Report {
            instance: Some("sys".into()),
            config: "/c".into(),
            config_error: None,
            state_dir: None,
            daemon: Default::default(),
            ctrl: None,
            jobs: vec![job(None), shop, bad],
            envs: Vec::new(),
            paused: None,
            config_warnings: Vec::new(),
            section_cut: None,
            generated: now,
        };
        let out = render(&report);
        let lines: Vec<&str> = out.lines().collect();
        let at = lines
            .iter()
            .position(|l| *l == "<<<<shop.example.com>>>>")
            .unwrap();
        assert_eq!(lines[at + 1], JOB_SECTION_HEADER);
        let doc: serde_json::Value = serde_json::from_str(lines[at + 2]).unwrap();
        assert_eq!(doc["job"]["name"], "shop");
        assert_eq!(doc["job"]["host"], "shop.example.com");
        assert_eq!(lines[at + 3], LOCAL_HEADER);
        assert!(lines[at + 4].starts_with("0 \"Robotmk sys shop\""), "{out}");
        assert_eq!(lines[at + 5], "<<<<>>>>");
        assert_eq!(lines.len(), at + 6, "{out}");
        // The daemon line and the agent host's jobs come first; a host name that could break
        // the markers keeps its job on the agent's host.
        assert!(lines[3].contains("daemon"), "{out}");
        assert!(
            lines[..at].iter().any(|l| l.contains("Robotmk sys bad")),
            "{out}"
        );
        assert!(
            !lines[at..].iter().any(|l| l.contains("Robotmk sys web")),
            "{out}"
        );
        assert!(!out.contains("<<<evil>>>\n"), "{out}");
    }

    /// T7's finding 6: a state Checkmk's local grammar has no digit for (another instance's
    /// status file is its owner's to write) made a line Checkmk's parser rejects ("Invalid
    /// plug-in status 7"), the check crashing. Every line's state is one of 0-3.
    #[test]
    fn a_state_checkmk_has_no_digit_for_is_unknown() {
        for state in [4u8, 7, 9, 10, 255] {
            let line = local_line(state, "x", "-", "t");
            assert_eq!(line, "3 \"x\" - UNKNOWN - t");
            let now = Utc::now();
            let mut r = rec(Outcome::Success, now);
            r.tests = None;
            r.plugin = Some(Box::new(crate::logic::nagios::parse(
                "PJ OK | v=1",
                0,
                None,
            )));
            let mut j = job(Some(r));
            j.last.as_mut().unwrap().plugin.as_mut().unwrap().state = state;
            let line = job_line(&j, "i", now);
            assert!(
                line.starts_with(&format!(
                    "3 \"Robotmk i web\" runtime=12.300|v=1 UNKNOWN - PJ OK (state {state} is none of Checkmk's (0-3), shown as UNKNOWN), last run "
                )),
                "{line}"
            );
        }
    }

    /// T7's findings 1 and 3: the agent's mode of the call, not the one the report knows of
    /// (another instance's report has no ctrl of this call), decides how times read; and a
    /// pause older than its warn age says since when, not for how long, when the agent
    /// serves the output for minutes.
    #[test]
    fn the_callers_cached_mode_makes_every_time_absolute_a_pauses_too() {
        let now = Utc::now();
        let mut report = bare_report();
        report.generated = now;
        let mut r = rec(Outcome::Success, now - chrono::Duration::seconds(90));
        r.tests = None;
        report.jobs = vec![job(Some(r))];
        let sync = render(&report);
        assert!(sync.contains("OK - last run 90s ago: success"), "{sync}");
        let mode = "cached 300s (plugins/300/)";
        let cached = render_as(&report, None, Some(mode));
        assert!(!cached.contains(" ago"), "{cached}");
        assert!(
            cached.contains(&format!(
                "OK - last run at {}: success",
                crate::logic::cached_view::time(now - chrono::Duration::seconds(90))
            )),
            "{cached}"
        );
        // The daemon's line too (W3 F3): how long it has run, and when this call started it.
        report.daemon.running = true;
        report.daemon.pid = Some(7);
        report.daemon.phase = Some(crate::model::status::Phase::Running);
        report.daemon.started = Some(now - chrono::Duration::seconds(7200));
        report.daemon.uptime_s = Some(7200.0);
        let sync = render(&report);
        assert!(sync.contains("OK - running, pid 7, up 2h"), "{sync}");
        let cached = render_as(&report, None, Some(mode));
        let at = |t| crate::logic::cached_view::time(t);
        let up = format!(
            "OK - running, pid 7, up since {}",
            at(now - chrono::Duration::seconds(7200))
        );
        assert!(cached.contains(&up), "{cached}");
        report.ctrl = Some(crate::model::report::CtrlReport {
            action: CtrlAction::Started,
            mode: None,
            route: None,
            note: None,
            error: None,
            duration_ms: 0.0,
        });
        let cached = render_as(&report, None, Some(mode));
        assert!(
            cached.contains(&format!(", started at {} via ?", at(now))),
            "{cached}"
        );
        report.ctrl = None;
        let since = now - chrono::Duration::seconds(7200);
        let mut state = crate::model::pause::PauseState::default();
        state.jobs.insert(
            "web".into(),
            crate::model::pause::Pause {
                by: "alice".into(),
                since,
                until: None,
            },
        );
        let pause = PauseView {
            state,
            warn_after: std::time::Duration::from_secs(3600),
            now,
        };
        let sync = render_as(&report, Some(&pause), None);
        assert!(
            sync.contains("1 \"Robotmk sys web\" runtime=12.300 WARN - paused by alice until resumed (paused for 2h, longer than 1h); before the pause: last run 90s ago"),
            "{sync}"
        );
        let cached = render_as(&report, Some(&pause), Some(mode));
        assert!(
            cached.contains(&format!(
                "1 \"Robotmk sys web\" runtime=12.300 WARN - paused by alice until resumed (paused since {}, longer than 1h); before the pause: last run at ",
                crate::logic::cached_view::time(since)
            )),
            "{cached}"
        );
        assert!(!cached.contains(" ago"), "{cached}");
    }

    /// T7's finding 5 (in part): tests left out of the record's per-test detail get no
    /// per-test service; the job's line said only "per-test detail for 1000 of 1200 tests",
    /// and Checkmk saw the others' services vanish. With per-test services the job is WARN
    /// and names how many tests have none.
    #[test]
    fn tests_without_a_per_test_service_make_the_job_warn_and_are_counted() {
        let now = Utc::now();
        let mut j = detailed("shop", Outcome::Success, 3);
        j.last.as_mut().unwrap().finished = Some(now);
        j.last
            .as_mut()
            .unwrap()
            .tests
            .as_mut()
            .unwrap()
            .results_omitted = 200;
        let line = job_line(&j, "big", now);
        assert!(line.starts_with("0 \"Robotmk big shop\" "), "{line}");
        assert!(!line.contains("no per-test service"), "{line}");
        j.services = Services::PerTest;
        let line = job_line(&j, "big", now);
        assert!(line.starts_with("1 \"Robotmk big shop\" "), "{line}");
        assert!(
            line.contains("per-test detail for 3 of 203 tests; no per-test service for 200 tests (per-test services come from that detail: at most 1000 tests and 512 KiB of it, failed tests first)"),
            "{line}"
        );
        let all = body(&[j], "big");
        assert_eq!(all.len(), 4, "the job's line and one per test kept");
    }

    /// With the list of every test (`services`), each test has its line, the ones without
    /// detail too (named from the list, their state from their status), the job is not WARN
    /// for the detail's cap, and only tests beyond the list's own bound are counted, WARN.
    #[test]
    fn every_listed_test_has_its_line_with_or_without_detail() {
        use crate::model::record::TestService;
        let now = Utc::now();
        let mut j = detailed("shop", Outcome::Failure, 2);
        j.services = Services::PerTest;
        let l = j.last.as_mut().unwrap();
        l.finished = Some(now);
        let t = l.tests.as_mut().unwrap();
        // The detail kept tests 2 and 0 (failed first); the list has all four, in order.
        t.results[0].index = Some(2);
        t.results[0].name = "Pay \"now\"".into();
        t.results[1].index = Some(0);
        t.results_omitted = 2;
        t.services = Some(vec![
            TestService(t.results[1].name.clone(), TestStatus::Fail),
            TestService("Ünïcode 'x' \"y\"\nz".into(), TestStatus::Pass),
            TestService("Pay ”now”".into(), TestStatus::Fail),
            TestService("Skipped one".into(), TestStatus::Skip),
        ]);
        let line = job_line(&j, "i", now);
        assert!(line.starts_with("2 \"Robotmk i shop\" "), "{line}");
        assert!(
            line.contains("per-test detail for 2 of 4 tests") && !line.contains("no per-test"),
            "{line}"
        );
        let lines: Vec<String> = test_templates(&j, "i")
            .iter()
            .map(|t| t.render(now))
            .collect();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        for (l, state) in lines.iter().zip([2, 0, 2, 0]) {
            well_formed(l, state, l.split('"').nth(1).unwrap());
        }
        assert!(
            lines[0].contains("CRIT - FAIL in 0.50s: mmm"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("0 \"Robotmk i shop Ünïcode ’x’ ”y” z\" - OK - PASS (runtime unknown: beyond the per-test detail kept"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2]
                .starts_with("2 \"Robotmk i shop Pay ”now”\" runtime=0.500 CRIT - FAIL in 0.50s"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains("OK - SKIP (runtime unknown"),
            "{}",
            lines[3]
        );
        // Beyond the list's own bound: counted, WARN at least.
        let t = j.last.as_mut().unwrap().tests.as_mut().unwrap();
        t.services_omitted = 7;
        t.failed = 0;
        j.last.as_mut().unwrap().outcome = Some(Outcome::Success);
        let line = job_line(&j, "i", now);
        assert!(line.starts_with("1 \"Robotmk i shop\" "), "{line}");
        assert!(
            line.contains("; no per-test service for 7 tests (per-test services are listed for the first 20000 tests robot ran and 1024 KiB of their names)"),
            "{line}"
        );
    }
}
