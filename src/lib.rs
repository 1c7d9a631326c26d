//! robotmk-daemon runs Robot Framework suites (or any command) on their own schedules,
//! detached from the Checkmk agent that watches them.
//!
//! Three kinds of process (see SPEC.md): **ctrl** ([`ctrl`]) is what the agent runs; it
//! returns in milliseconds after making sure one **daemon** ([`daemon`]) runs per instance,
//! which starts the **runners** ([`run`]) on schedule ([`schedule`]) and records every run
//! ([`state`]). The binary in `main.rs` only parses the command line ([`cli`]).

pub mod agent;
pub mod agent_mode;
pub mod cli;
pub mod completions;
pub mod config;
pub mod cron_set;
pub mod ctrl;
pub mod ctrl_view;
pub mod daemon;
pub mod history;
pub mod launch;
pub mod liveness;
pub mod lock;
pub mod logging;
pub mod logs;
pub mod nagios;
pub mod once;
pub mod plugin_view;
pub(crate) mod printable;
pub mod publish;
pub mod publish_plan;
pub mod pyenv;
pub mod report;
pub mod robot;
pub mod run;
pub mod schedule;
pub mod security;
pub mod staleness;
pub mod state;
pub mod sys;
pub mod term;

/// Identifies the build a daemon runs (shown in status; compared by ctrl on upgrades).
pub const BUILD_ID: &str = env!("CARGO_PKG_VERSION");

/// True when the program was invoked under a name ending in `ctrl` (the agent's plugin), which
/// means "act as ctrl" when no arguments are given.
pub fn invoked_as_ctrl(argv0: &std::ffi::OsStr) -> bool {
    let name = std::path::Path::new(argv0)
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with("ctrl")
}
