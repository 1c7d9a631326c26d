//! How ctrl starts a daemon that outlives it, the agent's unit and the agent's job object.
//!
//! Each OS module exports `launch(exe, args, instance) -> Result<Launched, LaunchError>`. The daemon
//! is always this same binary with the hidden `daemon` subcommand; it takes the instance lock
//! itself, so a launch that races another one costs a process, never a second daemon.

#[cfg(unix)]
#[path = "unix.rs"]
mod platform;
#[cfg(windows)]
#[path = "windows.rs"]
mod platform;

pub(crate) use platform::{daemon_exe, launch};
use std::io;
use std::path::PathBuf;

/// How the agent (or an admin) can run the daemon when no route leaves the job.
#[cfg(windows)]
const FIX: &str = "run the daemon as a Checkmk agent extension instead \
(extensions: execution: binary robotmk-daemon.exe, command_line: start --foreground --run-flag <file>), \
see docs/WINDOWS.md";

/// Why a daemon could not be launched: the program, the step and the OS's error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    #[error("cannot start {}: {source}", .exe.display())]
    Start {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },
    #[cfg(unix)]
    #[error("cannot run systemd-run: {0}")]
    SystemdRun(#[source] io::Error),
    #[cfg(unix)]
    #[error("systemd-run exited with {status}: {stderr}")]
    SystemdRunFailed {
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// The unit name is taken by the daemon of another config with the same instance name.
    #[cfg(unix)]
    #[error("the systemd unit {unit}.service runs the daemon of another config ({}) with the same instance name; give each config an `instance` name of its own", .other.display())]
    UnitTaken { unit: String, other: PathBuf },
    /// Windows: the copy the daemon runs from (see `daemon_exe`).
    #[cfg(windows)]
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[cfg(windows)]
    #[error("cannot copy {} to {} to run the daemon from: {source}", .from.display(), .to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Windows: a Win32 step of creating the process failed (`what` names it).
    #[cfg(windows)]
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[cfg(windows)]
    #[error("access denied (error 5)")]
    AccessDenied,
    #[cfg(windows)]
    #[error("cannot open ancestor pid {pid}: {source}")]
    Ancestor {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[cfg(windows)]
    #[error("ancestor pid {0} has exited")]
    AncestorGone(u32),
    #[cfg(windows)]
    #[error("the daemon created under pid {0} is still in the job")]
    StillInJob(u32),
    #[cfg(windows)]
    #[error("no ancestor of ctrl is outside its job")]
    NoAncestor,
    #[cfg(windows)]
    #[error(
        "cannot start the daemon outside the agent's job object, which would kill it: \
         breakaway refused ({breakaway}); parent-process route failed ({ancestor}); {}",
        FIX
    )]
    InJob {
        breakaway: Box<LaunchError>,
        ancestor: Box<LaunchError>,
    },
}

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
