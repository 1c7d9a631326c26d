//! `history JOB` and `show JOB [RUN]`: what an admin paged at night wants to know about a
//! job's runs without opening JSON files — a table of recent runs with a strip of outcomes
//! and a sparkline of runtimes (the trend at a glance), and one run in words with the tail of
//! its output and where robot's log.html is.
//!
//! Everything here only reads: the run folders are listed, and each record and output file is
//! opened through [`crate::service::sys::file`] (no symlinks, no FIFOs, capped reads) after the config
//! and state dir passed the trust check, as in `status`. Text that came from files is cut to a
//! sane length and has its control characters escaped before it reaches the terminal.

use crate::app::term::{sanitize, Style};
use crate::model::config::Config;
use crate::model::record::{Outcome, RunRecord};
use crate::service::config::{self};
use crate::service::state::record::{self};
use crate::service::state::StateDir;
use crate::service::sys::file;
use chrono::{DateTime, Local, Utc};
use serde_json::json;
use std::fmt::Write as _;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// An instance as the read-only commands see it: located through the config (or, when the
/// config is broken, leniently, as `status` does), its paths checked.
pub(crate) struct Target {
    pub(crate) instance: String,
    pub(crate) state: StateDir,
    pub(crate) config: Option<Config>,
}

/// Finds the instance of the config at `path` and checks that its config and state dir may be
/// trusted. On failure, the message has been printed; the error is the exit code.
pub(crate) fn locate(path: &Path) -> Result<Target, i32> {
    // Only shown, never run: the jobs' users need no lookup.
    let (config, located) = match config::load_with(path, crate::model::config::Users::NamesOnly) {
        Ok(c) => {
            let l = (c.daemon.instance.clone(), c.daemon.state_dir.clone());
            (Some(c), Some(l))
        }
        Err(e) => {
            eprintln!("robotmk-daemon: warning: config error: {e}");
            (None, config::locate_daemon(path))
        }
    };
    let Some((instance, dir)) = located else {
        eprintln!(
            "robotmk-daemon: cannot tell which state dir the config at {} uses",
            path.display()
        );
        return Err(2);
    };
    // Records name paths and carry runners' text; from a state dir another user could change
    // they would be planted. The same check as `status`.
    if let Err(e) = crate::service::security::check_config(path)
        .and_then(|_| crate::service::security::check_state_dir(&dir))
    {
        eprintln!("robotmk-daemon: {e}");
        return Err(1);
    }
    Ok(Target {
        instance,
        state: StateDir::new(dir),
        config,
    })
}

/// Checks that `job` is a job of the target: one the config names, or one with a folder in
/// the state dir (a job removed from the config, or any with a broken config). The name never
/// leaves the job's folder (no `..`, no separators).
fn check_job(t: &Target, job: &str) -> Result<(), i32> {
    let plain = !job.is_empty()
        && job != "."
        && job != ".."
        && job
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if let Some(cfg) = &t.config {
        if cfg.jobs.iter().any(|j| *j.name == *job) {
            return Ok(());
        }
        // A job removed from the config keeps its runs until the folder is deleted: what it
        // did last is still worth seeing.
        if plain && t.state.runs_dir(job).is_dir() {
            eprintln!("robotmk-daemon: note: job {job:?} is not in the config any more");
            return Ok(());
        }
        let names: Vec<&str> = cfg.jobs.iter().map(|j| &*j.name).collect();
        eprintln!(
            "robotmk-daemon: no job {job:?} in {}; jobs: {}",
            cfg.path.display(),
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        );
        return Err(2);
    }
    if plain && t.state.job_dir(job).is_dir() {
        return Ok(());
    }
    eprintln!(
        "robotmk-daemon: no job {job:?} in {}",
        t.state.jobs_dir().display()
    );
    Err(2)
}

/// One run folder as listed: its id, folder, and its record or why it cannot be read.
pub(crate) struct Run {
    pub(crate) run_id: String,
    pub(crate) run_dir: PathBuf,
    pub(crate) record: Result<RunRecord, String>,
}

fn load_run(run_id: String, run_dir: PathBuf) -> Run {
    let record = match record::read_record(&run_dir) {
        Ok(Some(mut r)) => {
            r.clip();
            Ok(r)
        }
        Ok(None) => Err("no record.json".to_string()),
        Err(e) => Err(e.to_string()),
    };
    Run {
        run_id,
        run_dir,
        record,
    }
}

/// The newest `n` runs of `job`, newest first, and how many folders there are in all.
pub(crate) fn recent_runs(st: &StateDir, job: &str, n: usize) -> io::Result<(Vec<Run>, usize)> {
    let all = record::list_runs(st, job)?;
    let total = all.len();
    let runs = all
        .into_iter()
        .rev()
        .take(n)
        .map(|(id, dir)| load_run(id, dir))
        .collect();
    Ok((runs, total))
}

/// `history JOB [-n N] [--json]`.
pub(crate) fn history(path: &Path, job: &str, n: usize, json: bool) -> i32 {
    let t = match locate(path) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if let Err(code) = check_job(&t, job) {
        return code;
    }
    let (runs, total) = match recent_runs(&t.state, job, n) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            return 1;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&history_json(&t, job, &runs, total)).unwrap_or_default()
        );
    } else {
        print!("{}", crate::app::pause::history_line(&t.state, job));
        print!(
            "{}",
            history_table(&t.instance, job, &runs, total, Style::stdout())
        );
    }
    0
}

/// The JSON of `history --json`: the records as stored, newest first; a folder whose record
/// cannot be read is listed with the reason, so a script sees every folder.
pub(crate) fn history_json(t: &Target, job: &str, runs: &[Run], total: usize) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| match &r.record {
            Ok(rec) => serde_json::to_value(rec).unwrap_or_default(),
            Err(e) => json!({"run_id": r.run_id, "run_dir": r.run_dir, "error": e}),
        })
        .collect();
    json!({
        "instance": t.instance,
        "job": job,
        "state_dir": t.state.root,
        "runs_kept": total,
        "runs": runs,
    })
}

/// Where a run stands as its record tells: ended (its outcome), running, or prepared ahead of
/// its due time and not started yet (the daemon makes the folder early; it is no run yet).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stands {
    Ended(Outcome),
    Running,
    Due,
}

fn stands(rec: &RunRecord) -> Stands {
    match (rec.outcome, rec.started) {
        (Some(o), _) => Stands::Ended(o),
        (None, Some(_)) => Stands::Running,
        (None, None) => Stands::Due,
    }
}

/// Symbol, ASCII letter and colour of where a run stands.
fn outcome_mark(o: Stands) -> (&'static str, &'static str, &'static str) {
    // The ASCII letters follow pytest's progress line: `.` passed, `F` failed.
    match o {
        Stands::Ended(Outcome::Success) => ("✔", ".", "32"),
        Stands::Ended(Outcome::Failure) => ("✘", "F", "31"),
        Stands::Ended(Outcome::Timeout) => ("⏱", "T", "31"),
        Stands::Ended(Outcome::Error) => ("!", "E", "31"),
        Stands::Ended(Outcome::Killed) => ("☠", "K", "33"),
        Stands::Ended(Outcome::Interrupted) => ("↯", "I", "33"),
        Stands::Ended(Outcome::Skipped) => ("·", "s", "2"),
        Stands::Running => ("▶", "R", "36"),
        Stands::Due => ("…", "D", "2"),
    }
}

fn outcome_word(o: Stands) -> &'static str {
    match o {
        Stands::Ended(o) => o.as_str(),
        Stands::Running => "running",
        Stands::Due => "due",
    }
}

fn local(t: DateTime<Utc>, fmt: &str) -> String {
    t.with_timezone(&Local).format(fmt).to_string()
}

/// The start time, short when it is on the due time's day.
fn started_cell(r: &RunRecord) -> String {
    match r.started {
        None => "-".into(),
        Some(s) if local(s, "%F") == local(r.due, "%F") => local(s, "%H:%M:%S"),
        Some(s) => local(s, "%m-%d %H:%M"),
    }
}

fn secs(d: f64) -> String {
    if d < 1.0 {
        format!("{d:.3}s")
    } else if d < 100.0 {
        format!("{d:.1}s")
    } else {
        crate::model::duration::human_age(d)
    }
}

/// Eight levels of a sparkline.
const SPARK_UTF8: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const SPARK_ASCII: [char; 8] = ['_', '.', ',', '-', '~', '=', '*', '#'];

/// A sparkline of `values` (oldest first); a run without a runtime is a blank.
pub(crate) fn sparkline(values: &[Option<f64>], utf8: bool) -> String {
    let levels = if utf8 { &SPARK_UTF8 } else { &SPARK_ASCII };
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    let (min, max) = known
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if max - min < 1e-9 => levels[3],
            Some(v) => {
                let i = ((v - min) / (max - min) * 7.0).round() as usize;
                levels[i.min(7)]
            }
        })
        .collect()
}

/// The `history` table for people.
pub(crate) fn history_table(
    instance: &str,
    job: &str,
    runs: &[Run],
    total: usize,
    s: Style,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "job {job} of instance {instance}: {} of {total} run(s) kept, newest first",
        runs.len()
    );
    if runs.is_empty() {
        let _ = writeln!(o, "no runs yet");
        return o;
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<19}  {:<11}  {:<11}  {:>8}  {:>11}  {:>8}  RUN ID",
        "DUE", "STARTED", "OUTCOME", "RUNTIME", "TESTS P/F/S", "ATTEMPTS"
    );
    for r in runs {
        let line = run_line(r, s);
        let _ = writeln!(o, "{}", line.trim_end());
    }
    trend_lines(&mut o, runs, s);
    o
}

/// One run's line of the table.
fn run_line(r: &Run, s: Style) -> String {
    match &r.record {
        Ok(rec) => {
            let (_, _, colour) = outcome_mark(stands(rec));
            let outcome = s.paint(colour, &format!("{:<11}", outcome_word(stands(rec))));
            let tests = rec.tests.as_ref().map_or("-".into(), |t| {
                format!("{}/{}/{}", t.passed, t.failed, t.skipped)
            });
            let attempts = if !rec.attempts.is_empty() {
                rec.attempts.len().to_string()
            } else if rec.started.is_some() {
                "1".into()
            } else {
                "-".into()
            };
            format!(
                "{:<19}  {:<11}  {outcome}  {:>8}  {:>11}  {:>8}  {}",
                local(rec.due, "%Y-%m-%d %H:%M:%S"),
                started_cell(rec),
                rec.duration_s.map_or("-".into(), secs),
                tests,
                attempts,
                r.run_id
            )
        }
        Err(e) => {
            let due = crate::model::record::due_of_run_id(&r.run_id)
                .map_or("-".into(), |d| local(d, "%Y-%m-%d %H:%M:%S"));
            let outcome = s.paint("31", &format!("{:<11}", "unreadable"));
            let mut e = sanitize(e);
            crate::model::clip::clip(&mut e, crate::model::clip::MAX_TEXT);
            format!(
                "{due:<19}  {:<11}  {outcome}  {:>8}  {:>11}  {:>8}  {} ({e})",
                "-", "-", "-", "-", r.run_id
            )
        }
    }
}

/// The outcomes and runtimes of the runs shown, oldest to newest, as strips.
fn trend_lines(o: &mut String, runs: &[Run], s: Style) {
    // The trend reads left to right, oldest to newest, as in a chart.
    let oldest_first: Vec<&Run> = runs.iter().rev().collect();
    let arrow = if s.utf8 { "→" } else { "->" };
    let mut strip = String::new();
    let mut seen: Vec<Stands> = Vec::new();
    for r in &oldest_first {
        match &r.record {
            Ok(rec) => {
                let (sym, letter, colour) = outcome_mark(stands(rec));
                strip.push_str(&s.paint(colour, if s.utf8 { sym } else { letter }));
                if !seen.contains(&stands(rec)) {
                    seen.push(stands(rec));
                }
            }
            Err(_) => strip.push('?'),
        }
    }
    let legend: Vec<String> = seen
        .iter()
        .map(|o| {
            let (sym, letter, _) = outcome_mark(*o);
            format!("{} {}", if s.utf8 { sym } else { letter }, outcome_word(*o))
        })
        .collect();
    let _ = writeln!(*o);
    let _ = writeln!(
        *o,
        "outcomes (oldest {arrow} newest): {strip}   ({})",
        legend.join(", ")
    );
    let durations: Vec<Option<f64>> = oldest_first
        .iter()
        .map(|r| r.record.as_ref().ok().and_then(|rec| rec.duration_s))
        .collect();
    let known: Vec<f64> = durations.iter().flatten().copied().collect();
    if !known.is_empty() {
        let min = known.iter().copied().fold(f64::INFINITY, f64::min);
        let max = known.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            *o,
            "runtimes (oldest {arrow} newest): {}   (min {}, max {})",
            sparkline(&durations, s.utf8),
            secs(min),
            secs(max)
        );
    }
}

/// A run id that names no run, or more than one.
#[derive(Debug, thiserror::Error)]
enum PickError {
    #[error("no runs yet")]
    NoRuns,
    #[error("no run {0:?}")]
    None(String),
    #[error("{want:?} matches {count} runs: {}", .newest.join(", "))]
    Many {
        want: String,
        count: usize,
        newest: Vec<String>,
    },
}

/// Picks a run by id: exact, else a unique prefix.
fn pick<'a>(runs: &'a [(String, PathBuf)], want: &str) -> Result<&'a (String, PathBuf), PickError> {
    if let Some(r) = runs.iter().find(|(id, _)| id == want) {
        return Ok(r);
    }
    let matches: Vec<&(String, PathBuf)> =
        runs.iter().filter(|(id, _)| id.starts_with(want)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(PickError::None(want.to_string())),
        many => Err(PickError::Many {
            want: want.to_string(),
            count: many.len(),
            newest: many.iter().rev().take(5).map(|r| r.0.clone()).collect(),
        }),
    }
}

/// `show JOB [RUN] [-n N]`.
pub(crate) fn show(path: &Path, job: &str, run: Option<&str>, lines: usize) -> i32 {
    let t = match locate(path) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if let Err(code) = check_job(&t, job) {
        return code;
    }
    let all = match record::list_runs(&t.state, job) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            return 1;
        }
    };
    let chosen = match run {
        None => all.last().ok_or(PickError::NoRuns),
        Some(want) => pick(&all, want),
    };
    let (id, dir) = match chosen {
        Ok(r) => r.clone(),
        Err(e) => {
            let recent: Vec<&str> = all.iter().rev().take(5).map(|r| r.0.as_str()).collect();
            eprintln!(
                "robotmk-daemon: job {job}: {e}{}",
                if recent.is_empty() {
                    String::new()
                } else {
                    format!("; recent runs: {}", recent.join(", "))
                }
            );
            return 2;
        }
    };
    let r = load_run(id, dir);
    print!("{}", show_text(job, &r, lines, Style::stdout()));
    if r.record.is_ok() {
        0
    } else {
        1
    }
}

/// One run in words, with the tails of its output.
pub(crate) fn show_text(job: &str, r: &Run, lines: usize, s: Style) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "job {job}, run {}", r.run_id);
    match &r.record {
        Err(e) => {
            field(&mut o, "record", &s.paint("31", &sanitize(e)));
        }
        Ok(rec) => {
            show_record(&mut o, rec, s);
        }
    }
    field(&mut o, "run dir", &r.run_dir.display().to_string());
    let rec = r.record.as_ref().ok();
    let log = rec
        .and_then(|x| x.log.clone())
        .or_else(|| existing(&r.run_dir.join("log.html")));
    let report = rec
        .and_then(|x| x.report.clone())
        .or_else(|| existing(&r.run_dir.join("report.html")));
    if let Some(l) = log {
        field(&mut o, "log", &l.display().to_string());
    }
    if let Some(l) = report {
        field(&mut o, "report", &l.display().to_string());
    }
    show_output(&mut o, &r.run_dir, lines);
    o
}

/// A time as `show` prints it: local, to the millisecond.
fn ts(t: DateTime<Utc>) -> String {
    local(t, "%Y-%m-%d %H:%M:%S%.3f %Z")
}

/// One `key: value` line of `show`, the values aligned.
fn field(o: &mut String, k: &str, v: &str) {
    let _ = writeln!(o, "{:<10} {}", format!("{k}:"), v);
}

/// `show`: what the run's record says — outcome, times, tests, attempts.
fn show_record(o: &mut String, rec: &RunRecord, s: Style) {
    let (_, _, colour) = outcome_mark(stands(rec));
    let mut outcome = s.paint(colour, outcome_word(stands(rec)));
    if let Some(c) = rec.exit_code {
        let _ = write!(outcome, ", exit code {c}");
    }
    if let Some(sig) = rec.signal {
        let _ = write!(outcome, ", signal {sig}");
    }
    field(o, "outcome", &outcome);
    if let Some(n) = &rec.note {
        field(o, "note", &sanitize(n));
    }
    let trigger = serde_json::to_value(rec.trigger)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    field(o, "trigger", &trigger);
    field(o, "due", &ts(rec.due));
    if let Some(st) = rec.started {
        let late = (st - rec.due).num_milliseconds() as f64 / 1000.0;
        field(
            o,
            "started",
            &format!("{} ({} after due)", ts(st), secs(late.max(0.0))),
        );
    }
    if let Some(f) = rec.finished {
        field(o, "finished", &ts(f));
    }
    let timeout = crate::model::duration::format(rec.timeout());
    field(
        o,
        "runtime",
        &match rec.duration_s {
            Some(d) => format!("{} (timeout {timeout})", secs(d)),
            None => format!("- (timeout {timeout})"),
        },
    );
    if let Some(pid) = rec.pid {
        field(o, "pid", &pid.to_string());
    }
    if let Some(t) = &rec.tests {
        show_tests(o, t, s);
    }
    for a in &rec.attempts {
        field(
            o,
            &format!("attempt {}", a.attempt),
            &format!(
                "ran {}: {} ({} passed, {} failed, {} skipped){}",
                a.ran.as_str(),
                sanitize(a.outcome.as_str()),
                a.passed,
                a.failed,
                a.skipped,
                a.exit_code
                    .map_or(String::new(), |c| format!(", exit code {c}"))
            ),
        );
    }
}

/// `show`: a run's test counts, suite, and its first ten failed tests.
fn show_tests(o: &mut String, t: &crate::model::record::TestStats, s: Style) {
    let mut v = format!(
        "{} passed, {} failed, {} skipped",
        t.passed, t.failed, t.skipped
    );
    if let Some(name) = &t.suite {
        let _ = write!(v, "; suite {}", sanitize(name));
        if let Some(st) = &t.suite_status {
            let _ = write!(v, ": {}", sanitize(st));
        }
    }
    if let Some(e) = t.elapsed_s {
        let _ = write!(v, "; robot's own time {}", secs(e));
    }
    field(o, "tests", &v);
    let failed: Vec<_> = t
        .results
        .iter()
        .filter(|x| x.status == crate::model::record::TestStatus::Fail)
        .collect();
    for x in failed.iter().take(10) {
        let msg = x.message.as_deref().map(sanitize).unwrap_or_default();
        let _ = writeln!(
            o,
            "  {} {}.{}: {msg}",
            s.paint("31", "FAIL"),
            sanitize(&x.suite),
            sanitize(&x.name)
        );
    }
    if failed.len() > 10 {
        let _ = writeln!(o, "  … and {} more failed", failed.len() - 10);
    }
}

/// `show`: the last `lines` lines of the run's stdout and stderr.
fn show_output(o: &mut String, run_dir: &Path, lines: usize) {
    for name in [
        crate::model::record::STDOUT_FILE,
        crate::model::record::STDERR_FILE,
    ] {
        let p = run_dir.join(name);
        let _ = writeln!(o);
        match tail_lines(&p, lines) {
            Ok(t) if t.lines.is_empty() => {
                let _ = writeln!(o, "{} (empty)", p.display());
            }
            Ok(t) => {
                let _ = writeln!(
                    o,
                    "{} ({} {} line(s)):",
                    p.display(),
                    if t.more_before { "last" } else { "all" },
                    t.lines.len()
                );
                for l in &t.lines {
                    let _ = writeln!(o, "  {}", sanitize(l));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let _ = writeln!(o, "{} (none)", p.display());
            }
            Err(e) => {
                let _ = writeln!(o, "{}: {}", p.display(), sanitize(&e.to_string()));
            }
        }
    }
}

/// `p` if it is a regular file (not a link: a run folder's content is the runner's).
fn existing(p: &Path) -> Option<PathBuf> {
    file::plain_metadata(p).map(|_| p.to_path_buf())
}

/// The last lines of a file.
pub(crate) struct Tail {
    pub(crate) lines: Vec<String>,
    /// Whether the file has more before these.
    pub(crate) more_before: bool,
}

/// Longest line kept in a tail; the rest is cut (a runner may print megabytes in one line).
const MAX_LINE: usize = 2000;
/// Most bytes read from the end of a file for a tail, however few newlines it has.
const MAX_TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// The last `n` lines of the file at `path`, opened as a state file (no symlink, no FIFO),
/// reading only from the end: a run's output may be gigabytes.
pub(crate) fn tail_lines(path: &Path, n: usize) -> io::Result<Tail> {
    let mut f = file::open_read(path)?;
    let len = f.metadata()?.len();
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        (&mut f).take(len - start).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let body = text.strip_suffix('\n').unwrap_or(&text);
        let mut all: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('\n').collect()
        };
        // The first piece may be the end of a line that began before the window.
        let complete = start == 0 || all.len() > n;
        if complete || window >= MAX_TAIL_BYTES || window >= len {
            // Unless it is all there is: the end of one line longer than the window (a
            // runner that wrote megabytes without a line break) is shown, cut, not hidden.
            if start > 0 && all.len() > 1 {
                all.remove(0);
            }
            let more_before = start > 0 || all.len() > n;
            let skip = all.len().saturating_sub(n);
            let lines = all[skip..]
                .iter()
                .map(|l| {
                    let mut l = l.trim_end_matches('\r').to_string();
                    crate::model::clip::clip(&mut l, MAX_LINE);
                    l
                })
                .collect();
            return Ok(Tail { lines, more_before });
        }
        window *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder prepared ahead of its due time (no start, no outcome) is "due", not "running".
    #[test]
    fn a_run_not_started_yet_is_due_not_running() {
        let mut rec: RunRecord = serde_json::from_value(serde_json::json!({
            "version": 1, "job": "j", "run_id": "20261206T011200Z-1", "run_dir": "/r",
            "due": "2026-12-06T01:12:00Z", "trigger": "schedule", "timeout_s": 60.0,
        }))
        .unwrap();
        assert_eq!(outcome_word(stands(&rec)), "due");
        rec.started = Some(rec.due);
        assert_eq!(outcome_word(stands(&rec)), "running");
        rec.outcome = Some(Outcome::Success);
        assert_eq!(outcome_word(stands(&rec)), "success");
    }

    #[test]
    fn sparkline_scales_between_min_and_max() {
        assert_eq!(
            sparkline(&[Some(1.0), Some(8.0), None, Some(4.5)], true),
            "▁█ ▅"
        );
        assert_eq!(sparkline(&[Some(1.0), Some(8.0)], false), "_#");
        assert_eq!(sparkline(&[Some(2.0), Some(2.0)], false), "--");
    }

    #[test]
    fn tail_reads_the_last_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.log");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        let t = tail_lines(&p, 3).unwrap();
        assert_eq!(t.lines, ["line 99997", "line 99998", "line 99999"]);
        assert!(t.more_before);
        std::fs::write(&p, "a\nb").unwrap();
        let t = tail_lines(&p, 10).unwrap();
        assert_eq!(t.lines, ["a", "b"]);
        assert!(!t.more_before);
        std::fs::write(&p, "").unwrap();
        assert!(tail_lines(&p, 10).unwrap().lines.is_empty());
    }

    /// Megabytes without a line break (a runner's one long line) show its end, cut to a
    /// line's length, not "(empty)".
    #[test]
    fn a_last_line_longer_than_the_window_is_shown_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.log");
        let text = format!("ERROR: the real cause\n{}tail end", "x".repeat(5 << 20));
        std::fs::write(&p, text).unwrap();
        let t = tail_lines(&p, 10).unwrap();
        assert_eq!(t.lines.len(), 1, "{:?}", t.lines.len());
        assert!(t.more_before);
        assert!(t.lines[0].chars().count() <= MAX_LINE + 1, "cut");
    }
}
