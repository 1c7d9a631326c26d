//! How ctrl starts a daemon that outlives it, the agent's unit and the agent's job object.
//!
//! Each OS module exports `launch(exe, args, instance) -> Result<Launched, String>`. The daemon
//! is always this same binary with the hidden `daemon` subcommand; it takes the instance lock
//! itself, so a launch that races another one costs a process, never a second daemon.

#[cfg(unix)]
#[path = "unix.rs"]
mod platform;
#[cfg(windows)]
#[path = "windows.rs"]
mod platform;

pub(crate) use platform::{daemon_exe, launch};

/// What a launch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Launched {
    /// `systemd-run`, `fork`, … (reported in ctrl's section).
    pub(crate) route: crate::model::status::Route,
    /// The launcher found the daemon's unit already there (another ctrl's launch in progress,
    /// or a daemon draining before exit).
    pub(crate) already_running: bool,
    /// Something worth telling the admin, e.g. why a preferred route was not used.
    pub(crate) note: Option<String>,
}
