//! `history JOB`: a table of a job's recent runs with a strip of outcomes and a sparkline of
//! runtimes (the trend at a glance), or the same as JSON. Reads through `target.rs` and
//! `runs.rs`; writes only to stdout.

use super::runs::{recent_runs, Run};
use super::target::{check_job, locate, Target};
use super::words::*;
use crate::app::term::{sanitize, Style};
use crate::model::record::RunRecord;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

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

/// The start time, short when it is on the due time's day.
fn started_cell(r: &RunRecord) -> String {
    match r.started {
        None => "-".into(),
        Some(s) if local(s, "%F") == local(r.due, "%F") => local(s, "%H:%M:%S"),
        Some(s) => local(s, "%m-%d %H:%M"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_between_min_and_max() {
        assert_eq!(
            sparkline(&[Some(1.0), Some(8.0), None, Some(4.5)], true),
            "▁█ ▅"
        );
        assert_eq!(sparkline(&[Some(1.0), Some(8.0)], false), "_#");
        assert_eq!(sparkline(&[Some(2.0), Some(2.0)], false), "--");
    }
}
