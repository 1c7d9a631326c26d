//! Run records in the state dir: writing one, the run folder's allocation, listing and
//! retention, and the job's `latest.json`.
//!
//! The record doubles as the daemon's journal: it is written (without outcome) *before* the
//! runner is spawned, and again with the PID right after, so a daemon that died at any moment
//! leaves enough behind for the next one to finish the story (the record itself is
//! `model::record`'s).

use super::{read_json, write_json, Durability, StateDir};
use crate::model::record::{
    due_of_run_id, run_id_key, run_id_prefix, RunRecord, RECORD_FILE, RECORD_VERSION,
};
use crate::service::sys;
use crate::service::sys::tree::{remove_tree, Budget, Removal, RemoveError, Rights};
use chrono::{DateTime, Utc};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The record's I/O, beside its vocabulary in `model::record`.
impl RunRecord {
    /// Writes the record into its run folder. Final records are synced to disk; the journal
    /// entries written around the spawn are not (they only need to survive a daemon crash,
    /// which the page cache does, and syncing them would delay every start).
    pub(crate) fn save(&self) -> io::Result<()> {
        let durability = if self.is_finished() {
            Durability::Sync
        } else {
            Durability::NoSync
        };
        write_json(&self.record_path(), self, durability)
    }
}

/// Creates a fresh run folder for `job` and `due`; returns (run_id, run_dir).
pub(crate) fn allocate_run_dir(
    state: &StateDir,
    job: &str,
    due: DateTime<Utc>,
) -> io::Result<(String, PathBuf)> {
    let runs = state.runs_dir(job);
    super::create_state_subdirs(&state.root, &["jobs", job, "runs"])
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", runs.display())))?;
    let prefix = run_id_prefix(due);
    for n in 1..10_000 {
        let id = format!("{prefix}-{n}");
        let dir = runs.join(&id);
        match super::private_dir_builder().create(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create run folder {}: {e}", dir.display()),
                ))
            }
        }
    }
    Err(io::Error::other(format!(
        "no free run id for job {job} at {prefix} in {}",
        runs.display()
    )))
}

/// A run id and folder for `job` and `due` that no folder has yet, found without making one
/// (a stat each, which takes no descriptor): for the record of a run that could not be given
/// its folder, which the record's write makes (`app::daemon::folder::write_final`).
pub(crate) fn unused_run_dir(state: &StateDir, job: &str, due: DateTime<Utc>) -> (String, PathBuf) {
    let runs = state.runs_dir(job);
    let prefix = run_id_prefix(due);
    let mut n = 1;
    loop {
        let id = format!("{prefix}-{n}");
        let dir = runs.join(&id);
        if n >= 9_999 || std::fs::symlink_metadata(&dir).is_err() {
            return (id, dir);
        }
        n += 1;
    }
}

/// The run folders of `job`, oldest first (by due time, then sequence).
pub(crate) fn list_runs(state: &StateDir, job: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let dir = state.runs_dir(job);
    let entries = match sys::dir::entries(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot list {}: {e}", dir.display()),
            ))
        }
    };
    let mut runs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.is_dir)
        .filter_map(|e| {
            let name = e.name.into_string().ok()?;
            due_of_run_id(&name)?;
            let path = dir.join(&name);
            Some((name, path))
        })
        .collect();
    // Run ids are unique: no order among equals to keep.
    runs.sort_unstable_by(|(a, _), (b, _)| run_id_key(a).cmp(&run_id_key(b)));
    Ok(runs)
}

/// Reads a run record. A corrupt one is reported as `InvalidData` with the path.
pub(crate) fn read_record(run_dir: &Path) -> io::Result<Option<RunRecord>> {
    let rec: Option<RunRecord> = read_json(&run_dir.join(RECORD_FILE))?;
    match rec {
        Some(r) if r.version != RECORD_VERSION => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: record version {} is not {RECORD_VERSION}",
                run_dir.join(RECORD_FILE).display(),
                r.version
            ),
        )),
        other => Ok(other),
    }
}

/// The folder run folders are moved into to be removed: `jobs/<job>/removing/`. A folder
/// there is no run any more for any reader, however long its removal takes (a tree a runner
/// left may take many looks, see [`remove_discarded`]).
pub(crate) fn removing_dir(state: &StateDir, job: &str) -> PathBuf {
    state.job_dir(job).join("removing")
}

/// Moves the oldest run folders of `job` beyond the newest `keep` out of the runs into
/// [`removing_dir`], where [`remove_discarded`] removes them, after the run `finished` has
/// ended. The folders in `protect` (runs in flight, queued, or prepared ahead of their due
/// time) are neither moved nor counted, nor are those newer than `finished` (prepared since
/// the list was taken, or ended already and counted then): counted, the folder prepared for
/// a job's next run pushed its last finished run out (`keep_runs = 1` kept no finished run
/// at all). Returns how many were moved.
pub(crate) fn prune(
    state: &StateDir,
    job: &str,
    finished: &str,
    keep: usize,
    protect: &[String],
) -> io::Result<usize> {
    let mut runs = list_runs(state, job)?;
    if let Some(i) = runs.iter().position(|(id, _)| id == finished) {
        runs.truncate(i + 1);
    }
    runs.retain(|(id, _)| !protect.contains(id));
    if runs.len() <= keep {
        return Ok(0);
    }
    let excess = runs.len() - keep;
    let mut moved = 0;
    for (_, dir) in runs.into_iter().take(excess) {
        discard(state, job, &dir)?;
        moved += 1;
    }
    Ok(moved)
}

/// Moves a run folder of `job` into [`removing_dir`] (a rename: at once, whatever is in it),
/// and removes the short name of its temp folder (a run that ended while no daemon watched
/// still has it).
pub(crate) fn discard(state: &StateDir, job: &str, dir: &Path) -> io::Result<()> {
    if let Ok(Some(RunRecord {
        tmp: Some(link), ..
    })) = read_record(dir)
    {
        if let Err(e) = crate::service::sys::tmp_link::remove(&link) {
            tracing::warn!(job, "cannot remove {}: {e}", link.display());
        }
    }
    let removing =
        super::create_state_subdirs(&state.root, &["jobs", job, "removing"]).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", removing_dir(state, job).display()),
            )
        })?;
    let name = dir.file_name().unwrap_or_default().to_os_string();
    for n in 0..100 {
        let mut to = name.clone();
        if n > 0 {
            to.push(format!(".{n}"));
        }
        let to = removing.join(to);
        if fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        return match fs::rename(dir, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot move {} to {} to remove it: {e}",
                    dir.display(),
                    to.display()
                ),
            )),
        };
    }
    Err(io::Error::other(format!(
        "cannot move {} aside: {} is full of its names",
        dir.display(),
        removing.display()
    )))
}

/// Removes what is in `job`'s [`removing_dir`], within `budget`: `More` when the budget ran
/// out first. Errors (one per folder that could not be removed) are returned, not fatal: the
/// other folders are removed still.
pub(crate) fn remove_discarded(
    state: &StateDir,
    job: &str,
    budget: &mut Budget,
) -> (Removal, Vec<RemoveError>) {
    let mut errors = Vec::new();
    let dir = removing_dir(state, job);
    let Ok(list) = sys::dir::entries(&dir) else {
        return (Removal::Gone, errors);
    };
    for e in list.flatten() {
        if budget.spent() {
            return (Removal::More, errors);
        }
        match remove_tree(&dir.join(&e.name), Rights::Daemon, budget) {
            Ok(Removal::Gone) => {}
            Ok(Removal::More) => return (Removal::More, errors),
            Err(err) => errors.push(err),
        }
    }
    (Removal::Gone, errors)
}

/// Replaces the job's `latest.json` with `rec` unless it already holds a newer run.
///
/// The daemon and `run-once` may both finish runs of one job; a per-job lock file orders them
/// so an older result never overwrites a newer one.
pub(crate) fn update_latest(state: &StateDir, rec: &RunRecord) -> io::Result<()> {
    let path = state.latest_file(&rec.job);
    if holds_newer(state, rec, &path)? {
        return Ok(());
    }
    write_json(&path, rec, Durability::Sync)
}

/// [`update_latest`] for a record [`RunRecord::save`] has just written, final (so synced):
/// on Unix `latest.json` becomes a second name of that record's file instead of a copy of
/// it. At hundreds of runs a second each copy was a file created, synced and a file deleted
/// per run (an fsync, and on ext4 an inode allocation that scans past every inode deleted in
/// the last minute); a name costs neither, and the record's file is never changed in place
/// (every write replaces it), so the latest result stays what it was when linked. Where no
/// link can be made, the copy is written as before. Windows keeps the copy: a file with two
/// names there cannot lose one while a reader holds it open, which would block pruning.
pub(crate) fn link_latest(state: &StateDir, rec: &RunRecord) -> io::Result<()> {
    if !cfg!(unix) {
        return update_latest(state, rec);
    }
    let path = state.latest_file(&rec.job);
    if holds_newer(state, rec, &path)? {
        return Ok(());
    }
    // A `user` job's run folder is that user's, who could put a file of their own under the
    // record's name before the link is made; `latest.json` would then be a second name of a
    // file that user can rewrite at will. There the latest result stays a copy.
    if crate::service::sys::only_mine(&rec.run_dir)
        && super::link_replacing(&rec.record_path(), &path).is_ok()
    {
        return Ok(());
    }
    write_json(&path, rec, Durability::Sync)
}

/// Whether the job's latest result at `path` is newer than `rec` (then it is kept). A corrupt
/// one is moved aside first.
fn holds_newer(state: &StateDir, rec: &RunRecord, path: &Path) -> io::Result<bool> {
    // Only the instance's lock holder writes here (a daemon, or run-once as a one-shot
    // daemon), so no lock of its own is needed.
    super::create_state_subdirs(&state.root, &["jobs", &rec.job])?;
    match read_json::<RunRecord>(path) {
        Ok(Some(old)) => {
            let key = |r: &RunRecord| (r.finished, r.due);
            if key(&old) > key(rec) {
                return Ok(true);
            }
        }
        Ok(None) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
            ) =>
        {
            // Keep the damaged (or planted: a FIFO, a link) file for inspection rather than
            // overwrite it unseen.
            let aside = super::quarantine(path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "(could not move it)".into());
            tracing::warn!(job = %rec.job, "corrupt latest result {}: {e}; moved to {aside}", path.display());
        }
        Err(e) => return Err(e),
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    #[test]
    fn run_ids_sort_by_due_then_number_and_prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            for _ in 0..11 {
                let (id, _) =
                    allocate_run_dir(&st, "j", t0 + chrono::Duration::seconds(i)).unwrap();
                ids.push(id);
            }
        }
        let listed: Vec<String> = list_runs(&st, "j")
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(listed, ids);
        assert_eq!(due_of_run_id(&ids[0]), Some(t0));
        let removed = prune(&st, "j", &ids[32], 5, &[ids[0].clone()]).unwrap();
        assert_eq!(removed, 27);
        assert_eq!(fs::read_dir(removing_dir(&st, "j")).unwrap().count(), 27);
        let mut budget = Budget::new(Duration::from_secs(60), u64::MAX);
        let (r, errors) = remove_discarded(&st, "j", &mut budget);
        assert_eq!((r, errors.len()), (Removal::Gone, 0));
        assert_eq!(fs::read_dir(removing_dir(&st, "j")).unwrap().count(), 0);
        let left: Vec<String> = list_runs(&st, "j")
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(left.len(), 6);
        assert_eq!(left[0], ids[0], "the protected in-flight run stays");
        assert_eq!(&left[1..], &ids[28..]);
        // The newest folder is prepared for the next run: it does not count, the newest
        // finished run is kept; so is one prepared after the list was taken.
        let removed = prune(&st, "j", &ids[30], 1, &[ids[0].clone(), ids[32].clone()]).unwrap();
        assert_eq!(removed, 2);
        let left: Vec<String> = list_runs(&st, "j")
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(
            left,
            [&ids[0], &ids[30], &ids[31], &ids[32]].map(String::clone)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_directory_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let st = StateDir::new(dir.path().join("state"));
        st.ensure().unwrap();
        fs::create_dir(st.jobs_dir()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, st.job_dir("j")).unwrap();
        let e = allocate_run_dir(&st, "j", chrono::Utc::now()).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "wrote through the link"
        );
    }

    /// `latest.json` as a second name of the final record (see [`link_latest`]): it reads as
    /// the record, a newer latest result is kept, and it outlives both a rewrite of the
    /// record and the removal of the run's folder (pruning), as the copy did.
    #[test]
    fn the_latest_result_is_the_final_record_and_outlives_its_folder() {
        use crate::model::record::{Outcome, Trigger};
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path().join("state"));
        st.ensure().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let finished = |due: DateTime<Utc>| {
            let (id, run_dir) = allocate_run_dir(&st, "j", due).unwrap();
            let mut rec = RunRecord::journal("j", id, run_dir, due, Trigger::Schedule, 60.0);
            rec.started = Some(due);
            rec.finished = Some(due + chrono::Duration::seconds(1));
            rec.outcome = Some(Outcome::Success);
            rec.save().unwrap();
            rec
        };
        let latest = || {
            read_json::<RunRecord>(&st.latest_file("j"))
                .unwrap()
                .unwrap()
        };
        let second = finished(t0 + chrono::Duration::seconds(10));
        link_latest(&st, &second).unwrap();
        assert_eq!(latest().run_id, second.run_id);
        // An older run finishing later does not replace it.
        let first = finished(t0);
        link_latest(&st, &first).unwrap();
        assert_eq!(latest().run_id, second.run_id);
        // Linking the same record again changes nothing and leaves no temp name behind.
        link_latest(&st, &second).unwrap();
        let names: Vec<String> = fs::read_dir(st.job_dir("j"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        // A rewrite of the record (a new file under its name) leaves the latest result as it
        // was written.
        let mut changed = second.clone();
        changed.note = Some("rewritten".into());
        changed.save().unwrap();
        assert_eq!(latest().note, None);
        // Pruning moves the folder away and removes it: the latest result stays.
        discard(&st, "j", &second.run_dir).unwrap();
        let (gone, errors) = remove_discarded(
            &st,
            "j",
            &mut Budget::new(Duration::from_secs(10), 1_000_000),
        );
        assert!(matches!(gone, Removal::Gone) && errors.is_empty());
        assert!(!second.run_dir.exists());
        assert_eq!(latest().run_id, second.run_id);
        assert_eq!(latest().outcome, Some(Outcome::Success));
    }

    /// A run folder another user owns (a `user` job's) gets a copy, never a link: that user
    /// could otherwise rewrite the daemon's latest result through their own file.
    #[cfg(unix)]
    #[test]
    fn a_folder_another_user_owns_gets_a_copy_not_a_link() {
        use crate::model::record::{Outcome, Trigger};
        use std::os::unix::fs::MetadataExt;
        if rustix::process::geteuid().as_raw() != 0 {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root");
            eprintln!("skipped: needs root to hand a folder to another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path().join("state"));
        st.ensure().unwrap();
        let due = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let (id, run_dir) = allocate_run_dir(&st, "j", due).unwrap();
        let mut rec = RunRecord::journal("j", id, run_dir.clone(), due, Trigger::Schedule, 60.0);
        rec.started = Some(due);
        rec.finished = Some(due + chrono::Duration::seconds(1));
        rec.outcome = Some(Outcome::Success);
        rec.save().unwrap();
        std::os::unix::fs::chown(&run_dir, Some(65534), Some(65534)).unwrap();
        link_latest(&st, &rec).unwrap();
        let latest = fs::metadata(st.latest_file("j")).unwrap();
        let record = fs::metadata(rec.record_path()).unwrap();
        assert_ne!(
            latest.ino(),
            record.ino(),
            "latest.json is a link into the user's folder"
        );
        assert_eq!(latest.uid(), 0);
    }
}
