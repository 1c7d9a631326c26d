//! The instance's state as ctrl and `status` show it: assembled from the config, the lock
//! (running or not), the heartbeat's mtime and the daemon's `status.json` — small files only,
//! never the run folders.

use crate::config::{Config, ConfigError};
use crate::lock;
use crate::state::status::{JobStatus, Status};
use crate::state::{self, StateDir};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::PathBuf;
use std::time::SystemTime;

/// What ctrl did on this call.
#[derive(Debug, Clone, Serialize)]
pub struct CtrlReport {
    /// `started`, `running` or `config_error` (`error` if it could not start a daemon;
    /// `restarted` when it ended a daemon that did not answer past `hang_timeout`).
    pub action: &'static str,
    /// How the agent runs this ctrl, as it saw it: `sync` or `cached 300s (plugins/300/)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The launch route, when this ctrl launched the daemon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
}

/// The daemon as seen from outside.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonReport {
    pub running: bool,
    pub pid: Option<u32>,
    pub started: Option<DateTime<Utc>>,
    pub uptime_s: Option<f64>,
    pub heartbeat_age_s: Option<f64>,
    pub heartbeat_timeout_s: Option<f64>,
    /// How the agent runs ctrl, as the daemon last saw it (`sync`, `cached 300s (…)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_mode: Option<String>,
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub route: Option<String>,
    pub build: Option<String>,
    /// The daemon holds the lock but has not answered ctrl's heartbeat written at this
    /// time (stopped, hung: see [`crate::liveness`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_responding_since: Option<DateTime<Utc>>,
    /// The daemon's own view: an edit it rejected (it keeps running the last good config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
    /// The daemon does not keep up with its schedule (`daemon::backlog`): WARN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<String>,
    /// How the daemon before this one ended, when not cleanly (see `daemon::lifecycle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_crash: Option<crate::state::status::Crash>,
    /// Why the daemon line is CRIT though it runs: a recent crash, or too many restarts
    /// ([`crate::liveness::unstable`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unstable: Option<String>,
}

/// Everything `status --json` prints and ctrl's JSON section carries.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub instance: Option<String>,
    pub config: PathBuf,
    /// The config as read now (by ctrl or `status`), if it is broken.
    pub config_error: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub daemon: DaemonReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctrl: Option<CtrlReport>,
    pub jobs: Vec<JobStatus>,
    /// The jobs' Python environments, as the daemon last reported them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<crate::pyenv::EnvState>,
    pub generated: DateTime<Utc>,
}

fn age_s(now: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    ((now - t).num_milliseconds() as f64 / 1000.0).max(0.0)
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

/// Longest text (an error, a note, a name) passed on to the agent: enough for any real
/// message, and a file someone filled with megabytes cannot flood the agent's output.
pub const MAX_TEXT: usize = 1024;
/// Longest name-like value (job, schedule, run id, suite).
pub const MAX_NAME: usize = 256;

/// Cuts `s` to at most `max` bytes (at a character boundary), marking the cut.
pub fn clip(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
}

fn clip_opt(s: &mut Option<String>, max: usize) {
    if let Some(s) = s {
        clip(s, max);
    }
}

impl Report {
    /// Applies the length caps to every string that came from a file or the config, so
    /// what reaches the agent stays small whatever those files hold.
    pub fn clip(&mut self) {
        clip_opt(&mut self.instance, MAX_NAME);
        clip_opt(&mut self.config_error, MAX_TEXT);
        let d = &mut self.daemon;
        for s in [&mut d.phase, &mut d.route, &mut d.build] {
            clip_opt(s, MAX_NAME);
        }
        for s in [
            &mut d.reason,
            &mut d.config_error,
            &mut d.state_error,
            &mut d.behind,
            &mut d.unstable,
        ] {
            clip_opt(s, MAX_TEXT);
        }
        if let Some(c) = &mut d.previous_crash {
            clip(&mut c.cause, MAX_TEXT);
        }
        clip_opt(&mut d.agent_mode, MAX_NAME);
        if let Some(c) = &mut self.ctrl {
            clip_opt(&mut c.note, MAX_TEXT);
            clip_opt(&mut c.error, MAX_TEXT);
        }
        self.envs.iter_mut().for_each(clip_env);
        self.jobs.iter_mut().for_each(clip_job);
    }
}

/// [`Report::clip`] for one environment.
pub fn clip_env(e: &mut crate::pyenv::EnvState) {
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
pub fn clip_job(j: &mut JobStatus) {
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

/// The daemon's `status.json`, if there is a readable one.
pub fn read_status(st: &StateDir) -> Option<Status> {
    state::read_json(&st.status_file()).ok().flatten()
}

/// Builds the report. `located` is (instance, state dir) when known even with a broken config.
pub fn build(config_path: PathBuf, cfg: ConfigView, located: Option<(String, PathBuf)>) -> Report {
    let (running, status) = match &located {
        Some((_, dir)) => {
            let st = StateDir::new(dir);
            (
                lock::is_held(&st.lock_file()).unwrap_or(false),
                read_status(&st),
            )
        }
        None => (false, None),
    };
    build_from(config_path, cfg, located, running, status)
}

/// Builds the report from a lock probe and status the caller already has.
pub fn build_from(
    config_path: PathBuf,
    cfg: ConfigView,
    located: Option<(String, PathBuf)>,
    running: bool,
    status: Option<Status>,
) -> Report {
    let now = Utc::now();
    let mut report = Report {
        instance: located.as_ref().map(|l| l.0.clone()),
        config: config_path,
        config_error: match cfg {
            ConfigView::Broken(e) => Some(e.to_string()),
            _ => None,
        },
        state_dir: located.as_ref().map(|l| l.1.clone()),
        daemon: DaemonReport::default(),
        ctrl: None,
        jobs: Vec::new(),
        envs: Vec::new(),
        generated: now,
    };
    let Some((_, dir)) = located else {
        report.clip();
        return report;
    };
    let st = StateDir::new(dir);
    report.daemon.running = running;
    report.daemon.heartbeat_age_s = st.heartbeat_mtime().and_then(|m| {
        SystemTime::now()
            .duration_since(m)
            .ok()
            .map(|d| d.as_secs_f64())
            .or(Some(0.0))
    });
    if let Some(s) = &status {
        if matches!(cfg, ConfigView::Broken(_)) {
            // The config cannot say for sure; the daemon's own word is better than a default.
            report.instance = Some(s.instance.clone());
        }
        let d = &s.daemon;
        if report.daemon.running {
            report.daemon.pid = Some(d.pid);
            report.daemon.started = Some(d.started);
            report.daemon.uptime_s = Some(age_s(now, d.started));
            report.daemon.phase = Some(d.phase.clone());
            report.daemon.reason = d.reason.clone();
            report.daemon.route = Some(d.route.clone());
            report.daemon.build = Some(d.build.clone());
            report.daemon.config_error = d.config_error.clone();
            report.daemon.agent_mode = d.agent_mode.clone();
            // The alert file carries a write failure that status.json itself could not.
            report.daemon.state_error = d.state_error.clone().or_else(|| state::read_alert(&st));
            report.daemon.not_responding_since =
                crate::liveness::not_responding_since(&st, d, report.daemon.state_error.is_some());
            report.daemon.previous_crash = d.previous_crash.clone();
            report.daemon.unstable = crate::liveness::unstable(d, now);
            report.daemon.behind = d.behind.clone();
        } else {
            report.daemon.phase = Some("stopped".into());
            report.daemon.reason = d.reason.clone();
        }
        report.daemon.heartbeat_timeout_s = d.heartbeat_timeout_s;
    }
    if let ConfigView::Loaded(c) = cfg {
        // A running daemon's own figure is the one in force (raised for the cached mode).
        if !(report.daemon.running && status.is_some()) {
            report.daemon.heartbeat_timeout_s = c.daemon.heartbeat_timeout.map(|d| d.as_secs_f64());
        }
    }
    report.envs = status.as_ref().map(|s| s.envs.clone()).unwrap_or_default();
    let known: Vec<JobStatus> = status.map(|s| s.jobs).unwrap_or_default();
    report.jobs = match cfg {
        // The config is the authority on which jobs exist; the status adds what the daemon
        // knows about them.
        ConfigView::Loaded(c) => c
            .jobs
            .iter()
            .map(|j| {
                let mut js = known
                    .iter()
                    .find(|k| k.name == j.name)
                    .cloned()
                    .unwrap_or_else(|| JobStatus {
                        name: j.name.clone(),
                        schedule: j.schedule.to_string(),
                        interval_s: j.schedule.nominal_interval(now).as_secs_f64(),
                        timeout_s: j.timeout.as_secs_f64(),
                        next_due: None,
                        running: Vec::new(),
                        queued: 0,
                        last: state::read_json::<crate::state::record::RunRecord>(
                            &st.latest_file(&j.name),
                        )
                        .ok()
                        .flatten()
                        .as_ref()
                        .map(Into::into),
                        last_skipped: None,
                        skipped_total: 0,
                        services: j.services,
                        test_runtime_warn_s: j.test_runtime_warn.map(|d| d.as_secs_f64()),
                        test_runtime_crit_s: j.test_runtime_crit.map(|d| d.as_secs_f64()),
                        checkmk: Default::default(),
                    });
                // The config is the authority on schedules and levels, also for a status
                // written by a daemon that has not seen the latest edit.
                js.checkmk = crate::state::status::CheckmkView::of(
                    j,
                    &c.daemon,
                    js.last.as_ref().map(|l| l.due),
                );
                if !report.daemon.running {
                    js.next_due = None;
                    js.running.clear();
                    js.queued = 0;
                }
                js
            })
            .collect(),
        _ => known,
    };
    report.clip();
    report
}
