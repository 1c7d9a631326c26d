//! `pause.json` in the state dir, read and written as every state file is: opened without
//! following links, a regular file, capped in size, replaced atomically.

use crate::model::pause::{PauseState, PAUSE_FILE};
use crate::service::state::{self, Durability, StateDir};
use std::path::PathBuf;

/// Where the pause of the instance at `st` is kept.
pub(crate) fn file(st: &StateDir) -> PathBuf {
    st.root.join(PAUSE_FILE)
}

/// Replaces the pause state (removes the file when nothing is paused).
pub(crate) fn write(st: &StateDir, p: &PauseState) -> std::io::Result<()> {
    if p.all.is_none() && p.jobs.is_empty() {
        return match std::fs::remove_file(file(st)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    state::write_json(&file(st), p, Durability::Sync)
}
