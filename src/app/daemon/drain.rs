//! How a drain begins ([`Daemon::drain`]), what a draining daemon does with its schedule, and
//! how a drain is called off. The state a drain keeps is in `drained.rs` (a file of its own:
//! `Daemon` holds it, and `shell.rs` importing this file would make a cycle with it).
//!
//! A drain (a stop, an upgrade, a handover, a stale heartbeat) starts no run, but the due
//! times that pass meanwhile are never dropped without a word: each is taken from the job's
//! plan as it passes and recorded as skipped ("the daemon was draining: <why>") once a later
//! one of the same job has passed. The latest is kept until the drain ends:
//! - the daemon exits: with `catch_up = "once"` it is left to the next daemon, which runs
//!   it as its catch-up (the records on disk tell it what passed); with `catch_up = "skip"`
//!   it is recorded as skipped too;
//! - another daemon holds the instance (its lock file was replaced): nothing is recorded,
//!   the due times are that daemon's;
//! - the drain is called off ([`Daemon::undrain`]: a handover whose config names this
//!   daemon's instance and state dir again): it runs now as a catch-up (`catch_up = "skip"`:
//!   recorded as skipped), unless the job's previous run is still in flight under
//!   `overlap = "skip"`.

use super::drained::Missed;
use super::shell::{Daemon, Phase};
use super::table::Pending;
use crate::logic::scheduler::{self, Admit};
use crate::model::config::CatchUp;
use crate::model::record::{ts, Trigger};
use chrono::Utc;
use std::sync::Arc;
use tracing::info;

impl Daemon {
    /// Stop starting runs; drop the queue (recorded as skipped); exit once runs are done.
    pub(super) fn drain(&mut self, reason: &str) {
        if self.phase == Phase::Draining {
            // A handover's drain that now has another cause too (a stop, a stale heartbeat)
            // is no longer called off when the config names this daemon again.
            if std::mem::take(&mut self.drained.handing_over) {
                info!("draining: {reason} (besides the handover, which is no longer called off)");
                self.set_draining(reason);
            }
            return;
        }
        info!(
            runs_in_flight = self.table.in_flight(),
            "draining: {reason}; no new runs, waiting for runs in flight"
        );
        let prepared: Vec<_> = self
            .jobs
            .values_mut()
            .filter_map(|js| js.prepared.take().map(|r| *r))
            .collect();
        for rec in prepared {
            self.discard_prepared(Some(rec));
        }
        self.set_draining(reason);
        // A result being read, or read later, gets no more than the grace: a stop must not
        // wait on a parse.
        if let Some(f) = &self.finisher {
            f.begin_stop(self.cfg.daemon.stop_grace);
        }
        for p in self.dequeue_all() {
            self.record_skipped(
                &p.job,
                p.due,
                p.trigger,
                &format!("the daemon stopped before a slot was free ({reason})"),
                p.prepared,
            );
        }
    }

    /// Why due times passing now start no run: the words of every skipped record.
    fn drain_words(&self) -> String {
        format!(
            "the daemon was draining: {}",
            self.shown.info().reason.as_deref().unwrap_or("stopping")
        )
    }

    /// Takes the due times that passed while draining (see the module doc).
    pub(super) fn pass_while_draining(&mut self) {
        if self.oneshot || self.phase != Phase::Draining {
            return;
        }
        let now = Utc::now();
        let due: Vec<String> =
            scheduler::due_now(self.jobs.iter().map(|(n, js)| (n, &js.slots)), now)
                .into_iter()
                .map(str::to_string)
                .collect();
        if due.is_empty() {
            return;
        }
        let why = self.drain_words();
        for name in due {
            let Some(js) = self.jobs.get_mut(&name) else {
                continue;
            };
            let before = js.slots.last_due;
            let Some(firing) = js.slots.take_due(&js.job, now) else {
                continue;
            };
            let job = Arc::clone(&js.job);
            if self.drained.another_runs_them {
                continue;
            }
            if let Some(first) = firing.missed() {
                self.record_skipped(
                    &job,
                    first,
                    firing.trigger(),
                    &format!(
                        "{why}; due times from {} to before {} were not run",
                        ts(first),
                        ts(firing.due)
                    ),
                    None,
                );
            }
            let now_missed = Missed {
                due: firing.due,
                trigger: firing.trigger(),
                after_another: before.is_some(),
            };
            if let Some(prev) = self.drained.missed.insert(name, now_missed) {
                self.record_skipped(&job, prev.due, prev.trigger, &why, None);
            }
        }
    }

    /// Before the draining daemon exits: the latest due time each job missed is recorded as
    /// skipped, or left to the next daemon's catch-up (see the module doc).
    pub(super) fn settle_drain_missed(&mut self) {
        if self.drained.another_runs_them {
            self.drained.missed.clear();
        }
        if self.drained.missed.is_empty() {
            return;
        }
        let why = self.drain_words();
        for (name, m) in std::mem::take(&mut self.drained.missed) {
            let Some(job) = self.jobs.get(&name).map(|js| Arc::clone(&js.job)) else {
                continue;
            };
            if job.catch_up == CatchUp::Once && m.after_another {
                info!(
                    job = %name, due = %ts(m.due),
                    "due time passed while draining ({why}); left to the next daemon, which runs it as its catch-up (catch_up = \"once\")"
                );
                continue;
            }
            let tail = if job.catch_up == CatchUp::Skip {
                "; catch_up = \"skip\": the next daemon waits for the next due time"
            } else {
                "; the job never ran: the next daemon waits for its next due time"
            };
            self.record_skipped(&job, m.due, m.trigger, &format!("{why}{tail}"), None);
        }
    }

    /// The config names this daemon's instance and state dir again before its handover
    /// drain ended: the drain is called off, runs start again, and the due times it missed
    /// are caught up or recorded (see the module doc).
    pub(super) fn undrain(&mut self) {
        let why = self.drain_words();
        info!(
            instance = %self.cfg.daemon.instance,
            state_dir = %self.cfg.daemon.state_dir.display(),
            runs_in_flight = self.table.in_flight(),
            "handover called off: the config names this daemon's instance and state dir again; runs start again ({why})"
        );
        self.drained.handing_over = false;
        self.set_running();
        if let Some(f) = &self.finisher {
            f.cancel_stop();
        }
        for (name, m) in std::mem::take(&mut self.drained.missed) {
            let Some(js) = self.jobs.get(&name) else {
                continue;
            };
            let job = Arc::clone(&js.job);
            let skip = if job.catch_up == CatchUp::Skip {
                Some(format!(
                    "{why}; catch_up = \"skip\": the next due time runs"
                ))
            } else if scheduler::admit(job.overlap, js.busy()) == Admit::Skip {
                Some(format!(
                    "{why}; when it ended the previous run was still in flight (overlap = \"skip\")"
                ))
            } else {
                None
            };
            match skip {
                Some(text) => self.record_skipped(&job, m.due, m.trigger, &text, None),
                None => {
                    info!(job = %name, due = %ts(m.due), "due time missed while draining: runs now as a catch-up");
                    self.enqueue(Pending {
                        job,
                        due: m.due,
                        trigger: Trigger::CatchUp,
                        prepared: None,
                        request: None,
                    });
                }
            }
        }
    }
}
