//! The folders a job's `user` may reach. The state dir stays root's and `0700`, so nothing in
//! it is reachable by another user; what such a user needs lives in a sibling tree that it
//! may pass through but not list or change:
//!
//! ```text
//! <state_dir>.users/                 0711 root   (pass through only)
//!   envs/<key>/                      0755 root   (the environments of `user` jobs, read-only)
//!   jobs/<job>/                      0711 root
//!   jobs/<job>/<run_id>/             0700 user   the runner's {run_dir}: output.xml, logs, ...
//! ```
//!
//! The record, `stdout.log` and `stderr.log` stay in the run folder in the state dir (root's,
//! opened before the runner drops its identity), so the user can neither read nor redirect
//! them; the daemon only reads the result from the user's folder, at its last component
//! with `O_NOFOLLOW` and as a regular file, like any runner file.

use crate::state::StateDir;
use crate::sys::UserInfo;
use std::io;
use std::path::{Path, PathBuf};

/// `<state_dir>.users`.
pub(crate) fn users_root(state_root: &Path) -> PathBuf {
    let mut s = state_root.as_os_str().to_os_string();
    s.push(".users");
    PathBuf::from(s)
}

/// The user's folder of the run whose record folder is `run_dir`
/// (`<state_dir>/jobs/<job>/runs/<run_id>`).
pub(crate) fn work_dir_of(run_dir: &Path) -> Option<PathBuf> {
    let run_id = run_dir.file_name()?;
    let job = run_dir.parent()?.parent()?.file_name()?;
    let root = run_dir.ancestors().nth(4)?;
    Some(users_root(root).join("jobs").join(job).join(run_id))
}

/// Creates `rel` below the users tree, each level root's and passable (the last one readable
/// when `readable`).
pub(crate) fn public_dirs(state_root: &Path, rel: &[&str], readable: bool) -> io::Result<PathBuf> {
    let mut dir = users_root(state_root);
    crate::sys::public_dir(&dir, false)?;
    for (i, part) in rel.iter().enumerate() {
        dir.push(part);
        crate::sys::public_dir(&dir, readable && i + 1 == rel.len())?;
    }
    Ok(dir)
}

/// Creates the user's folder of a run, with the variables file (0600) in it, and gives both
/// to the user: the file first, so nothing the user could plant is ever written by root.
pub(crate) fn prepare(
    run_dir: &Path,
    job: &str,
    user: &UserInfo,
    argument_file: Option<&str>,
) -> io::Result<PathBuf> {
    let not_a_run = || io::Error::new(io::ErrorKind::InvalidInput, "not a run folder");
    let root = run_dir.ancestors().nth(4).ok_or_else(not_a_run)?;
    let parent = public_dirs(root, &["jobs", job], false)?;
    let dir = parent.join(run_dir.file_name().ok_or_else(not_a_run)?);
    // A folder left by a daemon that died in between: its content is no one's now.
    if std::fs::symlink_metadata(&dir).is_ok() {
        std::fs::remove_dir_all(&dir)?;
    }
    crate::state::private_dir_builder().create(&dir)?;
    if let Some(text) = argument_file {
        use std::io::Write;
        let f = dir.join(crate::config::VARIABLES_FILE);
        crate::state::file::create_new(&f)?.write_all(text.as_bytes())?;
        crate::sys::give_to(&f, user.uid, user.gid)?;
    }
    crate::sys::give_to(&dir, user.uid, user.gid)?;
    Ok(dir)
}

/// Removes the users' folders of runs whose record folder is gone (pruned).
pub(crate) fn prune(state: &StateDir, job: &str) {
    let dir = users_root(&state.root).join("jobs").join(job);
    let Ok(list) = std::fs::read_dir(&dir) else {
        return;
    };
    let runs = state.runs_dir(job);
    for e in list.flatten() {
        if !runs.join(e.file_name()).exists() {
            // remove_dir_all does not follow links the user left inside.
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(job, "cannot remove {}: {err}", e.path().display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_dir_mirrors_the_run_folder() {
        let run = Path::new("/var/lib/rd/system/jobs/web/runs/20261129T000000Z-1");
        assert_eq!(
            work_dir_of(run).unwrap(),
            Path::new("/var/lib/rd/system.users/jobs/web/20261129T000000Z-1")
        );
    }
}
