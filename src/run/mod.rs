//! Starting a runner and ending its whole process tree, behind one interface per OS.
//!
//! A run is spawned with its stdout and stderr going straight to files in its run folder (the
//! daemon never buffers runner output), in a process group of its own (Unix) so that a timeout
//! reaches every process it started. Each run gets a small waiter thread that blocks in std's
//! `Child::wait` and reports the exit through a callback, so the daemon's loop never blocks on
//! a child. (A single `waitpid(-1)` reaper would race std, which reaps a child whose exec
//! failed itself and asserts that this succeeds.)

#[cfg(unix)]
#[path = "unix.rs"]
mod platform;
#[cfg(windows)]
#[path = "windows.rs"]
mod platform;

pub use platform::{group_alive, kill_group, spawn, terminate_group};

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;

/// Everything needed to start one runner.
#[derive(Debug)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: PathBuf,
    pub stdout: File,
    pub stderr: File,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    /// The signal that ended it (Unix).
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
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
