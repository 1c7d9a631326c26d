//! The daemon's shell: its state ([`Daemon`]) and the one loop that owns it. The shell does
//! the I/O — the watcher's events, the state writes, the spawns — and asks others what to do:
//! when jobs are due, which slot a run stands for, overlap and the next wake come from the
//! pure scheduler ([`crate::logic::scheduler`]); which run deadlines passed from the run
//! table (`table.rs`); every change of what the status shows goes through a named method of
//! `changes/`, which owes the status write the loop then does. Starting (reading the config,
//! the lock, recovery) is `start.rs`.
//!
//! One loop on one thread owns all state. There is no periodic tick: it sleeps in
//! `recv_timeout` until the earliest of a due time (or the preparation ahead of one), a run
//! deadline, the status flush while something is unwritten, the lapse of the backlog warning,
//! or a deadline of [`control`] (the dead man switch, a retry of an unsaved record, adopted
//! runs). Everything else arrives as an [`Event`] from small helper threads that sleep until
//! they have news: the reaper (a run's exit), the signal thread, the finisher, the
//! environment worker, and the watcher, which reports changes of the heartbeat, the stop
//! request, the config, `requests/` and the trust of the paths (see [`control`]), and a wall
//! clock that was set. An idle daemon therefore does not wake at all until its next due
//! time. Where the wall clock cannot be watched (Windows), sleeps are capped at
//! [`CLOCK_CAP`] so that a clock set forward is noticed.
//!
//! Each pass of the loop, in order:
//! 1. housekeeping, when something watched changed or a deadline of it passed (see
//!    [`control`]);
//! 2. fire jobs whose time has come (the scheduler's decisions: slot, overlap; queue);
//! 3. start queued runs while `max_parallel` allows, then journal their PIDs;
//! 4. enforce deadlines (timeout TERM, KILL after `stop_grace`, leftovers);
//! 5. exit if draining and nothing is left in flight;
//! 6. prepare the run folders of runs due within 2 s (never past a due time);
//! 7. show or clear the warning that the daemon falls behind its schedule (see `backlog`);
//! 8. write `status.json` if a named change owes it (at most every 100 ms).
//!
//! [`control`]: super::control

use super::changes::shown::Shown;
use super::envs::side::Side;
use super::event::Event;
use super::finish;
use super::jobs::JobTable;
use super::table::{Pending, RunTable};
use super::watch::Control;
use crate::logic::scheduler::{self, Admit};
use crate::model::config::Config;
use crate::model::status::{DaemonInfo, JobStatus, RunningRun, Status, STATUS_VERSION};
use crate::service::lock;
use crate::service::state::{self, Durability, StateDir};
use crate::service::sys::ControlSignal;
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The longest sleep where a set wall clock does not wake the loop: due times are wall-clock
/// times, and a sleep computed from one must not run an hour past it (cron wakes every minute
/// for the same reason).
const CLOCK_CAP: Duration = Duration::from_secs(60);
/// Minimum gap between two writes of status.json under load.
const STATUS_FLUSH_GAP: Duration = Duration::from_millis(100);
/// How long before its due time a run's folder and journal are created, so that at the due
/// instant only the spawn is left to do.
const PREPARE_AHEAD: Duration = Duration::from_secs(2);
/// How often the loop looks whether a finished run's leftovers are gone, while there are any.
const LINGER_LOOK: Duration = Duration::from_millis(250);
/// How long the daemon idles (no run queued, in flight or being recorded) before it hands back
/// what its runs left: a daemon whose runs follow each other closely (a few seconds apart, as
/// in the soak) keeps its working set instead of returning pages the next runs fault in again,
/// which only cost a trim and the faults per cycle and made its footprint swing by a quarter
/// MiB between samples (issue 25's soak); one idling between hourly suites gives them back
/// once, seconds after its last run.
const RELEASE_AFTER_IDLE: Duration = Duration::from_secs(10);
/// Preparation stops when a due time is this close: it must never delay a start.
const PREPARE_MARGIN: chrono::Duration = chrono::Duration::milliseconds(3);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    Draining,
}

/// The daemon's whole runtime state, owned by the loop thread.
pub(crate) struct Daemon {
    pub(super) cfg: Config,
    pub(super) state: StateDir,
    pub(super) jobs: JobTable,
    /// Runs queued, in flight, being written and lingering (see `table`).
    pub(super) table: RunTable,
    pub(super) tx: Sender<Event>,
    pub(super) rx: Receiver<Event>,
    /// Set only by `changes/` (`set_draining`), with the status.
    pub(super) phase: Phase,
    /// The daemon's part of the status and whether the status is owed a write; changed only
    /// through the named changes in `changes/`.
    pub(super) shown: Shown,
    pub(super) control: Control,
    /// A load of the config on its way (see `reload`).
    pub(super) reloading: super::config_load::Reloading,
    /// Final records that could not be written yet (full disk), retried every tick.
    pub(super) unsaved: Vec<crate::model::record::RunRecord>,
    /// What cannot be written now, by cause (see [`Daemon::state_failure`]).
    pub(super) state_errors: BTreeMap<String, String>,
    /// The instance lock, held for the daemon's whole life (and retaken if its file is
    /// replaced, see `control`).
    pub(super) lock: lock::InstanceLock,
    /// The config file's lock: one daemon per config file, whatever its state dir (see
    /// `service::one_daemon`). Taken again when the config is replaced by rename; let go for
    /// a handover, so that the daemon the config names now can start; `None` in a one-shot.
    pub(super) config_lock: Option<crate::service::sys::config_lock::ConfigLock>,
    /// A one-shot instance (`run-once` with no daemon): no schedule, no heartbeat, no reload;
    /// it exits once its run is recorded.
    pub(super) oneshot: bool,
    /// Completes and writes records off this thread (see `finish`).
    pub(super) finisher: Option<finish::Finisher>,
    /// Python environments and `start_delay` (see `envs`).
    pub(super) envs: Side,
    /// Starts every child of this process and ends the runs' trees (see `run`).
    pub(super) spawner: crate::service::run::Spawner,
    /// Signs of falling behind the schedule (see `backlog`).
    pub(super) backlog: super::backlog::Backlog,
    /// Free heap pages are to go back to the system once idle (see `shrink_when_idle`).
    pub(super) release_owed: bool,
    /// Since when nothing is queued, in flight or being recorded (see `shrink_when_idle`).
    pub(super) idle_since: Option<Instant>,
    /// The latest due time taken while the wall clock stands behind it (see `look_at_clock`).
    pub(super) clock_behind: Option<chrono::DateTime<chrono::Utc>>,
    /// When the daemon first saw the clock behind (at start, or at the look after the step),
    /// on the monotonic clock, and for how long it had been seen behind before that (by the
    /// predecessor, see `clock_seen_behind`): results from the future turn stale counted from
    /// there. Monotonic so that another step of the wall clock does not move it.
    pub(super) clock_behind_since: Option<(Instant, chrono::Duration)>,
    /// Since when the previous daemon (or `run-once`) of this instance saw the clock behind,
    /// from the status it left: taken over at this daemon's first look if the clock is still
    /// behind, so that a restart does not make a result from the future fresh again (it would
    /// count from the restart). Used once, at start.
    pub(super) clock_seen_behind: Option<chrono::DateTime<chrono::Utc>>,
    /// The boot clock and the wall clock at the last pass (see `clock_set_forward`).
    pub(super) clock_ref: Option<(std::time::Duration, chrono::DateTime<chrono::Utc>)>,
    /// While draining: a handover to call off, the due times missed (see `drain`).
    pub(super) drained: super::drained::Drained,
}

impl Daemon {
    pub(super) fn run_loop(&mut self) -> i32 {
        loop {
            if self.look_due(Instant::now()) {
                self.housekeeping();
            }
            self.fire_due();
            self.dispatch();
            self.after_spawns();
            self.enforce_deadlines();
            if (self.phase == Phase::Draining || self.oneshot) && self.table.is_done() {
                // Their records, if any, are written before the exit.
                self.settle_drain_missed();
                if self.table.is_done() {
                    break;
                }
            }
            self.prepare_upcoming();
            self.update_backlog();
            self.flush_status(false);
            self.shrink_when_idle(Instant::now());
            let wait = self.next_wake();
            match self.rx.recv_timeout(wait) {
                Ok(ev) => {
                    self.handle(ev);
                    while let Ok(ev) = self.rx.try_recv() {
                        self.handle(ev);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.save_unsaved_at_exit();
        self.envs_stop();
        // Nothing a run left may outlive this process as a zombie nobody collects (`run-once`
        // exited with Chromium's killed helpers still its children).
        let left = self.spawner.end_orphans(self.cfg.daemon.stop_grace);
        if !left.is_empty() {
            let pids: Vec<String> = left.iter().map(ToString::to_string).collect();
            warn!(
                pids = %pids.join(","),
                "processes finished runs left behind are still there at exit"
            );
        }
        self.spawner.cleanup();
        self.set_stopped();
        self.flush_status(true);
        info!(
            reason = self.shown.info().reason.as_deref(),
            "daemon stopped"
        );
        0
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Exited { pid, exit } => self.on_exit(pid, exit),
            Event::Control(ControlSignal::Stop) => self.on_stop_signal(),
            Event::Control(ControlSignal::StopNow) => self.on_stop_now_signal(),
            Event::Control(ControlSignal::Reload) => self.reload_config(true),
            Event::Control(ControlSignal::Requests) => self.ingest_requests(),
            Event::Control(ControlSignal::Changed) => self.control.changed = true,
            Event::Finished { rec, error } => self.record_finished(*rec, error),
            Event::Envs(u) => self.on_envs(*u),
            Event::ConfigLoaded(l) => self.on_config_loaded(*l),
            // The pass of the loop that follows looks at the lingering runs.
            Event::Inherited => {}
        }
    }

    /// How long the loop may sleep.
    fn next_wake(&self) -> Duration {
        let now_i = Instant::now();
        if self.control.changed {
            return Duration::ZERO;
        }
        let mut wake = self.next_look();
        if !self.control.sees_clock_changes() {
            wake = wake.min(now_i + CLOCK_CAP);
        }
        // Draining: no folder is prepared, but each due time is taken as it passes (see
        // `drain`), never silently dropped.
        let running = self.phase == Phase::Running;
        if running || !self.oneshot {
            let jobs = self
                .jobs
                .values()
                .map(|js| (&js.slots, running && js.wants_folder()));
            if let Some(at) = scheduler::next_wake(jobs, PREPARE_AHEAD) {
                let until = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                wake = wake.min(now_i + until);
            }
        }
        if let Some(d) = self.table.next_deadline() {
            wake = wake.min(d);
        }
        // Their ends are seen at once where the last of them is a child of ours (collected:
        // `Event::Inherited`); a look now and then catches the rest (an adopted run's).
        if self.table.has_lingering() {
            wake = wake.min(now_i + LINGER_LOOK);
        }
        if let Some(h) = self.envs.hold_until.filter(|h| *h > now_i) {
            if !self.table.queue.is_empty() {
                wake = wake.min(h);
            }
        }
        if let Some(at) = self.shown.write_at(now_i, STATUS_FLUSH_GAP) {
            wake = wake.min(at);
        }
        if let Some(lapse) = self.backlog.expires() {
            wake = wake.min(lapse);
        }
        if let Some(lapse) = super::backlog::descriptors_short(now_i).map(|(_, at)| at) {
            wake = wake.min(lapse);
        }
        if let Some(at) = self.reloading.stuck_at().filter(|at| *at > now_i) {
            wake = wake.min(at);
        }
        if let Some(at) = self.release_at() {
            wake = wake.min(at);
        }
        wake.saturating_duration_since(now_i)
    }

    /// How far the wall clock was set forward since the last pass, if it was (by more than
    /// a second beyond the time that passed, counted on `CLOCK_BOOTTIME`, which a suspend
    /// advances too but no one sets): due times it skipped were not missed for overload.
    ///
    /// A step either way while the clock stands behind a result also owes a status write:
    /// what the status and the view say of when the clock was first seen behind is a wall
    /// instant, which must move with the clock (a second step back would otherwise leave it
    /// ahead of the clock, and a stale result from the future would read fresh).
    fn clock_set_forward(&mut self, now: chrono::DateTime<Utc>) -> Option<String> {
        let up = crate::service::sys::uptime()?;
        let last = self.clock_ref.replace((up, now));
        let (up0, wall0) = last?;
        let passed = chrono::Duration::from_std(up.saturating_sub(up0)).ok()?;
        let jump = (now - wall0) - passed;
        if jump.abs() > chrono::Duration::seconds(1) {
            self.clock_stepped();
        }
        (jump > chrono::Duration::seconds(1))
            .then(|| crate::model::duration::human_age(jump.num_milliseconds() as f64 / 1000.0))
    }

    /// Fires every job whose time has come.
    fn fire_due(&mut self) {
        if self.phase != Phase::Running {
            self.pass_while_draining();
            return;
        }
        let now = Utc::now();
        let set_forward = self.clock_set_forward(now);
        let due: Vec<String> =
            scheduler::due_now(self.jobs.iter().map(|(n, js)| (n, &js.slots)), now)
                .into_iter()
                .map(str::to_string)
                .collect();
        for name in due {
            let Some(js) = self.jobs.get_mut(&name) else {
                continue;
            };
            let Some(firing) = js.slots.take_due(&js.job, now) else {
                continue;
            };
            let run_due = firing.due;
            if let (true, Some(by)) = (firing.woke_late(), &set_forward) {
                warn!(
                    job = %name, missed_from = %crate::model::record::ts(firing.planned.due),
                    running_for = %crate::model::record::ts(run_due),
                    "the wall clock was set forward by {by}; due times in between are not run separately"
                );
            } else if firing.woke_late() {
                // Woken late (suspend, overload): run once for the latest slot, say so.
                warn!(
                    job = %name, missed_from = %crate::model::record::ts(firing.planned.due),
                    running_for = %crate::model::record::ts(run_due),
                    "daemon woke late; due times in between are not run separately"
                );
            }
            js.set_prepare_failed(None);
            let prepared = js.prepared.take().map(|r| *r);
            // Prepared for the slot planned; a late wake-up runs a later slot instead.
            let (prepared, stale) = match prepared {
                Some(r) if firing.fits(r.due, r.trigger) => (Some(r), None),
                other => (None, other),
            };
            let job = Arc::clone(&js.job);
            let busy = js.busy();
            let in_flight = !js.running().is_empty();
            if let Some(first) = firing.missed() {
                // The first missed slot is recorded as skipped (see `backlog`), in the folder
                // prepared for it if there is one.
                let (for_first, stale) = match stale {
                    Some(r) if r.due == first && r.trigger == firing.trigger() => (Some(r), None),
                    other => (None, other),
                };
                self.discard_prepared(stale);
                // A clock set forward is no sign of falling behind (see `backlog`).
                let why = match &set_forward {
                    Some(by) => format!("the wall clock was set forward by {by}"),
                    None => {
                        self.backlog.missed();
                        "the daemon woke too late (overloaded, or the machine was suspended)"
                            .to_string()
                    }
                };
                self.record_skipped(
                    &job,
                    first,
                    firing.trigger(),
                    &format!(
                        "{why}: due times from {} to before {} were not run; the latest one runs instead",
                        crate::model::record::ts(first),
                        crate::model::record::ts(run_due)
                    ),
                    for_first,
                );
            } else {
                self.discard_prepared(stale);
            }
            if scheduler::admit(job.overlap, busy) == Admit::Skip {
                self.record_skipped(
                    &job,
                    run_due,
                    firing.trigger(),
                    scheduler::skip_note(
                        in_flight,
                        job.pyenv.is_some()
                            && !matches!(
                                self.envs.jobs.get(&*job.name),
                                Some(super::envs::JobEnv::Ready { .. })
                            ),
                    ),
                    prepared,
                );
            } else {
                self.enqueue(Pending {
                    job,
                    due: run_due,
                    trigger: firing.trigger(),
                    prepared,
                    request: None,
                });
            }
        }
    }

    /// Starts queued runs while slots are free: as many as there are slots at once (see
    /// `start_runs`), again while a start that failed left a slot.
    fn dispatch(&mut self) {
        loop {
            let room = self.table.room(self.cfg.daemon.max_parallel);
            let mut batch = Vec::new();
            while batch.len() < room {
                // Runs waiting for their environment (or `start_delay`) stay queued, in order.
                let Some(p) = self
                    .table
                    .queue
                    .iter()
                    .position(|p| !self.must_wait(p) && !self.waits_for_users(&p.job))
                    .and_then(|i| self.dequeue(i))
                else {
                    break;
                };
                batch.push(p);
            }
            if batch.is_empty() {
                break;
            }
            self.start_runs(batch);
        }
    }

    /// Creates the run folders and journals of runs due soon, earliest first, stopping as soon
    /// as a due time is near: a start never waits for preparation.
    fn prepare_upcoming(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let now = Utc::now();
        let earliest = scheduler::earliest(self.jobs.values().map(|js| &js.slots));
        let jobs = self
            .jobs
            .iter()
            .map(|(n, js)| (n, &js.slots, js.wants_folder()));
        let todo: Vec<String> = scheduler::to_prepare(jobs, now, PREPARE_AHEAD)
            .into_iter()
            .map(str::to_string)
            .collect();
        if todo.is_empty() {
            return;
        }
        // Runs prepared and not started (due soon, or due and queued for a free slot), each
        // with a spare cgroup made ahead (see below).
        let mut waiting = self
            .jobs
            .values()
            .filter(|js| js.prepared.is_some())
            .count()
            + self
                .table
                .queue
                .iter()
                .filter(|p| p.prepared.is_some())
                .count();
        for name in todo {
            if earliest.is_some_and(|e| Utc::now() + PREPARE_MARGIN >= e) {
                break;
            }
            let Some(js) = self.jobs.get(&name) else {
                continue;
            };
            let Some(n) = js.slots.next else { continue };
            // Its folder would be given to a uid that may be another user's by now.
            if self.waits_for_users(&js.job) {
                continue;
            }
            let job = Arc::clone(&js.job);
            match super::folder::prepare_folder(&self.state, &job, n.due, n.trigger) {
                Ok(rec) => {
                    if let Some(js) = self.jobs.get_mut(&name) {
                        js.prepared = Some(Box::new(rec));
                    }
                    self.state_ok(&format!("prepare:{name}"));
                    // Its cgroup too, while the due time is still ahead; spares left by runs
                    // skipped since they were prepared go.
                    waiting += 1;
                    self.spawner.keep_spare(waiting);
                }
                Err(msg) => {
                    if let Some(js) = self.jobs.get_mut(&name) {
                        js.set_prepare_failed(Some(n.due));
                    }
                    // Descriptors that ran out are passing: the folder is tried again at the
                    // due time, where a run that cannot get one is recorded as not started;
                    // the daemon's line names the cause meanwhile (`update_backlog`).
                    if !msg.out_of_descriptors() {
                        self.state_failure(format!("prepare:{name}"), msg.to_string());
                    }
                }
            }
        }
    }

    fn build_status(&self) -> Status {
        let now = Utc::now();
        // The monotonic count since the step, as the wall instant that far back: the wall
        // clock may be stepped again meanwhile, the time without a run is not.
        let set_back_since = self.clock_behind_since.map(|(t, before)| {
            now - chrono::Duration::from_std(t.elapsed()).unwrap_or(chrono::Duration::zero())
                - before
        });
        // In config order, as ctrl shows them when it parses the config itself.
        let jobs = self
            .cfg
            .jobs
            .iter()
            .filter_map(|j| self.jobs.get(&j.name))
            .map(|js| {
                let mut running: Vec<RunningRun> = js
                    .running()
                    .iter()
                    .filter_map(|pid| self.table.get(*pid))
                    .map(|r| RunningRun {
                        run_id: r.record.run_id.clone(),
                        due: r.record.due,
                        started: r.record.started,
                        pid: r.record.pid,
                    })
                    .collect();
                running.sort_by(|a, b| a.run_id.cmp(&b.run_id));
                JobStatus {
                    name: js.job.name.to_string(),
                    schedule: js.job.schedule.to_string(),
                    interval_s: js.job.schedule.nominal_interval(now).as_secs_f64(),
                    timeout_s: js.job.timeout.as_secs_f64(),
                    next_due: if self.phase == Phase::Running {
                        js.slots.next.map(|n| n.fire_at)
                    } else {
                        None
                    },
                    running,
                    queued: js.queued(),
                    last: js.last.as_ref().map(|l| l.to_last()),
                    last_skipped: js.last_skipped(),
                    skipped_total: js.skipped_total(),
                    services: js.job.services,
                    test_runtime_warn_s: js.job.test_runtime_warn().map(|d| d.as_secs_f64()),
                    test_runtime_crit_s: js.job.test_runtime_crit().map(|d| d.as_secs_f64()),
                    checkmk: crate::logic::staleness::checkmk_view(
                        &js.job,
                        &self.cfg.daemon,
                        js.last.as_ref().map(|l| l.due),
                        now,
                        set_back_since,
                    ),
                }
            })
            .collect();
        Status {
            version: STATUS_VERSION,
            instance: self.cfg.daemon.instance.clone(),
            updated: now,
            daemon: DaemonInfo {
                clock_set_back_since: set_back_since,
                ..self.shown.info().clone()
            },
            jobs,
            envs: self.envs.views.clone(),
        }
    }

    /// Hands back the capacity a burst of runs left once the daemon has idled for
    /// [`RELEASE_AFTER_IDLE`] (see `RunTable::shrink_when_idle`; a job's own list of runs goes
    /// with its last run).
    ///
    /// Then, once the status is written too, the tree walk's kept scratch
    /// (`sys::tree::drop_spare`) and the free pages of the heap go back to the
    /// system (`sys::memory::release_free`): after a start or a reload (10,000 records read
    /// back, statuses of 10,000 jobs built) or a burst, what was freed stays the daemon's
    /// otherwise, as long as a block used later sits above it (issue 25).
    fn shrink_when_idle(&mut self, now: Instant) {
        if !self.table.is_done() {
            self.idle_since = None;
            return;
        }
        let since = *self.idle_since.get_or_insert(now);
        if now < since + RELEASE_AFTER_IDLE {
            return;
        }
        if self.table.shrink_when_idle() {
            self.release_owed = true;
        }
        if self.release_owed && !self.shown.owed() {
            self.release_owed = false;
            crate::service::sys::tree::drop_spare();
            crate::service::sys::memory::release_free();
        }
    }

    /// The idle clock of a daemon just started: idle long enough already, so that what the
    /// start-up left (a config parsed, records read back) goes back at its first idle pass, as
    /// no run of its own is to follow closely.
    pub(super) fn idle_at_start(now: Instant) -> Option<Instant> {
        now.checked_sub(RELEASE_AFTER_IDLE)
    }

    /// When the loop must wake to hand back what the last runs left (see `shrink_when_idle`):
    /// once per idle spell, and only if there is something to hand back. Not while a status
    /// write is owed: the release waits for it, and its own wake-up comes first (a wake-up
    /// set here then would be in the past, and the loop would spin until the write).
    fn release_at(&self) -> Option<Instant> {
        let since = self.idle_since?;
        let owed = self.release_owed || self.table.holds_spare();
        (owed && !self.shown.owed()).then_some(since + RELEASE_AFTER_IDLE)
    }

    /// Writes status.json if it changed (and the flush gap has passed, unless `force`).
    fn flush_status(&mut self, force: bool) {
        if !self
            .shown
            .take_write(Instant::now(), STATUS_FLUSH_GAP, force)
        {
            return;
        }
        let status = self.build_status();
        let ok = match state::write_json(&self.state.status_file(), &status, Durability::NoSync) {
            Ok(()) => {
                self.state_ok("status");
                true
            }
            Err(e) => {
                self.state_failure("status", format!("cannot write status: {e}"));
                false
            }
        };
        let ok = self.write_ctrl_view(status) && ok;
        self.shown.wrote(ok);
    }

    /// The agent output ctrl prints, pre-rendered with the status (see `ctrl_view`); whether
    /// it was written.
    fn write_ctrl_view(&mut self, status: Status) -> bool {
        match crate::service::view::save(status, &self.state.ctrl_view_file()) {
            Ok(()) => {
                self.state_ok("ctrl view");
                true
            }
            Err(e) => {
                self.state_failure("ctrl view", format!("cannot write the ctrl view: {e}"));
                false
            }
        }
    }
}
