//! Finishing runs off the loop thread. Reading robot's result, writing the final record and
//! latest result (each fsynced) and pruning old run folders can take long; on the loop thread
//! they would delay due starts and timeouts. The loop decides a run's outcome and hands the
//! record here; a worker completes and writes it, then posts [`Event::Finished`] back.
//!
//! Each job's work is queued apart and taken by one worker at a time, so a job's records land
//! in the order its runs finished, while one job's slow result (a huge or hostile file, read
//! up to the daemon's `result_parse_timeout`) holds up only that job: the others' results
//! would otherwise go stale in Checkmk for no fault of theirs. That takes a worker per job
//! only while results are being read: [`BASE`] workers serve the queues (writing and fsyncing
//! records is the same disk's work for every job), and a worker that starts reading a result
//! while work waits and no other worker is outside a read starts one more, up to
//! [`MAX_WORKERS`]. Past its read, a worker beyond [`BASE`] outside reads ends; the last ones
//! end after [`IDLE`] without work. (A worker for every record in flight kept 30 threads
//! alive in the soak of issue 25 — 50 jobs, records fsynced on a loaded disk — each with its
//! stack, signal stack and allocator cache: over a MiB of private memory that crept on.)
//!
//! What a run leaves in its folder is untrusted (a `user` job's folder is that user's):
//! results are read through [`Folder`], which opens nothing outside the runner's folder and
//! follows no link, and within the bounds of `robot::budget`. When the daemon stops, every
//! read gets at most `stop_grace` more ([`Finisher::begin_stop`]), so `stop`, `stop --now`
//! and SIGTERM end the daemon within the grace whatever a parse is doing.
//!
//! The loop counts the records in flight here and does not exit before they are written.

use super::event::Event;
use super::folder::write_final;
use crate::logic::robot::budget::Stopping;
use crate::logic::robot::{Reading, RunFolder};
use crate::model::limits::Limits;
use crate::model::record::RunRecord;
use crate::service::state::StateDir;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{error, info, warn};

/// A result this large gets a log line before it is read.
const LARGE_RESULT: u64 = 16 * 1024 * 1024;

/// How a finished run's results are read: its job's attempts and the daemon's bounds, as they
/// were when the run ended.
#[derive(Debug, Clone)]
pub(super) struct ReadSpec {
    pub(crate) attempts: u32,
    pub(crate) limits: Limits,
    /// A plugin's reading, the published log (see `extras`).
    pub(crate) extras: super::extras::Extras,
}

/// What a worker does with one record.
pub(super) enum Work {
    /// A run ended (its record marked so): add robot's result, write it, prune the job's
    /// old run folders, keeping `keep` and never those in `protect` (runs in flight, queued or prepared).
    Finish {
        rec: Box<RunRecord>,
        keep: usize,
        protect: Vec<String>,
        read: ReadSpec,
    },
    /// A record that is complete already (a skipped run): just write it.
    Save(Box<RunRecord>),
    /// The journal of a run just started, now with its PID: written here, after the batch it
    /// belongs to is out, and before the same run's `Finish` (one queue per job, in order).
    /// Nothing is posted back. A crash before it is written loses nothing: recovery finds
    /// the run by its tag (see `recover`).
    Journal(Box<RunRecord>),
}

impl Work {
    fn record(&self) -> &RunRecord {
        match self {
            Work::Finish { rec, .. } | Work::Save(rec) | Work::Journal(rec) => rec,
        }
    }

    fn job(&self) -> &str {
        &self.record().job
    }
}

/// Workers at most: as many jobs' results are read at once. A 33rd job's record waits for
/// one of them, each bounded by `result_parse_timeout`; memory stays bounded (each read
/// holds a few MiB at most).
const MAX_WORKERS: usize = 32;
/// Workers outside reads of results, at most: enough that records wait for no one job's
/// fsync, few enough that a busy daemon keeps a handful of threads, not one per job.
const BASE: usize = 4;
/// An idle worker waits this long for more work before it ends: a burst of runs (journals at
/// their start, records at their end) reuses threads instead of starting one per record.
const IDLE: Duration = Duration::from_secs(10);

/// The work not yet taken, and who takes it.
#[derive(Default)]
struct Queues {
    /// Each job's work, in order.
    pending: HashMap<String, VecDeque<Work>>,
    /// Jobs with pending work that no worker holds, each once, in the order they came.
    ready: VecDeque<String>,
    /// Jobs in `ready` or held by a worker: one worker per job at a time keeps its order.
    scheduled: HashSet<String>,
    workers: usize,
    idle: usize,
    /// Workers reading a run's result (`complete`): the ones that may be held up by a file.
    reading: usize,
}

impl Queues {
    /// Workers that will come to waiting work without a read in the way.
    fn free(&self) -> usize {
        self.workers - self.reading
    }
}

struct Shared {
    state: StateDir,
    events: Sender<Event>,
    queues: Mutex<Queues>,
    wake: Condvar,
    stopping: Stopping,
}

impl Shared {
    fn queues(&self) -> MutexGuard<'_, Queues> {
        // A worker that panicked left the queues consistent (they change only under the
        // lock, never across a record's work): still usable.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The handle the loop sends work through.
pub(super) struct Finisher {
    shared: Arc<Shared>,
}

impl Finisher {
    /// A finisher that posts each written record back through `events`; workers start as
    /// work comes.
    pub(super) fn new(state: StateDir, events: Sender<Event>) -> Finisher {
        // What an earlier daemon left to remove is removed while the workers are idle.
        super::workdir::look_again_at_all(&state);
        let f = Finisher {
            shared: Arc::new(Shared {
                state,
                events,
                queues: Mutex::new(Queues::default()),
                wake: Condvar::new(),
                stopping: Stopping::default(),
            }),
        };
        if super::workdir::removal_pending() {
            let mut q = f.shared.queues();
            if let Err(e) = f.start_worker(&mut q) {
                warn!("cannot start a finisher thread: {e}; old run folders are removed after the next run");
            }
        }
        f
    }

    /// Starts one more worker (the caller holds the queues' lock and checked the bound).
    fn start_worker(&self, q: &mut Queues) -> io::Result<()> {
        start_worker(&self.shared, q)
    }

    /// Queues work behind the job's earlier work; gives it back if no worker exists or can
    /// be started for it (then the caller does it itself).
    pub(super) fn send(&self, work: Work) -> Result<(), Work> {
        let mut q = self.shared.queues();
        let job = work.job().to_string();
        q.pending.entry(job.clone()).or_default().push_back(work);
        if !q.scheduled.insert(job.clone()) {
            // Its worker, or its place in `ready`, takes this too, in order.
            return Ok(());
        }
        q.ready.push_back(job.clone());
        if q.idle > 0 {
            self.shared.wake.notify_one();
            return Ok(());
        }
        if q.workers >= MAX_WORKERS || q.free() >= BASE {
            // A worker outside a read comes to it once done with what it holds.
            return Ok(());
        }
        // Spawned under the lock: a failed spawn takes its work back before a worker sees it.
        match self.start_worker(&mut q) {
            Ok(()) => Ok(()),
            Err(e) => {
                if q.workers > 0 {
                    // A running worker will come to it.
                    return Ok(());
                }
                warn!(job = %job, "cannot start a finisher thread: {e}; finishing inline");
                q.ready.retain(|j| *j != job);
                q.scheduled.remove(&job);
                // Not scheduled before: this work was its only one.
                let back = q.pending.remove(&job).and_then(|mut p| p.pop_front());
                back.map_or(Ok(()), Err)
            }
        }
    }

    /// The daemon stops: reads of results under way or to come get at most `grace` more.
    pub(super) fn begin_stop(&self, grace: Duration) {
        self.shared.stopping.begin(grace);
    }

    /// The stop is called off (see `Daemon::undrain`).
    pub(super) fn cancel_stop(&self) {
        self.shared.stopping.cancel();
    }

    pub(super) fn stopping(&self) -> &Stopping {
        &self.shared.stopping
    }
}

/// Starts one more worker of `shared` (the caller holds the queues' lock, `q`, and checked the
/// bound).
fn start_worker(shared: &Arc<Shared>, q: &mut Queues) -> io::Result<()> {
    q.workers += 1;
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name("finisher".into())
        .spawn(move || worker(&shared))
        .map(drop)
        .inspect_err(|_| q.workers -= 1)
}

/// [`do_work`], and should it panic (a bug met by a hostile file), the record as it came,
/// written with a note: the worker, its job's queue and the loop's count of records in
/// flight go on, so the daemon can still stop.
fn guarded(shared: &Arc<Shared>, work: Work) -> (Box<RunRecord>, Option<String>) {
    let mut fallback = work.record().clone();
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        do_work_in(&shared.state, work, Some(&shared.stopping), Some(shared))
    }));
    done.unwrap_or_else(|_| {
        error!(job = %fallback.job, "reading the result of run {} failed (a bug); recorded without it", fallback.run_id);
        let note = "the daemon failed while reading its result (see daemon.log)";
        fallback.note = Some(match fallback.note.take() {
            Some(n) => format!("{n}; {note}"),
            None => note.to_string(),
        });
        let error = write_final(&shared.state, &mut fallback)
            .err()
            .map(|e| e.to_string());
        (Box::new(fallback), error)
    })
}

/// A worker: takes a ready job's next work, does it, and puts the job back while it has
/// more; ends after [`IDLE`] without work.
fn worker(shared: &Arc<Shared>) {
    crate::service::run::background_thread();
    let mut q = shared.queues();
    loop {
        if let Some(job) = q.ready.pop_front() {
            let work = q.pending.get_mut(&job).and_then(|p| {
                let work = p.pop_front();
                superseded(work, p.front())
            });
            drop(q);
            match work {
                Some(Work::Journal(rec)) => journal(&rec),
                Some(work) => {
                    let (rec, error) = guarded(shared, work);
                    // A loop that is gone has nothing to learn; the record is written.
                    let _ = shared.events.send(Event::Finished { rec, error });
                }
                None => {}
            }
            q = shared.queues();
            release(&mut q, job);
            if q.free() > BASE {
                // Started while others read results, which are done: fewer threads suffice.
                // The others outside reads come to what waits (an idle one is woken).
                q.workers -= 1;
                if !q.ready.is_empty() {
                    shared.wake.notify_one();
                }
                return;
            }
            continue;
        }
        // Idle: old run folders a look could not finish are removed further, one job's at a
        // time and never beside that job's own work (it holds the job like its records do).
        if let Some(job) = super::workdir::next_pending(|j| !q.scheduled.contains(j)) {
            q.scheduled.insert(job.clone());
            drop(q);
            super::workdir::go_on(&shared.state, &job);
            q = shared.queues();
            release(&mut q, job);
            if !q.ready.is_empty() {
                // Came while this worker was removing: `send` may have left it to this one.
                continue;
            }
        }
        let removing = super::workdir::removal_pending();
        q.idle += 1;
        let wait = if removing { super::workdir::IDLE } else { IDLE };
        let (guard, waited) = shared
            .wake
            .wait_timeout(q, wait)
            .unwrap_or_else(|e| e.into_inner());
        q = guard;
        q.idle -= 1;
        // The last worker stays while folders are left to remove.
        if waited.timed_out() && q.ready.is_empty() && !(removing && q.workers == 1) {
            q.workers -= 1;
            return;
        }
    }
}

/// `work`, unless it is the journal of a run whose final record comes `next`: that record
/// replaces it on disk anyway (a short run ends before its journal's turn), and writing it
/// first would cost a file, a rename and a deleted inode for nothing. A crash before the
/// final record is written loses nothing by it: the run is found by its tag, as when the
/// daemon dies before any journal with its PID (see [`Work::Journal`]).
fn superseded(work: Option<Work>, next: Option<&Work>) -> Option<Work> {
    match (work, next) {
        (Some(Work::Journal(rec)), Some(next @ (Work::Finish { .. } | Work::Save(_))))
            if next.record().run_id == rec.run_id =>
        {
            None
        }
        (work, _) => work,
    }
}

/// A worker is done with `job` for now: back in line behind the other ready jobs while it has
/// more work (one job's backlog does not starve the rest), else free.
fn release(q: &mut Queues, job: String) {
    if q.pending.get(&job).is_some_and(|p| !p.is_empty()) {
        q.ready.push_back(job);
    } else {
        q.pending.remove(&job);
        q.scheduled.remove(&job);
    }
}

/// Writes the journal of a run in flight (its PID); a failure is logged, the run goes on.
pub(super) fn journal(rec: &RunRecord) {
    if let Err(e) = rec.save() {
        // The run goes on; only a crash before it ends would lose its PID.
        warn!(job = %rec.job, "cannot update the record of run {}: {e}", rec.run_id);
    }
}

/// The runner's folder of a run (its `{run_dir}`), as the result readers open files in it.
pub(super) struct Folder {
    path: PathBuf,
    /// It is a `user` job's own folder: nothing outside it is read.
    users: bool,
}

impl Folder {
    /// Where the run's runner wrote: a `user` job's own folder if the run has one (the
    /// users' tree is root's: only the daemon makes one), else the run folder.
    pub(super) fn of(rec: &RunRecord) -> Folder {
        match super::workdir::work_dir_of(&rec.run_dir) {
            Some(w) if std::fs::symlink_metadata(&w).is_ok_and(|m| m.is_dir()) => Folder {
                path: w,
                users: true,
            },
            _ => Folder {
                path: rec.run_dir.clone(),
                users: false,
            },
        }
    }
}

impl RunFolder for Folder {
    fn path(&self) -> &Path {
        &self.path
    }

    fn open_log(&self, path: &Path) -> io::Result<File> {
        crate::service::sys::file::open_read(path)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        match path.strip_prefix(&self.path) {
            Ok(rel) => crate::service::sys::open_beneath(&self.path, rel),
            // A job without `user` whose config names its result elsewhere: the admin's own
            // choice, written by a runner running as root (a link at its last step is
            // refused as for every state file).
            Err(_) if !self.users => crate::service::sys::file::open_read(path),
            Err(_) => Err(self.outside(path)),
        }
    }

    fn list(&self, dir: &Path, rel: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        let (top, rel) = match dir.strip_prefix(&self.path) {
            Ok(d) => (self.path.as_path(), d.join(rel)),
            // As `open`: the admin's folder, the steps below it still not followed.
            Err(_) if !self.users => (dir, rel.to_path_buf()),
            Err(_) => return Err(self.outside(dir)),
        };
        let entries = crate::service::sys::Beneath::open(top)?.entries(&rel)?;
        Ok(entries.into_iter().map(|e| e.name).collect())
    }

    fn is_there(&self, path: &Path) -> Option<bool> {
        // A stat by path, not by handle: only whether to open it, which goes by handle.
        match std::fs::symlink_metadata(path) {
            Ok(_) => Some(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    }

    fn daemon_short(&self, e: &io::Error) -> Option<String> {
        use crate::service::sys::descriptors;
        descriptors::mark(e).then(descriptors::words)
    }
}

impl Folder {
    fn outside(&self, path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is outside the user's run folder {}; not read",
                path.display(),
                self.path.display()
            ),
        )
    }
}

/// Completes an ended record: robot's result (read from its runner's folder as `read` says,
/// cut short when the daemon stops), then the caps on its texts.
pub(super) fn complete(rec: &mut RunRecord, read: ReadSpec, stopping: Option<&Stopping>) {
    // A run that never started (its user held, its environment failed) wrote nothing: its
    // note says why, and no result is looked for (a held job's has no folder of its user's).
    if rec.started.is_none() {
        rec.clip();
        return;
    }
    let folder = Folder::of(rec);
    // A large result takes a while: the log says what the job's worker is doing meanwhile.
    let size = rec
        .result
        .as_deref()
        .and_then(|r| std::fs::symlink_metadata(r).ok())
        .map_or(0, |m| m.len());
    if size >= LARGE_RESULT {
        info!(job = %rec.job, "reading the result of run {} ({size} bytes)", rec.run_id);
    }
    let how = Reading {
        folder: &folder,
        attempts: read.attempts,
        limits: read.limits,
        stopping,
    };
    super::folder::complete(rec, &how);
    super::extras::apply(rec, &read.extras, &folder);
}

/// Completes and writes one record; returns it with the write error, if any.
pub(super) fn do_work(
    state: &StateDir,
    work: Work,
    stopping: Option<&Stopping>,
) -> (Box<RunRecord>, Option<String>) {
    do_work_in(state, work, stopping, None)
}

/// A worker of `pool` starts reading a result, which a hostile file can make take up to
/// `result_parse_timeout`: if work waits and every other worker is in a read too, one more
/// starts, so the other jobs' records are not held up by this one.
fn begin_read(pool: &Arc<Shared>) -> ReadGuard<'_> {
    let mut q = pool.queues();
    q.reading += 1;
    if q.free() == 0 && q.idle == 0 && !q.ready.is_empty() && q.workers < MAX_WORKERS {
        if let Err(e) = start_worker(pool, &mut q) {
            warn!("cannot start a finisher thread: {e}; other jobs' records wait for this read");
        }
    }
    ReadGuard(pool)
}

/// A worker's read of a result under way; ends it when dropped, a panic's unwinding included.
struct ReadGuard<'a>(&'a Shared);

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.0.queues().reading -= 1;
    }
}

fn do_work_in(
    state: &StateDir,
    work: Work,
    stopping: Option<&Stopping>,
    pool: Option<&Arc<Shared>>,
) -> (Box<RunRecord>, Option<String>) {
    match work {
        Work::Finish {
            mut rec,
            keep,
            protect,
            read,
        } => {
            let reading = pool.map(begin_read);
            complete(&mut rec, read, stopping);
            drop(reading);
            info!(
                job = %rec.job, run_id = %rec.run_id,
                outcome = rec.outcome.map_or("?", |o| o.as_str()),
                exit_code = rec.exit_code, duration_s = rec.duration_s,
                "run finished"
            );
            let error = write_final(state, &mut rec).err().map(|e| e.to_string());
            super::workdir::after_run(state, &rec, keep, &protect);
            (rec, error)
        }
        Work::Save(mut rec) => {
            let error = write_final(state, &mut rec).err().map(|e| e.to_string());
            (rec, error)
        }
        Work::Journal(rec) => {
            journal(&rec);
            (rec, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::{Outcome, Trigger};
    use crate::service::state::record::{self};
    use std::sync::mpsc;

    fn record(st: &StateDir, job: &str) -> Box<RunRecord> {
        let due = chrono::Utc::now();
        let (run_id, run_dir) = record::allocate_run_dir(st, job, due).unwrap();
        let mut rec = RunRecord::journal(job, run_id, run_dir, due, Trigger::Schedule, 60.0);
        rec.outcome = Some(Outcome::Skipped);
        Box::new(rec)
    }

    /// A run that could not be given a folder (the daemon had no descriptor left) is
    /// recorded all the same: its record makes the folder, beside the job's other runs, and
    /// says why it did not start, not that output was lost.
    #[test]
    fn a_run_without_a_folder_is_recorded_where_no_other_run_is() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path().join("state"));
        st.ensure().unwrap();
        let due = chrono::Utc::now();
        let (taken, _) = record::allocate_run_dir(&st, "j", due).unwrap();
        let (run_id, run_dir) = record::unused_run_dir(&st, "j", due);
        assert_ne!(run_id, taken);
        assert!(!run_dir.exists());
        let mut rec =
            RunRecord::journal("j", run_id, run_dir.clone(), due, Trigger::Schedule, 60.0);
        rec.note = Some("not started: the daemon has no file descriptor left".into());
        super::super::folder::mark_ended(&mut rec, Outcome::Error, None);
        let (rec, error) = do_work(&st, Work::Save(Box::new(rec)), None);
        assert!(error.is_none(), "{error:?}");
        assert!(!rec.output_lost, "{rec:?}");
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run_dir.join("record.json")).unwrap()).unwrap();
        assert_eq!(saved["outcome"], "error");
        assert_eq!(
            saved["note"],
            "not started: the daemon has no file descriptor left"
        );
    }

    #[test]
    fn each_jobs_records_come_back_in_the_order_they_were_sent() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path().join("state"));
        st.ensure().unwrap();
        let (tx, rx) = mpsc::channel();
        let f = Finisher::new(st.clone(), tx);
        let mut sent: HashMap<String, Vec<String>> = HashMap::new();
        for i in 0..60 {
            let job = format!("job{}", i % 7);
            let rec = record(&st, &job);
            sent.entry(job).or_default().push(rec.run_id.clone());
            assert!(f.send(Work::Save(rec)).is_ok());
        }
        let mut got: HashMap<String, Vec<String>> = HashMap::new();
        for _ in 0..60 {
            match rx.recv_timeout(Duration::from_secs(20)).unwrap() {
                Event::Finished { rec, error } => {
                    assert!(error.is_none(), "{error:?}");
                    got.entry(rec.job.clone()).or_default().push(rec.run_id);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, sent);
        // Each worker lets go of its job just after posting its last record.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let q = f.shared.queues();
            if q.pending.is_empty() && q.ready.is_empty() && q.scheduled.is_empty() {
                assert!(q.workers <= MAX_WORKERS);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "work left behind");
            drop(q);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A run's journal whose final record is already queued behind it is not written (the
    /// record replaces it); any other journal is, and the final record always is.
    #[test]
    fn a_journal_is_skipped_only_when_its_own_final_record_follows() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path().join("state"));
        st.ensure().unwrap();
        let a = record(&st, "a");
        let b = record(&st, "a");
        let journal = |r: &RunRecord| Some(Work::Journal(Box::new(r.clone())));
        let save = |r: &RunRecord| Work::Save(Box::new(r.clone()));
        assert!(superseded(journal(&a), Some(&save(&a))).is_none());
        assert!(matches!(
            superseded(journal(&a), Some(&save(&b))),
            Some(Work::Journal(_))
        ));
        assert!(matches!(
            superseded(journal(&a), None),
            Some(Work::Journal(_))
        ));
        assert!(matches!(
            superseded(journal(&a), journal(&a).as_ref()),
            Some(Work::Journal(_))
        ));
        assert!(matches!(
            superseded(Some(save(&a)), Some(&save(&a))),
            Some(Work::Save(_))
        ));
    }
}
