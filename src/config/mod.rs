//! The config file: where it is found, how it is parsed, and what it resolves to.
//!
//! Two stages, as in ripgrep's flags: `Raw*` types mirror the TOML exactly (serde with
//! `deny_unknown_fields`, spans kept where validation needs them), then [`Config`] holds what
//! the daemon acts on, with defaults applied and every cross-field rule checked. Every error
//! names the file, line, column and field so an admin can fix it without guessing.

pub mod duration;
mod job;

pub use job::{check_host, check_service};

use crate::schedule::Schedule;
use duration::Dur;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// The environment variable that names the config file, checked before `$MK_CONFDIR`.
pub const CONFIG_ENV: &str = "ROBOTMK_DAEMON_CONFIG";
/// The file name looked up in `$MK_CONFDIR` and the OS config folder.
pub const CONFIG_FILE_NAME: &str = "robotmk-daemon.toml";
/// The file in a robot job's run folder that carries its `variables` (robot's
/// `--argumentfile`), written 0600 when the run is prepared.
pub const VARIABLES_FILE: &str = "robotmk-variables.args";
/// The shortest `hang_timeout`: ctrl calls a daemon unresponsive only after 5 s without an
/// answer, and confirms for 2 s more before it ends one.
const MIN_HANG_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted job or instance name: names become file and unit names.
const MAX_NAME_LEN: usize = 64;

/// A config problem, located in the file where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, when the problem sits at a place in the file.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The offending field (`job[2].every`, `daemon.instance`), when known.
    pub field: Option<String>,
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
pub enum Overlap {
    Skip,
    Allow,
}

/// What happens to due times that passed while the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run once soon after start, standing for the latest missed due time.
    Once,
    /// Wait for the next regular due time.
    Skip,
}

/// Which local checks a Robot Framework job gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Services {
    /// One per job.
    #[default]
    Job,
    /// One per job, plus one per test of its latest result.
    PerTest,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    daemon: Option<Spanned<RawDaemon>>,
    #[serde(default)]
    job: Vec<Spanned<job::RawJob>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    instance: Option<Spanned<String>>,
    state_dir: Option<PathBuf>,
    heartbeat_timeout: Option<Dur>,
    hang_timeout: Option<Spanned<Dur>>,
    max_parallel: Option<usize>,
    keep_runs: Option<Spanned<usize>>,
    stop_grace: Option<Dur>,
    log_max_size: Option<Spanned<String>>,
    stale_margin: Option<Dur>,
    agent_cache_age: Option<Spanned<Dur>>,
    env_build_timeout: Option<Spanned<Dur>>,
    start_delay: Option<Dur>,
    uv: Option<Spanned<String>>,
    build_user: Option<Spanned<String>>,
    result_max_size: Option<Spanned<String>>,
    result_parse_timeout: Option<Spanned<Dur>>,
    publish_dir: Option<Spanned<PathBuf>>,
    publish_url: Option<Spanned<String>>,
    other_instances: Option<Spanned<Vec<PathBuf>>>,
}

/// Daemon-wide settings, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    /// `other_instances`: instances whose state ctrl reports besides its own (a USER
    /// instance on a desktop), each a state dir or a config file (see `others`).
    pub other_instances: Vec<PathBuf>,
    pub instance: String,
    pub state_dir: PathBuf,
    /// `None` when the dead man switch is off (`heartbeat_timeout = "0"`).
    pub heartbeat_timeout: Option<Duration>,
    /// How long the daemon may leave ctrl's heartbeat unanswered (stopped, hung) before
    /// ctrl ends it and starts a new one; `None` = never (`hang_timeout = "0"`).
    pub hang_timeout: Option<Duration>,
    /// 0 = no limit.
    pub max_parallel: usize,
    pub keep_runs: usize,
    pub stop_grace: Duration,
    pub log_max_bytes: u64,
    /// Added (with `stop_grace`) to a run's timeout before its missing result is stale
    /// (see [`crate::staleness`]).
    pub stale_margin: Duration,
    /// The agent runs ctrl as a cached plugin with this interval (needed on Windows, where
    /// the agent does not tell the plugin; Linux ctrl sees it in its `plugins/<seconds>/`).
    pub agent_cache_age: Option<Duration>,
    /// Bound on one Python environment build (`env_build_timeout`, default 10m).
    pub env_build_timeout: Duration,
    /// Bounds on reading a run's Robot Framework results (`result_max_size`, default 1GB;
    /// `result_parse_timeout`, default 2m): what a run leaves is untrusted, and a sparse file
    /// of a terabyte costs it nothing.
    pub result_limits: crate::robot::budget::Limits,
    /// No run starts before the system has been up this long (`start_delay`; Robotmk's
    /// grace period: after boot the desktop or the network may not be ready).
    pub start_delay: Duration,
    /// uv, when environments are built with it (`uv = "…"`, else found on PATH; `"off"`:
    /// always `python -m venv` + pip).
    pub uv: Option<PathBuf>,
    /// The unprivileged user the environments of jobs without a `user` are built as when the
    /// daemon is root (`build_user`, default [`crate::pyenv::DEFAULT_BUILD_USER`]). Looked up
    /// by the daemon when it builds, not here: a missing user fails those builds, with the
    /// fix, and nothing else.
    pub build_user: String,
    /// Where robot runs' logs are published for a web server (`publish_dir`, `publish_url`).
    pub publish: Option<Publish>,
}

/// `[daemon] publish_dir` and `publish_url`: both or neither.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub dir: PathBuf,
    /// Checked, without a trailing `/`.
    pub url: String,
}

/// What a `kind = "plugin"` job adds to a job (boxed in [`Job`]: few jobs have it).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// The name of its service in Checkmk (`service = "…"`), else `Robotmk <instance> <job>`.
    pub service: Option<String>,
    /// The state a timed-out run gets (`timeout_state`, default CRIT).
    pub timeout_state: u8,
}

/// One job, ready to schedule and run.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// argv; may contain `{run_dir}`, `{job}`, `{run_id}`.
    pub command: Vec<String>,
    /// Set for `kind = "robot"` jobs: the run folder then holds Robot Framework's output.xml.
    pub robot: bool,
    pub schedule: Schedule,
    pub timeout: Duration,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub env: BTreeMap<String, String>,
    /// Boxed: few jobs set it, every job is held for the daemon's life, and a Windows
    /// `PathBuf` is a word larger than a Linux one.
    pub working_dir: Option<Box<Path>>,
    /// Content of [`VARIABLES_FILE`], for robot jobs with `variables` (kept off argv).
    pub argument_file: Option<String>,
    /// The Robot Framework result file (placeholders allowed): `{run_dir}/output.xml` for
    /// robot jobs, what `result` says for command jobs.
    pub result: Option<String>,
    /// Robot runs per run at most (1 = no retries); see `robot::attempts`.
    pub attempts: u32,
    pub services: Services,
    pub test_runtime_warn: Option<Duration>,
    pub test_runtime_crit: Option<Duration>,
    /// The Checkmk host whose piggyback data carries this job's check (`host = "…"`).
    pub host: Option<String>,
    /// Levels on the runtime metric and the check's state (`runtime_warn`, `runtime_crit`).
    pub runtime_warn: Option<Duration>,
    pub runtime_crit: Option<Duration>,
    /// The Python environment its runs use (`requirements` or `pyproject`). Boxed, like
    /// `user`: few jobs set it, and every job is held for the daemon's life.
    pub pyenv: Option<Box<crate::pyenv::EnvSpec>>,
    /// The user its runner runs as (`user = "…"`; Unix, daemon as root), as looked up when
    /// the config was loaded.
    pub user: Option<Box<crate::sys::UserInfo>>,
    /// The config names a `user` that was not looked up (a config loaded with
    /// [`Users::NamesOnly`], ctrl's): such a job must never run. (A flag, not the name: it
    /// fits in padding, and every job is held for the daemon's life.)
    pub user_deferred: bool,
    /// Set for `kind = "plugin"` jobs: the runner is a Nagios-compatible plugin.
    pub plugin: Option<Box<PluginSpec>>,
}

impl Job {
    /// True when the two definitions run the same thing on the same schedule.
    pub fn same_as(&self, other: &Job) -> bool {
        self.name == other.name
            && self.command == other.command
            && self.schedule.to_string() == other.schedule.to_string()
            && self.timeout == other.timeout
            && self.overlap == other.overlap
            && self.catch_up == other.catch_up
            && self.env == other.env
            && self.working_dir == other.working_dir
            && self.argument_file == other.argument_file
            && self.result == other.result
            && self.services == other.services
            && self.test_runtime_warn == other.test_runtime_warn
            && self.test_runtime_crit == other.test_runtime_crit
            && self.pyenv == other.pyenv
            && self.user == other.user
            && self.user_deferred == other.user_deferred
            && self.plugin == other.plugin
    }
}

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the file it was read from.
    pub path: PathBuf,
    pub daemon: DaemonSettings,
    /// Shared with the daemon's per-job state: one copy of each job, however many holders.
    pub jobs: Vec<Arc<Job>>,
}

/// Where the config is looked for, in order, when `--config` is not given.
pub fn discover() -> PathBuf {
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("MK_CONFDIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join(CONFIG_FILE_NAME);
    }
    default_config_dir().join(CONFIG_FILE_NAME)
}

fn default_config_dir() -> PathBuf {
    PathBuf::from(crate::sys::DEFAULT_CONFIG_DIR)
}

/// The state dir used when the config names none: `$MK_VARDIR/robotmk-daemon/<instance>`, else
/// the agent's var dir if the agent is installed, else an OS default.
///
/// A relative `$MK_VARDIR` is an error: ctrl and the daemon it launches run in different
/// working directories and would resolve it to different state dirs.
pub fn default_state_dir(instance: &str) -> Result<PathBuf, String> {
    let base = match std::env::var_os("MK_VARDIR").filter(|p| !p.is_empty()) {
        Some(v) if !Path::new(&v).is_absolute() => {
            return Err(format!(
                "the environment variable MK_VARDIR={:?} is a relative path; set it to an absolute path, or set daemon.state_dir",
                v
            ))
        }
        Some(v) => PathBuf::from(v),
        None => crate::sys::default_state_base(),
    };
    Ok(base.join("robotmk-daemon").join(instance))
}

/// Makes `path` absolute and drops `.`/`..` lexically (no symlinks are resolved), so paths in
/// messages and records read as the admin expects.
pub fn absolute(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether loading a config looks up the users its jobs run as (`user = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Users {
    /// Each user is looked up (see [`crate::sys::lookup_user`]); one that is not there is a
    /// config error naming it. The daemon, `check-config`, `status`, `run-once`.
    LookUp,
    /// Not looked up ([`Job::user`] stays `None`): ctrl, which never runs a job and prints
    /// its sections without calling into the host's user database (the daemon looks the
    /// users up, and reports one that is missing); `stop`, `history`, `show`.
    NamesOnly,
}

/// Reads and validates the config at `path`, looking up its jobs' users.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, Users::LookUp)
}

/// [`load`], with or without looking up the jobs' users.
pub fn load_with(path: &Path, users: Users) -> Result<Config, ConfigError> {
    let path = absolute(path);
    let text = read(&path)?;
    parse_with(&path, &text, users)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    use crate::state::file;
    // Follows a symlink (an admin may link the config), but never blocks on a FIFO and never
    // reads more than the cap.
    let bytes = file::read(path, file::cap::CONFIG, file::Links::Follow).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "; pass --config PATH, set ${CONFIG_ENV}, or create it (see examples/ for one to copy)"
            )
        } else {
            String::new()
        };
        plain(path, format!("cannot read config: {e}{hint}"))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        plain(
            path,
            format!(
                "config is not valid UTF-8 (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn plain(path: &Path, message: String) -> ConfigError {
    ConfigError {
        path: path.to_path_buf(),
        line: None,
        column: None,
        field: None,
        message,
    }
}

/// Locates errors in `text` by byte offset.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn at(&self, offset: usize, field: Option<String>, message: impl Into<String>) -> ConfigError {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ConfigError {
            path: self.path.to_path_buf(),
            line: Some(line),
            column: Some(column),
            field,
            message: message.into(),
        }
    }

    /// The key written on the line at `offset` (`every` in `every = "5x"`), to name the field
    /// in serde errors that only carry a span.
    fn key_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let line = &self.text[line_start..line_end];
        let (key, _) = line.split_once('=')?;
        let key = key.trim().trim_matches('"');
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        valid.then(|| key.to_string())
    }
}

/// Parses and validates config text; `path` is used for messages and relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(path, text, Users::LookUp)
}

/// [`parse`], with or without looking up the jobs' users.
pub fn parse_with(path: &Path, text: &str, users: Users) -> Result<Config, ConfigError> {
    let loc = Locator { path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        let field = e.span().and_then(|s| loc.key_at(s.start));
        loc.at(start, field, e.message().trim().to_string())
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let daemon = resolve_daemon(&loc, raw.daemon, base)?;
    let mut jobs = Vec::with_capacity(raw.job.len());
    let mut seen = HashSet::new();
    for (i, job) in raw.job.into_iter().enumerate() {
        let job = job::resolve(&loc, i, job, base, users)?;
        jobs.push(Arc::new(job));
    }
    let mut services = HashSet::new();
    for (i, job) in jobs.iter().enumerate() {
        if !seen.insert(job.name.clone()) {
            // Re-locate the duplicate: the resolved job no longer carries its span.
            let offset = nth_name_offset(text, &job.name, 2).unwrap_or(0);
            return Err(loc.at(
                offset,
                Some(format!("job[{i}].name")),
                format!(
                    "duplicate job name {:?}; job names must be unique",
                    job.name
                ),
            ));
        }
        let service = job
            .plugin
            .as_ref()
            .and_then(|p| p.service.clone())
            .unwrap_or_else(|| format!("Robotmk {} {}", daemon.instance, job.name));
        if !services.insert(service.clone()) {
            let offset = nth_name_offset(text, &job.name, 1).unwrap_or(0);
            return Err(loc.at(
                offset,
                Some(format!("job[{i}].service")),
                format!("the service name {service:?} is taken by another job; service names must be unique"),
            ));
        }
    }
    Ok(Config {
        path: path.to_path_buf(),
        daemon,
        jobs,
    })
}

/// Byte offset of the `n`th `name = "<value>"` line (1-based `n`).
fn nth_name_offset(text: &str, value: &str, n: usize) -> Option<usize> {
    let mut count = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            if k.trim() == "name" && v == value {
                count += 1;
                if count == n {
                    return Some(offset + line.len() - line.trim_start().len());
                }
            }
        }
        offset += line.len();
    }
    None
}

/// Checks a job or instance name: it becomes a folder and a systemd unit name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a usable name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; use only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

fn resolve_daemon(
    loc: &Locator,
    raw: Option<Spanned<RawDaemon>>,
    base: &Path,
) -> Result<DaemonSettings, ConfigError> {
    let (span, raw) = match raw {
        Some(r) => (r.span(), r.into_inner()),
        None => (0..0, RawDaemon::default()),
    };
    let instance = match raw.instance {
        Some(i) => {
            check_name(i.get_ref())
                .map_err(|m| loc.at(i.span().start, Some("daemon.instance".into()), m))?;
            i.into_inner()
        }
        None => "system".to_string(),
    };
    let state_dir = match raw.state_dir {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(loc.at(
                span.start,
                Some("daemon.state_dir".into()),
                "must not be empty",
            ))
        }
        Some(p) => absolute(&base.join(p)),
        None => default_state_dir(&instance).map_err(|m| ConfigError {
            field: Some("daemon.state_dir".into()),
            ..plain(loc.path, m)
        })?,
    };
    let keep_runs = match raw.keep_runs {
        Some(k) if *k.get_ref() == 0 => {
            return Err(loc.at(
                k.span().start,
                Some("daemon.keep_runs".into()),
                "must be at least 1: a run's own folder must stay until it is recorded",
            ))
        }
        Some(k) => k.into_inner(),
        None => 20,
    };
    let hang_timeout = match raw.hang_timeout {
        Some(h) if h.get_ref().0.is_zero() => None,
        Some(h) if h.get_ref().0 < MIN_HANG_TIMEOUT => {
            return Err(loc.at(
                h.span().start,
                Some("daemon.hang_timeout".into()),
                format!(
                    "must be at least {}s: the daemon answers the heartbeat within a second or two, and a shorter limit would end a daemon that is only busy (\"0\" = never end it)",
                    MIN_HANG_TIMEOUT.as_secs()
                ),
            ))
        }
        Some(h) => Some(h.into_inner().0),
        None => Some(Duration::from_secs(300)),
    };
    let log_max_bytes = match raw.log_max_size {
        Some(s) => parse_size(s.get_ref())
            .map_err(|m| loc.at(s.span().start, Some("daemon.log_max_size".into()), m))?,
        None => 10 * 1024 * 1024,
    };
    let agent_cache_age = match raw.agent_cache_age {
        Some(a) if a.get_ref().0 < Duration::from_secs(1) => {
            return Err(loc.at(
                a.span().start,
                Some("daemon.agent_cache_age".into()),
                "must be at least 1s (leave it out when the agent runs ctrl on every call)",
            ))
        }
        Some(a) => Some(a.into_inner().0),
        None => None,
    };
    let env_build_timeout = match raw.env_build_timeout {
        Some(t) if t.get_ref().0.is_zero() => {
            return Err(loc.at(
                t.span().start,
                Some("daemon.env_build_timeout".into()),
                "must be longer than 0",
            ))
        }
        Some(t) => t.into_inner().0,
        None => Duration::from_secs(600),
    };
    let max_bytes = match raw.result_max_size {
        Some(s) => parse_size(s.get_ref())
            .map_err(|m| loc.at(s.span().start, Some("daemon.result_max_size".into()), m))?,
        None => DEFAULT_RESULT_MAX_BYTES,
    };
    let max_time = match raw.result_parse_timeout {
        Some(t) if t.get_ref().0.is_zero() => {
            return Err(loc.at(
                t.span().start,
                Some("daemon.result_parse_timeout".into()),
                "must be longer than 0",
            ))
        }
        Some(t) => t.into_inner().0,
        None => DEFAULT_RESULT_PARSE_TIMEOUT,
    };
    let uv = match raw.uv {
        Some(u) if u.get_ref() == "off" => None,
        Some(u) => {
            let p = Path::new(u.get_ref());
            let p = if p.components().count() > 1 {
                absolute(&base.join(p))
            } else {
                p.to_path_buf()
            };
            match crate::pyenv::which(&p.display().to_string()) {
                Some(found) => Some(found),
                None => {
                    return Err(loc.at(
                        u.span().start,
                        Some("daemon.uv".into()),
                        format!(
                            "{} not found; name the uv program, or \"off\" to build with pip",
                            p.display()
                        ),
                    ))
                }
            }
        }
        // Much faster than pip when the host has it.
        None => crate::pyenv::which("uv"),
    };
    let publish = match (raw.publish_dir, raw.publish_url) {
        (None, None) => None,
        (Some(d), None) => {
            return Err(loc.at(
                d.span().start,
                Some("daemon.publish_url".into()),
                "`publish_dir` needs `publish_url` (the URL the web server serves the folder at, e.g. \"https://monitor.example.com/robot\")",
            ))
        }
        (None, Some(u)) => {
            return Err(loc.at(
                u.span().start,
                Some("daemon.publish_dir".into()),
                "`publish_url` needs `publish_dir` (the folder the web server serves)",
            ))
        }
        (Some(d), Some(u)) => {
            if d.get_ref().as_os_str().is_empty() {
                return Err(loc.at(
                    d.span().start,
                    Some("daemon.publish_dir".into()),
                    "must not be empty",
                ));
            }
            let url = crate::publish_plan::check_publish_url(u.get_ref())
                .map_err(|m| loc.at(u.span().start, Some("daemon.publish_url".into()), m))?;
            Some(Publish {
                dir: absolute(&base.join(d.get_ref())),
                url,
            })
        }
    };
    let build_user = match raw.build_user {
        Some(u) => {
            let name = u.get_ref().trim();
            if name.is_empty() || name == "root" {
                return Err(loc.at(
                    u.span().start,
                    Some("daemon.build_user".into()),
                    "must name an unprivileged user: environments are never built as root",
                ));
            }
            name.to_string()
        }
        None => crate::pyenv::DEFAULT_BUILD_USER.to_string(),
    };
    let other_instances = match raw.other_instances {
        None => Vec::new(),
        Some(list) => {
            let at = list.span().start;
            let mut out = Vec::new();
            for p in list.into_inner() {
                if p.as_os_str().is_empty() {
                    return Err(loc.at(
                        at,
                        Some("daemon.other_instances".into()),
                        "an entry is empty; name an instance's state dir or its config file",
                    ));
                }
                out.push(absolute(&base.join(p)));
            }
            out
        }
    };
    Ok(DaemonSettings {
        other_instances,
        publish,
        build_user,
        env_build_timeout,
        result_limits: crate::robot::budget::Limits {
            max_bytes,
            max_time,
        },
        start_delay: raw.start_delay.map_or(Duration::ZERO, |d| d.0),
        uv,
        instance,
        state_dir,
        heartbeat_timeout: raw
            .heartbeat_timeout
            .map_or(Some(Duration::from_secs(300)), |d| {
                (!d.0.is_zero()).then_some(d.0)
            }),
        hang_timeout,
        max_parallel: raw.max_parallel.unwrap_or(4),
        keep_runs,
        stop_grace: raw.stop_grace.map_or(Duration::from_secs(10), |d| d.0),
        log_max_bytes,
        stale_margin: raw
            .stale_margin
            .map_or(crate::staleness::DEFAULT_STALE_MARGIN, |d| d.0),
        agent_cache_age,
    })
}

/// Largest Robot Framework result read by default: far above what robot itself can still
/// handle (rebot loads a result whole), far below what a sparse file can claim.
pub const DEFAULT_RESULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Longest a run's results may take to read by default: 1 GB takes seconds to a minute.
pub const DEFAULT_RESULT_PARSE_TIMEOUT: Duration = Duration::from_secs(120);

/// Parses `10MB`, `512KB`, `1GB` or a plain byte count.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("invalid size {s:?}; write e.g. \"10MB\""))?;
    let mult = match t[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" | "KIB" => 1024,
        "MB" | "M" | "MIB" => 1024 * 1024,
        "GB" | "G" | "GIB" => 1024 * 1024 * 1024,
        other => return Err(format!("invalid size unit {other:?}; use KB, MB or GB")),
    };
    let bytes = n.saturating_mul(mult);
    if bytes < 4096 {
        return Err(format!("size {s:?} is too small; at least 4KB"));
    }
    Ok(bytes)
}

/// What a cheap `stat` tells about the config file: `<mtime ns>:<size>:<identity>`, where the
/// identity (inode and ctime on Unix) changes when the file is replaced or re-permissioned,
/// even by an `mv` that keeps the mtime. The daemon records the stamp of the file it
/// validated; ctrl compares it with the file's.
pub fn stamp(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "{}:{}:{}",
        t.as_nanos(),
        m.len(),
        crate::sys::change_stamp(&m)
    ))
}

fn read_text(path: &Path) -> Option<String> {
    use crate::state::file;
    file::read_string(path, file::cap::CONFIG, file::Links::Follow).ok()
}

/// `[daemon] other_instances` of the file at `path`, read from its `[daemon]` table only
/// (ctrl, on every agent call; relative entries are taken from the config's folder).
pub fn other_instances_quick(path: &Path) -> Vec<PathBuf> {
    let Some(text) = read_text(path) else {
        return Vec::new();
    };
    // Most configs name none: no parse on every agent call for them.
    if !text.contains("other_instances") {
        return Vec::new();
    }
    let Ok(table) = toml::from_str::<toml::Table>(daemon_block(&text)) else {
        return Vec::new();
    };
    let base = path.parent().unwrap_or(Path::new("."));
    table
        .get("daemon")
        .and_then(|d| d.get("other_instances"))
        .and_then(|l| l.as_array())
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(|s| absolute(&base.join(s)))
                .collect()
        })
        .unwrap_or_default()
}

/// The instance and state dir from the `[daemon]` table alone, without parsing the jobs:
/// ctrl's fast path, taken only when the running daemon vouches for the whole file.
pub fn locate_daemon_quick(path: &Path) -> Option<(String, PathBuf)> {
    let text = read_text(path)?;
    let section = daemon_block(&text);
    if section.is_empty() {
        return None;
    }
    let table: toml::Table = toml::from_str(section).ok()?;
    daemon_location(path, &table)
}

/// The `[daemon]` table of a file the daemon validated, up to the next table header: there
/// it is defined once and has no sub-tables (`deny_unknown_fields`, no table-valued field),
/// so the jobs after it need not be scanned (ctrl's fast path, on every agent call).
fn daemon_block(text: &str) -> &str {
    let mut start = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let header = if line.trim_start().starts_with('[') {
            table_header(line)
        } else {
            None
        };
        match (start, header) {
            (None, Some(h)) if h == "daemon" => start = Some(pos),
            (Some(s), Some(_)) => return &text[s..pos],
            _ => {}
        }
        pos += line.len();
    }
    start.map_or("", |s| &text[s..])
}

/// The instance and state dir of a config that may be broken elsewhere, so that ctrl can
/// still find the daemon (and keep its heartbeat) while the admin fixes a typo in a job.
pub fn locate_daemon(path: &Path) -> Option<(String, PathBuf)> {
    let path = absolute(path);
    let text = read_text(&path)?;
    let table: toml::Table = toml::from_str(&text)
        .ok()
        .or_else(|| toml::from_str(&daemon_section(&text)).ok())
        .unwrap_or_else(|| daemon_lines(&text));
    daemon_location(&path, &table)
}

fn daemon_location(path: &Path, table: &toml::Table) -> Option<(String, PathBuf)> {
    let daemon = table.get("daemon").and_then(|d| d.as_table());
    let instance = daemon
        .and_then(|d| d.get("instance"))
        .and_then(|i| i.as_str())
        .unwrap_or("system")
        .to_string();
    check_name(&instance).ok()?;
    let base = path.parent().unwrap_or(Path::new("."));
    let state_dir = match daemon
        .and_then(|d| d.get("state_dir"))
        .and_then(|s| s.as_str())
    {
        Some(s) if !s.is_empty() => absolute(&base.join(s)),
        _ => default_state_dir(&instance).ok()?,
    };
    Some((instance, state_dir))
}

/// The `[daemon]` keys whose own line parses, when even the table does not: a typo on one
/// line must not hide `state_dir` on the next.
fn daemon_lines(text: &str) -> toml::Table {
    let mut daemon = toml::Table::new();
    for line in daemon_section(text).lines().skip(1) {
        if let Ok(t) = toml::from_str::<toml::Table>(line) {
            daemon.extend(t);
        }
    }
    let mut root = toml::Table::new();
    root.insert("daemon".into(), toml::Value::Table(daemon));
    root
}

/// The table a header line opens (`[daemon]`, `[ daemon ]  # x`, `[[job]]` → `job`), if the
/// line is one: the name between the brackets, spaces and a trailing comment ignored.
fn table_header(line: &str) -> Option<String> {
    let t = line.trim_start();
    let rest = t.strip_prefix('[')?;
    let (array, rest) = match rest.strip_prefix('[') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let close = if array { "]]" } else { "]" };
    let end = rest.find(close)?;
    let after = rest[end + close.len()..].trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let name = rest[..end].trim();
    Some(name.trim_matches('"').to_string())
}

/// The lines of the `[daemon]` table alone (from its header to the next table header).
fn daemon_section(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(header) = table_header(line) {
            inside = header == "daemon";
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/t.toml"), text)
    }

    #[test]
    fn other_instances_are_paths_from_the_configs_folder() {
        let c =
            p("[daemon]\nother_instances = [\"/home/u/robotmk.toml\", \"desk/state\"]\n").unwrap();
        assert_eq!(
            c.daemon.other_instances,
            [
                absolute(Path::new("/home/u/robotmk.toml")),
                absolute(Path::new("/etc/desk/state"))
            ]
        );
        assert!(p("[daemon]\nother_instances = [\"\"]\n").is_err());
        assert!(p("[daemon]\nother_instances = \"/x\"\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[daemon]\nother_instances = [\"u/state\"]\n\n[[job]]\nname = \"x\"\n",
        )
        .unwrap();
        assert_eq!(
            other_instances_quick(&path),
            [absolute(&dir.path().join("u/state"))]
        );
    }

    #[test]
    fn the_quick_path_reads_the_daemon_table_alone() {
        let b = daemon_block;
        let first = "[daemon] # here\r\ninstance = \"a\"\r\n\r\n[[job]]\nname = \"x\"\n";
        assert_eq!(b(first), "[daemon] # here\r\ninstance = \"a\"\r\n\r\n");
        let later = "# c\n[[job]]\nname = \"x\"\n[ daemon ]\nstate_dir = \"/s\"";
        assert_eq!(b(later), "[ daemon ]\nstate_dir = \"/s\"");
        assert_eq!(b("[[job]]\nname = \"x\"\n"), "");
        assert_eq!(
            b("daemon.instance = \"a\"\n"),
            "",
            "dotted keys: the full path"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("{GOOD}\n[[job]]\nname = \"late\"\n")).unwrap();
        // As the full parse has it (on Windows `/tmp/x` is on the config's drive).
        let full = parse(&path, GOOD).unwrap();
        assert_eq!(full.daemon.instance, "system");
        assert_eq!(
            locate_daemon_quick(&path),
            Some((full.daemon.instance, full.daemon.state_dir))
        );
    }

    const GOOD: &str = r#"
[daemon]
instance = "system"
state_dir = "/tmp/x"
max_parallel = 2

[[job]]
name = "web"
command = ["robot", "--outputdir", "{run_dir}", "/s"]
every = "5m"
timeout = "4m"

[[job]]
name = "nightly"
command = ["true"]
cron = "0 3 * * *"
"#;

    #[test]
    fn good_config_resolves_with_defaults() {
        let c = p(GOOD).unwrap();
        assert_eq!(c.daemon.instance, "system");
        // absolute(): on Windows "/tmp/x" resolves against the current drive.
        assert_eq!(c.daemon.state_dir, absolute(Path::new("/tmp/x")));
        assert_eq!(c.daemon.heartbeat_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.daemon.hang_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.daemon.max_parallel, 2);
        assert_eq!(c.daemon.keep_runs, 20);
        assert_eq!(c.daemon.stop_grace, Duration::from_secs(10));
        assert_eq!(c.jobs.len(), 2);
        assert_eq!(c.jobs[0].timeout, Duration::from_secs(240));
        assert_eq!(c.jobs[0].overlap, Overlap::Skip);
        assert_eq!(c.jobs[1].timeout, Duration::from_secs(86400));
    }

    #[test]
    fn errors_carry_line_column_and_field() {
        let e = p("[daemon]\ninstance = \"a\"\nbogus = 1\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(1)), "{e}");
        assert!(e.message.contains("unknown field `bogus`"), "{e}");

        let e = p("[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5x\"\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.field.as_deref(), Some("every"), "{e}");
        assert!(e.to_string().contains("/etc/t.toml:4:"), "{e}");
        assert!(e.message.contains("unknown unit"), "{e}");

        let e = p("[daemon\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn hang_timeout_is_off_at_zero_and_never_shorter_than_the_answer_window() {
        let c = |v: &str| p(&format!("[daemon]\nhang_timeout = \"{v}\"\n"));
        assert_eq!(c("0").unwrap().daemon.hang_timeout, None);
        assert_eq!(
            c("10s").unwrap().daemon.hang_timeout,
            Some(Duration::from_secs(10))
        );
        let e = c("5s").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("daemon.hang_timeout"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("at least 10s"), "{e}");
        assert!(c("5x").unwrap_err().to_string().contains(":2:"));
    }

    #[test]
    fn duplicate_names_point_at_the_second() {
        let text = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5s\"\n\n[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5s\"\n";
        let e = p(text).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.message.contains("duplicate job name"), "{e}");
    }

    #[test]
    fn schedule_rules() {
        let both =
            "[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5s\"\ncron = \"* * * * *\"\n";
        assert!(p(both).unwrap_err().message.contains("not both"));
        let none = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\n";
        assert!(p(none).unwrap_err().message.contains("needs a schedule"));
        let off = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5s\"\noffset = \"5s\"\n";
        assert!(p(off).unwrap_err().message.contains("shorter"));
        let cron = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\ncron = \"* * *\"\n";
        let e = p(cron).unwrap_err();
        assert_eq!(e.line, Some(4));
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in ["a/b", "..", "a\0b", "", &"x".repeat(65), "a b"] {
            let text = format!("[[job]]\nname = {bad:?}\ncommand = [\"x\"]\nevery = \"5s\"\n");
            assert!(p(&text).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn robot_jobs_build_their_command() {
        let text = "[[job]]\nname = \"r\"\nsuite = \"suites/a.robot\"\nevery = \"1m\"\nvariables = { HOST = \"x\" }\nrobot_args = [\"--loglevel\", \"DEBUG\"]\n";
        let c = p(text).unwrap();
        let cmd = &c.jobs[0].command;
        assert_eq!(cmd[0], "robot");
        assert!(cmd.windows(2).any(|w| w == ["--outputdir", "{run_dir}"]));
        // Secrets stay off the command line: they are in the 0600 argument file.
        assert!(!cmd.iter().any(|a| a.contains("HOST")), "{cmd:?}");
        assert!(cmd
            .windows(2)
            .any(|w| w == ["--argumentfile", "{run_dir}/robotmk-variables.args"]));
        assert_eq!(
            c.jobs[0].argument_file.as_deref(),
            Some("--variable HOST:x\n")
        );
        let bad = text.replace("\"x\"", "\"a\\nb\"");
        assert!(p(&bad).unwrap_err().message.contains("line breaks"));
        let suite = absolute(Path::new("/etc/suites/a.robot"));
        assert_eq!(cmd.last().unwrap(), &suite.display().to_string());
        assert!(c.jobs[0].robot);
    }

    #[test]
    fn the_daemon_table_is_found_however_its_header_is_written() {
        for header in [
            "[daemon]",
            "[daemon]  # settings",
            "[ daemon ]",
            "  [\"daemon\"]",
        ] {
            let text = format!(
                "{header}\ninstance = \"u2\"\nstate_dir = \"/st\"\n\n[[job]]\nname = \"a\"\nevery = \"5x\n"
            );
            let section = daemon_section(&text);
            assert!(section.contains("u2"), "{header}: {section:?}");
            assert!(!section.contains("[[job]]"), "{header}: {section:?}");
        }
        assert_eq!(table_header("[[job]] # x").as_deref(), Some("job"));
        assert_eq!(table_header("x = [1]"), None);
    }

    #[test]
    fn robot_result_options_and_retry_keys() {
        let robot = |extra: &str| {
            p(&format!(
                "[[job]]\nname = \"r\"\nsuite = \"s.robot\"\nevery = \"1m\"\n{extra}\n"
            ))
        };
        for bad in [
            "[\"--output\", \"x.xml\"]",
            "[\"--outp\", \"x.xml\"]",
            "[\"--OUTPUTDIR=/x\"]",
            "[\"-o\", \"x.xml\"]",
            "[\"-d/x\"]",
            "[\"--xu\", \"x.xml\"]",
            "[\"--report\", \"r.html\"]",
        ] {
            let e = robot(&format!("robot_args = {bad}")).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("job[0].robot_args"), "{bad}: {e}");
        }
        for good in [
            "[\"--loglevel\", \"DEBUG\"]",
            "[\"-L\", \"TRACE\"]",
            "[\"--log\", \"NONE\", \"-r\", \"none\"]",
            "[\"--nostatusrc\", \"--exclude\", \"wip\"]",
        ] {
            assert!(robot(&format!("robot_args = {good}")).is_ok(), "{good}");
        }
        let c = robot("attempts = 3\nretry = \"all\"").unwrap();
        assert_eq!(c.jobs[0].attempts, 3);
        let cmd = &c.jobs[0].command;
        assert_eq!(cmd[1], "robot-attempts");
        assert!(cmd.windows(2).any(|w| w == ["--rebot-json", "[\"rebot\"]"]));
        assert_eq!(c.jobs[0].result.as_deref(), Some("{run_dir}/output.xml"));
        assert!(robot("attempts = 0").is_err());
        assert!(robot("retry = \"failed\"").is_err());
        assert!(robot("result = \"x.xml\"").is_err());
        assert!(robot("test_runtime_warn = \"2s\"\ntest_runtime_crit = \"1s\"").is_err());
        // A command job running robot itself: its result is found from its options.
        for (argv, result) in [
            ("\"robot\", \"s\"", Some("output.xml")),
            (
                "\"/v/bin/robot\", \"--outputdir\", \"{run_dir}/o\", \"-o\", \"x.json\", \"s\"",
                Some("{run_dir}/o/x.json"),
            ),
            (
                // An absolute path is one on this OS.
                if cfg!(windows) {
                    "\"python3\", \"-m\", \"robot\", \"--output=C:/abs/o.xml\", \"-d\", \"d\", \"s\""
                } else {
                    "\"python3\", \"-m\", \"robot\", \"--output=/abs/o.xml\", \"-d\", \"d\", \"s\""
                },
                Some(if cfg!(windows) {
                    "C:/abs/o.xml"
                } else {
                    "/abs/o.xml"
                }),
            ),
            ("\"robot\", \"--output\", \"NONE\", \"s\"", None),
            ("\"sh\", \"-c\", \"robot s\"", None),
        ] {
            let c = p(&format!(
                "[[job]]\nname = \"c\"\ncommand = [{argv}]\nevery = \"1m\"\n"
            ))
            .unwrap();
            assert_eq!(c.jobs[0].result.as_deref(), result, "{argv}");
        }
        let cmd = p("[[job]]\nname = \"c\"\ncommand = [\"x\"]\nevery = \"1m\"\nresult = \"{run_dir}/o.json\"\n").unwrap();
        assert_eq!(cmd.jobs[0].result.as_deref(), Some("{run_dir}/o.json"));
        assert!(
            p("[[job]]\nname = \"c\"\ncommand = [\"x\"]\nevery = \"1m\"\nattempts = 2\n").is_err()
        );
    }

    #[test]
    fn environment_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("req.txt"), "robotframework\n").unwrap();
        let path = dir.path().join("c.toml");
        let job = |extra: &str| {
            parse(
                &path,
                &format!("[[job]]\nname = \"r\"\nsuite = \"s.robot\"\nevery = \"1m\"\n{extra}\n"),
            )
        };
        let c = job("requirements = \"req.txt\"\npython = \"/usr/bin/python3\"").unwrap();
        let e = c.jobs[0].pyenv.as_ref().unwrap();
        assert_eq!(e.source, dir.path().join("req.txt"));
        // Resolved as the config resolves paths: joined to its folder, on purpose (on Windows
        // a rooted path then takes that folder's drive).
        #[allow(clippy::join_absolute_paths)]
        let want = absolute(&dir.path().join("/usr/bin/python3"));
        assert_eq!(e.python, want.display().to_string());
        // The environment's robot, found on the run's PATH.
        assert_eq!(c.jobs[0].command[0], "robot");
        let e = job("requirements = \"missing.txt\"").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("job[0].requirements"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");
        let e = job("requirements = \"req.txt\"\nrobot = \"/x/robot\"").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("job[0].robot"), "{e}");
        let e = job("requirements = \"req.txt\"\npyproject = \"req.txt\"").unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        let cmd = parse(
            &path,
            "[[job]]\nname = \"c\"\ncommand = [\"x\"]\nevery = \"1m\"\nrequirements = \"req.txt\"\n",
        )
        .unwrap_err();
        assert_eq!(cmd.field.as_deref(), Some("job[0].requirements"), "{cmd}");
        let d = |extra: &str| parse(&path, &format!("[daemon]\n{extra}\n"));
        assert!(d("env_build_timeout = \"0s\"").is_err());
        assert!(d("uv = \"/no/such/uv\"").is_err());
        assert!(d("result_parse_timeout = \"0s\"").is_err());
        let e = d("result_max_size = \"1TB\"").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("daemon.result_max_size"), "{e}");
        let c =
            d("uv = \"off\"\nresult_max_size = \"2GB\"\nresult_parse_timeout = \"10s\"").unwrap();
        assert_eq!(c.daemon.result_limits.max_bytes, 2 << 30);
        assert_eq!(c.daemon.result_limits.max_time, Duration::from_secs(10));
        let c = d("uv = \"off\"\nstart_delay = \"2m\"").unwrap();
        assert_eq!(c.daemon.result_limits.max_bytes, DEFAULT_RESULT_MAX_BYTES);
        assert_eq!(
            c.daemon.result_limits.max_time,
            DEFAULT_RESULT_PARSE_TIMEOUT
        );
        assert_eq!(c.daemon.uv, None);
        assert_eq!(c.daemon.start_delay, Duration::from_secs(120));
        assert_eq!(c.daemon.env_build_timeout, Duration::from_secs(600));
        assert_eq!(c.daemon.build_user, "robotmk");
        assert_eq!(
            d("build_user = \"robot-builder\"")
                .unwrap()
                .daemon
                .build_user,
            "robot-builder"
        );
        for bad in ["\"root\"", "\"\"", "\" \""] {
            let e = d(&format!("build_user = {bad}")).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("daemon.build_user"), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_config_read_without_user_lookups_names_no_user_and_marks_the_job() {
        let text = "[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"1m\"\nuser = \"robotmk-no-such-user-cfg\"\n";
        let path = Path::new("/etc/x.toml");
        if !crate::sys::is_root() {
            // Not root: `user` is refused either way (only root runs jobs as others).
            assert!(parse_with(path, text, Users::NamesOnly).is_err());
            return;
        }
        let c = parse_with(path, text, Users::NamesOnly).expect("no lookup, no error");
        assert!(c.jobs[0].user.is_none() && c.jobs[0].user_deferred);
        let e = parse(path, text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("job[0].user"));
        assert!(e.message.contains("robotmk-no-such-user-cfg"), "{e}");
    }

    #[test]
    fn locate_daemon_survives_a_broken_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[daemon]\ninstance = \"u1\"\nstate_dir = \"st\"\n\n[[job]]\nname = \"a\"\nevery = \"5x\n",
        )
        .unwrap();
        let (inst, sd) = locate_daemon(&path).unwrap();
        assert_eq!(inst, "u1");
        assert_eq!(sd, dir.path().join("st"));
    }
}
