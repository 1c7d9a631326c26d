//! Run records: one JSON document per run, in the run's own folder, and the names of the
//! files and run ids around it. (Their reading, writing, allocation and retention are
//! `service::state::record`'s.)
//!
//! The record doubles as the daemon's journal: it is written (without outcome) *before* the
//! runner is spawned, and again with the PID right after, so a daemon that died at any moment
//! leaves enough behind for the next one to finish the story: the run's due time is taken, and
//! its process can be found again by PID and start time.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Format version of [`RunRecord`]; bumped on incompatible changes.
pub(crate) const RECORD_VERSION: u32 = 1;
pub(crate) const RECORD_FILE: &str = "record.json";
pub(crate) const STDOUT_FILE: &str = "stdout.log";
pub(crate) const STDERR_FILE: &str = "stderr.log";
/// The file the wrapper of a job with retries writes its attempts to, in the run folder.
pub(crate) const ATTEMPTS_FILE: &str = "attempts.json";

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// Exit code 0.
    Success,
    /// Non-zero exit (or ended by a signal it was not sent by us).
    Failure,
    /// Ended by the daemon because it ran longer than the job's timeout.
    Timeout,
    /// Ended by `stop --now`.
    Killed,
    /// Could not be started.
    Error,
    /// The daemon died while it ran; its end was not observed as a child.
    Interrupted,
    /// Not started: an earlier run of the job was still in flight (`overlap = "skip"`), or the
    /// daemon stopped before a slot freed.
    Skipped,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
            Outcome::Killed => "killed",
            Outcome::Error => "error",
            Outcome::Interrupted => "interrupted",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Trigger {
    Schedule,
    /// The single run standing for due times missed while the daemon was down.
    CatchUp,
    RunOnce,
}

impl Trigger {
    /// As the run record spells it (`schedule`, `catch_up`, `run_once`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
            Trigger::RunOnce => "run_once",
        }
    }
}

/// Robot Framework's result: the total statistics, the root suite, and each test (capped),
/// read from output.xml or Robot 7's output.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestStats {
    pub(crate) passed: u64,
    pub failed: u64,
    pub(crate) skipped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) suite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) suite_status: Option<String>,
    /// Robot's own elapsed time of the root suite (the process runtime adds Python's start-up
    /// and the writing of log and report); only a [`known_seconds`] value.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_seconds_de"
    )]
    pub(crate) elapsed_s: Option<f64>,
    /// Per-test detail, at most `robot::MAX_TESTS` of them (failed tests first kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<TestResult>,
    /// Tests left out of `results` by the cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) results_omitted: u64,
    /// Every test of the run as its per-test service shows it, in the order robot ran them:
    /// the first `robot::MAX_SERVICES` tests and `robot::MAX_SERVICES_BYTES` of them, whatever
    /// failed (so the same tests have services from run to run), each name unique over the
    /// whole list (not over the detail, which keeps failed tests first). `None` in a record
    /// written before the list was kept: its per-test services come from `results`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) services: Option<Vec<TestService>>,
    /// Tests left out of `services` by its bound (they have no per-test service).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) services_omitted: u64,
}

/// One test's per-test service: its name (without `Robotmk <instance> <job> `) and its
/// status, nothing else (the list is long: its message, time and tags are in the detail, if
/// anywhere). JSON: `["Login","PASS"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TestService(pub(crate) String, pub(crate) TestStatus);

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `v` as a test's or suite's elapsed seconds, if it can be one: a result file is the
/// runner's to write, and `elapsed="inf"`, `"NaN"` or `"-5"` (or an `endtime` before its
/// `starttime`) parse as numbers. Such a time is unknown: no metric (Checkmk hands `inf` and
/// `nan` to the core, which no graph takes), no runtime level, and one answer whether ctrl
/// prints from the daemon's memory or from `status.json`, where JSON's lack of infinity
/// made it `null`.
pub(crate) fn known_seconds(v: f64) -> Option<f64> {
    // `+ 0.0`: a `-0` (`elapsed="-0"`) is zero, not `runtime=-0.000`.
    (v.is_finite() && v >= 0.0).then_some(v + 0.0)
}

/// An elapsed time read back from a record or `status.json`: [`known_seconds`] or none, for
/// files written before the readers checked.
fn known_seconds_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.and_then(known_seconds))
}

/// One test (or RPA task) of a Robot Framework result, every string cut to a sane length.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// The suite's full name, `Top.Sub`.
    pub(crate) suite: String,
    pub(crate) name: String,
    pub(crate) status: TestStatus,
    /// Only a [`known_seconds`] value.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_seconds_de"
    )]
    pub(crate) elapsed_s: Option<f64>,
    /// The first line of the test's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tags: Vec<String>,
    /// Robot's id of the test (`s1-s2-t3`), the anchor of its place in log.html.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    /// The URL of the test in the published log (see `publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    /// The test's place among the run's tests (0 first), in the order robot ran them: the
    /// entry of [`TestStats::services`] this is the detail of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<u32>,
}

/// A test's status as robot wrote it; record files hold the text (`PASS`, `FAIL`, `SKIP`,
/// `NOT RUN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TestStatus {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
    #[serde(rename = "SKIP")]
    Skip,
    /// Robot wrote no status (the test was cut short).
    #[serde(rename = "NOT RUN")]
    NotRun,
    /// Any other text robot (or a newer version) wrote: shown as written.
    #[serde(untagged)]
    Other(String),
}

impl TestStatus {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            TestStatus::Pass => "PASS",
            TestStatus::Fail => "FAIL",
            TestStatus::Skip => "SKIP",
            TestStatus::NotRun => "NOT RUN",
            TestStatus::Other(s) => s,
        }
    }
}

/// What robot wrote, read by name.
impl From<String> for TestStatus {
    fn from(s: String) -> TestStatus {
        match s.as_str() {
            "PASS" => TestStatus::Pass,
            "FAIL" => TestStatus::Fail,
            "SKIP" => TestStatus::Skip,
            "NOT RUN" => TestStatus::NotRun,
            _ => TestStatus::Other(s),
        }
    }
}

impl From<&str> for TestStatus {
    fn from(s: &str) -> TestStatus {
        TestStatus::from(s.to_string())
    }
}

/// As robot's result had no status at all (`TestResult`'s default).
impl Default for TestStatus {
    fn default() -> Self {
        TestStatus::Other(String::new())
    }
}

/// What one attempt ran: the first runs everything, a retry the tests that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Ran {
    #[default]
    All,
    Failed,
}

impl Ran {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ran::All => "all",
            Ran::Failed => "failed",
        }
    }
}

/// How one attempt ended, as far as its own result tells.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AttemptOutcome {
    /// Not read yet (the wrapper's own list, written before the daemon reads the results).
    #[default]
    #[serde(rename = "")]
    Unknown,
    #[serde(rename = "passed")]
    Passed,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "no result")]
    NoResult,
    /// Text this build does not know (a newer daemon's record): shown as written.
    #[serde(untagged)]
    Other(String),
}

impl AttemptOutcome {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            AttemptOutcome::Unknown => "",
            AttemptOutcome::Passed => "passed",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::NoResult => "no result",
            AttemptOutcome::Other(s) => s,
        }
    }
}

/// Compared with the text records hold (`passed`, `failed`, `no result`).
impl PartialEq<&str> for AttemptOutcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One attempt of a job with `attempts` > 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Attempt {
    /// 1-based.
    pub(crate) attempt: u32,
    pub(crate) ran: Ran,
    #[serde(default)]
    pub(crate) exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signal: Option<i32>,
    pub(crate) outcome: AttemptOutcome,
    #[serde(default)]
    pub(crate) passed: u64,
    #[serde(default)]
    pub(crate) failed: u64,
    #[serde(default)]
    pub(crate) skipped: u64,
    pub(crate) output: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) log: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

/// One run's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub(crate) version: u32,
    pub(crate) job: String,
    pub(crate) run_id: String,
    pub due: DateTime<Utc>,
    pub(crate) trigger: Trigger,
    #[serde(default)]
    pub started: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default)]
    pub(crate) exit_code: Option<i32>,
    /// The signal that ended the runner (Unix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signal: Option<i32>,
    /// `None` while the run is in flight.
    #[serde(default)]
    pub(crate) outcome: Option<Outcome>,
    pub(crate) run_dir: PathBuf,
    #[serde(default)]
    pub(crate) pid: Option<u32>,
    /// The runner's process start time (OS ticks), to tell it from a later process that got
    /// the same PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pid_start: Option<u64>,
    pub timeout_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tests: Option<TestStats>,
    /// Where the runner's Robot Framework result goes (robot jobs, and command jobs that name
    /// a `result`), placeholders expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<PathBuf>,
    /// The run's log.html and report.html, when robot wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) log: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) report: Option<PathBuf>,
    /// Every attempt of a job with retries, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) attempts: Vec<Attempt>,
    /// The `run-once` request this run answers (how the waiting command finds its run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<String>,
    /// The run folder was gone when the run ended (the runner removed it): its output and
    /// result are lost, whatever the exit code said.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) output_lost: bool,
    /// The short name (a link, see `sys::tmp_link`) of the run's temp folder, which its
    /// `TMPDIR`, `TEMP` and `TMP` name; removed with the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tmp: Option<PathBuf>,
    /// What a `kind = "plugin"` job's plugin said (state, summary, details, metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plugin: Option<Box<crate::model::plugin::PluginOutput>>,
    /// The first line of a failed command's stderr (or stdout): what went wrong, in its words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) output_head: Option<String>,
    /// The URL of the run's log published to `publish_dir` (see `publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) log_url: Option<String>,
}

impl RunRecord {
    /// A journal entry: a run of `job` due at `due`, not started yet.
    pub(crate) fn journal(
        job: &str,
        run_id: String,
        run_dir: PathBuf,
        due: DateTime<Utc>,
        trigger: Trigger,
        timeout_s: f64,
    ) -> RunRecord {
        RunRecord {
            version: RECORD_VERSION,
            job: job.to_string(),
            run_id,
            due,
            trigger,
            started: None,
            finished: None,
            duration_s: None,
            exit_code: None,
            signal: None,
            outcome: None,
            run_dir,
            pid: None,
            pid_start: None,
            timeout_s,
            note: None,
            tests: None,
            result: None,
            log: None,
            report: None,
            attempts: Vec::new(),
            request: None,
            output_lost: false,
            tmp: None,
            plugin: None,
            output_head: None,
            log_url: None,
        }
    }

    /// Caps the texts that come from the runner's files (robot's suite name, notes quoting
    /// its output), so a record, `status.json` and the agent output stay small.
    pub(crate) fn clip(&mut self) {
        use crate::model::clip::{clip, MAX_NAME, MAX_TEXT};
        if let Some(n) = &mut self.note {
            clip(n, MAX_TEXT);
        }
        if let Some(t) = &mut self.tests {
            for s in [&mut t.suite, &mut t.suite_status].into_iter().flatten() {
                clip(s, MAX_NAME);
            }
        }
    }

    /// The run's timeout as recorded. The file may have been damaged or written by someone
    /// else: a value that is not a sane duration (negative, NaN, infinite, absurdly large)
    /// is bounded instead of crashing the daemon that recovers the run.
    pub fn timeout(&self) -> Duration {
        const MAX: Duration = Duration::from_secs(366 * 24 * 3600);
        match Duration::try_from_secs_f64(self.timeout_s) {
            Ok(d) => d.min(MAX),
            Err(_) if self.timeout_s > 0.0 => MAX,
            Err(_) => Duration::ZERO,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    pub(crate) fn record_path(&self) -> PathBuf {
        self.run_dir.join(RECORD_FILE)
    }
}

/// Run ids are `<due as 20261127T101500Z>-<n>`: sortable, unique per job, and they say which
/// due time a run stands for even when its record is lost.
pub(crate) fn run_id_prefix(due: DateTime<Utc>) -> String {
    due.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Sort key of a run id: (due part, sequence number). Borrowed: a job's runs are sorted
/// after every run (pruning), and a copy per comparison was the daemon's most frequent
/// allocation under load.
pub(crate) fn run_id_key(id: &str) -> (&str, u64) {
    match id.rsplit_once('-') {
        Some((due, n)) => (due, n.parse().unwrap_or(0)),
        None => (id, 0),
    }
}

/// Parses the due time out of a run id.
pub(crate) fn due_of_run_id(id: &str) -> Option<DateTime<Utc>> {
    let (due, _) = id.rsplit_once('-')?;
    chrono::NaiveDateTime::parse_from_str(due, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|n| n.and_utc())
}

/// RFC 3339 with milliseconds, the format of every timestamp the project prints.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record or `status.json` written before the readers checked may hold a negative
    /// time (JSON made `inf` and `NaN` `null`): read back, it is unknown, as the daemon
    /// now keeps it in memory, so ctrl prints one thing from either.
    #[test]
    fn an_elapsed_time_read_back_is_a_time_or_none() {
        let t: TestStats = serde_json::from_str(
            r#"{"passed":1,"failed":0,"skipped":0,"elapsed_s":-5.0,"results":[
            {"suite":"S","name":"a","status":"PASS","elapsed_s":-0.5},
            {"suite":"S","name":"b","status":"PASS","elapsed_s":null},
            {"suite":"S","name":"c","status":"PASS","elapsed_s":1.5},
            {"suite":"S","name":"d","status":"PASS"}]}"#,
        )
        .unwrap();
        assert_eq!(t.elapsed_s, None);
        let got: Vec<Option<f64>> = t.results.iter().map(|r| r.elapsed_s).collect();
        assert_eq!(got, [None, None, Some(1.5), None]);
        assert_eq!(known_seconds(f64::INFINITY), None);
        assert_eq!(known_seconds(f64::NAN), None);
        assert_eq!(known_seconds(0.0), Some(0.0));
        // Not `-0`: it would print as `runtime=-0.000`.
        assert!(known_seconds(-0.0).is_some_and(|v| v.is_sign_positive()));
    }
    #[test]
    fn a_trigger_is_spelt_in_the_log_as_in_the_record() {
        for t in [Trigger::Schedule, Trigger::CatchUp, Trigger::RunOnce] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    /// Test statuses were free strings: robot's four load by name, anything else as written,
    /// and the file is written back the same.
    #[test]
    fn old_test_statuses_load_and_are_written_back_the_same() {
        let old = r#"{"passed":1,"failed":1,"skipped":1,"results":[{"suite":"S","name":"a","status":"PASS"},{"suite":"S","name":"b","status":"FAIL"},{"suite":"S","name":"c","status":"SKIP"},{"suite":"S","name":"d","status":"NOT RUN"},{"suite":"S","name":"e","status":"WEIRD"}]}"#;
        let t: TestStats = serde_json::from_str(old).expect("old results load");
        let got: Vec<_> = t.results.iter().map(|r| r.status.clone()).collect();
        assert_eq!(
            got,
            [
                TestStatus::Pass,
                TestStatus::Fail,
                TestStatus::Skip,
                TestStatus::NotRun,
                TestStatus::Other("WEIRD".into())
            ]
        );
        let back = serde_json::to_value(&t).unwrap();
        let want: serde_json::Value = serde_json::from_str(old).unwrap();
        assert_eq!(back, want);
    }

    /// A run record with attempts as builds before the enums wrote it (`ran` and `outcome`
    /// free strings), and the wrapper's own list (`outcome` still empty).
    const OLD: &str = r#"{"version":1,"job":"j","run_id":"20260101T000000Z-1","due":"2026-01-01T00:00:00Z","trigger":"schedule","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:00:01Z","duration_s":1.0,"exit_code":0,"signal":null,"outcome":"success","run_dir":"/r","pid":7,"pid_start":9,"timeout_s":30.0,"attempts":[{"attempt":1,"ran":"all","exit_code":1,"outcome":"failed","passed":1,"failed":1,"skipped":0,"output":"/r/attempt-1/output.xml"},{"attempt":2,"ran":"failed","exit_code":0,"outcome":"passed","passed":1,"failed":0,"skipped":0,"output":"/r/attempt-2/output.xml"},{"attempt":3,"ran":"failed","exit_code":null,"outcome":"no result","passed":0,"failed":0,"skipped":0,"output":"/r/attempt-3/output.xml"}]}"#;

    #[test]
    fn an_old_record_with_attempts_loads_and_is_written_back_the_same() {
        let r: RunRecord = serde_json::from_str(OLD).expect("an old record loads");
        let got: Vec<_> = r
            .attempts
            .iter()
            .map(|a| (a.ran, a.outcome.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (Ran::All, AttemptOutcome::Failed),
                (Ran::Failed, AttemptOutcome::Passed),
                (Ran::Failed, AttemptOutcome::NoResult),
            ]
        );
        let back = serde_json::to_value(&r).unwrap();
        let old: serde_json::Value = serde_json::from_str(OLD).unwrap();
        assert_eq!(back["attempts"], old["attempts"]);
        // The wrapper's list, before the daemon read the results.
        let listed = r#"[{"attempt":1,"ran":"all","exit_code":0,"outcome":"","passed":0,"failed":0,"skipped":0,"output":"/r/attempt-1/output.xml"}]"#;
        let l: Vec<Attempt> = serde_json::from_str(listed).unwrap();
        assert_eq!(l[0].outcome, AttemptOutcome::Unknown);
        assert_eq!(serde_json::to_value(&l).unwrap()[0]["outcome"], "");
    }
}
