//! The config file's own lock (see `config_lock_unix.rs`) is not taken on Windows: a lock
//! there (`LockFileEx`) is mandatory, and would keep editors and config management from saving
//! the config while the daemon runs. So one config run with two state dirs (two `MK_VARDIR`
//! values) is not caught there yet (docs/WINDOWS.md); everything here says "not held".

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Stands for the lock the Linux daemon holds; holds nothing.
#[derive(Debug)]
pub(crate) struct ConfigLock;

impl ConfigLock {
    /// Nothing is held, so nothing needs taking again.
    pub(crate) fn still_names(&self, _path: &Path) -> bool {
        true
    }
}

/// The process holding a config's lock: never known here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    pub(crate) mine: bool,
    pub(crate) state_dir: Option<PathBuf>,
}

/// Always "taken": nothing is locked.
pub(crate) fn take(_path: &Path, _patience: Duration) -> io::Result<Option<ConfigLock>> {
    Ok(Some(ConfigLock))
}

/// Never held.
pub(crate) fn is_held(_path: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Nobody holds it.
pub(crate) fn holder(_path: &Path, _lock_name: &str) -> Option<Holder> {
    None
}
