//! Services with I/O (layer 3): the OS layer [`sys`] (imports only [`crate::model`]), the
//! state store, the runner and its spawner, the launch of a daemon, locks, logging, the
//! trust checks, the Python environment builder and the config's preparation. Imports
//! [`crate::model`], [`crate::logic`] and other services, without cycles (see
//! docs/ARCHITECTURE.md).

pub mod config;
pub(crate) mod env_build;
pub(crate) mod launch;
pub(crate) mod lock;
pub(crate) mod logging;
pub(crate) mod one_daemon;
pub(crate) mod others;
pub(crate) mod pause;
pub(crate) mod preflight;
pub(crate) mod publish;
pub(crate) mod pyenv;
pub mod report;
pub(crate) mod results;
pub mod run;
pub(crate) mod security;
pub(crate) mod state;
pub mod sys;
pub(crate) mod view;
pub(crate) mod zone;
