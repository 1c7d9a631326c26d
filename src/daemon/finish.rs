//! Finishing runs off the loop thread. Reading robot's result, writing the final record and
//! latest result (each fsynced) and pruning old run folders can take long; on the loop thread
//! they would delay due starts and timeouts. The loop decides a run's outcome and hands the
//! record here; a worker completes and writes it, then posts [`Event::Finished`] back.
//!
//! One worker per job with work queued, so that a job's records land in the order its runs
//! finished while one job's slow result (a huge or hostile file, read up to the daemon's
//! `result_parse_timeout`) never holds up another job's records: their results would go
//! stale in Checkmk for no fault of theirs. A worker ends when its job's queue is empty.
//!
//! What a run leaves in its folder is untrusted (a `user` job's folder is that user's):
//! results are read through [`Folder`], which opens nothing outside the runner's folder and
//! follows no link, and within the bounds of `robot::budget`. When the daemon stops, every
//! read gets at most `stop_grace` more ([`Finisher::begin_stop`]), so `stop`, `stop --now`
//! and SIGTERM end the daemon within the grace whatever a parse is doing.
//!
//! The loop counts the records in flight here and does not exit before they are written.

use super::runs::write_final;
use super::Event;
use crate::robot::budget::{Limits, Stopping};
use crate::robot::{Reading, RunFolder};
use crate::state::record::{self, RunRecord};
use crate::state::StateDir;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{info, warn};

/// A result this large gets a log line before it is read.
const LARGE_RESULT: u64 = 16 * 1024 * 1024;

/// How a finished run's results are read: its job's attempts and the daemon's bounds, as they
/// were when the run ended.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadSpec {
    pub attempts: u32,
    pub limits: Limits,
}

/// What a worker does with one record.
pub(super) enum Work {
    /// A run ended (its record marked so): add robot's result, write it, prune the job's
    /// old run folders, keeping `keep` and never those in `protect` (runs in flight).
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
    fn job(&self) -> &str {
        match self {
            Work::Finish { rec, .. } | Work::Save(rec) | Work::Journal(rec) => &rec.job,
        }
    }
}

struct Shared {
    state: StateDir,
    events: Sender<Event>,
    /// Each job's queue; a job is here exactly while its worker runs.
    queues: Mutex<HashMap<String, VecDeque<Work>>>,
    stopping: Stopping,
}

impl Shared {
    fn queues(&self) -> MutexGuard<'_, HashMap<String, VecDeque<Work>>> {
        // A worker that panicked left the map as it was: still usable.
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
        Finisher {
            shared: Arc::new(Shared {
                state,
                events,
                queues: Mutex::new(HashMap::new()),
                stopping: Stopping::default(),
            }),
        }
    }

    /// Queues work behind the job's earlier work; false if no worker could be started for
    /// it (then the caller does it itself).
    pub(super) fn send(&self, work: Work) -> Result<(), Work> {
        let mut queues = self.shared.queues();
        if let Some(q) = queues.get_mut(work.job()) {
            q.push_back(work);
            return Ok(());
        }
        let job = work.job().to_string();
        queues.insert(job.clone(), VecDeque::from([work]));
        let shared = Arc::clone(&self.shared);
        let name = job.clone();
        // Spawned under the lock: the worker waits for it, and a failed spawn takes its
        // work back before anyone else sees the queue.
        match std::thread::Builder::new()
            .name("finisher".into())
            .spawn(move || worker(&shared, &name))
        {
            Ok(_) => Ok(()),
            Err(e) => {
                warn!(job = %job, "cannot start a finisher thread: {e}; finishing inline");
                let mut back = queues.remove(&job).unwrap_or_default();
                back.pop_front().map_or(Ok(()), Err)
            }
        }
    }

    /// The daemon stops: reads of results under way or to come get at most `grace` more.
    pub(super) fn begin_stop(&self, grace: Duration) {
        self.shared.stopping.begin(grace);
    }

    pub(super) fn stopping(&self) -> &Stopping {
        &self.shared.stopping
    }
}

/// One job's worker: its queue in order, then it ends.
fn worker(shared: &Shared, job: &str) {
    crate::run::background_thread();
    loop {
        let work = {
            let mut queues = shared.queues();
            match queues.get_mut(job).and_then(VecDeque::pop_front) {
                Some(w) => w,
                None => {
                    queues.remove(job);
                    return;
                }
            }
        };
        if let Work::Journal(rec) = &work {
            journal(rec);
            continue;
        }
        let (rec, error) = do_work(&shared.state, work, Some(&shared.stopping));
        if shared.events.send(Event::Finished { rec, error }).is_err() {
            return;
        }
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

    fn open(&self, path: &Path) -> io::Result<File> {
        match path.strip_prefix(&self.path) {
            Ok(rel) => crate::sys::open_beneath(&self.path, rel),
            // A job without `user` whose config names its result elsewhere: the admin's own
            // choice, written by a runner running as root (a link at its last step is
            // refused as for every state file).
            Err(_) if !self.users => crate::state::file::open_read(path),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is outside the user's run folder {}; not read",
                    path.display(),
                    self.path.display()
                ),
            )),
        }
    }
}

/// Completes an ended record: robot's result (read from its runner's folder as `read` says,
/// cut short when the daemon stops), then the caps on its texts.
pub(super) fn complete(rec: &mut RunRecord, read: ReadSpec, stopping: Option<&Stopping>) {
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
    super::runs::complete(rec, &how);
}

/// Completes and writes one record; returns it with the write error, if any.
pub(super) fn do_work(
    state: &StateDir,
    work: Work,
    stopping: Option<&Stopping>,
) -> (Box<RunRecord>, Option<String>) {
    match work {
        Work::Finish {
            mut rec,
            keep,
            protect,
            read,
        } => {
            complete(&mut rec, read, stopping);
            info!(
                job = %rec.job, run_id = %rec.run_id,
                outcome = rec.outcome.map_or("?", |o| o.as_str()),
                exit_code = ?rec.exit_code, duration_s = ?rec.duration_s,
                "run finished"
            );
            let error = write_final(state, &mut rec).err().map(|e| e.to_string());
            if let Err(e) = record::prune(state, &rec.job, keep, &protect) {
                warn!(job = %rec.job, "cannot remove old runs: {e}");
            }
            super::workdir::prune(state, &rec.job);
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
