//! Services with I/O (layer 3): the OS layer [`sys`] (imports only [`crate::model`]), the
//! state store, the runner and its spawner, the launch of a daemon, locks, logging, the
//! trust checks, the Python environment builder and the config's preparation. Imports
//! [`crate::model`], [`crate::logic`] and other services, without cycles (see
//! docs/ARCHITECTURE.md).

pub mod config;
pub mod launch;
pub mod lock;
pub mod logging;
pub mod pyenv;
pub mod report;
pub mod results;
pub mod run;
pub mod security;
pub mod state;
pub mod sys;
pub mod view;
