//! Robot Framework awareness: the result robot wrote (output.xml or Robot 7's output.json,
//! streamed with bounded memory: [`xml`], [`json`]), what its exit codes mean, and how a
//! finished run's record is completed from them: counts, per-test detail, robot's own
//! elapsed time, the outcome (a failed test fails the run whatever the exit code), the
//! attempts of a job with retries, and where log.html and report.html are.

pub mod attempts;
pub mod collect;
pub mod json;
pub mod xml;

use crate::state::record::{Attempt, Outcome, RunRecord, TestStats, STDERR_FILE, STDOUT_FILE};
use std::io::Read;
use std::path::{Path, PathBuf};

pub use collect::{MAX_TESTS, MAX_TEXT};

/// The file the wrapper of a job with retries writes its attempts to, in the run folder.
pub const ATTEMPTS_FILE: &str = "attempts.json";

/// Reads a result file: JSON when it is named `*.json` or starts with `{`, else XML.
pub fn read_result(path: &Path) -> Result<TestStats, String> {
    // The one safe open (no link, no FIFO: a runner's leftovers must not hang the daemon).
    let mut f = crate::state::file::open_read(path).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if meta.len() == 0 {
        return Err("the file is empty: robot was killed before it wrote anything".into());
    }
    let mut first = [0u8; 1];
    let mut head = Vec::new();
    // The first non-blank byte tells JSON from XML when the name does not.
    while head.len() < 4096 {
        match f.read(&mut first) {
            Ok(0) => break,
            Ok(_) => {
                head.push(first[0]);
                if !first[0].is_ascii_whitespace() {
                    break;
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let is_json = path.extension().is_some_and(|e| e == "json") || head.last() == Some(&b'{');
    let r = head.as_slice().chain(f);
    let parsed = if is_json { json::read(r) } else { xml::read(r) }?;
    parsed.ok_or_else(|| "it holds no suite".to_string())
}

/// What robot's exit code `code` means.
pub fn exit_meaning(code: i32) -> String {
    match code {
        0 => "all tests passed".into(),
        1 => "1 test failed".into(),
        2..=249 => format!("{code} tests failed"),
        250 => "250 or more tests failed".into(),
        251 => "help or version printed, no tests run".into(),
        252 => "invalid test data or command line options, no tests run".into(),
        253 => "execution stopped by the user (a signal)".into(),
        255 => "unexpected internal error".into(),
        _ => "not one of Robot Framework's exit codes".into(),
    }
}

/// The first `[ ERROR ]` line robot printed (stdout, then stderr), cut to [`MAX_TEXT`].
pub fn first_error_line(run_dir: &Path) -> Option<String> {
    for name in [STDOUT_FILE, STDERR_FILE] {
        let Ok(f) = crate::state::file::open_read(&run_dir.join(name)) else {
            continue;
        };
        // Robot prints its reason at once; the first MiB is plenty and bounds the read.
        let mut text = Vec::new();
        if f.take(1 << 20).read_to_end(&mut text).is_err() {
            continue;
        }
        let text = String::from_utf8_lossy(&text);
        if let Some(l) = text.lines().find(|l| l.contains("[ ERROR ]")) {
            return Some(collect::cap(l.trim()));
        }
    }
    None
}

fn add_note(rec: &mut RunRecord, note: String) {
    rec.note = Some(match rec.note.take() {
        Some(n) => format!("{n}; {note}"),
        None => note,
    });
}

/// The result file of a finished run: the one its job names, else an output.xml a command
/// job left in its run folder.
fn result_file(rec: &RunRecord) -> Option<PathBuf> {
    if let Some(r) = &rec.result {
        return Some(r.clone());
    }
    let xml = rec.run_dir.join("output.xml");
    xml.is_file().then_some(xml)
}

/// Completes a finished record from what robot left behind. Never fails the record: a
/// missing or broken result is a note.
pub fn annotate(rec: &mut RunRecord) {
    let Some(result) = result_file(rec) else {
        return;
    };
    let name = result
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    read_attempts(rec);
    let mut have_result = false;
    if !result.exists() {
        add_note(rec, format!("robot wrote no result ({name})"));
    } else {
        match read_result(&result) {
            Ok(stats) => {
                have_result = true;
                rec.tests = Some(stats);
            }
            Err(e) => add_note(rec, format!("{name} unreadable ({e}); test counts unknown")),
        }
    }
    if let Some(code) = rec.exit_code.filter(|c| *c != 0) {
        add_note(
            rec,
            format!("robot exit code {code}: {}", exit_meaning(code)),
        );
    }
    if let Some(sig) = rec.signal {
        add_note(rec, format!("robot was ended by signal {sig}"));
    }
    if !have_result {
        if let Some(line) = first_error_line(&rec.run_dir) {
            add_note(rec, format!("robot said: {line}"));
        }
    }
    // The suite decides: a failed test fails the run even when robot exited 0
    // (`--nostatusrc`, or a wrapper that hides the code).
    if let Some(t) = &rec.tests {
        let failed = t.failed > 0 || t.suite_status.as_deref() == Some("FAIL");
        if failed && rec.outcome == Some(Outcome::Success) {
            rec.outcome = Some(Outcome::Failure);
            add_note(
                rec,
                format!(
                    "{} failed although robot exited {}",
                    plural(t.failed, "test"),
                    rec.exit_code.unwrap_or(0)
                ),
            );
        }
    }
    let dir = result.parent().unwrap_or(&rec.run_dir);
    let existing = |f: &str| Some(dir.join(f)).filter(|p| p.is_file());
    rec.log = existing("log.html");
    rec.report = existing("report.html");
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Reads the attempts the retry wrapper recorded, and each one's counts from its own result.
fn read_attempts(rec: &mut RunRecord) {
    // The wrapper writes it beside the result: the run folder, or a `user` job's own folder.
    let dir = rec
        .result
        .as_deref()
        .and_then(std::path::Path::parent)
        .unwrap_or(&rec.run_dir);
    let path = dir.join(ATTEMPTS_FILE);
    let Ok(f) = crate::state::file::open_read(&path) else {
        return;
    };
    let mut bytes = Vec::new();
    // A handful of small entries; the cap only guards against a file that is not ours.
    if f.take(1 << 20).read_to_end(&mut bytes).is_err() {
        return;
    }
    let Ok(mut attempts) = serde_json::from_slice::<Vec<Attempt>>(&bytes) else {
        add_note(rec, format!("{ATTEMPTS_FILE} unreadable"));
        return;
    };
    for a in &mut attempts {
        match read_result(&a.output) {
            Ok(t) => {
                a.passed = t.passed;
                a.failed = t.failed;
                a.skipped = t.skipped;
                a.outcome = if t.failed > 0 { "failed" } else { "passed" }.into();
            }
            Err(e) => {
                a.outcome = "no result".into();
                a.note = Some(collect::cap(&e));
            }
        }
    }
    rec.attempts = attempts;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_has_a_meaning() {
        assert_eq!(exit_meaning(3), "3 tests failed");
        assert!(exit_meaning(252).contains("invalid"));
        assert!(exit_meaning(254).contains("not one of"));
    }

    #[test]
    fn an_empty_result_says_robot_was_killed_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("output.xml");
        std::fs::write(&p, b"").unwrap();
        let e = read_result(&p).unwrap_err();
        assert!(e.contains("killed before it wrote anything"), "{e}");
        let j = dir.path().join("r.json");
        std::fs::write(&j, br#" {"suite":{"name":"S","tests":[]}}"#).unwrap();
        assert_eq!(read_result(&j).unwrap().suite.as_deref(), Some("S"));
    }
}
