//! The vocabulary (layer 1): plain data every other layer speaks — job specs, run records,
//! outcomes, the status and report documents, limits and clipping, durations and ages, the
//! printable-text gate. Construction and formatting only; no I/O, no clock reads, and no
//! import from any layer above (see docs/ARCHITECTURE.md).

pub mod argv;
pub(crate) mod bytes;
pub(crate) mod clip;
pub mod config;
pub(crate) mod cron_set;
pub mod duration;
pub(crate) mod env;
pub(crate) mod limits;
pub(crate) mod moment;
pub(crate) mod pause;
pub(crate) mod plugin;
pub(crate) mod printable;
pub mod record;
pub mod report;
pub mod request;
pub(crate) mod schedule;
pub mod status;
pub(crate) mod user;
pub(crate) mod words;
pub(crate) use words::plural;

/// Identifies the build a daemon runs (shown in status; compared by ctrl on upgrades).
pub(crate) const BUILD_ID: &str = env!("CARGO_PKG_VERSION");
