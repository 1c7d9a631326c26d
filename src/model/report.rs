//! The instance's state as ctrl and `status` show it (assembled by `service::report` from the
//! config, the lock, the heartbeat's mtime and the daemon's `status.json`), and the caps
//! applied to every string in it.

use crate::model::clip::{clip, clip_opt, MAX_NAME, MAX_TEXT};
use crate::model::config::{Config, ConfigError};
use crate::model::env::EnvState;
use crate::model::pause::Pause;
use crate::model::status::{AgentMode, Crash, JobStatus, LastStop, Phase, Route};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::PathBuf;

/// What ctrl did on this call, as the JSON section says it (`started`, `running`, …): the
/// daemon line goes by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CtrlAction {
    /// It started a daemon.
    Started,
    /// A daemon runs.
    Running,
    /// It ended a daemon that did not answer past `hang_timeout` and started another.
    Restarted,
    /// The config cannot be loaded (a daemon may run on with its last good one).
    ConfigError,
    /// It could not start a daemon, or refused the config or state dir.
    Error,
}

/// What ctrl did on this call.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CtrlReport {
    pub(crate) action: CtrlAction,
    /// How the agent runs this ctrl, as it saw it: `sync` or `cached 300s (plugins/300/)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<AgentMode>,
    /// The launch route, when this ctrl launched the daemon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) route: Option<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: f64,
}

/// The daemon as seen from outside.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DaemonReport {
    pub(crate) running: bool,
    pub(crate) pid: Option<u32>,
    pub(crate) started: Option<DateTime<Utc>>,
    pub(crate) uptime_s: Option<f64>,
    pub(crate) heartbeat_age_s: Option<f64>,
    pub(crate) heartbeat_timeout_s: Option<f64>,
    /// How the agent runs ctrl, as the daemon last saw it (`sync`, `cached 300s (…)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) agent_mode: Option<AgentMode>,
    pub(crate) phase: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    pub(crate) route: Option<Route>,
    pub(crate) build: Option<String>,
    /// The daemon holds the lock but has not answered ctrl's heartbeat written at this
    /// time (stopped, hung: see [`crate::logic::liveness`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) not_responding_since: Option<DateTime<Utc>>,
    /// The daemon's own view: an edit it rejected (it keeps running the last good config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) config_error: Option<String>,
    /// What `config_error` is, for the daemon line (not in the JSON section: the text says it).
    #[serde(skip)]
    pub(crate) config_error_kind: Option<crate::model::status::ConfigErrorKind>,
    /// When the config the daemon runs was last written (its file's mtime when loaded): the
    /// "last good config" a rejected edit leaves running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) config_from: Option<DateTime<Utc>>,
    /// Why and when the daemon last stopped, in words (`status`): the stopped daemon's, or
    /// the running daemon's predecessor's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_stop: Option<String>,
    /// [`Self::last_stop`] as data, when that daemon said it stopped (a crash says nothing:
    /// see `previous_crash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_stopped: Option<LastStop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) state_error: Option<String>,
    /// The daemon does not keep up with its schedule (`app::daemon::backlog`): WARN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) behind: Option<String>,
    /// How the daemon before this one ended, when not cleanly (see `daemon::lifecycle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) previous_crash: Option<Crash>,
    /// Why the daemon line is CRIT though it runs: a recent crash, or too many restarts
    /// ([`crate::logic::liveness::unstable`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unstable: Option<String>,
    /// The zone cron schedules are evaluated in: the running daemon's (it says so in
    /// `status.json`), else the host's, where ctrl or `start` would launch one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) time_zone: Option<String>,
}

fn lossy<S: serde::Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

fn lossy_some<S: serde::Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => lossy(p, s),
        None => s.serialize_none(),
    }
}

/// Everything `status --json` prints and ctrl's JSON section carries.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub(crate) instance: Option<String>,
    /// Shown as text (a byte that is not UTF-8 as U+FFFD): the config's load refuses such a
    /// path and says so, and the report that says it must still serialize.
    #[serde(serialize_with = "lossy")]
    pub(crate) config: PathBuf,
    /// The config as read now (by ctrl or `status`), if it is broken.
    pub(crate) config_error: Option<String>,
    /// What of the jobs' JSON was left out to keep the section under its cap (ctrl only; see
    /// `logic::agent::fit_jobs`): the daemon's line says it too, and every job's local check
    /// is printed whole all the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) section_cut: Option<String>,
    #[serde(serialize_with = "lossy_some")]
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) daemon: DaemonReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ctrl: Option<CtrlReport>,
    pub(crate) jobs: Vec<JobStatus>,
    /// The jobs' Python environments, as the daemon last reported them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) envs: Vec<EnvState>,
    /// The pauses in force (`status` only; ctrl shows them in its checks' lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paused: Option<PausedReport>,
    /// What `check-config` warns of in the config as read now (`status` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) config_warnings: Vec<String>,
    pub(crate) generated: DateTime<Utc>,
}

/// The pauses in force: of the whole instance, of single jobs, and when ctrl turns them WARN.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PausedReport {
    pub(crate) all: Option<Pause>,
    pub(crate) jobs: std::collections::BTreeMap<String, Pause>,
    /// A pause older than this shows as WARN in Checkmk.
    pub(crate) warn_after_s: u64,
}

/// How the config stands, as far as the report is concerned.
#[derive(Clone, Copy)]
pub enum ConfigView<'a> {
    Loaded(&'a Config),
    Broken(&'a ConfigError),
    /// Not parsed here: the running daemon validated this very file (same stamp), so its
    /// status is the authority on the jobs.
    VouchedByDaemon,
}

impl<'a> From<&'a Result<Config, ConfigError>> for ConfigView<'a> {
    fn from(r: &'a Result<Config, ConfigError>) -> Self {
        match r {
            Ok(c) => ConfigView::Loaded(c),
            Err(e) => ConfigView::Broken(e),
        }
    }
}

impl Report {
    /// A copy with no jobs (the rest is small), for a section whose jobs are cut to size.
    pub(crate) fn without_jobs(&self) -> Report {
        Report {
            instance: self.instance.clone(),
            config: self.config.clone(),
            config_error: self.config_error.clone(),
            section_cut: self.section_cut.clone(),
            state_dir: self.state_dir.clone(),
            daemon: self.daemon.clone(),
            ctrl: self.ctrl.clone(),
            jobs: Vec::new(),
            envs: self.envs.clone(),
            paused: self.paused.clone(),
            config_warnings: self.config_warnings.clone(),
            generated: self.generated,
        }
    }

    /// Applies the length caps to every string that came from a file or the config, so
    /// what reaches the agent stays small whatever those files hold.
    pub(crate) fn clip(&mut self) {
        clip_opt(&mut self.instance, MAX_NAME);
        clip_opt(&mut self.config_error, MAX_TEXT);
        let d = &mut self.daemon;
        clip_opt(&mut d.build, MAX_NAME);
        if let Some(Phase::Other(s)) = &mut d.phase {
            clip(s, MAX_NAME);
        }
        if let Some(Route::Other(s)) = &mut d.route {
            clip(s, MAX_NAME);
        }
        for s in [
            &mut d.reason,
            &mut d.config_error,
            &mut d.state_error,
            &mut d.behind,
            &mut d.unstable,
            &mut d.last_stop,
        ] {
            clip_opt(s, MAX_TEXT);
        }
        if let Some(c) = &mut d.previous_crash {
            clip(&mut c.cause, MAX_TEXT);
        }
        if let Some(l) = &mut d.last_stopped {
            clip(&mut l.build, MAX_NAME);
            clip_opt(&mut l.reason, MAX_TEXT);
        }
        if let Some(m) = &mut d.agent_mode {
            let mut text = m.to_string();
            if text.len() > MAX_NAME {
                clip(&mut text, MAX_NAME);
                *m = AgentMode::Other(text);
            }
        }
        if let Some(c) = &mut self.ctrl {
            clip_opt(&mut c.note, MAX_TEXT);
            clip_opt(&mut c.error, MAX_TEXT);
        }
        self.envs.iter_mut().for_each(clip_env);
        self.jobs.iter_mut().for_each(clip_job);
    }
}

/// [`Report::clip`] for one environment.
pub(crate) fn clip_env(e: &mut EnvState) {
    clip(&mut e.key, MAX_NAME);
    clip(&mut e.python, MAX_NAME);
    clip_opt(&mut e.tool, MAX_NAME);
    clip_opt(&mut e.builder, MAX_NAME);
    clip_opt(&mut e.python_version, MAX_NAME);
    clip_opt(&mut e.error, MAX_TEXT);
    for j in &mut e.jobs {
        clip(j, MAX_NAME);
    }
}

/// [`Report::clip`] for one job.
pub(crate) fn clip_job(j: &mut JobStatus) {
    clip(&mut j.name, MAX_NAME);
    clip(&mut j.schedule, MAX_NAME);
    clip_opt(&mut j.checkmk.host, MAX_NAME);
    for r in &mut j.running {
        clip(&mut r.run_id, MAX_NAME);
    }
    if let Some(l) = &mut j.last {
        clip(&mut l.run_id, MAX_NAME);
        clip_opt(&mut l.note, MAX_TEXT);
        clip_opt(&mut l.output_head, MAX_TEXT);
        clip_opt(&mut l.log_url, MAX_TEXT);
        if let Some(t) = &mut l.tests {
            clip_opt(&mut t.suite, MAX_NAME);
            clip_opt(&mut t.suite_status, MAX_NAME);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ctrl's action is a word of the JSON section the Checkmk side reads: the enum keeps the
    /// words the strings had.
    #[test]
    fn ctrl_actions_keep_their_words() {
        for (a, word) in [
            (CtrlAction::Started, "started"),
            (CtrlAction::Running, "running"),
            (CtrlAction::Restarted, "restarted"),
            (CtrlAction::ConfigError, "config_error"),
            (CtrlAction::Error, "error"),
        ] {
            assert_eq!(serde_json::to_value(a).unwrap(), word);
        }
    }
}
