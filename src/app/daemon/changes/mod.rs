//! The named changes of what the daemon shows: every change of `status.json` and the ctrl
//! view goes through one of the methods here — a run queued, started, ended, finished or
//! skipped, a config applied, the phase, the agent mode, an error to show, falling behind
//! the schedule — and each marks the status as owed a write itself. The mark and the
//! daemon's own part of the status ([`Shown`]) are private to this folder, so no other file
//! can change what the status shows without saying which change it is, nor forget to have it
//! written. The loop writes what is owed (`shell.rs` `flush_status`), at most every 100 ms.

pub(super) mod shown;

use super::jobs::JobState;
use super::shell::{Daemon, Phase};
use super::table::{ActiveRun, Pending};
use crate::logic::scheduler::{Reload, Slots};
use crate::model::config::{Config, Job};
use crate::model::record::{Outcome, RunRecord, Trigger};
use crate::model::status::{AgentMode, ConfigErrorKind};
use crate::service::state::record::{self};
use crate::service::state::{self};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

impl Daemon {
    /// No new runs from now: the status says why.
    pub(super) fn set_draining(&mut self, reason: &str) {
        self.phase = Phase::Draining;
        self.shown.info.phase = crate::model::status::Phase::Draining;
        self.shown.info.reason = Some(reason.to_string());
        self.shown.owe();
    }

    /// A drain called off (see `drain`): runs start again.
    pub(super) fn set_running(&mut self) {
        self.phase = Phase::Running;
        self.shown.info.phase = crate::model::status::Phase::Running;
        self.shown.info.reason = None;
        self.shown.owe();
    }

    /// The loop has ended: the last status says so.
    pub(super) fn set_stopped(&mut self) {
        self.shown.info.phase = crate::model::status::Phase::Stopped;
        if self.oneshot && self.shown.info.reason.is_none() {
            // `status` (and the next daemon's) names this stop: not a daemon someone stopped.
            self.shown.info.reason =
                Some("run-once ended (no daemon ran; it held the instance)".into());
        }
        self.shown.owe();
    }

    /// The host's time zone is now `zone` (see `control` `look_at_zone`): every cron job is
    /// planned again in its wall clock (a run folder prepared for the old due time is
    /// discarded), and the status names the zone.
    pub(super) fn rezone(&mut self, zone: String) {
        let now = Utc::now();
        let mut stale = Vec::new();
        let mut replanned = 0usize;
        for js in self.jobs.values_mut() {
            if js.slots.rezone(&js.job, now) {
                replanned += 1;
                stale.push(js.prepared.take().map(|r| *r));
            }
        }
        for rec in stale {
            self.discard_prepared(rec);
        }
        info!(cron_jobs_replanned = replanned, "time zone is now {zone}");
        self.shown.info.time_zone = Some(zone);
        self.shown.owe();
    }

    /// The agent mode and the heartbeat timeout in force.
    pub(super) fn set_agent_mode(&mut self, mode: AgentMode, timeout: Option<Duration>) {
        self.shown.info.agent_mode = Some(mode);
        self.shown.info.heartbeat_timeout_s = timeout.map(|d| d.as_secs_f64());
        self.shown.owe();
    }

    /// The stamp of the config file as last read.
    pub(super) fn set_config_stamp(&mut self, stamp: Option<String>) {
        self.shown.info.config_stamp = stamp;
        self.shown.owe();
    }

    /// Why the config on disk is not the one running, and what kind of error that is
    /// (`None`: it is).
    pub(super) fn set_config_error(&mut self, e: Option<(ConfigErrorKind, String)>) {
        let (kind, e) = e.map_or((None, None), |(k, e)| (Some(k), Some(e)));
        if self.shown.info.config_error != e || self.shown.info.config_error_kind != kind {
            self.shown.info.config_error = e;
            self.shown.info.config_error_kind = kind;
            self.shown.owe();
        }
    }

    /// What cannot be written now (shown until it can).
    pub(super) fn set_state_error(&mut self, msg: Option<String>) {
        if msg != self.shown.info.state_error {
            // status.json may not be writable now; the reserved alert file always is.
            let _ = crate::service::state::write_alert(&self.state, msg.as_deref());
            self.shown.info.state_error = msg;
            self.shown.owe();
        }
    }

    /// The environment worker's news of the environments.
    pub(super) fn set_env_views(&mut self, views: Vec<crate::model::env::EnvState>) {
        self.envs.views = views;
        self.shown.owe();
    }

    /// A due (or requested) run waits for a free slot.
    pub(super) fn enqueue(&mut self, p: Pending) {
        if let Some(js) = self.jobs.get_mut(&p.job.name) {
            js.add_queued();
        }
        self.table.queue.push_back(p);
        self.shown.owe();
    }

    /// Takes the queued run at `i` (to start it).
    pub(super) fn dequeue(&mut self, i: usize) -> Option<Pending> {
        let mut p = self.table.queue.remove(i)?;
        if let Some(js) = self.jobs.get_mut(&p.job.name) {
            js.remove_queued();
            // A run queued before its user was looked up again starts as the user is now,
            // or is held: the uid it was queued with may be another user's since (W2 F1).
            if js.job.user != p.job.user || js.job.user_deferred != p.job.user_deferred {
                let mut job = (*p.job).clone();
                job.user.clone_from(&js.job.user);
                job.user_deferred = js.job.user_deferred;
                p.job = std::sync::Arc::new(job);
            }
        }
        self.shown.owe();
        Some(p)
    }

    /// The published status or ctrl's view is gone (a cleaner of the state dir's folder, an
    /// admin's `rm`): both are written again at the next flush, unchanged as they may be. A
    /// daemon of a monthly job would otherwise be "starting" to ctrl for weeks (W2 F4).
    pub(super) fn republish(&mut self) {
        self.shown.owe();
    }

    /// Takes every queued run (the daemon stops).
    pub(super) fn dequeue_all(&mut self) -> Vec<Pending> {
        let all: Vec<Pending> = self.table.queue.drain(..).collect();
        for p in &all {
            if let Some(js) = self.jobs.get_mut(&p.job.name) {
                js.remove_queued();
            }
        }
        self.shown.owe();
        all
    }

    /// A run was spawned: it is in flight from now.
    pub(super) fn record_started(&mut self, pid: u32, run: ActiveRun) {
        if let Some(js) = self.jobs.get_mut(&run.record.job) {
            js.add_running(pid);
        }
        self.table.start(pid, run);
        self.shown.owe();
    }

    /// A run in flight has ended (its record goes to the finisher next).
    pub(super) fn record_ended(&mut self, run: &ActiveRun) {
        if let Some(js) = self.jobs.get_mut(&run.record.job) {
            js.remove_running(run.pgid);
        }
        self.shown.owe();
    }

    /// Records a due run that was not started.
    pub(super) fn record_skipped(
        &mut self,
        job: &Job,
        due: DateTime<Utc>,
        trigger: Trigger,
        why: &str,
        prepared: Option<RunRecord>,
    ) {
        info!(job = %job.name, due = %crate::model::record::ts(due), "run skipped: {why}");
        let folder = match prepared {
            Some(rec) => Ok(rec),
            None => {
                record::allocate_run_dir(&self.state, &job.name, due).map(|(run_id, run_dir)| {
                    super::folder::new_record(job, run_id, run_dir, due, trigger)
                })
            }
        };
        match folder {
            Ok(mut rec) => {
                rec.outcome = Some(Outcome::Skipped);
                rec.finished = Some(Utc::now());
                rec.note = Some(why.to_string());
                self.save_final(&rec);
            }
            Err(e) => self.state_failure(
                format!("skip:{}", job.name),
                format!("cannot record a skipped run of {}: {e}", job.name),
            ),
        }
        if let Some(js) = self.jobs.get_mut(&job.name) {
            js.note_skipped(due);
        }
        self.shown.owe();
    }

    /// Whether the wall clock stands behind the latest due time taken (it was set back: the
    /// watcher wakes the loop for a look when it is, see `sys::Watcher`). Every job's slots
    /// are read, so only at a look, not at every pass.
    pub(super) fn look_at_clock(&mut self) {
        self.clock_behind = crate::logic::scheduler::clock_set_back(
            self.jobs.values().map(|js| &js.slots),
            Utc::now(),
        );
        self.note_clock_behind();
    }

    /// The wall clock was stepped (either way) while it stands behind a result: the status
    /// and the view say when it was first seen behind as a wall instant, which moves with the
    /// clock, so they are written again (see `Daemon::clock_set_forward`).
    pub(super) fn clock_stepped(&mut self) {
        if self.clock_behind_since.is_some() {
            self.shown.owe();
        }
    }

    /// Keeps when the clock was first seen behind (see `clock_behind_since`); the status
    /// write that shows it is owed by the daemon line's words, which change with it. The
    /// predecessor's word (`clock_seen_behind`) counts at the first look only: the clock still
    /// behind then is the same step (or one further back), while a clock that has passed
    /// since has ended it.
    fn note_clock_behind(&mut self) {
        let seen_before = self.clock_seen_behind.take();
        match (self.clock_behind, self.clock_behind_since) {
            (Some(_), None) => {
                let before = seen_before
                    .map(|s| Utc::now() - s)
                    .filter(|d| *d > chrono::Duration::zero())
                    .unwrap_or_default();
                self.clock_behind_since = Some((std::time::Instant::now(), before));
            }
            (None, Some(_)) => self.clock_behind_since = None,
            _ => {}
        }
    }

    /// Whether the daemon keeps up with its schedule (see `backlog`): the daemon line's
    /// warning appears and clears with a status write of its own; while it is shown, its
    /// counts change with every run and ride along with the writes other changes owe.
    pub(super) fn update_backlog(&mut self) {
        let mut text = self
            .backlog
            .text(self.table.finishing, self.table.queue.len());
        // And a wall clock set back behind the due times run (found at a look, see
        // `look_at_clock`): no job starts until it is past them again, which must not pass
        // for a quiet spell. It clears as soon as the clock is past.
        if self
            .clock_behind
            .is_some_and(|l| Utc::now() > l + chrono::Duration::seconds(1))
        {
            self.clock_behind = None;
        }
        self.note_clock_behind();
        if let Some(latest) = self.clock_behind {
            let words = crate::logic::scheduler::clock_set_back_words(latest);
            text = Some(match text {
                Some(t) => format!("{words}; {t}"),
                None => words,
            });
        }
        // And descriptors that ran out (see `backlog::descriptors_short`): what it cost
        // is in the records, the cause stays on the daemon's line while it lasts.
        if let Some((words, _)) = super::backlog::descriptors_short(std::time::Instant::now()) {
            text = Some(match text {
                Some(t) => format!("{words}; {t}"),
                None => words,
            });
        }
        // And a config load that hangs (see `Reloading::stuck`): the config runs on, but no
        // edit is applied until it comes back.
        if let Some(words) = self.reloading.stuck(std::time::Instant::now()) {
            text = Some(match text {
                Some(t) => format!("{words}; {t}"),
                None => words,
            });
        }
        if text.is_some() != self.shown.info.behind.is_some() {
            self.shown.info.behind = text;
            self.shown.owe();
        } else if text.is_some() && self.shown.owed() {
            self.shown.info.behind = text;
        }
    }

    /// A record is written (or failed to be: kept and retried, its error shown until then).
    pub(super) fn record_finished(&mut self, rec: RunRecord, error: Option<String>) {
        self.table.finishing = self.table.finishing.saturating_sub(1);
        let cause = super::folder::record_cause(&rec);
        match error {
            None => self.state_ok(&cause),
            Some(e) => {
                self.unsaved.push(rec.clone());
                self.state_failure(
                    cause,
                    format!("cannot record run {} of {} yet: {e}", rec.run_id, rec.job),
                );
            }
        }
        if rec.outcome != Some(Outcome::Skipped) {
            if let Some(js) = self.jobs.get_mut(&rec.job) {
                let last = match rec.outcome {
                    // The last complete result stays, with a note (see `logic::stopped`).
                    Some(Outcome::Killed) => {
                        crate::logic::stopped::last_after(js.last.take().map(|l| l.to_last()), &rec)
                    }
                    _ => (&rec).into(),
                };
                js.last = Some(last.into());
                if self.oneshot && rec.request.is_some() {
                    js.set_answered(rec);
                }
            }
        }
        self.shown.owe();
    }

    /// A record that had failed to be written is written now: it may have learnt something
    /// (its output lost), and it is the job's latest result if nothing came since.
    pub(super) fn record_written_late(&mut self, rec: &RunRecord) {
        if let Some(js) = self.jobs.get_mut(&rec.job) {
            if js.last.as_ref().is_some_and(|l| l.is_run(&rec.run_id)) {
                js.last = Some(crate::model::status::LastRun::from(rec).into());
                self.shown.owe();
            }
        }
    }

    /// Runs the config `new` from now: jobs whose definition is the same keep their plan,
    /// changed ones are planned afresh, new ones wait for their first slot, and queued runs of
    /// removed jobs are recorded as skipped.
    pub(super) fn apply_config(&mut self, new: Config) {
        let now = Utc::now();
        let (mut added, mut changed) = (Vec::new(), Vec::new());
        // Collected, then built whole (see `Daemon::new`).
        let mut jobs = Vec::with_capacity(new.jobs.len());
        let mut stale = Vec::new();
        let mut old = std::mem::take(&mut self.jobs).into_map();
        for job in &new.jobs {
            let name = job.name.clone();
            let js = match old.remove(&*name) {
                Some(mut js) => {
                    if js.slots.reconfigure(&js.job, job, now) == Reload::Replanned {
                        stale.push(js.prepared.take().map(|r| *r));
                        changed.push(name.clone());
                    }
                    js.job = Arc::clone(job);
                    js
                }
                None => {
                    added.push(name.clone());
                    self.added_job(job, now)
                }
            };
            jobs.push(js);
        }
        let removed: Vec<String> = old.keys().cloned().collect();
        stale.extend(old.values_mut().map(|js| js.prepared.take().map(|r| *r)));
        for rec in stale {
            self.discard_prepared(rec);
        }
        self.jobs = jobs.into_iter().collect();
        // Queued runs of removed jobs are dropped: recorded, not lost.
        let (keep, dropped): (Vec<_>, Vec<_>) = self
            .table
            .queue
            .drain(..)
            .partition(|p| self.jobs.contains_key(&p.job.name));
        self.table.queue = keep.into();
        for p in dropped {
            self.record_skipped(
                &p.job,
                p.due,
                p.trigger,
                "the job was removed from the config",
                p.prepared,
            );
        }
        self.cfg = new;
        self.envs_configure();
        self.publish_agent_mode();
        self.set_config_error(
            self.cfg
                .users_held_note()
                .map(|n| (ConfigErrorKind::UsersHeld, n)),
        );
        self.shown.owe();
        self.release_owed = true;
        info!(
            jobs = self.jobs.len(),
            added = ?added, changed = ?changed, removed = ?removed,
            "config reloaded"
        );
    }

    /// The state of a job a reload added: its last due time and result from its folder on
    /// disk (it may have been configured before), its runs still in flight from then.
    fn added_job(&self, job: &Arc<Job>, now: DateTime<Utc>) -> JobState {
        let name = &job.name;
        let last_due = record::list_runs(&self.state, name).ok().and_then(|runs| {
            runs.last()
                .and_then(|(id, _)| crate::model::record::due_of_run_id(id))
        });
        let last = state::read_json::<RunRecord>(&self.state.latest_file(name))
            .ok()
            .flatten();
        let mut js = JobState::new(Arc::clone(job), None, last);
        js.slots = Slots::added(job, last_due, now);
        js.set_running(self.table.pids_of(name));
        js
    }

    /// Something could not be written. Errors are kept per `cause` (the status file, one
    /// job's preparation, one record), so a good write of something else never hides a
    /// record that is still unwritten: each clears only with its own cause.
    pub(super) fn state_failure(&mut self, cause: impl Into<String>, msg: String) {
        let cause = cause.into();
        // A write that failed for want of descriptors says so in words that name the cause
        // and what to do, not only the OS's "Too many open files".
        let msg = match crate::service::sys::descriptors::mark_text(&msg) {
            true => format!("{msg}: {}", crate::service::sys::descriptors::words()),
            false => msg,
        };
        if self.state_errors.get(&cause) != Some(&msg) {
            error!("{msg}");
            self.state_errors.insert(cause, msg);
            self.publish_state_errors();
        }
    }

    pub(super) fn state_ok(&mut self, cause: &str) {
        if self.state_errors.remove(cause).is_some() {
            if self.state_errors.is_empty() {
                info!("state writes succeed again");
            }
            self.publish_state_errors();
        }
    }

    fn publish_state_errors(&mut self) {
        let msg = self
            .state_errors
            .values()
            .next()
            .map(|first| match self.state_errors.len() {
                1 => first.clone(),
                n => format!("{first} (and {} more)", n - 1),
            });
        self.set_state_error(msg);
    }
}
