//! What other processes leave in the state dir for the daemon (a stop request, a `run-once`
//! request) and what a daemon that could not start leaves for the ctrl that launched it.

/// Why a daemon could not start, for the ctrl that launched it (`start-error`): a config
/// the daemon rejects though ctrl could not tell (ctrl does not look users up), or a failure
/// past the config (signal handlers, the watcher: a low descriptor limit, say).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct StartFailure {
    pub(crate) at: chrono::DateTime<chrono::Utc>,
    pub(crate) error: String,
    /// Where it failed; files of older builds carry config errors only.
    #[serde(default)]
    pub(crate) stage: StartStage,
}

/// Where a daemon's start failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StartStage {
    /// Its config was refused: ctrl reports a config error.
    #[default]
    Config,
    /// With a valid config, holding the instance lock: the daemon cannot start.
    Setup,
}

/// How a stop request wants the daemon to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StopMode {
    /// Start nothing new, let runs in flight finish, then exit.
    Drain,
    /// End runs in flight (whole process trees), then exit.
    Now,
}

/// A `run-once` request: run `job` now, on behalf of the command waiting for it (which finds
/// its run by `id` in the run records).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunRequest {
    pub(crate) id: String,
    pub(crate) job: String,
    pub(crate) requested: chrono::DateTime<chrono::Utc>,
}

/// True for an id `run-once` makes: it becomes a file name.
pub(crate) fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The content of `stop-request`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StopRequest {
    pub(crate) mode: StopMode,
    pub(crate) requested: chrono::DateTime<chrono::Utc>,
    /// Written by a ctrl of a newer build retiring this daemon: that build, so the daemon
    /// records an upgrade as its reason to stop, not an admin's `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upgrade_to: Option<String>,
}

impl StopRequest {
    /// Why a daemon of build `build` stops for this request, in the admin's words.
    pub(crate) fn reason(&self, build: &str) -> String {
        match (&self.upgrade_to, self.mode) {
            (Some(to), _) => format!("upgrade (build {build} → {to})"),
            (None, StopMode::Drain) => "stop requested".into(),
            (None, StopMode::Now) => "stop --now requested".into(),
        }
    }
}
