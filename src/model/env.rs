//! A job's Python environment as the config describes it, and an environment's state as
//! `state.json`, `status.json` and the agent section show it (built by `service::pyenv`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The user that builds the environments of jobs without a `user` when `[daemon] build_user`
/// names none (the .deb creates it).
pub(crate) const DEFAULT_BUILD_USER: &str = "robotmk";
/// What a job's environment is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SourceKind {
    /// `pip install -r FILE`.
    Requirements,
    /// `pip install DIR` (the project the pyproject.toml describes, with its dependencies).
    Pyproject,
}

impl SourceKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SourceKind::Requirements => "requirements",
            SourceKind::Pyproject => "pyproject",
        }
    }
}

/// A job's environment as the config describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvSpec {
    /// Absolute path of the requirements or pyproject file.
    pub(crate) source: PathBuf,
    pub(crate) kind: SourceKind,
    /// The base interpreter (`python = "…"`, else `python3`; `python` on Windows).
    pub(crate) python: String,
    /// For a job with a `user`: built where that user can read it (see `daemon::workdir`).
    pub(crate) shared: bool,
    /// The job's `env`, for a job with a `user` (`None` without): the build of such a job
    /// takes its installer settings (proxies, `PIP_*`, `UV_*`) from it, never from root's
    /// environment, which the job's user must not read (see `service::pyenv::build_env`).
    /// Not part of the key: a proxy password's hash would name a folder others can list.
    pub(crate) job_env: Option<std::collections::BTreeMap<String, String>>,
}

/// Where a build stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    Building,
    Ready,
    Failed,
}

/// One environment, as `state.json` in its folder, `status.json` and the section show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EnvState {
    pub(crate) key: String,
    pub(crate) source: PathBuf,
    pub(crate) kind: SourceKind,
    pub(crate) python: String,
    /// Readable by jobs' users (in `<state_dir>.users/envs/`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) shared: bool,
    /// The user it is built as (`name (uid N)`); none: by the daemon itself (not root, or
    /// Windows). Built by another user, it lives in `<state_dir>.users/envs/` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) builder: Option<String>,
    pub(crate) state: Phase,
    /// `uv` or `pip`, once the build said which it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tool: Option<String>,
    /// The interpreter version inside the environment (`3.11.7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) python_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) started: Option<DateTime<Utc>>,
    /// When the build finished (ready or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) built: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) duration_s: Option<f64>,
    /// Why the build failed, with the last lines of its log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Jobs whose runs use (or wait for) it (filled by the daemon for the status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) jobs: Vec<String>,
}

impl EnvState {
    /// True when it lives in the users' tree (`<state_dir>.users/envs/`), where the user that
    /// builds it or the jobs' users that run it can reach it.
    pub(crate) fn in_users_tree(&self) -> bool {
        self.shared || self.builder.is_some()
    }
}
