//! The instance the read-only commands (`history`, `show`, `logs`) look at: located through
//! the config (or, when the config is broken, leniently, as `status` does), its config and state
//! dir trust-checked, and a job named in it. Reads the config; changes nothing.

use crate::model::config::Config;
use crate::service::config::{self};
use crate::service::state::StateDir;
use std::path::Path;

/// An instance as the read-only commands see it: located through the config (or, when the
/// config is broken, leniently, as `status` does), its paths checked.
pub(crate) struct Target {
    pub(crate) instance: String,
    pub(crate) state: StateDir,
    pub(crate) config: Option<Config>,
}

/// Finds the instance of the config at `path` and checks that its config and state dir may be
/// trusted. On failure, the message has been printed; the error is the exit code.
pub(crate) fn locate(path: &Path) -> Result<Target, i32> {
    // Only shown, never run: the jobs' users need no lookup.
    let (config, located) = match config::load_with(path, crate::model::config::Users::NamesOnly) {
        Ok(c) => {
            let l = (c.daemon.instance.clone(), c.daemon.state_dir.clone());
            (Some(c), Some(l))
        }
        Err(e) => {
            eprintln!("robotmk-daemon: warning: config error: {e}");
            (None, crate::service::one_daemon::locate(path))
        }
    };
    let Some((instance, dir)) = located else {
        eprintln!(
            "robotmk-daemon: cannot tell which state dir the config at {} uses",
            path.display()
        );
        return Err(2);
    };
    // Records name paths and carry runners' text; from a state dir another user could change
    // they would be planted. The same check as `status`.
    if let Err(e) = crate::service::security::check_config(path)
        .and_then(|_| crate::service::security::check_state_dir(&dir))
    {
        eprintln!("robotmk-daemon: {e}");
        return Err(1);
    }
    Ok(Target {
        instance,
        state: StateDir::new(dir),
        config,
    })
}

/// Checks that `job` is a job of the target: one the config names, or one with a folder in
/// the state dir (a job removed from the config, or any with a broken config). The name never
/// leaves the job's folder (no `..`, no separators).
pub(super) fn check_job(t: &Target, job: &str) -> Result<(), i32> {
    let plain = !job.is_empty()
        && job != "."
        && job != ".."
        && job
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if let Some(cfg) = &t.config {
        if cfg.jobs.iter().any(|j| *j.name == *job) {
            return Ok(());
        }
        // A job removed from the config keeps its runs until the folder is deleted: what it
        // did last is still worth seeing.
        if plain && t.state.runs_dir(job).is_dir() {
            eprintln!("robotmk-daemon: note: job {job:?} is not in the config any more");
            return Ok(());
        }
        let names: Vec<&str> = cfg.jobs.iter().map(|j| &*j.name).collect();
        eprintln!(
            "robotmk-daemon: no job {job:?} in {}; jobs: {}",
            cfg.path.display(),
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        );
        return Err(2);
    }
    if plain && t.state.job_dir(job).is_dir() {
        return Ok(());
    }
    eprintln!(
        "robotmk-daemon: no job {job:?} in {}",
        t.state.jobs_dir().display()
    );
    Err(2)
}
