//! Small OS services the rest of the program needs, one implementation per OS with the same
//! names: process identity (PID + start time), asking a daemon to stop, and process hygiene
//! for a freshly detached daemon.

pub mod memory;

#[cfg(unix)]
#[path = "unix.rs"]
mod platform;
#[cfg(windows)]
#[path = "windows.rs"]
mod platform;

pub use platform::*;

/// A process identified by PID *and* start time, so a recycled PID is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start: Option<u64>,
}

impl ProcessId {
    /// The current process.
    pub fn current() -> ProcessId {
        let pid = std::process::id();
        ProcessId {
            pid,
            start: process_start_time(pid),
        }
    }

    /// True if a process with this PID exists and (when known) started at the same time.
    pub fn is_alive(&self) -> bool {
        match (process_start_time(self.pid), self.start) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// A request that reaches the daemon from outside its own loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlSignal {
    /// SIGTERM/SIGINT (Unix), the stop event (Windows): read the stop request and stop.
    Stop,
    /// SIGHUP: re-read the config now.
    Reload,
    /// SIGUSR1: a `run-once` request waits in the state dir.
    Requests,
}

/// A local user a job runs as (`user = "…"`), looked up when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: std::path::PathBuf,
    /// Supplementary groups, primary group included.
    pub groups: Vec<u32>,
}
