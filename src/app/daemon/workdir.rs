//! The folders a run leaves, and their removal. The state dir stays root's and `0700`, so
//! nothing in it is reachable by another user; what a job's user needs lives in a sibling
//! tree that it may pass through but not list or change:
//!
//! ```text
//! <state_dir>.users/                 0711 root   (pass through only)
//!   envs/<key>/                      0755 root   (the environments of `user` jobs, read-only)
//!   jobs/<job>/                      0711 root
//!   jobs/<job>/<run_id>/             0700 user   the runner's {run_dir}: output.xml, logs, ...
//!   jobs/<job>/<run_id>/tmp/         0700 user   the run's TMPDIR (TEMP, TMP)
//! ```
//!
//! The record, `stdout.log` and `stderr.log` stay in the run folder in the state dir (root's,
//! opened before the runner drops its identity), so the user can neither read nor redirect
//! them; the daemon only reads the result from the user's folder, at its last component
//! with `O_NOFOLLOW` and as a regular file, like any runner file.
//!
//! Each run has a temp folder of its own (`tmp/` in the runner's `{run_dir}`, the user's for
//! a `user` job), named by `TMPDIR`, `TEMP` and `TMP` unless the job's `env` names them: a
//! browser's profiles and `org.chromium.*` folders go there instead of piling up in `/tmp`,
//! and the folder is removed when the run has ended. The variables name it by a short link
//! in `/tmp` (`sys::tmp_link`: Chromium's socket below `$TMPDIR` must fit 107 bytes), which
//! goes with it.
//!
//! Removal ([`after_run`], [`go_on`]) uses [`crate::service::sys::tree`]: no recursion, by handle,
//! never through a link or into a mount, a user's folders with that user's rights, and a
//! budget per look: the finisher is never held for long by a tree a runner left; what a look
//! leaves, the finisher's next idle look goes on with.

use crate::model::record::RunRecord;
use crate::model::user::UserInfo;
use crate::service::state::record::{self};
use crate::service::state::StateDir;
use crate::service::sys::tree::{remove_tree, Budget, Removal, RemoveError, Rights};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// A run's temp folder, in the runner's `{run_dir}`.
pub(crate) const TMP_DIR: &str = "tmp";

/// What one look at a job's folders may spend (the finisher's time: records of other runs
/// wait meanwhile).
const LOOK: Duration = Duration::from_secs(1);
const LOOK_ENTRIES: u64 = 1_000_000;

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
    crate::service::sys::public_dir(&dir, false)?;
    for (i, part) in rel.iter().enumerate() {
        dir.push(part);
        crate::service::sys::public_dir(&dir, readable && i + 1 == rel.len())?;
    }
    Ok(dir)
}

/// Creates the run's temp folder in `dir` (0700, the daemon's).
pub(crate) fn make_tmp(dir: &Path) -> io::Result<PathBuf> {
    let tmp = dir.join(TMP_DIR);
    crate::service::state::private_dir_builder().create(&tmp)?;
    Ok(tmp)
}

/// Creates the user's folder of a run, with the variables file (0600) and the temp folder in
/// it, and gives them to the user: what is inside first, so nothing the user could plant is
/// ever written by root.
pub(crate) fn prepare(
    run_dir: &Path,
    job: &str,
    user: &UserInfo,
    argument_file: Option<&str>,
) -> io::Result<PathBuf> {
    let not_a_run = || io::Error::new(io::ErrorKind::InvalidInput, "not a run folder");
    let root = run_dir.ancestors().nth(4).ok_or_else(not_a_run)?;
    let parent = public_dirs(root, &["jobs", job], false)?;
    let name = run_dir.file_name().ok_or_else(not_a_run)?;
    let dir = parent.join(name);
    // A folder left by a daemon that died in between: its content is no one's now. Moved
    // aside at once (a rename in root's folder), removed by the next prune like any folder
    // there without a run.
    if std::fs::symlink_metadata(&dir).is_ok() {
        set_aside(&parent, name)?;
    }
    crate::service::state::private_dir_builder().create(&dir)?;
    if let Some(text) = argument_file {
        use std::io::Write;
        let f = dir.join(crate::model::config::VARIABLES_FILE);
        crate::service::sys::file::create_new(&f)?.write_all(text.as_bytes())?;
        crate::service::sys::give_to(&f, user.uid, user.gid)?;
    }
    let tmp = make_tmp(&dir)?;
    crate::service::sys::give_to(&tmp, user.uid, user.gid)?;
    crate::service::sys::give_to(&dir, user.uid, user.gid)?;
    Ok(dir)
}

/// Renames `parent/name` to `parent/.left-<name>[.n]`: no run's name, so pruning removes it.
fn set_aside(parent: &Path, name: &std::ffi::OsStr) -> io::Result<()> {
    for n in 0..100 {
        let mut to = std::ffi::OsString::from(".left-");
        to.push(name);
        if n > 0 {
            to.push(format!(".{n}"));
        }
        let to = parent.join(to);
        if std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        return std::fs::rename(parent.join(name), &to);
    }
    Err(io::Error::other(format!(
        "cannot move {} aside: too many left there",
        parent.join(name).display()
    )))
}

/// How long the finisher waits for work before it goes on removing.
pub(crate) const IDLE: Duration = Duration::from_millis(100);

/// Jobs whose folders hold more to remove than a look removed, in turn.
static PENDING: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

fn pending() -> std::sync::MutexGuard<'static, VecDeque<String>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

fn note_more(job: &str, more: bool) {
    let mut p = pending();
    if more && !p.iter().any(|j| j == job) {
        p.push_back(job.to_string());
    }
}

/// A folder of `job` was moved into its `removing` folder: the finisher removes it when idle.
pub(crate) fn removal_due(job: &str) {
    note_more(job, true);
}

/// Whether a job's folders hold more to remove ([`go_on`]).
pub(crate) fn removal_pending() -> bool {
    !pending().is_empty()
}

/// At start: what an earlier daemon left to remove (every job is looked at once), and short
/// names of temp folders whose run folder is gone (a killed daemon's, a deleted state dir's).
pub(crate) fn look_again_at_all(state: &StateDir) {
    let swept = crate::service::sys::tmp_link::sweep();
    if swept > 0 {
        tracing::info!(swept, "removed links to temp folders of runs that are gone");
    }
    let Ok(list) = std::fs::read_dir(state.jobs_dir()) else {
        return;
    };
    let users = users_root(&state.root).join("jobs");
    for e in list.flatten() {
        if let Some(job) = e.file_name().to_str() {
            if crate::logic::config::check_name(job).is_ok() && has_leftovers(state, &users, job) {
                note_more(job, true);
            }
        }
    }
}

/// Whether a look at `job` ([`look`]) could find anything: its `removing` folder or its users'
/// folder is there (anything by that name, as `look` reads whatever it finds). A job without
/// either is not queued: with 10,000 jobs the queue held every name for the quarter of an
/// hour the idle finisher takes to look at them one by one (issue 25).
fn has_leftovers(state: &StateDir, users_jobs: &Path, job: &str) -> bool {
    let there = |p: PathBuf| std::fs::symlink_metadata(p).is_ok();
    there(record::removing_dir(state, job)) || there(users_jobs.join(job))
}

/// What the finisher does after a run's record is written: removes the run's temp folder,
/// moves the job's run folders beyond `keep` out of the runs (never those in `protect`: in
/// flight, queued or prepared; see `record::prune`) and removes them and the users' folders of runs that are gone, as far as one
/// look's budget goes. What is left, [`go_on`] removes while the finisher is idle.
pub(crate) fn after_run(state: &StateDir, rec: &RunRecord, keep: usize, protect: &[String]) {
    let job = rec.job.as_str();
    let mut budget = Budget::new(LOOK, LOOK_ENTRIES);
    let mut more = false;
    if let Some(link) = &rec.tmp {
        if let Err(e) = crate::service::sys::tmp_link::remove(link) {
            tracing::warn!(job, "cannot remove {}: {e}", link.display());
        }
    }
    // A root job's temp folder is in its record's folder, a user job's in the user's.
    let mut tmps = vec![(rec.run_dir.join(TMP_DIR), Rights::Daemon)];
    if let Some(work) = work_dir_of(&rec.run_dir) {
        tmps.push((work.join(TMP_DIR), Rights::Owner));
    }
    for (tmp, rights) in tmps {
        match remove_tree(&tmp, rights, &mut budget) {
            Ok(Removal::Gone) => {}
            Ok(Removal::More) => more = true,
            Err(e) => warn(job, &e),
        }
    }
    if let Err(e) = record::prune(state, job, &rec.run_id, keep, protect) {
        tracing::warn!(job, "cannot remove old runs: {e}");
    }
    more |= look(state, job, &mut budget);
    note_more(job, more);
}

/// The first job with more to remove that `free` allows (no worker holds it), taken out of
/// the line: [`go_on`] puts it back if a look leaves more.
pub(crate) fn next_pending(free: impl Fn(&str) -> bool) -> Option<String> {
    let mut p = pending();
    let i = p.iter().position(|j| free(j))?;
    p.remove(i)
}

/// One look at the folders of `job` (taken by [`next_pending`]).
pub(crate) fn go_on(state: &StateDir, job: &str) {
    let more = look(state, job, &mut Budget::new(LOOK, LOOK_ENTRIES));
    note_more(job, more);
}

/// Removes what `job`'s folders hold to be removed, within `budget`; true if more is left.
fn look(state: &StateDir, job: &str, budget: &mut Budget) -> bool {
    let (removal, errors) = record::remove_discarded(state, job, budget);
    for e in &errors {
        warn(job, e);
    }
    if removal == Removal::More {
        return true;
    }
    prune_users(state, job, budget)
}

fn warn(job: &str, e: &RemoveError) {
    tracing::warn!(job, "{e}");
}

/// Removes the users' folders of runs whose record folder is gone (pruned, or set aside),
/// each with its owner's rights; true when the budget ran out first.
fn prune_users(state: &StateDir, job: &str, budget: &mut Budget) -> bool {
    let dir = users_root(&state.root).join("jobs").join(job);
    let Ok(list) = std::fs::read_dir(&dir) else {
        return false;
    };
    let runs = state.runs_dir(job);
    for e in list.flatten() {
        if runs.join(e.file_name()).exists() {
            continue;
        }
        if budget.spent() {
            return true;
        }
        match remove_tree(&e.path(), Rights::Owner, budget) {
            Ok(Removal::Gone) => {}
            Ok(Removal::More) => return true,
            Err(err) => warn(job, &err),
        }
    }
    false
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
