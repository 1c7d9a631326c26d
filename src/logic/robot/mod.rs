//! Robot Framework awareness: the result robot wrote (output.xml or Robot 7's output.json,
//! streamed with bounded memory: [`xml`], [`json`]), what its exit codes mean, and how a
//! finished run's record is completed from them: counts, per-test detail, robot's own
//! elapsed time, the outcome (a failed test fails the run whatever the exit code), the
//! attempts of a job with retries, and where log.html and report.html are.

pub(crate) mod budget;
pub(crate) mod collect;
pub mod json;
mod merged;
pub mod syntax;
pub mod xml;

use crate::model::record::{
    Attempt, AttemptOutcome, Outcome, Ran, RunRecord, TestStats, STDERR_FILE, STDOUT_FILE,
};
use budget::{Budget, Clock, Limits, ResultError, Stopping};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub(crate) use collect::{
    MAX_RESULTS_BYTES, MAX_SERVICES, MAX_SERVICES_BYTES, MAX_TESTS, MAX_TEXT,
};

/// The file the wrapper of a job with retries writes its attempts to, in the run folder.
pub(crate) const ATTEMPTS_FILE: &str = "attempts.json";

/// The most an attempts list may hold: ten small entries fit many times over.
const MAX_ATTEMPTS_FILE: u64 = 64 * 1024;

/// The folder a run's results are read from — the runner's `{run_dir}`: the run folder, or a
/// `user` job's own folder, which that user fills as they like — as the daemon opens files
/// in it (by handle, no links, regular files of the folder's owner: see
/// `sys::open_beneath`).
pub(crate) trait RunFolder {
    /// Where the folder is; every path the readers build is in it.
    fn path(&self) -> &Path;
    /// Opens `path` (one the record names, or one built from [`RunFolder::path`]) for
    /// reading. A missing file is `NotFound`; anything refused is another error that says
    /// why.
    fn open(&self, path: &Path) -> io::Result<File>;
    /// Opens one of the run's own logs (`stdout.log`, `stderr.log` in the run folder, which
    /// the daemon writes, not the runner).
    fn open_log(&self, path: &Path) -> io::Result<File>;
    /// The names in the folder `rel` below `dir` (`rel` empty: `dir` itself), where `dir`
    /// is a folder as [`RunFolder::open`] takes paths. Reached as `open` reaches a file (no
    /// link followed at any step below the run folder) and listed from what was reached,
    /// never again by its path.
    fn list(&self, dir: &Path, rel: &Path) -> io::Result<Vec<std::ffi::OsString>>;
    /// Whether `path` is there, asked without opening it (no descriptor of the daemon's
    /// taken): `None` where the folder cannot tell, and opening decides. A command job's
    /// folder is looked at for a result robot may have left there.
    fn is_there(&self, path: &Path) -> Option<bool> {
        let _ = path;
        None
    }
    /// Why opening failed through no fault of the file's: the daemon itself is out of what
    /// any open needs (descriptors), in words that name the cause and what to do; `None`
    /// for an error of the file's.
    fn daemon_short(&self, e: &io::Error) -> Option<String> {
        let _ = e;
        None
    }
}

/// How one run's results are read: from where, how many attempts its job has, and within
/// what bounds.
pub(crate) struct Reading<'a> {
    pub(crate) folder: &'a dyn RunFolder,
    /// The job's `attempts` (1: no retries, and no attempts list is read).
    pub(crate) attempts: u32,
    pub(crate) limits: Limits,
    /// The daemon's stop, which cuts reads short (see [`budget::Stopping`]).
    pub(crate) stopping: Option<&'a Stopping>,
}

/// Reads the result in `f` (opened from `path`) within the bounds of `clock`.
pub(crate) fn read_file(f: File, path: &Path, clock: &Clock) -> Result<TestStats, ResultError> {
    clock.ready()?;
    let len = f.metadata().map_err(ResultError::Refused)?.len();
    if len == 0 {
        return Err(ResultError::Empty);
    }
    let cap = clock.limits().max_bytes;
    if len > cap {
        // A sparse file of a terabyte costs the runner nothing and would cost the reader
        // hours: refused by its size before a byte is read.
        return Err(ResultError::TooLarge { size: len, cap });
    }
    let mut f = Budget::new(f, clock);
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
            Err(e) => return Err(clock.tripped().unwrap_or(ResultError::Unreadable(e))),
        }
    }
    let is_json = path.extension().is_some_and(|e| e == "json") || head.last() == Some(&b'{');
    let r = head.as_slice().chain(f);
    let parsed = if is_json {
        json::read_sized(r, len)
    } else {
        xml::read_sized(r, len)
    };
    match parsed {
        Ok(Some(stats)) => Ok(stats),
        Ok(None) => Err(ResultError::NoSuite),
        // A bound that ran out is the reason, whatever the parser made of the cut.
        Err(e) => Err(clock.tripped().unwrap_or(ResultError::Invalid(e))),
    }
}

/// What robot's exit code `code` means.
pub(crate) fn exit_meaning(code: i32) -> String {
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
pub(crate) fn first_error_line(folder: &dyn RunFolder, run_dir: &Path) -> Option<String> {
    for name in [STDOUT_FILE, STDERR_FILE] {
        let Ok(f) = folder.open_log(&run_dir.join(name)) else {
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

/// The result file of a finished run, opened: the one its job names, else an output.xml a
/// command job left in its folder (`None` when there is none).
fn result_file(rec: &RunRecord, folder: &dyn RunFolder) -> Option<(PathBuf, io::Result<File>)> {
    if let Some(r) = &rec.result {
        return Some((r.clone(), folder.open(r)));
    }
    let xml = folder.path().join("output.xml");
    // Most command jobs leave none: asked first without a descriptor, so that a daemon short
    // of them never judges a command job by an output.xml it did not write.
    if folder.is_there(&xml) == Some(false) {
        return None;
    }
    match folder.open(&xml) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        opened => Some((xml, opened)),
    }
}

/// Completes a finished record from what robot left behind, read as `how` says. Never fails
/// the record: a missing, refused, oversized or broken result is a note.
pub(crate) fn annotate(rec: &mut RunRecord, how: &Reading) {
    let Some((result, opened)) = result_file(rec, how.folder) else {
        return;
    };
    let name = result
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Not the result's fault, nor the run's: what it says is unknown, and the record says
    // why instead of judging the run by a result it did not read.
    if let Some(why) = opened
        .as_ref()
        .err()
        .and_then(|e| how.folder.daemon_short(e))
    {
        // A timeout or a stop keeps its word: it is what happened to the run.
        if matches!(rec.outcome, Some(Outcome::Success | Outcome::Failure)) {
            rec.outcome = Some(Outcome::Error);
        }
        add_note(rec, format!("{name} not read: {why}"));
        return;
    }
    // One clock for all of the run's files: the time cap bounds the finishing of the run.
    let clock = Clock::new(how.limits, how.stopping);
    if how.attempts > 1 {
        read_attempts(rec, how, &clock);
    }
    let mut have_result = false;
    let mut empty = false;
    // No result to be read, by the result's own fault (not one of the daemon's bounds).
    let mut none = false;
    match opened
        .map_err(ResultError::open)
        .and_then(|f| read_file(f, &result, &clock))
    {
        Ok(stats) => {
            have_result = true;
            rec.tests = Some(stats);
        }
        Err(ResultError::Missing) => {
            none = true;
            add_note(rec, format!("robot wrote no result ({name})"));
        }
        Err(ResultError::Empty) => {
            // What happened, not a guess: the exit code and the signal say it.
            empty = true;
            none = true;
            add_note(rec, empty_result(&name, rec.exit_code, rec.signal));
        }
        Err(e) if e.is_bound() => add_note(rec, format!("{e} ({name}); test counts unknown")),
        Err(e) => {
            none = true;
            add_note(rec, format!("{name} unreadable ({e}); test counts unknown"));
        }
    }
    // With an empty result robot's meaning of the code ("1 test failed") does not hold, and
    // the note on the empty file already gives the code and the signal.
    if let Some(code) = rec.exit_code.filter(|c| *c != 0 && !empty) {
        add_note(
            rec,
            format!("robot exit code {code}: {}", exit_meaning(code)),
        );
    }
    if let Some(sig) = rec.signal.filter(|_| !empty) {
        add_note(rec, format!("robot was ended by signal {sig}"));
    }
    if !have_result {
        if let Some(line) = first_error_line(how.folder, &rec.run_dir) {
            add_note(rec, format!("robot said: {line}"));
        }
    }
    // No result (none written, an empty, cut or broken file, one refused) is no passed suite:
    // a run that exited 0 without one fails, as robot's own runs without a result do (exit
    // code 252); a cut file may well have held a failed test. Only a result the daemon's own
    // bounds left unread (too large, out of time, stopping) keeps the exit code's word.
    if !have_result && none && rec.outcome == Some(Outcome::Success) {
        rec.outcome = Some(Outcome::Failure);
        add_note(
            rec,
            "a failure: exit code 0, but no result shows that a test passed".to_string(),
        );
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
    let dir = result.parent().unwrap_or(how.folder.path());
    rec.log = existing(how.folder, &dir.join("log.html"));
    rec.report = existing(how.folder, &dir.join("report.html"));
}

/// The note on an empty result file `name`: how the run ended, as the exit code and the
/// signal say, never a guess.
pub(crate) fn empty_result(name: &str, exit_code: Option<i32>, signal: Option<i32>) -> String {
    match (signal, exit_code) {
        (Some(sig), _) => format!(
            "{name} is empty: the run was ended by signal {sig} before it wrote a result"
        ),
        (None, Some(code)) => format!(
            "{name} is empty: the run exited with code {code} (no signal) without writing a result into it"
        ),
        (None, None) => format!("{name} is empty: the run wrote no result into it"),
    }
}

/// `path` if it is a file the folder would let be read (named in the record, not read).
fn existing(folder: &dyn RunFolder, path: &Path) -> Option<PathBuf> {
    folder.open(path).ok().map(|_| path.to_path_buf())
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// An entry of the wrapper's list, as far as the daemon takes it: the runner's user can write
/// that file, so every path in it is ignored (each attempt's result is where the wrapper puts
/// it, `attempt-<k>/` in the folder), and so is every text; what is kept is checked.
#[derive(serde::Deserialize)]
struct Listed {
    attempt: u32,
    ran: String,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    signal: Option<i32>,
}

/// Why a list is not the wrapper's, if it is not.
fn check_list(list: &[Listed], allowed: u32) -> Result<(), ListError> {
    if list.is_empty() || list.len() > allowed as usize {
        return Err(ListError::Count {
            listed: list.len(),
            allowed,
        });
    }
    for (i, a) in list.iter().enumerate() {
        if a.attempt as usize != i + 1 {
            return Err(ListError::Numbering);
        }
        if a.ran != "all" && a.ran != "failed" {
            return Err(ListError::Ran(i + 1));
        }
    }
    Ok(())
}

/// Why the retry wrapper's attempts list is ignored.
#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error("it lists {listed} attempts, the job has 1 to {allowed}")]
    Count { listed: usize, allowed: u32 },
    #[error("its attempts are not numbered 1, 2, …")]
    Numbering,
    #[error("attempt {0} ran neither `all` nor `failed`")]
    Ran(usize),
}

/// Reads the attempts the retry wrapper recorded, and each one's counts from its own result
/// in `attempt-<k>/`, within the run's bounds.
fn read_attempts(rec: &mut RunRecord, how: &Reading, clock: &Clock) {
    let folder = how.folder;
    let path = folder.path().join(ATTEMPTS_FILE);
    let f = match folder.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            add_note(rec, format!("{ATTEMPTS_FILE} not read ({e})"));
            return;
        }
    };
    let mut bytes = Vec::new();
    if f.take(MAX_ATTEMPTS_FILE + 1)
        .read_to_end(&mut bytes)
        .is_err()
        || bytes.len() as u64 > MAX_ATTEMPTS_FILE
    {
        add_note(
            rec,
            format!(
                "{ATTEMPTS_FILE} not read (unreadable, or larger than {MAX_ATTEMPTS_FILE} bytes)"
            ),
        );
        return;
    }
    let list = match serde_json::from_slice::<Vec<Listed>>(&bytes) {
        Ok(l) => l,
        Err(_) => {
            add_note(rec, format!("{ATTEMPTS_FILE} unreadable"));
            return;
        }
    };
    if let Err(why) = check_list(&list, how.attempts) {
        add_note(rec, format!("{ATTEMPTS_FILE} ignored: {why}"));
        return;
    }
    rec.attempts = list
        .iter()
        .map(|l| {
            let dir = folder.path().join(format!("attempt-{}", l.attempt));
            let output = dir.join("output.xml");
            let mut a = Attempt {
                attempt: l.attempt,
                // Checked by check_list: `all` or `failed`.
                ran: if l.ran == "failed" {
                    Ran::Failed
                } else {
                    Ran::All
                },
                exit_code: l.exit_code,
                signal: l.signal,
                log: existing(folder, &dir.join("log.html")),
                ..Default::default()
            };
            match folder
                .open(&output)
                .map_err(ResultError::open)
                .and_then(|f| read_file(f, &output, clock))
            {
                Ok(t) => {
                    a.passed = t.passed;
                    a.failed = t.failed;
                    a.skipped = t.skipped;
                    a.outcome = if t.failed > 0 {
                        AttemptOutcome::Failed
                    } else {
                        AttemptOutcome::Passed
                    };
                }
                Err(e) => {
                    a.outcome = AttemptOutcome::NoResult;
                    a.note = Some(collect::cap(&e.to_string()));
                }
            }
            a.output = output;
            a
        })
        .collect();
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

    /// A folder as the daemon opens it.
    struct Folder(PathBuf);

    impl RunFolder for Folder {
        fn path(&self) -> &Path {
            &self.0
        }
        fn open(&self, path: &Path) -> io::Result<File> {
            let rel = path
                .strip_prefix(&self.0)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "outside"))?;
            // The daemon opens beneath the folder (service::sys::open_beneath, tested
            // there); these tests are about what is read, not how it is opened.
            File::open(self.0.join(rel))
        }
        fn open_log(&self, path: &Path) -> io::Result<File> {
            File::open(path)
        }
        fn list(&self, dir: &Path, rel: &Path) -> io::Result<Vec<std::ffi::OsString>> {
            std::fs::read_dir(dir.join(rel))?
                .map(|e| e.map(|e| e.file_name()))
                .collect()
        }
    }

    const PASS: &str =
        r#"<robot><suite name="S"><test name="T"><status status="PASS"/></test></suite></robot>"#;

    fn finished(dir: &Path) -> RunRecord {
        let mut rec = RunRecord::journal(
            "j",
            "r-1".into(),
            dir.to_path_buf(),
            chrono::Utc::now(),
            crate::model::record::Trigger::Schedule,
            60.0,
        );
        rec.outcome = Some(Outcome::Success);
        rec.exit_code = Some(0);
        rec.result = Some(dir.join("output.xml"));
        rec
    }

    fn annotated(dir: &Path, attempts: u32, limits: Limits) -> RunRecord {
        let mut rec = finished(dir);
        let folder = Folder(dir.to_path_buf());
        annotate(
            &mut rec,
            &Reading {
                folder: &folder,
                attempts,
                limits,
                stopping: None,
            },
        );
        rec
    }

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        max_time: std::time::Duration::from_secs(60),
    };

    #[test]
    fn attempts_come_from_where_the_wrapper_writes_them_and_only_for_jobs_with_retries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("output.xml"), PASS).unwrap();
        std::fs::create_dir(d.join("attempt-1")).unwrap();
        std::fs::write(d.join("attempt-1/output.xml"), PASS).unwrap();
        std::fs::write(d.join("elsewhere.xml"), PASS.replace("PASS", "FAIL")).unwrap();
        // The paths in the list are ignored: the second attempt has no result where the
        // wrapper would have put it, whatever the list says.
        let list = serde_json::json!([
            {"attempt": 1, "ran": "all", "exit_code": 0, "output": "/etc/passwd"},
            {"attempt": 2, "ran": "failed", "exit_code": 0, "passed": 99,
             "output": d.join("elsewhere.xml")},
        ]);
        std::fs::write(d.join(ATTEMPTS_FILE), list.to_string()).unwrap();
        let rec = annotated(d, 1, LIMITS);
        assert!(rec.attempts.is_empty() && rec.note.is_none(), "{rec:?}");
        let rec = annotated(d, 3, LIMITS);
        assert_eq!(rec.attempts.len(), 2, "{rec:?}");
        assert_eq!(rec.attempts[0].outcome, "passed");
        assert_eq!(rec.attempts[0].output, d.join("attempt-1/output.xml"));
        assert_eq!(rec.attempts[1].outcome, "no result");
        assert_eq!(rec.attempts[1].passed, 0);
        assert_eq!(rec.attempts[1].output, d.join("attempt-2/output.xml"));
        // More attempts than the job has, numbers out of order, an unknown `ran`: dropped.
        for (bad, why) in [
            (
                r#"[{"attempt":1,"ran":"all"},{"attempt":2,"ran":"all"},{"attempt":3,"ran":"all"}]"#,
                "lists 3 attempts",
            ),
            (r#"[{"attempt":2,"ran":"all"}]"#, "not numbered"),
            (r#"[{"attempt":1,"ran":"QQQ"}]"#, "neither"),
            (r#"[]"#, "lists 0 attempts"),
        ] {
            std::fs::write(d.join(ATTEMPTS_FILE), bad).unwrap();
            let rec = annotated(d, 2, LIMITS);
            assert!(rec.attempts.is_empty(), "{bad}");
            let note = rec.note.unwrap_or_default();
            assert!(
                note.contains("attempts.json ignored") && note.contains(why),
                "{note}"
            );
        }
        // A list larger than any the wrapper writes is not read.
        std::fs::write(d.join(ATTEMPTS_FILE), " ".repeat(100_000)).unwrap();
        let note = annotated(d, 2, LIMITS).note.unwrap_or_default();
        assert!(note.contains("larger than"), "{note}");
    }

    /// Issue D9b: a robot run that exited 0 but left no result (none, or an empty file)
    /// passed no test: a failure, said why; a readable result keeps robot's word.
    #[test]
    fn no_result_with_exit_code_0_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let rec = annotated(d, 1, LIMITS);
        assert_eq!(rec.outcome, Some(Outcome::Failure), "{rec:?}");
        let note = rec.note.unwrap_or_default();
        assert!(
            note.contains("robot wrote no result (output.xml)")
                && note.contains("exit code 0, but no result"),
            "{note}"
        );
        std::fs::write(d.join("output.xml"), "").unwrap();
        let rec = annotated(d, 1, LIMITS);
        assert_eq!(rec.outcome, Some(Outcome::Failure), "{rec:?}");
        // Cut short (a failed test may have been in the part that is missing), or no XML.
        for broken in [&PASS[..PASS.len() / 2], "not a result"] {
            std::fs::write(d.join("output.xml"), broken).unwrap();
            let rec = annotated(d, 1, LIMITS);
            assert_eq!(rec.outcome, Some(Outcome::Failure), "{broken}: {rec:?}");
            let note = rec.note.unwrap_or_default();
            assert!(
                note.contains("unreadable") && note.contains("exit code 0, but no result"),
                "{note}"
            );
        }
        std::fs::write(d.join("output.xml"), PASS).unwrap();
        let rec = annotated(d, 1, LIMITS);
        assert_eq!(rec.outcome, Some(Outcome::Success), "{rec:?}");
        assert!(rec.note.is_none(), "{rec:?}");
    }

    /// A daemon with no descriptor to spare: every open fails, through no fault of the
    /// file's; whether a file is there is known without one.
    struct Starved(PathBuf);

    impl RunFolder for Starved {
        fn path(&self) -> &Path {
            &self.0
        }
        fn open(&self, _: &Path) -> io::Result<File> {
            Err(io::Error::other("out of descriptors"))
        }
        fn open_log(&self, _: &Path) -> io::Result<File> {
            Err(io::Error::other("out of descriptors"))
        }
        fn list(&self, _: &Path, _: &Path) -> io::Result<Vec<std::ffi::OsString>> {
            Err(io::Error::other("out of descriptors"))
        }
        fn is_there(&self, path: &Path) -> Option<bool> {
            Some(path.exists())
        }
        fn daemon_short(&self, _: &io::Error) -> Option<String> {
            Some("the daemon has no file descriptor left".into())
        }
    }

    /// A result the daemon could not open for want of descriptors is no result of the run's:
    /// an error naming the cause, never a failure for a missing result; and a command job
    /// that left no output.xml is judged by its exit code, not by an output.xml.
    #[test]
    fn a_result_not_opened_for_want_of_descriptors_is_an_error_naming_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("output.xml"), PASS).unwrap();
        let folder = Starved(d.to_path_buf());
        let read = |rec: &mut RunRecord| {
            annotate(
                rec,
                &Reading {
                    folder: &folder,
                    attempts: 1,
                    limits: LIMITS,
                    stopping: None,
                },
            )
        };
        for outcome in [Outcome::Success, Outcome::Failure] {
            let mut rec = finished(d);
            rec.outcome = Some(outcome);
            read(&mut rec);
            assert_eq!(rec.outcome, Some(Outcome::Error), "{rec:?}");
            assert_eq!(
                rec.note.as_deref(),
                Some("output.xml not read: the daemon has no file descriptor left")
            );
        }
        let mut rec = finished(d);
        rec.outcome = Some(Outcome::Timeout);
        read(&mut rec);
        assert_eq!(rec.outcome, Some(Outcome::Timeout), "{rec:?}");
        // A command job (no `result`) whose folder has no output.xml: nothing to read.
        std::fs::remove_file(d.join("output.xml")).unwrap();
        let mut rec = finished(d);
        rec.result = None;
        read(&mut rec);
        assert_eq!(rec.outcome, Some(Outcome::Success), "{rec:?}");
        assert!(rec.note.is_none(), "{rec:?}");
    }

    // Windows extends a file with its clusters allocated: 1 TB would need the disk.
    #[cfg(unix)]
    #[test]
    fn a_result_over_the_size_cap_is_refused_by_its_size_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("output.xml")).unwrap();
        // Sparse: no disk used.
        f.set_len(1 << 40).unwrap();
        let t = std::time::Instant::now();
        let rec = annotated(dir.path(), 1, LIMITS);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        let note = rec.note.unwrap_or_default();
        assert!(
            note.starts_with("result too large: 1099511627776 bytes, cap 1048576 (output.xml)"),
            "{note}"
        );
    }
}
