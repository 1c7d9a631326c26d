//! A validated config as the program acts on it: daemon-wide settings and the jobs, defaults
//! applied (parsed from the file by `logic::config`, its users and programs looked up by
//! `service::config`), and the error that names where a file went wrong.

use crate::model::env::EnvSpec;
use crate::model::limits::Limits;
use crate::model::schedule::Schedule;
use crate::model::user::UserInfo;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The environment variable that names the config file, checked before `$MK_CONFDIR`.
pub(crate) const CONFIG_ENV: &str = "ROBOTMK_DAEMON_CONFIG";
/// The file name looked up in `$MK_CONFDIR` and the OS config folder.
pub(crate) const CONFIG_FILE_NAME: &str = "robotmk-daemon.toml";
/// The file in a robot job's run folder that carries its `variables` (robot's
/// `--argumentfile`), written 0600 when the run is prepared.
pub(crate) const VARIABLES_FILE: &str = "robotmk-variables.args";
/// Largest Robot Framework result read by default: far above what robot itself can still
/// handle (rebot loads a result whole), far below what a sparse file can claim.
pub(crate) const DEFAULT_RESULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Longest a run's results may take to read by default: 1 GB takes seconds to a minute.
pub(crate) const DEFAULT_RESULT_PARSE_TIMEOUT: Duration = Duration::from_secs(120);

/// A config problem, located in the file where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub(crate) path: PathBuf,
    /// 1-based line and column, when the problem sits at a place in the file.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The offending field (`job[2].every`, `daemon.instance`), when known.
    pub(crate) field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// What a due run does while an earlier run of the same job is still in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Overlap {
    Skip,
    Allow,
}

/// What happens to due times that passed while the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CatchUp {
    /// Run once soon after start, standing for the latest missed due time.
    Once,
    /// Wait for the next regular due time.
    Skip,
}

/// Which local checks a Robot Framework job gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Services {
    /// One per job.
    #[default]
    Job,
    /// One per job, plus one per test of its latest result.
    PerTest,
}

/// What later attempts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retry {
    /// Only the tests that failed in the attempt before (`--rerunfailed`).
    Failed,
    /// The whole suite again.
    All,
}

impl Retry {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Retry::Failed => "failed",
            Retry::All => "all",
        }
    }
}

/// Daemon-wide settings, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DaemonSettings {
    /// `other_instances`: instances whose state ctrl reports besides its own (a USER
    /// instance on a desktop), each a state dir or a config file (see `service::others`).
    pub(crate) other_instances: Vec<PathBuf>,
    pub(crate) instance: String,
    pub(crate) state_dir: PathBuf,
    /// `None` when the dead man switch is off (`heartbeat_timeout = "0"`).
    pub(crate) heartbeat_timeout: Option<Duration>,
    /// How long the daemon may leave ctrl's heartbeat unanswered (stopped, hung) before
    /// ctrl ends it and starts a new one; `None` = never (`hang_timeout = "0"`).
    pub(crate) hang_timeout: Option<Duration>,
    /// 0 = no limit.
    pub(crate) max_parallel: usize,
    pub(crate) keep_runs: usize,
    pub(crate) stop_grace: Duration,
    pub(crate) log_max_bytes: u64,
    /// Added (with `stop_grace`) to a run's timeout before its missing result is stale
    /// (see [`crate::logic::staleness`]).
    pub(crate) stale_margin: Duration,
    /// The agent runs ctrl as a cached plugin with this interval (needed on Windows, where
    /// the agent does not tell the plugin; Linux ctrl sees it in its `plugins/<seconds>/`).
    pub(crate) agent_cache_age: Option<Duration>,
    /// Bound on one Python environment build (`env_build_timeout`, default 10m).
    pub(crate) env_build_timeout: Duration,
    /// Bounds on reading a run's Robot Framework results (`result_max_size`, default 1GB;
    /// `result_parse_timeout`, default 2m): what a run leaves is untrusted, and a sparse file
    /// of a terabyte costs it nothing.
    pub(crate) result_limits: Limits,
    /// No run starts before the system has been up this long (`start_delay`; Robotmk's
    /// grace period: after boot the desktop or the network may not be ready).
    pub(crate) start_delay: Duration,
    /// uv, when environments are built with it (`uv = "…"`, else found on PATH; `"off"`:
    /// always `python -m venv` + pip).
    pub(crate) uv: Option<PathBuf>,
    /// The unprivileged user the environments of jobs without a `user` are built as when the
    /// daemon is root (`build_user`, default [`crate::model::env::DEFAULT_BUILD_USER`]). Looked up
    /// by the daemon when it builds, not here: a missing user fails those builds, with the
    /// fix, and nothing else.
    pub(crate) build_user: String,
    /// Where robot runs' logs are published for a web server (`publish_dir`, `publish_url`).
    pub(crate) publish: Option<Publish>,
}

/// `[daemon] publish_dir` and `publish_url`: both or neither.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Publish {
    pub(crate) dir: PathBuf,
    /// Checked, without a trailing `/`.
    pub(crate) url: String,
}

/// What a `kind = "plugin"` job adds to a job (boxed in [`Job`]: few jobs have it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PluginSpec {
    /// The name of its service in Checkmk (`service = "…"`), else `Robotmk <instance> <job>`.
    pub(crate) service: Option<String>,
    /// The state a timed-out run gets (`timeout_state`, default CRIT).
    pub(crate) timeout_state: u8,
}

/// What a job sets for its runner beyond the command (see [`Job::setup`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunSetup {
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) working_dir: Option<PathBuf>,
    /// Content of [`VARIABLES_FILE`], for robot jobs with `variables` (kept off argv).
    pub(crate) argument_file: Option<String>,
}

impl RunSetup {
    /// Boxed when anything is set, else nothing: most jobs set none of it.
    pub(crate) fn boxed(self) -> Option<Box<RunSetup>> {
        (self != RunSetup::default()).then(|| Box::new(self))
    }
}

/// The environment of a job that sets none.
static NO_ENV: BTreeMap<String, String> = BTreeMap::new();

/// What a job sets for Checkmk beyond its check: the host its piggyback data goes to and the
/// runtime levels (see [`Job::checkmk`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CheckmkSettings {
    /// The Checkmk host whose piggyback data carries this job's check (`host = "…"`).
    pub(crate) host: Option<String>,
    /// Levels on the runtime metric and the check's state (`runtime_warn`, `runtime_crit`).
    pub(crate) runtime_warn: Option<Duration>,
    pub(crate) runtime_crit: Option<Duration>,
    /// Levels on each test's runtime (`test_runtime_warn`, `test_runtime_crit`).
    pub(crate) test_runtime_warn: Option<Duration>,
    pub(crate) test_runtime_crit: Option<Duration>,
}

impl CheckmkSettings {
    /// Boxed when anything is set, else nothing: most jobs set none of it.
    pub(crate) fn boxed(self) -> Option<Box<CheckmkSettings>> {
        (self != CheckmkSettings::default()).then(|| Box::new(self))
    }
}

/// One job, ready to schedule and run.
#[derive(Debug, Clone)]
pub struct Job {
    pub(crate) name: Box<str>,
    /// argv; may contain `{run_dir}`, `{job}`, `{run_id}`.
    pub(crate) command: crate::model::argv::Argv,
    /// Set for `kind = "robot"` jobs: the run folder then holds Robot Framework's output.xml.
    /// Read by no one but the config's tests (the daemon tells a robot job by its `result`);
    /// kept because they assert the shorthand through it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) robot: bool,
    pub(crate) schedule: Schedule,
    pub(crate) timeout: Duration,
    pub(crate) overlap: Overlap,
    pub(crate) catch_up: CatchUp,
    /// The environment, working directory and argument file, if the job sets any. Boxed:
    /// few jobs do, and every job is held for the daemon's life (64 bytes inline, 8 boxed).
    pub(crate) setup: Option<Box<RunSetup>>,
    /// The Robot Framework result file (placeholders allowed): `{run_dir}/output.xml` for
    /// robot jobs, what `result` says for command jobs.
    pub(crate) result: Option<Box<str>>,
    /// Robot runs per run at most (1 = no retries); see `robot::attempts`.
    pub(crate) attempts: u32,
    pub(crate) services: Services,
    /// The piggyback host and the runtime levels, if the job sets any. Boxed: few jobs do,
    /// and every job is held for the daemon's life (88 bytes inline, 8 boxed).
    pub(crate) checkmk: Option<Box<CheckmkSettings>>,
    /// The Python environment its runs use (`requirements` or `pyproject`). Boxed, like
    /// `user`: few jobs set it, and every job is held for the daemon's life.
    pub(crate) pyenv: Option<Box<EnvSpec>>,
    /// The user its runner runs as (`user = "…"`; Unix, daemon as root), as looked up when
    /// the config was loaded.
    pub(crate) user: Option<Box<UserInfo>>,
    /// The config names a `user` that was not looked up (a config loaded with
    /// [`Users::NamesOnly`], ctrl's): such a job must never run. (A flag, not the name: it
    /// fits in padding, and every job is held for the daemon's life.)
    pub(crate) user_deferred: bool,
    /// Set for `kind = "plugin"` jobs: the runner is a Nagios-compatible plugin.
    pub(crate) plugin: Option<Box<PluginSpec>>,
}

impl Job {
    /// The variables its runs get beyond the daemon's (`env`).
    pub(crate) fn env(&self) -> &BTreeMap<String, String> {
        self.setup.as_ref().map_or(&NO_ENV, |s| &s.env)
    }

    /// The runner's working directory, if not the run folder (`working_dir`).
    pub(crate) fn working_dir(&self) -> Option<&Path> {
        self.setup.as_ref().and_then(|s| s.working_dir.as_deref())
    }

    /// Content of [`VARIABLES_FILE`], for robot jobs with `variables` (kept off argv).
    pub(crate) fn argument_file(&self) -> Option<&str> {
        self.setup.as_ref().and_then(|s| s.argument_file.as_deref())
    }

    /// The Checkmk host whose piggyback data carries this job's check (`host = "…"`).
    pub(crate) fn host(&self) -> Option<&str> {
        self.checkmk.as_ref().and_then(|c| c.host.as_deref())
    }

    pub(crate) fn runtime_warn(&self) -> Option<Duration> {
        self.checkmk.as_ref().and_then(|c| c.runtime_warn)
    }

    pub(crate) fn runtime_crit(&self) -> Option<Duration> {
        self.checkmk.as_ref().and_then(|c| c.runtime_crit)
    }

    pub(crate) fn test_runtime_warn(&self) -> Option<Duration> {
        self.checkmk.as_ref().and_then(|c| c.test_runtime_warn)
    }

    pub(crate) fn test_runtime_crit(&self) -> Option<Duration> {
        self.checkmk.as_ref().and_then(|c| c.test_runtime_crit)
    }

    /// True when the two definitions run the same thing on the same schedule.
    pub(crate) fn same_as(&self, other: &Job) -> bool {
        self.name == other.name
            && self.command == other.command
            && self.schedule.to_string() == other.schedule.to_string()
            && self.timeout == other.timeout
            && self.overlap == other.overlap
            && self.catch_up == other.catch_up
            && self.setup == other.setup
            && self.result == other.result
            && self.services == other.services
            && self.test_runtime_warn() == other.test_runtime_warn()
            && self.test_runtime_crit() == other.test_runtime_crit()
            && self.pyenv == other.pyenv
            && self.user == other.user
            && self.user_deferred == other.user_deferred
            && self.plugin == other.plugin
    }
}

/// The instance of a config that names none (`[daemon] instance`).
pub(crate) const DEFAULT_INSTANCE: &str = "system";

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the file it was read from.
    pub(crate) path: PathBuf,
    pub(crate) daemon: DaemonSettings,
    /// Shared with the daemon's per-job state: one copy of each job, however many holders.
    pub jobs: Vec<Arc<Job>>,
    /// Why the jobs held by a load with [`Users::LookUpOrHold`] are held, by job name: the
    /// lookup's error, such as "account robot expired on 2026-01-31" or the user not being
    /// there. Their runs are recorded as not run with it. (Here, not on the job: few configs
    /// hold any, and every job is held for the daemon's life.)
    pub(crate) users_held: BTreeMap<Box<str>, Arc<str>>,
}

/// How the daemon's config error starts while the config it runs holds the jobs of a user
/// that may not run now (an expired account). Words only: the daemon line goes by
/// [`crate::model::status::ConfigErrorKind`].
pub(crate) const USERS_HELD: &str = "a job's user may not run now";

impl Config {
    /// The daemon's note while this config holds jobs of users ([`Config::users_held`]),
    /// each reason once (a [`crate::model::status::ConfigErrorKind::UsersHeld`] error).
    pub(crate) fn users_held_note(&self) -> Option<String> {
        let mut why: Vec<&str> = self.users_held.values().map(|w| &**w).collect();
        why.sort_unstable();
        why.dedup();
        (!why.is_empty()).then(|| format!("{USERS_HELD}: {}", why.join("; ")))
    }

    /// A copy whose jobs are copies too (not shared with this one's): made anew where the
    /// allocator puts them now (see `service::config::load_compact`).
    pub(crate) fn copied(&self) -> Config {
        Config {
            path: self.path.clone(),
            daemon: self.daemon.clone(),
            jobs: self.jobs.iter().map(|j| Arc::new(Job::clone(j))).collect(),
            users_held: self.users_held.clone(),
        }
    }
}

/// Whether loading a config looks up the users its jobs run as (`user = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Users {
    /// Each user is looked up (see [`crate::service::sys::lookup_user`]); one that is not there is a
    /// config error naming it. The daemon, `check-config`, `status`, `run-once`.
    LookUp,
    /// Not looked up ([`Job::user`] stays `None`): ctrl, which never runs a job and prints
    /// its sections without calling into the host's user database (the daemon looks the
    /// users up, and reports one that is missing); `stop`, `history`, `show`.
    NamesOnly,
    /// Each user is looked up; a job whose user is not there, or whose account expired, is
    /// held ([`Job::user`] `None`, `user_deferred`, [`Config::users_held`] saying why: it never
    /// runs) instead of failing the config: the daemon, once the host's user database changed
    /// under the config it runs, so that a job of a user deleted since does not go on running
    /// as that user's old uid, which may be another's, and one of an account the admin expired
    /// stops as its cron jobs do.
    LookUpOrHold,
}
