//! What reaches the daemon's loop from its helper threads: the reaper (a run's exit), the
//! signal thread, the watcher, the finisher, the environment worker and a config load.

use crate::model::record::RunRecord;
use crate::service::run::ExitInfo;
use crate::service::sys::ControlSignal;

/// What reaches the loop from other threads.
#[derive(Debug)]
pub(crate) enum Event {
    Exited {
        pid: u32,
        exit: ExitInfo,
    },
    Control(ControlSignal),
    /// The finisher wrote a record (or could not: `error`).
    Finished {
        rec: Box<RunRecord>,
        error: Option<String>,
    },
    /// The environment thread's news: which environment each job's runs use.
    Envs(Box<super::envs::side::Update>),
    /// The config, loaded again on a thread of its own (see `reload`).
    ConfigLoaded(Box<super::config_load::Loaded>),
    /// An orphan the daemon inherited exited and was collected: what a finished run left
    /// may all be gone now.
    Inherited,
}
