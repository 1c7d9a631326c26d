//! Run records: one JSON document per run, in the run's own folder, plus the run folder's
//! naming, allocation and retention.
//!
//! The record doubles as the daemon's journal: it is written (without outcome) *before* the
//! runner is spawned, and again with the PID right after, so a daemon that died at any moment
//! leaves enough behind for the next one to finish the story: the run's due time is taken, and
//! its process can be found again by PID and start time.

use super::{read_json, write_json, Durability, StateDir};
use crate::sys::tree::{remove_tree, Budget, Removal, RemoveError, Rights};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Format version of [`RunRecord`]; bumped on incompatible changes.
pub const RECORD_VERSION: u32 = 1;
pub const RECORD_FILE: &str = "record.json";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
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
    pub fn as_str(self) -> &'static str {
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
pub enum Trigger {
    Schedule,
    /// The single run standing for due times missed while the daemon was down.
    CatchUp,
    RunOnce,
}

/// Robot Framework's result: the total statistics, the root suite, and each test (capped),
/// read from output.xml or Robot 7's output.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestStats {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite_status: Option<String>,
    /// Robot's own elapsed time of the root suite (the process runtime adds Python's start-up
    /// and the writing of log and report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
    /// Per-test detail, at most `robot::MAX_TESTS` of them (failed tests first kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<TestResult>,
    /// Tests left out of `results` by the cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub results_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One test (or RPA task) of a Robot Framework result, every string cut to a sane length.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// The suite's full name, `Top.Sub`.
    pub suite: String,
    pub name: String,
    /// `PASS`, `FAIL`, `SKIP` or `NOT RUN`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
    /// The first line of the test's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Robot's id of the test (`s1-s2-t3`), the anchor of its place in log.html.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The URL of the test in the published log (see `publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One attempt of a job with `attempts` > 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based.
    pub attempt: u32,
    /// `all` or `failed` (what this attempt ran); the first one runs everything.
    pub ran: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// `passed`, `failed`, or `no result`.
    pub outcome: String,
    #[serde(default)]
    pub passed: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub skipped: u64,
    pub output: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One run's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub version: u32,
    pub job: String,
    pub run_id: String,
    pub due: DateTime<Utc>,
    pub trigger: Trigger,
    #[serde(default)]
    pub started: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal that ended the runner (Unix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// `None` while the run is in flight.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    pub run_dir: PathBuf,
    #[serde(default)]
    pub pid: Option<u32>,
    /// The runner's process start time (OS ticks), to tell it from a later process that got
    /// the same PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    pub timeout_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestStats>,
    /// Where the runner's Robot Framework result goes (robot jobs, and command jobs that name
    /// a `result`), placeholders expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<PathBuf>,
    /// The run's log.html and report.html, when robot wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    /// Every attempt of a job with retries, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// The `run-once` request this run answers (how the waiting command finds its run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The run folder was gone when the run ended (the runner removed it): its output and
    /// result are lost, whatever the exit code said.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_lost: bool,
    /// The short name (a link, see `sys::tmp_link`) of the run's temp folder, which its
    /// `TMPDIR`, `TEMP` and `TMP` name; removed with the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp: Option<PathBuf>,
    /// What a `kind = "plugin"` job's plugin said (state, summary, details, metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Box<crate::nagios::PluginOutput>>,
    /// The first line of a failed command's stderr (or stdout): what went wrong, in its words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_head: Option<String>,
    /// The URL of the run's log published to `publish_dir` (see `publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
}

impl RunRecord {
    /// A journal entry: a run of `job` due at `due`, not started yet.
    pub fn journal(
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
    pub fn clip(&mut self) {
        use crate::report::{clip, MAX_NAME, MAX_TEXT};
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

    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    pub fn record_path(&self) -> PathBuf {
        self.run_dir.join(RECORD_FILE)
    }

    /// Writes the record into its run folder. Final records are synced to disk; the journal
    /// entries written around the spawn are not (they only need to survive a daemon crash,
    /// which the page cache does, and syncing them would delay every start).
    pub fn save(&self) -> io::Result<()> {
        let durability = if self.is_finished() {
            Durability::Sync
        } else {
            Durability::NoSync
        };
        write_json(&self.record_path(), self, durability)
    }
}

/// Run ids are `<due as 20261127T101500Z>-<n>`: sortable, unique per job, and they say which
/// due time a run stands for even when its record is lost.
pub fn run_id_prefix(due: DateTime<Utc>) -> String {
    due.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Creates a fresh run folder for `job` and `due`; returns (run_id, run_dir).
pub fn allocate_run_dir(
    state: &StateDir,
    job: &str,
    due: DateTime<Utc>,
) -> io::Result<(String, PathBuf)> {
    let runs = state.runs_dir(job);
    super::create_state_subdirs(&state.root, &["jobs", job, "runs"])
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", runs.display())))?;
    let prefix = run_id_prefix(due);
    for n in 1..10_000 {
        let id = format!("{prefix}-{n}");
        let dir = runs.join(&id);
        match super::private_dir_builder().create(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create run folder {}: {e}", dir.display()),
                ))
            }
        }
    }
    Err(io::Error::other(format!(
        "no free run id for job {job} at {prefix} in {}",
        runs.display()
    )))
}

/// Sort key of a run id: (due part, sequence number).
fn run_id_key(id: &str) -> (String, u64) {
    match id.rsplit_once('-') {
        Some((due, n)) => (due.to_string(), n.parse().unwrap_or(0)),
        None => (id.to_string(), 0),
    }
}

/// Parses the due time out of a run id.
pub fn due_of_run_id(id: &str) -> Option<DateTime<Utc>> {
    let (due, _) = id.rsplit_once('-')?;
    chrono::NaiveDateTime::parse_from_str(due, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|n| n.and_utc())
}

/// The run folders of `job`, oldest first (by due time, then sequence).
pub fn list_runs(state: &StateDir, job: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let dir = state.runs_dir(job);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot list {}: {e}", dir.display()),
            ))
        }
    };
    let mut runs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            due_of_run_id(&name)?;
            Some((name, e.path()))
        })
        .collect();
    runs.sort_by_key(|(id, _)| run_id_key(id));
    Ok(runs)
}

/// Reads a run record. A corrupt one is reported as `InvalidData` with the path.
pub fn read_record(run_dir: &Path) -> io::Result<Option<RunRecord>> {
    let rec: Option<RunRecord> = read_json(&run_dir.join(RECORD_FILE))?;
    match rec {
        Some(r) if r.version != RECORD_VERSION => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: record version {} is not {RECORD_VERSION}",
                run_dir.join(RECORD_FILE).display(),
                r.version
            ),
        )),
        other => Ok(other),
    }
}

/// The folder run folders are moved into to be removed: `jobs/<job>/removing/`. A folder
/// there is no run any more for any reader, however long its removal takes (a tree a runner
/// left may take many looks, see [`remove_discarded`]).
pub fn removing_dir(state: &StateDir, job: &str) -> PathBuf {
    state.job_dir(job).join("removing")
}

/// Moves the oldest run folders of `job` beyond `keep` out of the runs (never one in
/// `protect`: in flight) into [`removing_dir`], where [`remove_discarded`] removes them.
/// Returns how many were moved.
pub fn prune(state: &StateDir, job: &str, keep: usize, protect: &[String]) -> io::Result<usize> {
    let runs = list_runs(state, job)?;
    if runs.len() <= keep {
        return Ok(0);
    }
    let excess = runs.len() - keep;
    let mut moved = 0;
    for (id, dir) in runs.into_iter().take(excess) {
        if protect.contains(&id) {
            continue;
        }
        discard(state, job, &dir)?;
        moved += 1;
    }
    Ok(moved)
}

/// Moves a run folder of `job` into [`removing_dir`] (a rename: at once, whatever is in it),
/// and removes the short name of its temp folder (a run that ended while no daemon watched
/// still has it).
pub fn discard(state: &StateDir, job: &str, dir: &Path) -> io::Result<()> {
    if let Ok(Some(RunRecord {
        tmp: Some(link), ..
    })) = read_record(dir)
    {
        if let Err(e) = crate::sys::tmp_link::remove(&link) {
            tracing::warn!(job, "cannot remove {}: {e}", link.display());
        }
    }
    let removing =
        super::create_state_subdirs(&state.root, &["jobs", job, "removing"]).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", removing_dir(state, job).display()),
            )
        })?;
    let name = dir.file_name().unwrap_or_default().to_os_string();
    for n in 0..100 {
        let mut to = name.clone();
        if n > 0 {
            to.push(format!(".{n}"));
        }
        let to = removing.join(to);
        if fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        return match fs::rename(dir, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot move {} to {} to remove it: {e}",
                    dir.display(),
                    to.display()
                ),
            )),
        };
    }
    Err(io::Error::other(format!(
        "cannot move {} aside: {} is full of its names",
        dir.display(),
        removing.display()
    )))
}

/// Removes what is in `job`'s [`removing_dir`], within `budget`: `More` when the budget ran
/// out first. Errors (one per folder that could not be removed) are returned, not fatal: the
/// other folders are removed still.
pub fn remove_discarded(
    state: &StateDir,
    job: &str,
    budget: &mut Budget,
) -> (Removal, Vec<RemoveError>) {
    let mut errors = Vec::new();
    let Ok(list) = fs::read_dir(removing_dir(state, job)) else {
        return (Removal::Gone, errors);
    };
    for e in list.flatten() {
        if budget.spent() {
            return (Removal::More, errors);
        }
        match remove_tree(&e.path(), Rights::Daemon, budget) {
            Ok(Removal::Gone) => {}
            Ok(Removal::More) => return (Removal::More, errors),
            Err(err) => errors.push(err),
        }
    }
    (Removal::Gone, errors)
}

/// Replaces the job's `latest.json` with `rec` unless it already holds a newer run.
///
/// The daemon and `run-once` may both finish runs of one job; a per-job lock file orders them
/// so an older result never overwrites a newer one.
pub fn update_latest(state: &StateDir, rec: &RunRecord) -> io::Result<()> {
    // Only the instance's lock holder writes here (a daemon, or run-once as a one-shot
    // daemon), so no lock of its own is needed.
    super::create_state_subdirs(&state.root, &["jobs", &rec.job])?;
    let path = state.latest_file(&rec.job);
    match read_json::<RunRecord>(&path) {
        Ok(Some(old)) => {
            let key = |r: &RunRecord| (r.finished, r.due);
            if key(&old) > key(rec) {
                return Ok(());
            }
        }
        Ok(None) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
            ) =>
        {
            // Keep the damaged (or planted: a FIFO, a link) file for inspection rather than
            // overwrite it unseen.
            let aside = super::quarantine(&path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "(could not move it)".into());
            tracing::warn!(job = %rec.job, "corrupt latest result {}: {e}; moved to {aside}", path.display());
        }
        Err(e) => return Err(e),
    }
    write_json(&path, rec, Durability::Sync)
}

/// RFC 3339 with milliseconds, the format of every timestamp the project prints.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn run_ids_sort_by_due_then_number_and_prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            for _ in 0..11 {
                let (id, _) =
                    allocate_run_dir(&st, "j", t0 + chrono::Duration::seconds(i)).unwrap();
                ids.push(id);
            }
        }
        let listed: Vec<String> = list_runs(&st, "j")
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(listed, ids);
        assert_eq!(due_of_run_id(&ids[0]), Some(t0));
        let removed = prune(&st, "j", 5, &[ids[0].clone()]).unwrap();
        assert_eq!(removed, 27);
        assert_eq!(fs::read_dir(removing_dir(&st, "j")).unwrap().count(), 27);
        let mut budget = Budget::new(Duration::from_secs(60), u64::MAX);
        let (r, errors) = remove_discarded(&st, "j", &mut budget);
        assert_eq!((r, errors.len()), (Removal::Gone, 0));
        assert_eq!(fs::read_dir(removing_dir(&st, "j")).unwrap().count(), 0);
        let left: Vec<String> = list_runs(&st, "j")
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(left.len(), 6);
        assert_eq!(left[0], ids[0], "the protected in-flight run stays");
        assert_eq!(&left[1..], &ids[28..]);
    }
}
