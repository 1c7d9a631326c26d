//! What the program does (layer 4): the daemon, ctrl, `run-once`, history, logs, and the
//! retry wrapper of robot jobs. Imports the layers below; only [`crate::cli`] imports it
//! (see docs/ARCHITECTURE.md).

pub(crate) mod attempts;
pub(crate) mod ctrl;
pub(crate) mod daemon;
pub(crate) mod hang;
pub(crate) mod history;
pub(crate) mod logs;
pub(crate) mod once;
pub(crate) mod pause;
pub(crate) mod term;
