//! Finishing runs off the loop thread. Reading robot's result (hundreds of MB at worst),
//! writing the final record and latest result (each fsynced) and pruning old run folders can
//! take long; on the loop thread they would delay due starts and timeouts. The loop decides a
//! run's outcome and hands the record here; one worker thread (so records of a job land in
//! the order they finished) completes and writes it, then posts [`Event::Finished`] back.
//!
//! The loop counts the records in flight here and does not exit before they are written.

use super::runs::write_final;
use super::Event;
use crate::state::record::RunRecord;
use crate::state::StateDir;
use std::sync::mpsc::{self, Sender};
use tracing::{info, warn};

/// What the worker does with one record.
pub(super) enum Work {
    /// A run ended (its record marked so): add robot's result, write it, prune the job's
    /// old run folders, keeping `keep` and never those in `protect` (runs in flight).
    Finish {
        rec: Box<RunRecord>,
        keep: usize,
        protect: Vec<String>,
    },
    /// A record that is complete already (a skipped run): just write it.
    Save(Box<RunRecord>),
    /// The journal of a run just started, now with its PID: written here, after the batch it
    /// belongs to is out, and before the same run's `Finish` (one queue, in order). Nothing
    /// is posted back. A crash before it is written loses nothing: recovery finds the run by
    /// its tag (see `recover`).
    Journal(Box<RunRecord>),
}

/// The handle the loop sends work through.
pub(super) struct Finisher {
    tx: Sender<Work>,
}

impl Finisher {
    /// Starts the worker; it posts each written record back through `events`.
    pub(super) fn start(state: StateDir, events: Sender<Event>) -> std::io::Result<Finisher> {
        let (tx, rx) = mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("finisher".into())
            .spawn(move || {
                crate::run::background_thread();
                super::workdir::look_again_at_all(&state);
                loop {
                    // Folders a look left to remove are removed further while idle.
                    let work = if super::workdir::removal_pending() {
                        match rx.recv_timeout(super::workdir::IDLE) {
                            Ok(w) => w,
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                super::workdir::go_on(&state);
                                continue;
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        }
                    } else {
                        match rx.recv() {
                            Ok(w) => w,
                            Err(_) => break,
                        }
                    };
                    let work = match work {
                        Work::Journal(rec) => {
                            journal(&rec);
                            continue;
                        }
                        w => w,
                    };
                    let (rec, error) = do_work(&state, work);
                    if events.send(Event::Finished { rec, error }).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Finisher { tx })
    }

    /// Queues work; false if the worker is gone (then the caller does it itself).
    pub(super) fn send(&self, work: Work) -> Result<(), Work> {
        self.tx.send(work).map_err(|e| e.0)
    }
}

/// Writes the journal of a run in flight (its PID); a failure is logged, the run goes on.
pub(super) fn journal(rec: &RunRecord) {
    if let Err(e) = rec.save() {
        // The run goes on; only a crash before it ends would lose its PID.
        warn!(job = %rec.job, "cannot update the record of run {}: {e}", rec.run_id);
    }
}

/// Completes and writes one record; returns it with the write error, if any.
pub(super) fn do_work(state: &StateDir, work: Work) -> (Box<RunRecord>, Option<String>) {
    match work {
        Work::Finish {
            mut rec,
            keep,
            protect,
        } => {
            super::runs::complete(&mut rec);
            info!(
                job = %rec.job, run_id = %rec.run_id,
                outcome = rec.outcome.map_or("?", |o| o.as_str()),
                exit_code = ?rec.exit_code, duration_s = ?rec.duration_s,
                "run finished"
            );
            let error = write_final(state, &rec).err().map(|e| e.to_string());
            super::workdir::after_run(state, &rec, keep, &protect);
            (rec, error)
        }
        Work::Save(rec) => {
            let error = write_final(state, &rec).err().map(|e| e.to_string());
            (rec, error)
        }
        Work::Journal(rec) => {
            journal(&rec);
            (rec, None)
        }
    }
}
