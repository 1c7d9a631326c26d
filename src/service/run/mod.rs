//! Starting a runner and ending its whole process tree, behind one interface per OS.
//!
//! A run is spawned with its stdout and stderr going straight to files in its run folder (the
//! daemon never buffers runner output), held so that a timeout reaches every process it
//! started: on Unix in a process group of its own, plus its cgroup or, without one, its runner
//! as the subreaper of its descendants; on Windows in a job object. Exits are reported through
//! a callback from a reaper thread, so the daemon's loop never blocks on a child; orphans the
//! daemon inherits are collected there too.

#[cfg(unix)]
#[path = "unix.rs"]
mod platform;
#[cfg(windows)]
#[path = "windows.rs"]
mod platform;

pub use platform::{
    adopt, background_thread, become_subreaper, cleanup, enable_cgroups, group_alive, kill_group,
    kill_tree, on_inherited_exit, spawn, terminate_group, terminate_tree, tree_alive, TAG,
};

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything needed to start one runner.
#[derive(Debug)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: PathBuf,
    /// Files the runner's stdout and stderr go to (created if missing, never truncated). The
    /// spawner opens them itself: on Unix in the child, off the daemon's critical path.
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// Run as this user instead of the daemon's (Unix, daemon as root; a job's `user`).
    pub user: Option<RunAs>,
}

/// The identity a runner takes before it executes (resolved when the config is loaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's, as `initgroups` would set them).
    pub groups: Vec<u32>,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    /// The signal that ended it (Unix).
    pub signal: Option<i32>,
    /// The runner could not be executed (reported after the fork, e.g. a bad interpreter).
    pub spawn_error: Option<String>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.spawn_error.is_none()
    }
}

/// Replaces `{run_dir}`, `{job}` and `{run_id}` in every argument.
pub fn expand(argv: &[String], run_dir: &str, job: &str, run_id: &str) -> Vec<String> {
    argv.iter()
        .map(|a| {
            a.replace("{run_dir}", run_dir)
                .replace("{job}", job)
                .replace("{run_id}", run_id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_expanded_everywhere() {
        let argv = vec![
            "r".into(),
            "--out={run_dir}/x".into(),
            "{job}-{run_id}".into(),
        ];
        assert_eq!(
            expand(&argv, "/d", "j", "1"),
            vec!["r", "--out=/d/x", "j-1"]
        );
    }
}
