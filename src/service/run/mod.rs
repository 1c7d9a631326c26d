//! Starting a runner and ending its whole process tree, behind one interface per OS: the
//! [`Spawner`], a value its owner creates once (the daemon; a one-shot `run-once` is a daemon
//! too) and passes to whatever starts or ends runs (the loop, the environment builds).
//!
//! A run is spawned with its stdout and stderr going straight to files in its run folder (the
//! daemon never buffers runner output), held so that a timeout reaches every process it
//! started: on Unix in a process group of its own, plus its cgroup or, without one, its runner
//! as the subreaper of its descendants; on Windows in a job object. Exits are reported through
//! a callback from a reaper thread, so the daemon's loop never blocks on a child; orphans the
//! daemon inherits are collected there too.
//!
//! A run keeps the daemon's identity ([`Spawner::spawn`]) or takes a user's
//! ([`Spawner::spawn_as`], Unix): two entry points, because on Unix the first may start its
//! child in the daemon's own memory (see `unix`), where taking another identity is unsafe. A
//! [`RunSpec`] cannot carry a user, so such a run can only come through the second:
//!
//! ```compile_fail
//! # use robotmk_daemon::service::run::{RunAs, RunSpec};
//! # fn f(argv: Vec<String>, user: RunAs) {
//! let spec = RunSpec {
//!     argv,
//!     env: Default::default(),
//!     working_dir: "/".into(),
//!     stdout: "/dev/null".into(),
//!     stderr: "/dev/null".into(),
//!     user: Some(user), // no such field
//! };
//! # }
//! ```
//!
//! ```compile_fail
//! # use robotmk_daemon::service::run::{RunAs, RunSpec, Spawner};
//! # fn f(s: &Spawner, spec: RunSpec, user: RunAs) {
//! // `spawn` takes a spec and a callback, nothing that names a user.
//! let _ = s.spawn((spec, user), |_, _| {});
//! # }
//! ```
//!
//! The same lines without the user compile (so the two above fail for that reason alone):
//!
//! ```no_run
//! # use robotmk_daemon::service::run::{RunAs, RunSpec, Spawner};
//! # fn f(s: &Spawner, argv: Vec<String>, user: RunAs) {
//! let spec = RunSpec {
//!     argv,
//!     env: Default::default(),
//!     working_dir: "/".into(),
//!     stdout: "/dev/null".into(),
//!     stderr: "/dev/null".into(),
//! };
//! let _ = s.spawn_as(spec, user, |_, _| {});
//! # }
//! ```

#[cfg(unix)]
#[path = "unix.rs"]
mod platform;
#[cfg(windows)]
#[path = "windows.rs"]
mod platform;

pub(crate) use platform::background_thread;
pub use platform::Spawner;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The environment variable that tags every process of a run (on Windows kept for parity: the
/// run's job object already holds every descendant). Every run's environment has it
/// (`logic::run_env`).
pub(crate) const TAG: &str = crate::logic::run_env::TAG;

/// Why runs get no cgroup of their own: the daemon says so in its log, and each runner then
/// holds its descendants as their subreaper (Unix) or its job object does (Windows).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoCgroup {
    #[cfg(unix)]
    #[error("turned off by {0} (a test hook)")]
    TestHook(&'static str),
    #[cfg(unix)]
    #[error("no cgroup v2 hierarchy is mounted")]
    NoHierarchy,
    /// Not "none is mounted": the table could not be read, so whether one is is not known.
    #[cfg(unix)]
    #[error("cannot read the mount table {path}: {source}")]
    MountTable {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[cfg(unix)]
    #[error("this process is in no cgroup v2")]
    NotInOne,
    #[cfg(unix)]
    #[error(
        "systemd runs here and delegated no cgroup to this daemon (it is in {}; started outside its unit?)",
        .0.display()
    )]
    NotDelegated(PathBuf),
    #[cfg(unix)]
    #[error("cannot create the cgroup {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[cfg(unix)]
    #[error("cannot create a cgroup in {}: {source} (not delegated?)", .path.display())]
    Probe {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[cfg(windows)]
    #[error("Windows holds runs in job objects")]
    JobObjects,
}

/// Everything needed to start one runner. It names no user: a run as another user is started
/// by [`Spawner::spawn_as`].
#[derive(Debug)]
pub struct RunSpec {
    pub argv: Vec<String>,
    /// The runner's environment variables: over the daemon's own environment for
    /// [`Spawner::spawn`] (the daemon's identity), the whole environment for
    /// [`Spawner::spawn_as`] (another user gets nothing of the daemon's that is not here). A
    /// run's are made by `logic::run_env`. Values are the OS's bytes: a user's home from the
    /// user database, a `PATH` from the daemon's environment need not be UTF-8.
    pub env: BTreeMap<String, std::ffi::OsString>,
    pub working_dir: PathBuf,
    /// Files the runner's stdout and stderr go to (created if missing, never truncated; never
    /// through a link, regular files only).
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// The identity a runner takes before it executes (resolved when the config is loaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's, as `initgroups` would set them).
    pub groups: Vec<u32>,
}

/// How a process ended. A runner that could not be started (not found, not executable, its
/// output file refused) has no exit: its spawn returned the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    /// The signal that ended it (Unix).
    pub(crate) signal: Option<i32>,
}

impl ExitInfo {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Replaces `{run_dir}`, `{job}` and `{run_id}` in every argument.
pub(crate) fn expand<'a>(
    argv: impl IntoIterator<Item = &'a str>,
    run_dir: &str,
    job: &str,
    run_id: &str,
) -> Vec<String> {
    argv.into_iter()
        .map(|a| expand_one(a, run_dir, job, run_id))
        .collect()
}

/// One argument (or the `result` path) with its placeholders filled in, as [`expand`].
pub(crate) fn expand_one(a: &str, run_dir: &str, job: &str, run_id: &str) -> String {
    a.replace("{run_dir}", run_dir)
        .replace("{job}", job)
        .replace("{run_id}", run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_expanded_everywhere() {
        let argv = ["r", "--out={run_dir}/x", "{job}-{run_id}"];
        assert_eq!(expand(argv, "/d", "j", "1"), vec!["r", "--out=/d/x", "j-1"]);
    }
}
