//! `status.json`: what the daemon knows, in one small file that ctrl and `status` read without
//! walking run folders or talking to the daemon.

use super::record::{Outcome, RunRecord, TestStats};
use crate::config::Services;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const STATUS_VERSION: u32 = 1;

/// The daemon's own state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    /// The daemon's process start time in OS ticks (with `pid`, identifies the process).
    pub pid_start: Option<u64>,
    pub started: DateTime<Utc>,
    /// Build identity of the binary the daemon runs.
    pub build: String,
    pub config: PathBuf,
    /// `config::stamp` of the config file as the daemon last read it (valid or not).
    #[serde(default)]
    pub config_stamp: Option<String>,
    /// How ctrl launched it (`systemd-run`, `fork`, `foreground`, ...).
    pub route: String,
    /// It answers ctrl's heartbeat in `heartbeat-ack` (older builds do not, and ctrl judges
    /// them by the lock alone).
    #[serde(default)]
    pub acks_heartbeat: bool,
    /// `running`, `draining` (no new runs; waiting for runs in flight) or `stopped`.
    pub phase: String,
    /// Why it drains or stopped (`stop requested`, `heartbeat stale`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last config reload error; the daemon keeps running its last good config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// A problem writing state (e.g. disk full); cleared when writes succeed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
    /// The daemon does not keep up with its schedule: what it missed and its backlog
    /// (`daemon::backlog`); ctrl's daemon line is WARN while it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<String>,
    /// The dead man timeout in force: `heartbeat_timeout`, raised for the agent's cached mode.
    pub heartbeat_timeout_s: Option<f64>,
    /// How the agent runs ctrl, as ctrl last recorded it: `sync` or `cached 300s (…)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_mode: Option<String>,
    /// When this instance's daemons started over the last day, this one's last (at most
    /// [`MAX_STARTS_KEPT`]): a daemon that restarts again and again shows in the count (see
    /// `daemon::lifecycle`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub starts: Vec<DateTime<Utc>>,
    /// How the daemon before this one ended, when it was not a clean exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_crash: Option<Crash>,
}

/// How many daemon starts [`DaemonInfo::starts`] keeps.
pub const MAX_STARTS_KEPT: usize = 20;

/// A daemon that did not end by a clean exit, as the next daemon found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crash {
    pub pid: u32,
    pub started: DateTime<Utc>,
    /// When it died, where it said (a fatal signal's note, a panic's); else unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub died: Option<DateTime<Utc>>,
    /// What it left: the panic or abort message, the fatal signal, an exit code, or that it
    /// left nothing (SIGKILL, the OOM killer, a power cut).
    pub cause: String,
    /// ctrl ended it because it no longer answered (`hang_timeout`): its daemon line was CRIT
    /// while it was silent and WARN when it was replaced, so the restart alone is no crash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended_by_ctrl: bool,
}

/// A run in flight, as listed in the status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningRun {
    pub run_id: String,
    pub due: DateTime<Utc>,
    pub started: Option<DateTime<Utc>>,
    pub pid: Option<u32>,
}

/// The summary of a job's latest finished run that status and ctrl show; the full record stays
/// in the run folder and `latest.json` (ctrl reads this file on every agent call: small is fast).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    pub run_id: String,
    pub due: DateTime<Utc>,
    #[serde(default)]
    pub started: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    /// How many robot attempts the run took (jobs with retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Its run folder was gone at its end: the output is lost (at least WARN).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_lost: bool,
    /// A `kind = "plugin"` job's reading of its plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Box<crate::nagios::PluginOutput>>,
    /// The first line a failed command printed (stderr, else stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_head: Option<String>,
    /// The published log's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
}

impl From<&RunRecord> for LastRun {
    fn from(r: &RunRecord) -> Self {
        LastRun {
            run_id: r.run_id.clone(),
            due: r.due,
            started: r.started,
            finished: r.finished,
            duration_s: r.duration_s,
            exit_code: r.exit_code,
            outcome: r.outcome,
            tests: r.tests.clone(),
            note: r.note.clone(),
            log: r.log.clone(),
            report: r.report.clone(),
            attempts: (!r.attempts.is_empty()).then_some(r.attempts.len() as u32),
            output_lost: r.output_lost,
            plugin: r.plugin.clone(),
            output_head: r.output_head.clone(),
            log_url: r.log_url.clone(),
        }
    }
}

/// One job's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub schedule: String,
    pub interval_s: f64,
    pub timeout_s: f64,
    pub next_due: Option<DateTime<Utc>>,
    #[serde(default)]
    pub running: Vec<RunningRun>,
    /// Runs waiting for a free slot (`max_parallel`).
    #[serde(default)]
    pub queued: usize,
    /// The latest finished run that was not skipped.
    #[serde(default)]
    pub last: Option<LastRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skipped: Option<DateTime<Utc>>,
    #[serde(default)]
    pub skipped_total: u64,
    /// `per-test`: one local check per test besides the job's.
    #[serde(default, skip_serializing_if = "is_job")]
    pub services: Services,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_runtime_warn_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_runtime_crit_s: Option<f64>,
    /// Piggyback host, levels and staleness deadlines (flattened into the job's JSON).
    #[serde(flatten)]
    pub checkmk: CheckmkView,
}

fn is_job(s: &Services) -> bool {
    *s == Services::Job
}

/// What ctrl needs to place and judge a job's local check without parsing the config (its
/// fast path): the piggyback host, the runtime levels, and when the latest result turns
/// stale (see [`crate::staleness`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckmkView {
    /// The Checkmk host the job's check belongs to (piggyback), if not the agent's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_warn_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_crit_s: Option<f64>,
    /// No newer result after this instant: stale, WARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_by: Option<DateTime<Utc>>,
    /// No newer result after this instant either: CRIT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit_after: Option<DateTime<Utc>>,
    /// The service name the config gives the job's check (`service = "…"`), instead of
    /// `Robotmk <instance> <job>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl CheckmkView {
    /// The view of `job` whose latest result was due at `last_due`.
    pub fn of(
        job: &crate::config::Job,
        daemon: &crate::config::DaemonSettings,
        last_due: Option<DateTime<Utc>>,
    ) -> CheckmkView {
        let d = last_due.and_then(|due| crate::staleness::for_job(job, daemon, due));
        CheckmkView {
            host: job.host.clone(),
            runtime_warn_s: job.runtime_warn.map(|d| d.as_secs_f64()),
            runtime_crit_s: job.runtime_crit.map(|d| d.as_secs_f64()),
            expected_by: d.map(|d| d.expected_by),
            crit_after: d.map(|d| d.crit_after),
            service: job.plugin.as_ref().and_then(|p| p.service.clone()),
        }
    }

    pub fn deadlines(&self) -> Option<crate::staleness::Deadlines> {
        Some(crate::staleness::Deadlines {
            expected_by: self.expected_by?,
            crit_after: self.crit_after?,
        })
    }
}

/// The whole status document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: u32,
    pub instance: String,
    pub updated: DateTime<Utc>,
    pub daemon: DaemonInfo,
    pub jobs: Vec<JobStatus>,
    /// The jobs' Python environments (state, build time, error, which jobs use each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<crate::pyenv::EnvState>,
}
