//! `pause.json` in the state dir: the one place that reads and writes it, in its whole
//! stored form (the pauses and the age after which ctrl shows one as WARN), as every state
//! file is: opened without following links, a regular file, capped in size, replaced
//! atomically. Also the daemon's check before it starts a run. The commands that change it
//! are `app::pause`'s; how a pause shows in the agent output is `logic::pause_view`'s.

use crate::logic::pause_view::PauseView;
use crate::model::pause::{Pause, PauseState, PAUSE_FILE};
use crate::model::record::Trigger;
use crate::service::state::{self, Durability, StateDir};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a pause stays OK in ctrl's output when `pause` is not told otherwise.
pub(crate) const DEFAULT_WARN_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `pause.json`: the pauses, with the time after which ctrl shows them as WARN.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Stored {
    #[serde(flatten)]
    pub(crate) state: PauseState,
    /// Seconds a pause is OK before it shows as WARN.
    #[serde(default)]
    pub(crate) warn_after_s: Option<u64>,
}

/// Where the pause of the instance at `st` is kept.
pub(crate) fn file(st: &StateDir) -> PathBuf {
    st.root.join(PAUSE_FILE)
}

/// The stored pauses (none when there is no file).
pub(crate) fn read(st: &StateDir) -> std::io::Result<Stored> {
    Ok(state::read_json(&file(st))?.unwrap_or_default())
}

/// Replaces the stored pauses (removes the file when nothing is paused).
pub(crate) fn write(st: &StateDir, s: &Stored) -> std::io::Result<()> {
    if s.state.all.is_none() && s.state.jobs.is_empty() {
        return match std::fs::remove_file(file(st)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(std::io::Error::new(
                e.kind(),
                format!("cannot remove {}: {e}", file(st).display()),
            )),
            _ => Ok(()),
        };
    }
    state::write_json(&file(st), s, Durability::Sync)
}

/// The daemon's check, where a run is about to start: the pause that keeps `job` from
/// starting one now, in words for the log. A run the admin asked for (`run-once`) runs.
pub(crate) fn holds(st: &StateDir, job: &str, trigger: Trigger) -> Option<String> {
    if trigger == Trigger::RunOnce {
        return None;
    }
    match read(st) {
        Ok(s) => s.state.of(job, Utc::now()).map(Pause::words),
        Err(e) => {
            // A pause file that cannot be read pauses nothing: runs go on, the log says why.
            tracing::warn!("cannot read the pause state: {e}");
            None
        }
    }
}

/// The pauses in force for the instance at `dir` at `now`, as the agent output shows them
/// (`None`: none, or a file that cannot be read, which pauses nothing).
pub(crate) fn in_force(dir: &Path, now: DateTime<Utc>) -> Option<PauseView> {
    let s = read(&StateDir::new(dir)).ok()?;
    if s.state.is_empty_at(now) {
        return None;
    }
    let warn_after = s
        .warn_after_s
        .map_or(DEFAULT_WARN_AFTER, Duration::from_secs);
    Some(PauseView {
        state: s.state,
        warn_after,
        now,
    })
}
