//! `status.json`: what the daemon knows, in one small file that ctrl and `status` read without
//! walking run folders or talking to the daemon.

use crate::model::config::Services;
use crate::model::env::EnvState;
use crate::model::record::{Outcome, RunRecord, TestStats};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub(crate) const STATUS_VERSION: u32 = 1;

/// Where the daemon is in its life, as `status.json` and the report name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    /// Starting runs on schedule.
    Running,
    /// No new runs; waiting for the runs in flight.
    Draining,
    /// Ended (or not running at all).
    Stopped,
    /// A phase this build does not know (a newer daemon's): shown as written.
    #[serde(untagged)]
    Other(String),
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Stopped => "stopped",
            Phase::Other(s) => s,
        })
    }
}

/// How the daemon was started: the launch route ctrl took, or how an admin ran it. The
/// daemon is told with `--route`, records it in `status.json`, and ctrl's section shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// A transient systemd unit (Linux with systemd as PID 1).
    SystemdRun,
    /// A double fork with `setsid`.
    Fork,
    /// Windows: ctrl was in no job object.
    NoJob,
    /// Windows: created outside ctrl's job object.
    Breakaway,
    /// Windows: created under ctrl's nearest ancestor outside its job.
    ParentProcess,
    /// `start --foreground`.
    Foreground,
    /// `run-once`.
    RunOnce,
    /// The hidden `daemon` subcommand run by hand.
    Manual,
    /// A route this build does not know (a newer ctrl's): shown as written.
    #[serde(untagged)]
    Other(String),
}

impl Route {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Route::SystemdRun => "systemd-run",
            Route::Fork => "fork",
            Route::NoJob => "no-job",
            Route::Breakaway => "breakaway",
            Route::ParentProcess => "parent-process",
            Route::Foreground => "foreground",
            Route::RunOnce => "run-once",
            Route::Manual => "manual",
            Route::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any text is a route: the ones this build knows by name, the rest as written.
impl std::str::FromStr for Route {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Route, Self::Err> {
        let known = [
            Route::SystemdRun,
            Route::Fork,
            Route::NoJob,
            Route::Breakaway,
            Route::ParentProcess,
            Route::Foreground,
            Route::RunOnce,
            Route::Manual,
        ];
        Ok(known
            .into_iter()
            .find(|r| r.as_str() == s)
            .unwrap_or_else(|| Route::Other(s.to_string())))
    }
}

/// How the agent runs ctrl (see `logic::agent_mode`). Stored as the text people read —
/// `sync` or `cached 300s (plugins/300/)` — as `status.json` always held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub(crate) enum AgentMode {
    /// On every agent call.
    Sync,
    /// As a cached plugin every `interval_s` seconds, as learnt from `source`
    /// (`plugins/300/`, `agent_cache_age`).
    Cached { interval_s: u64, source: String },
    /// Text this build cannot read (a newer daemon's): shown as written.
    Other(String),
}

impl AgentMode {
    /// Whether the agent runs ctrl as a cached plugin.
    pub(crate) fn is_cached(&self) -> bool {
        matches!(self, AgentMode::Cached { .. })
    }
}

impl std::fmt::Display for AgentMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentMode::Sync => f.write_str("sync"),
            AgentMode::Cached { interval_s, source } => {
                write!(f, "cached {interval_s}s ({source})")
            }
            AgentMode::Other(s) => f.write_str(s),
        }
    }
}

/// Compared with the text people read (`sync`, `cached 300s (plugins/300/)`).
impl PartialEq<&str> for AgentMode {
    fn eq(&self, other: &&str) -> bool {
        // The text reads back to the mode it was written from.
        *self == AgentMode::from(other.to_string())
    }
}

impl From<String> for AgentMode {
    fn from(s: String) -> AgentMode {
        if s == "sync" {
            return AgentMode::Sync;
        }
        let cached = s
            .strip_prefix("cached ")
            .and_then(|r| r.split_once("s ("))
            .and_then(|(n, rest)| Some((n.parse().ok()?, rest.strip_suffix(')')?)));
        match cached {
            Some((interval_s, source)) => AgentMode::Cached {
                interval_s,
                source: source.to_string(),
            },
            None => AgentMode::Other(s),
        }
    }
}

impl From<AgentMode> for String {
    fn from(m: AgentMode) -> String {
        m.to_string()
    }
}

/// What kind of error the daemon's `config_error` is (its text stays text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConfigErrorKind {
    /// An edit the daemon rejected, or a config it no longer trusts: it runs the last good
    /// one (WARN).
    Rejected,
    /// The config is unchanged but the user database changed, and a user it names is gone
    /// or expired: that user's jobs are held, not run (WARN); a reload looks again.
    UsersChanged,
    /// The config holds the jobs of a user that may not run now, such as an expired account
    /// (WARN, as the other jobs run).
    UsersHeld,
}

/// The daemon's own state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    /// The daemon's process start time in OS ticks (with `pid`, identifies the process).
    pub(crate) pid_start: Option<u64>,
    pub started: DateTime<Utc>,
    /// Build identity of the binary the daemon runs.
    pub(crate) build: String,
    pub(crate) config: PathBuf,
    /// `config::stamp` of the config file as the daemon last read it (valid or not).
    #[serde(default)]
    pub(crate) config_stamp: Option<String>,
    /// How ctrl launched it (`systemd-run`, `fork`, `foreground`, ...).
    pub(crate) route: Route,
    /// It answers ctrl's heartbeat in `heartbeat-ack` (older builds do not, and ctrl judges
    /// them by the lock alone).
    #[serde(default)]
    pub(crate) acks_heartbeat: bool,
    pub(crate) phase: Phase,
    /// Why it drains or stopped (`stop requested`, `heartbeat stale`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The last config reload error; the daemon keeps running its last good config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) config_error: Option<String>,
    /// What [`Self::config_error`] is: the daemon (hold jobs or not) and ctrl's daemon line
    /// decide by this, never by the words. `None` with an error: a status of an older build,
    /// taken as [`ConfigErrorKind::Rejected`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) config_error_kind: Option<ConfigErrorKind>,
    /// A problem writing state (e.g. disk full); cleared when writes succeed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state_error: Option<String>,
    /// The daemon does not keep up with its schedule: what it missed and its backlog
    /// (`app::daemon::backlog`); ctrl's daemon line is WARN while it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) behind: Option<String>,
    /// The dead man timeout in force: `heartbeat_timeout`, raised for the agent's cached mode.
    pub(crate) heartbeat_timeout_s: Option<f64>,
    /// How the agent runs ctrl, as ctrl last recorded it: `sync` or `cached 300s (…)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) agent_mode: Option<AgentMode>,
    /// When this instance's daemons started over the last day, this one's last (at most
    /// [`MAX_STARTS_KEPT`]): a daemon that restarts again and again shows in the count (see
    /// `daemon::lifecycle`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) starts: Vec<DateTime<Utc>>,
    /// How the daemon before this one ended, when it was not a clean exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous_crash: Option<Crash>,
    /// When and why the daemon before this one stopped, when it stopped by itself (an admin's
    /// `stop`, heartbeat silence, an upgrade), as this one found it in `status.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous_stop: Option<LastStop>,
    /// The zone its cron schedules are evaluated in, in words (`service::zone::in_force`):
    /// `Europe/Berlin (UTC+01:00), from /etc/localtime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) time_zone: Option<String>,
    /// Since when the wall clock stands behind the latest due time taken (it was set back),
    /// counted on the daemon's monotonic clock and written as the wall instant that far back:
    /// a job's result from the future turns stale counted from here
    /// (`logic::staleness::seen`), also when ctrl judges it from the config (with no daemon
    /// running, from the last one's). The next daemon (or `run-once`) takes it over while the
    /// clock is still behind: a restart does not start the count again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) clock_set_back_since: Option<DateTime<Utc>>,
}

/// A daemon that stopped by itself: when (its last status write), why, and what it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastStop {
    pub(crate) pid: u32,
    pub(crate) build: String,
    pub(crate) at: DateTime<Utc>,
    /// `stop requested`, `heartbeat stale: …`, `upgrade (build 0.1.0 → 0.2.0)`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

impl LastStop {
    /// What a stopped daemon's last status says of its stop; `None` if it never said it
    /// stopped (it ended without a word: a crash, `kill -9`).
    pub(crate) fn of(s: &Status) -> Option<LastStop> {
        (s.daemon.phase == Phase::Stopped).then(|| LastStop {
            pid: s.daemon.pid,
            build: s.daemon.build.clone(),
            at: s.updated,
            reason: s.daemon.reason.clone(),
        })
    }
}

/// How many daemon starts [`DaemonInfo::starts`] keeps.
pub(crate) const MAX_STARTS_KEPT: usize = 20;

/// A daemon that did not end by a clean exit, as the next daemon found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Crash {
    pub(crate) pid: u32,
    pub(crate) started: DateTime<Utc>,
    /// When it died, where it said (a fatal signal's note, a panic's); else unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) died: Option<DateTime<Utc>>,
    /// What it left: the panic or abort message, the fatal signal, an exit code, or that it
    /// left nothing (SIGKILL, the OOM killer, a power cut).
    pub(crate) cause: String,
    /// ctrl ended it because it no longer answered (`hang_timeout`): its daemon line was CRIT
    /// while it was silent and WARN when it was replaced, so the restart alone is no crash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) ended_by_ctrl: bool,
}

/// A run in flight, as listed in the status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunningRun {
    pub(crate) run_id: String,
    pub(crate) due: DateTime<Utc>,
    pub(crate) started: Option<DateTime<Utc>>,
    pub(crate) pid: Option<u32>,
}

/// The summary of a job's latest finished run that status and ctrl show; the full record stays
/// in the run folder and `latest.json` (ctrl reads this file on every agent call: small is fast).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    pub(crate) run_id: String,
    pub(crate) due: DateTime<Utc>,
    #[serde(default)]
    pub(crate) started: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) finished: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) duration_s: Option<f64>,
    #[serde(default)]
    pub(crate) exit_code: Option<i32>,
    /// The signal that ended the runner (Unix), as its record says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signal: Option<i32>,
    #[serde(default)]
    pub(crate) outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tests: Option<TestStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) log: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) report: Option<PathBuf>,
    /// How many robot attempts the run took (jobs with retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) attempts: Option<u32>,
    /// Its run folder was gone at its end: the output is lost (at least WARN).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) output_lost: bool,
    /// A `kind = "plugin"` job's reading of its plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plugin: Option<Box<crate::model::plugin::PluginOutput>>,
    /// The first line a failed command printed (stderr, else stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) output_head: Option<String>,
    /// The published log's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) log_url: Option<String>,
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
            signal: r.signal,
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
    pub(crate) name: String,
    pub(crate) schedule: String,
    pub interval_s: f64,
    pub timeout_s: f64,
    pub next_due: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) running: Vec<RunningRun>,
    /// Runs waiting for a free slot (`max_parallel`).
    #[serde(default)]
    pub(crate) queued: usize,
    /// The latest finished run that was not skipped.
    #[serde(default)]
    pub last: Option<LastRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_skipped: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) skipped_total: u64,
    /// `per-test`: one local check per test besides the job's.
    #[serde(default, skip_serializing_if = "is_job")]
    pub(crate) services: Services,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) test_runtime_warn_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) test_runtime_crit_s: Option<f64>,
    /// Piggyback host, levels and staleness deadlines (flattened into the job's JSON).
    #[serde(flatten)]
    pub(crate) checkmk: CheckmkView,
}

fn is_job(s: &Services) -> bool {
    *s == Services::Job
}

/// What ctrl needs to place and judge a job's local check without parsing the config (its
/// fast path): the piggyback host, the runtime levels, and when the latest result turns
/// stale (see [`crate::logic::staleness`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckmkView {
    /// The Checkmk host the job's check belongs to (piggyback), if not the agent's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) runtime_warn_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) runtime_crit_s: Option<f64>,
    /// No newer result after this instant: stale, WARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expected_by: Option<DateTime<Utc>>,
    /// No newer result after this instant either: CRIT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) crit_after: Option<DateTime<Utc>>,
    /// The service name the config gives the job's check (`service = "…"`), instead of
    /// `Robotmk <instance> <job>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) service: Option<String>,
}

impl CheckmkView {
    pub(crate) fn deadlines(&self) -> Option<Deadlines> {
        Some(Deadlines {
            expected_by: self.expected_by?,
            crit_after: self.crit_after?,
        })
    }
}

/// When a job's latest result turns stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Deadlines {
    /// The next due run should have reported by now; past it with no newer result: WARN.
    pub(crate) expected_by: DateTime<Utc>,
    /// The due run after that one should have reported too; past it: CRIT.
    pub(crate) crit_after: DateTime<Utc>,
}

/// The whole status document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub(crate) version: u32,
    pub(crate) instance: String,
    pub(crate) updated: DateTime<Utc>,
    pub daemon: DaemonInfo,
    pub jobs: Vec<JobStatus>,
    /// The jobs' Python environments (state, build time, error, which jobs use each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) envs: Vec<EnvState>,
}

/// A daemon's info for tests, from JSON as ctrl reads it: fields added later with defaults
/// need no edit here.
#[cfg(test)]
pub(crate) fn sample_daemon_info(acks: bool) -> DaemonInfo {
    serde_json::from_value(serde_json::json!({
        "pid": 1, "started": chrono::Utc::now(), "build": crate::model::BUILD_ID,
        "config": "/c.toml", "route": "fork", "acks_heartbeat": acks, "phase": "running",
        "heartbeat_timeout_s": null,
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status.json` as builds before the enums wrote it (`phase` and `agent_mode` free
    /// strings), from a draining daemon of a cached agent.
    const OLD: &str = r#"{"version":1,"instance":"t","updated":"2026-01-01T00:00:00Z","daemon":{"pid":4711,"pid_start":5,"started":"2026-01-01T00:00:00Z","build":"0.1.0","config":"/c","config_stamp":"1:2:3","route":"fork","acks_heartbeat":true,"phase":"draining","reason":"stop requested","heartbeat_timeout_s":660.0,"agent_mode":"cached 300s (plugins/300/)"},"jobs":[]}"#;

    #[test]
    fn an_old_status_file_loads_and_is_written_back_the_same() {
        let s: Status = serde_json::from_str(OLD).expect("an old status.json loads");
        assert_eq!(s.daemon.phase, Phase::Draining);
        assert_eq!(
            s.daemon.agent_mode,
            Some(AgentMode::Cached {
                interval_s: 300,
                source: "plugins/300/".into()
            })
        );
        // Older ctrls read what this build writes: the same strings.
        let back = serde_json::to_value(&s).unwrap();
        let old: serde_json::Value = serde_json::from_str(OLD).unwrap();
        assert_eq!(back["daemon"]["phase"], old["daemon"]["phase"]);
        assert_eq!(back["daemon"]["agent_mode"], old["daemon"]["agent_mode"]);
        for (text, phase) in [
            ("running", Phase::Running),
            ("stopped", Phase::Stopped),
            ("paused", Phase::Other("paused".into())),
        ] {
            let file = OLD.replace("\"draining\"", &format!("{text:?}"));
            let s: Status = serde_json::from_str(&file).expect(text);
            assert_eq!(s.daemon.phase, phase);
            assert_eq!(serde_json::to_value(&s).unwrap()["daemon"]["phase"], text);
        }
        for text in ["sync", "cached soon"] {
            let file = OLD.replace("cached 300s (plugins/300/)", text);
            let s: Status = serde_json::from_str(&file).expect(text);
            assert_eq!(s.daemon.agent_mode.as_ref().unwrap().to_string(), text);
            assert_eq!(
                serde_json::to_value(&s).unwrap()["daemon"]["agent_mode"],
                text
            );
        }
    }

    /// `route` was a free string: every route a build wrote loads, an unknown one as written,
    /// and each is written back the same.
    #[test]
    fn an_old_status_files_route_loads_and_is_written_back_the_same() {
        for (text, route) in [
            ("fork", Route::Fork),
            ("systemd-run", Route::SystemdRun),
            ("parent-process", Route::ParentProcess),
            ("run-once", Route::RunOnce),
            ("launchd", Route::Other("launchd".into())),
        ] {
            let file = OLD.replace("\"fork\"", &format!("{text:?}"));
            let s: Status = serde_json::from_str(&file).expect(text);
            assert_eq!(s.daemon.route, route);
            assert_eq!(text.parse::<Route>(), Ok(route));
            assert_eq!(serde_json::to_value(&s).unwrap()["daemon"]["route"], text);
        }
    }
}
