//! `show JOB [RUN]`: one run in words, with its tests, the tail of its output and where
//! robot's log.html is. Reads through `target.rs`, `runs.rs` and `tail.rs`; writes only to
//! stdout.

use super::runs::{load_run, Run};
use super::tail::tail_lines;
use super::target::{check_job, locate};
use super::words::*;
use crate::app::term::{sanitize, Style};
use crate::model::record::RunRecord;
use crate::service::state::record::{self};
use crate::service::sys::file;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

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
