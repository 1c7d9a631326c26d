//! What the program does (layer 4): the daemon, ctrl, `run-once`, history, logs, and the
//! retry wrapper of robot jobs. Imports the layers below; only [`crate::cli`] imports it
//! (see docs/ARCHITECTURE.md).

pub mod attempts;
pub mod ctrl;
pub mod daemon;
pub mod hang;
pub mod history;
pub mod logs;
pub mod once;
pub mod term;
