//! The daemon's shell: one per instance, detached from the agent. It holds the instance lock for its
//! whole life, starts runs on each job's schedule, bounds them, records them, and exits by
//! itself when asked to stop, when the heartbeat goes stale, or when its run flag disappears.
//!
//! One loop on one thread owns all state. There is no periodic tick: it sleeps in
//! `recv_timeout` until the earliest of a due time (or the preparation ahead of one), a run
//! deadline, the status flush while something is unwritten, or a deadline of [`control`] (the
//! dead man switch, a retry of an unsaved record, adopted runs). Everything else arrives as an
//! [`Event`] from small helper threads that sleep until they have news: the reaper (a run's
//! exit), the signal thread, the finisher, the environment worker, and the watcher, which
//! reports changes of the heartbeat, the stop request, the config, `requests/` and the trust
//! of the paths (see [`control`]), and a wall clock that was set. An idle daemon therefore
//! does not wake at all until its next due time. Where the wall clock cannot be watched
//! (Windows), sleeps are capped at [`CLOCK_CAP`] so that a clock set forward is noticed.
//!
//! Each pass of the loop, in order:
//! 1. housekeeping, when something watched changed or a deadline of it passed (see
//!    [`control`]);
//! 2. fire jobs whose time has come (overlap check, queue);
//! 3. start queued runs while `max_parallel` allows, then journal their PIDs;
//! 4. enforce deadlines (timeout TERM, KILL after `stop_grace`, leftovers);
//! 5. exit if draining and nothing is left in flight;
//! 6. prepare the run folders of runs due within 2 s (never past a due time);
//! 7. write `status.json` if something changed (at most every 100 ms).
//!
//! [`control`]: super::control

use super::event::Event;
use super::jobs::JobState;
use super::table::{ActiveRun, Pending};
use super::watch::Control;
use super::{envs, finish, lifecycle};
use crate::model::config::{Config, Overlap};
use crate::model::status::{DaemonInfo, JobStatus, RunningRun, Status, STATUS_VERSION};
use crate::service::config::{self};
use crate::service::lock;
use crate::service::state::{self, Durability, StateDir};
use crate::service::sys::{self, ControlSignal};
use chrono::Utc;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

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
/// Preparation stops when a due time is this close: it must never delay a start.
const PREPARE_MARGIN: chrono::Duration = chrono::Duration::milliseconds(3);

/// How the daemon was started.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) config: PathBuf,
    /// How it was launched (reported in the status): `systemd-run`, `fork`, `foreground`.
    pub(crate) route: String,
    /// Exit when this file disappears (the Checkmk Windows agent's extension contract).
    pub(crate) run_flag: Option<PathBuf>,
    /// Log to stderr as well; keep inherited descriptors.
    pub(crate) foreground: bool,
    /// `run-once` with no daemon running: hold the instance, run this one request of one job,
    /// exit. The same supervisor and writer as a daemon's runs.
    pub(crate) oneshot: Option<OneShot>,
}

/// The one run of a one-shot instance.
#[derive(Debug, Clone)]
pub(crate) struct OneShot {
    pub(crate) job: String,
    pub(crate) request: String,
}

/// Why [`setup`] gave no daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetupError {
    /// Another process holds the instance lock (a daemon started meanwhile): a one-shot then
    /// hands its request to that daemon instead.
    LockTaken,
    /// Could not start; the process exits with this code (the reason went to stderr).
    Exit(i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    Draining,
}

/// The daemon's whole runtime state, owned by the loop thread.
pub(crate) struct Daemon {
    pub(super) cfg: Config,
    pub(super) state: StateDir,
    pub(super) jobs: BTreeMap<String, JobState>,
    pub(super) active: HashMap<u32, ActiveRun>,
    /// Finished runs that left processes behind: (pgid, run folder, when to SIGKILL). Each
    /// is dropped as soon as nothing of it is left.
    pub(super) lingering: Vec<(u32, String, Instant)>,
    pub(super) queue: VecDeque<Pending>,
    pub(super) tx: Sender<Event>,
    pub(super) rx: Receiver<Event>,
    pub(super) phase: Phase,
    pub(super) info: DaemonInfo,
    pub(super) dirty: bool,
    pub(super) last_flush: Option<Instant>,
    pub(super) control: Control,
    /// PIDs spawned in this pass of the loop, journalled once the batch is out.
    pub(super) just_started: Vec<u32>,
    /// Final records that could not be written yet (full disk), retried every tick.
    pub(super) unsaved: Vec<crate::model::record::RunRecord>,
    /// What cannot be written now, by cause (see [`Daemon::state_failure`]).
    pub(super) state_errors: BTreeMap<String, String>,
    /// The instance lock, held for the daemon's whole life (and retaken if its file is
    /// replaced, see `control`).
    pub(super) lock: lock::InstanceLock,
    /// A one-shot instance (`run-once` with no daemon): no schedule, no heartbeat, no reload;
    /// it exits once its run is recorded.
    pub(super) oneshot: bool,
    /// Completes and writes records off this thread (see `finish`).
    pub(super) finisher: Option<finish::Finisher>,
    /// Records handed to the finisher and not written yet: the loop exits only at 0.
    pub(super) finishing: usize,
    /// Python environments and `start_delay` (see `envs`).
    pub(super) envs: envs::Side,
    /// Starts every child of this process and ends the runs' trees (see `run`).
    pub(super) spawner: crate::service::run::Spawner,
}

/// Runs the daemon until it stops. Returns an exit code only if it could not start; once it
/// holds the instance lock it ends the process itself.
pub(crate) fn run(opts: Options) -> i32 {
    let mut daemon = match setup(&opts) {
        Ok(d) => d,
        Err(SetupError::Exit(code)) => return code,
        Err(SetupError::LockTaken) => return 0,
    };
    let code = daemon.run_loop();
    if !daemon.oneshot {
        lifecycle::end(&daemon.state, code);
    }
    // Exit while `daemon` (and so the lock) is still alive: the kernel releases the lock only
    // when the process is gone, so a new daemon never overlaps this one exiting.
    std::process::exit(code)
}

/// `run-once` with no daemon running: takes the instance like a daemon, runs the one
/// requested run of `opts.oneshot` with the daemon's own run code, and returns its final
/// record. `Err(SetupError::LockTaken)` if a daemon holds the instance (hand the request to
/// it).
pub(crate) fn run_oneshot(
    opts: Options,
) -> Result<Option<crate::model::record::RunRecord>, SetupError> {
    let request = opts.oneshot.as_ref().map(|o| o.request.clone());
    let mut daemon = setup(&opts)?;
    daemon.run_loop();
    let rec = daemon
        .jobs
        .values_mut()
        .filter_map(|js| js.answered.take())
        .find(|r| r.request.is_some() && r.request == request);
    Ok(rec.map(|r| *r))
}

/// Everything from reading the config to a daemon that holds the instance lock.
fn setup(opts: &Options) -> Result<Daemon, SetupError> {
    if !opts.foreground {
        sys::close_inherited_fds();
    }
    sys::set_private_umask();
    sys::memory::tune_allocator();
    // Stamp before reading: an edit in between then shows as a newer stamp and is reloaded.
    let stamp = config::stamp(&config::absolute(&opts.config));
    let cfg = match config::load(&opts.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("robotmk-daemon: config error: {e}");
            // Logged in the state dir only when nobody else could have planted a link there.
            if let Some((_, dir)) = config::locate_daemon(&opts.config) {
                let trusted = crate::service::security::check_config(&opts.config)
                    .and_then(|_| crate::service::security::check_state_dir(&dir));
                if trusted.is_ok() && state::create_private_dir(&dir).is_ok() {
                    let st = StateDir::new(&dir);
                    crate::service::logging::append_once(
                        &st.log_file(),
                        &format!("daemon not started: config error: {e}"),
                    );
                    // For the ctrl that launched this daemon: it does not look users up, so
                    // it learns of a user that is not there from here.
                    let failure = crate::model::request::StartFailure {
                        at: Utc::now(),
                        error: e.to_string(),
                    };
                    let _ = state::write_json(&st.start_error_file(), &failure, Durability::NoSync);
                    // The launch is over: the next ctrl launches again (and learns why).
                    if opts.oneshot.is_none() {
                        let _ = std::fs::remove_file(st.starting_file());
                    }
                }
            }
            return Err(SetupError::Exit(2));
        }
    };
    // Refused before anything is created or written: the refusal goes to stderr (and ctrl
    // reports it), never into a state dir another user controls.
    if let Err(e) = crate::service::security::check(&cfg) {
        eprintln!("robotmk-daemon: {e}");
        return Err(SetupError::Exit(1));
    }
    let st = StateDir::new(&cfg.daemon.state_dir);
    if let Err(e) = st.ensure() {
        eprintln!("robotmk-daemon: {e}");
        return Err(SetupError::Exit(1));
    }
    // Again now that the state dir exists (it may have been created just now).
    if let Err(e) = crate::service::security::check_state_dir(&cfg.daemon.state_dir) {
        eprintln!("robotmk-daemon: {e}");
        return Err(SetupError::Exit(1));
    }
    let locked_at = Utc::now();
    let patience = if opts.oneshot.is_some() {
        std::time::Duration::ZERO
    } else {
        lock::ACQUIRE_PATIENCE
    };
    let held = match lock::acquire_within(&st.lock_file(), patience) {
        Ok(Some(l)) => l,
        Ok(None) if opts.oneshot.is_some() => return Err(SetupError::LockTaken),
        Ok(None) => {
            let msg = format!(
                "another daemon holds {}; this one (pid {}) exits",
                st.lock_file().display(),
                std::process::id()
            );
            crate::service::logging::append_once(&st.log_file(), &msg);
            if opts.foreground {
                eprintln!("robotmk-daemon: {msg}");
            }
            return Err(SetupError::Exit(0));
        }
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            return Err(SetupError::Exit(1));
        }
    };
    // A view a dead predecessor rendered must not be served under this daemon's lock: ctrl's
    // fast path trusts the view while the lock is held, and would print the old daemon's
    // line (its PID, "OK") until this one renders its own.
    if let Err(e) = std::fs::remove_file(st.ctrl_view_file()) {
        if e.kind() != std::io::ErrorKind::NotFound {
            crate::service::logging::append_once(
                &st.log_file(),
                &format!("cannot remove {}: {e}", st.ctrl_view_file().display()),
            );
        }
    }
    // The launch this daemon came from is over: ctrls may launch again if it dies.
    if opts.oneshot.is_none() {
        let _ = std::fs::remove_file(st.starting_file());
        let _ = std::fs::remove_file(st.start_error_file());
    }
    // `start --foreground` mirrors its log to stderr; a one-shot (`run-once`) does not: its
    // terminal shows the run's own output.
    match crate::service::logging::RotatingLog::open(
        &st.log_file(),
        cfg.daemon.log_max_bytes,
        opts.foreground && opts.oneshot.is_none(),
    ) {
        Ok(log) => crate::service::logging::init(log),
        Err(e) => eprintln!("robotmk-daemon: {e}; logging to stderr only"),
    }
    // Left by a ctrl that ended a daemon that no longer answered (see `liveness`).
    let note = st.restart_note_file();
    let ended_by_ctrl = crate::service::sys::file::read_string(
        &note,
        crate::service::sys::file::cap::SMALL,
        crate::service::sys::file::Links::Refuse,
    )
    .ok()
    .map(|why| why.trim().to_string());
    if let Some(why) = &ended_by_ctrl {
        warn!("replacing the previous daemon: {why}");
        let _ = std::fs::remove_file(&note);
    }
    // A daemon records its start and sends its stderr where the next one can read it (what a
    // crash leaves); a one-shot's stderr is the admin's terminal.
    let begun = if opts.oneshot.is_none() {
        std::panic::set_hook(Box::new(lifecycle::note_panic));
        lifecycle::begin(&st, !opts.foreground, ended_by_ctrl)
    } else {
        std::panic::set_hook(Box::new(|p| error!("daemon panicked: {p}")));
        lifecycle::Begun::default()
    };
    if let Err(e) = state::reserve_alert(&st) {
        error!(
            "cannot reserve {}: {e}; a full disk may go unreported",
            st.alert_file().display()
        );
    }
    let st_kept = st.clone();
    Daemon::new(cfg, st, opts, stamp, held, locked_at, begun).map_err(|e| {
        error!("daemon cannot start: {e}");
        eprintln!("robotmk-daemon: {e}");
        if opts.oneshot.is_none() {
            lifecycle::end(&st_kept, 1);
        }
        SetupError::Exit(1)
    })
}

impl Daemon {
    /// `config_stamp`: the config file's stamp, taken before it was read.
    fn new(
        cfg: Config,
        state: StateDir,
        opts: &Options,
        config_stamp: Option<String>,
        lock: lock::InstanceLock,
        locked_at: chrono::DateTime<Utc>,
        begun: lifecycle::Begun,
    ) -> Result<Daemon, String> {
        // Every child of this process is started by this one spawner or, a helper of its own,
        // through `sys::children` (see `run`'s reaper). Descendants of runs
        // that leave their process group become our children when their parents die, so a
        // timeout can still find and end them.
        let spawner =
            crate::service::run::Spawner::new().map_err(|e| format!("cannot start runs: {e}"))?;
        spawner.become_subreaper();
        match spawner.enable_cgroups() {
            Ok(dir) => info!("runs get a cgroup each under {}", dir.display()),
            Err(why) => warn!(
                "runs get no cgroup of their own ({why}); each runner holds its descendants as their subreaper, and what it leaves behind is ended with the run"
            ),
        }
        let (tx, rx) = mpsc::channel();
        let me = sys::ProcessId::current();
        let info = DaemonInfo {
            pid: me.pid,
            pid_start: me.start,
            started: Utc::now(),
            build: crate::model::BUILD_ID.to_string(),
            config: cfg.path.clone(),
            config_stamp,
            route: opts.route.clone(),
            acks_heartbeat: true,
            phase: crate::model::status::Phase::Running,
            reason: None,
            config_error: None,
            state_error: None,
            heartbeat_timeout_s: cfg.daemon.heartbeat_timeout.map(|d| d.as_secs_f64()),
            agent_mode: None,
            starts: begun.starts,
            previous_crash: begun.previous_crash,
        };
        let mut control = Control::new(&state, opts.run_flag.clone(), locked_at);
        let tx_inherited = std::sync::Mutex::new(tx.clone());
        spawner.on_inherited_exit(move || {
            let _ = tx_inherited
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(Event::Inherited);
        });
        let tx_watch = tx.clone();
        control.watch(move || {
            let _ = tx_watch.send(Event::Control(ControlSignal::Changed));
        });
        let mut d = Daemon {
            cfg,
            state,
            jobs: BTreeMap::new(),
            active: HashMap::new(),
            lingering: Vec::new(),
            queue: VecDeque::new(),
            tx: tx.clone(),
            rx,
            phase: Phase::Running,
            info,
            dirty: true,
            last_flush: None,
            control,
            just_started: Vec::new(),
            unsaved: Vec::new(),
            state_errors: BTreeMap::new(),
            lock,
            oneshot: opts.oneshot.is_some(),
            finisher: None,
            finishing: 0,
            envs: envs::Side::default(),
            spawner,
        };
        d.publish_agent_mode();
        info!(
            pid = me.pid, instance = %d.cfg.daemon.instance, config = %d.cfg.path.display(),
            route = %opts.route, jobs = d.cfg.jobs.len(), build = crate::model::BUILD_ID,
            "daemon started"
        );
        crate::service::preflight::warnings_of(&d.cfg)
            .iter()
            .for_each(|w| warn!("{}{w}", crate::service::preflight::LOG_MARK));
        d.finisher = Some(finish::Finisher::new(d.state.clone(), tx.clone()));
        let tx_sig = tx.clone();
        sys::forward_control_signals(move |s| {
            let _ = tx_sig.send(Event::Control(s));
        })
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let mut recovered = d.recover();
        let now = Utc::now();
        // Built whole from sorted entries: a map filled one insert at a time leaves its nodes
        // a third empty, for the daemon's life.
        let mut entries = Vec::with_capacity(d.cfg.jobs.len());
        for job in d.cfg.jobs.clone() {
            let name = job.name.clone();
            let (last_due, last) = recovered.remove(&name).unwrap_or_default();
            let mut js = JobState::new(job, last_due, last);
            if d.oneshot {
                js.next = None; // a one-shot runs its request, nothing on schedule
            } else {
                js.plan_initial(now);
            }
            js.running = d
                .active
                .values()
                .filter(|r| r.record.job == name)
                .map(|r| r.pgid)
                .collect();
            if let Some(n) = js.next {
                info!(job = %name, next_due = %crate::model::record::ts(n.due), trigger = ?n.trigger, "scheduled");
            }
            entries.push((name, js));
        }
        d.jobs = entries.into_iter().collect();
        d.envs_configure();
        if let Some(os) = &opts.oneshot {
            let Some(js) = d.jobs.get_mut(&os.job) else {
                return Err(format!("no job {:?} in {}", os.job, d.cfg.path.display()));
            };
            js.queued += 1;
            let job = Arc::clone(&js.job);
            d.queue.push_back(Pending {
                job,
                due: now,
                trigger: crate::model::record::Trigger::RunOnce,
                prepared: None,
                request: Some(os.request.clone()),
            });
        }
        Ok(d)
    }

    fn run_loop(&mut self) -> i32 {
        loop {
            if self.look_due(Instant::now()) {
                self.housekeeping();
            }
            self.fire_due();
            self.dispatch();
            self.after_spawns();
            self.enforce_deadlines();
            if (self.phase == Phase::Draining || self.oneshot)
                && self.active.is_empty()
                && self.queue.is_empty()
                && self.lingering.is_empty()
                && self.finishing == 0
            {
                break;
            }
            self.prepare_upcoming();
            self.flush_status(false);
            self.shrink_when_idle();
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
        self.envs_stop();
        // Nothing a run left may outlive this process as a zombie nobody collects (`run-once`
        // exited with Chromium's killed helpers still its children).
        let left = self.spawner.end_orphans(self.cfg.daemon.stop_grace);
        if !left.is_empty() {
            warn!(
                ?left,
                "processes finished runs left behind are still there at exit"
            );
        }
        self.spawner.cleanup();
        self.info.phase = crate::model::status::Phase::Stopped;
        self.dirty = true;
        self.flush_status(true);
        info!(reason = ?self.info.reason, "daemon stopped");
        0
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Exited { pid, exit } => self.on_exit(pid, exit),
            Event::Control(ControlSignal::Stop) => self.on_stop_signal(),
            Event::Control(ControlSignal::Reload) => self.reload_config(true),
            Event::Control(ControlSignal::Requests) => self.ingest_requests(),
            Event::Control(ControlSignal::Changed) => self.control.changed = true,
            Event::Finished { rec, error } => self.on_finished(*rec, error),
            Event::Envs(u) => self.on_envs(*u),
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
        if self.phase == Phase::Running {
            let now = Utc::now();
            for js in self.jobs.values() {
                if let Some(n) = js.next {
                    let until = (n.fire_at - now).to_std().unwrap_or(Duration::ZERO);
                    wake = wake.min(now_i + until);
                    if js.prepared.is_none() && js.prepare_failed != Some(n.due) {
                        wake =
                            wake.min((now_i + until).checked_sub(PREPARE_AHEAD).unwrap_or(now_i));
                    }
                }
            }
        }
        for r in self.active.values() {
            if r.ended_by.is_none() {
                wake = wake.min(r.deadline);
            }
            if let Some(k) = r.kill_at {
                wake = wake.min(k);
            }
        }
        for (_, _, k) in &self.lingering {
            wake = wake.min(*k);
        }
        // Their ends are seen at once where the last of them is a child of ours (collected:
        // `Event::Inherited`); a look now and then catches the rest (an adopted run's).
        if !self.lingering.is_empty() {
            wake = wake.min(now_i + LINGER_LOOK);
        }
        if let Some(h) = self.envs.hold_until.filter(|h| *h > now_i) {
            if !self.queue.is_empty() {
                wake = wake.min(h);
            }
        }
        if self.dirty {
            let at = self.last_flush.map_or(now_i, |f| f + STATUS_FLUSH_GAP);
            wake = wake.min(at);
        }
        wake.saturating_duration_since(now_i)
    }

    /// Fires every job whose time has come.
    fn fire_due(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let now = Utc::now();
        let mut due: Vec<(chrono::DateTime<Utc>, String)> = self
            .jobs
            .iter()
            .filter_map(|(name, js)| {
                js.next
                    .filter(|n| n.fire_at <= now)
                    .map(|n| (n.fire_at, name.clone()))
            })
            .collect();
        due.sort();
        for (_, name) in due {
            let Some(js) = self.jobs.get_mut(&name) else {
                continue;
            };
            let Some(next) = js.next else { continue };
            let mut run_due = next.due;
            if next.trigger == crate::model::record::Trigger::Schedule {
                // Woken late (suspend, overload): run once for the latest slot, say so.
                if let Some(latest) = js.job.schedule.last_at_or_before(now) {
                    if latest > run_due {
                        warn!(
                            job = %name, missed_from = %crate::model::record::ts(run_due),
                            running_for = %crate::model::record::ts(latest),
                            "daemon woke late; due times in between are not run separately"
                        );
                        run_due = latest;
                    }
                }
            }
            js.last_due = Some(run_due);
            js.plan_after(run_due.max(now));
            js.prepare_failed = None;
            let prepared = js.prepared.take().map(|r| *r);
            // Prepared for the slot planned; a late wake-up runs a later slot instead.
            let (prepared, stale) = match prepared {
                Some(r) if r.due == run_due && r.trigger == next.trigger => (Some(r), None),
                other => (None, other),
            };
            let job = Arc::clone(&js.job);
            self.discard_prepared(stale);
            let busy = self
                .jobs
                .get(&name)
                .is_some_and(|js| !js.running.is_empty() || js.queued > 0);
            if job.overlap == Overlap::Skip && busy {
                self.record_skipped(
                    &job,
                    run_due,
                    next.trigger,
                    "the previous run is still in flight (overlap = \"skip\")",
                    prepared,
                );
            } else {
                if let Some(js) = self.jobs.get_mut(&name) {
                    js.queued += 1;
                }
                self.queue.push_back(Pending {
                    job,
                    due: run_due,
                    trigger: next.trigger,
                    prepared,
                    request: None,
                });
            }
            self.dirty = true;
        }
    }

    /// Starts queued runs while slots are free.
    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            let max = self.cfg.daemon.max_parallel;
            if max != 0 && self.active.len() >= max {
                break;
            }
            // Runs waiting for their environment (or `start_delay`) stay queued, in order.
            let Some(p) = self
                .queue
                .iter()
                .position(|p| !self.must_wait(p))
                .and_then(|i| self.queue.remove(i))
            else {
                break;
            };
            if let Some(js) = self.jobs.get_mut(&p.job.name) {
                js.queued = js.queued.saturating_sub(1);
            }
            self.start_run(p);
        }
    }

    /// Stop starting runs; drop the queue (recorded as skipped); exit once runs are done.
    pub(super) fn drain(&mut self, reason: &str) {
        if self.phase == Phase::Draining {
            return;
        }
        info!(
            runs_in_flight = self.active.len(),
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
        self.phase = Phase::Draining;
        // A result being read, or read later, gets no more than the grace: a stop must not
        // wait on a parse.
        if let Some(f) = &self.finisher {
            f.begin_stop(self.cfg.daemon.stop_grace);
        }
        self.info.phase = crate::model::status::Phase::Draining;
        self.info.reason = Some(reason.to_string());
        let queued: Vec<Pending> = self.queue.drain(..).collect();
        for p in queued {
            if let Some(js) = self.jobs.get_mut(&p.job.name) {
                js.queued = js.queued.saturating_sub(1);
            }
            self.record_skipped(
                &p.job,
                p.due,
                p.trigger,
                &format!("the daemon stopped before a slot was free ({reason})"),
                p.prepared,
            );
        }
        self.dirty = true;
    }

    /// Creates the run folders and journals of runs due soon, earliest first, stopping as soon
    /// as a due time is near: a start never waits for preparation.
    fn prepare_upcoming(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let now = Utc::now();
        let horizon = now + chrono::Duration::from_std(PREPARE_AHEAD).unwrap_or_default();
        let earliest = self
            .jobs
            .values()
            .filter_map(|js| js.next.map(|n| n.fire_at))
            .min();
        let mut todo: Vec<(chrono::DateTime<Utc>, String)> = self
            .jobs
            .iter()
            .filter_map(|(name, js)| {
                let n = js.next?;
                let wanted = js.prepared.is_none() && js.prepare_failed != Some(n.due);
                (wanted && n.fire_at <= horizon && n.fire_at > now)
                    .then(|| (n.fire_at, name.clone()))
            })
            .collect();
        todo.sort();
        for (_, name) in todo {
            if earliest.is_some_and(|e| Utc::now() + PREPARE_MARGIN >= e) {
                break;
            }
            let Some(js) = self.jobs.get(&name) else {
                continue;
            };
            let Some(n) = js.next else { continue };
            let job = Arc::clone(&js.job);
            match super::folder::prepare_folder(&self.state, &job, n.due, n.trigger) {
                Ok(rec) => {
                    if let Some(js) = self.jobs.get_mut(&name) {
                        js.prepared = Some(Box::new(rec));
                    }
                    self.state_ok(&format!("prepare:{name}"));
                }
                Err(msg) => {
                    if let Some(js) = self.jobs.get_mut(&name) {
                        js.prepare_failed = Some(n.due);
                    }
                    self.state_failure(format!("prepare:{name}"), msg);
                }
            }
        }
    }

    fn build_status(&self) -> Status {
        let now = Utc::now();
        // In config order, as ctrl shows them when it parses the config itself.
        let jobs = self
            .cfg
            .jobs
            .iter()
            .filter_map(|j| self.jobs.get(&j.name))
            .map(|js| {
                let mut running: Vec<RunningRun> = js
                    .running
                    .iter()
                    .filter_map(|pid| self.active.get(pid))
                    .map(|r| RunningRun {
                        run_id: r.record.run_id.clone(),
                        due: r.record.due,
                        started: r.record.started,
                        pid: r.record.pid,
                    })
                    .collect();
                running.sort_by(|a, b| a.run_id.cmp(&b.run_id));
                JobStatus {
                    name: js.job.name.clone(),
                    schedule: js.job.schedule.to_string(),
                    interval_s: js.job.schedule.nominal_interval(now).as_secs_f64(),
                    timeout_s: js.job.timeout.as_secs_f64(),
                    next_due: if self.phase == Phase::Running {
                        js.next.map(|n| n.fire_at)
                    } else {
                        None
                    },
                    running,
                    queued: js.queued,
                    last: js.last.as_deref().cloned(),
                    last_skipped: js.last_skipped,
                    skipped_total: js.skipped_total,
                    services: js.job.services,
                    test_runtime_warn_s: js.job.test_runtime_warn.map(|d| d.as_secs_f64()),
                    test_runtime_crit_s: js.job.test_runtime_crit.map(|d| d.as_secs_f64()),
                    checkmk: crate::logic::staleness::checkmk_view(
                        &js.job,
                        &self.cfg.daemon,
                        js.last.as_ref().map(|l| l.due),
                    ),
                }
            })
            .collect();
        Status {
            version: STATUS_VERSION,
            instance: self.cfg.daemon.instance.clone(),
            updated: now,
            daemon: self.info.clone(),
            jobs,
            envs: self.envs.views.clone(),
        }
    }

    /// Hands back the capacity a burst of runs left in the loop's collections once nothing is
    /// in flight: a slot of `active` or `queue` holds a whole run record, and a large table is
    /// a mapping of its own (see `sys::memory::tune_allocator`) that goes back to the system.
    fn shrink_when_idle(&mut self) {
        if !self.active.is_empty() || !self.queue.is_empty() || !self.lingering.is_empty() {
            return;
        }
        if self.active.capacity() == 0 && self.queue.capacity() == 0 {
            return;
        }
        self.active.shrink_to_fit();
        self.queue.shrink_to_fit();
        self.lingering.shrink_to_fit();
        self.just_started.shrink_to_fit();
        for js in self.jobs.values_mut() {
            js.running.shrink_to_fit();
        }
    }

    /// Writes status.json if it changed (and the flush gap has passed, unless `force`).
    fn flush_status(&mut self, force: bool) {
        if !self.dirty {
            return;
        }
        let now = Instant::now();
        if !force {
            if let Some(last) = self.last_flush {
                if now < last + STATUS_FLUSH_GAP {
                    return;
                }
            }
        }
        let status = self.build_status();
        match state::write_json(&self.state.status_file(), &status, Durability::NoSync) {
            Ok(()) => self.state_ok("status"),
            Err(e) => self.state_failure("status", format!("cannot write status: {e}")),
        }
        self.write_ctrl_view(status);
        self.dirty = false;
        self.last_flush = Some(now);
    }

    /// The agent output ctrl prints, pre-rendered with the status (see `ctrl_view`).
    fn write_ctrl_view(&mut self, status: Status) {
        match crate::service::view::save(status, &self.state.ctrl_view_file()) {
            Ok(()) => self.state_ok("ctrl view"),
            Err(e) => self.state_failure("ctrl view", format!("cannot write the ctrl view: {e}")),
        }
    }
}
