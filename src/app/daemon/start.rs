//! Starting a daemon: from reading the config to a [`Daemon`] that holds the instance lock,
//! has recovered what its predecessor left and has planned every job. Each step is one
//! function, in the order [`setup`] calls them; a step that fails says why on stderr (and,
//! where it is safe, in the state dir for the ctrl that launched it).

use super::changes::shown::Shown;
use super::envs::side::Side;
use super::event::Event;
use super::finish;
use super::jobs::JobState;
use super::lifecycle;
use super::recover::Recovered;
use super::shell::{Daemon, Phase};
use super::table::{Pending, RunTable};
use super::watch::Control;
use crate::model::config::Config;
use crate::model::status::DaemonInfo;
use crate::service::config::{self};
use crate::service::lock;
use crate::service::state::{self, Durability, StateDir};
use crate::service::sys::{self, ControlSignal};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use tracing::{error, info, warn};

/// How the daemon was started.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) config: PathBuf,
    /// How it was launched (reported in the status): `systemd-run`, `fork`, `foreground`.
    pub(crate) route: crate::model::status::Route,
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

/// Runs the daemon until it stops. Returns an exit code only if it could not start; once it
/// holds the instance lock it ends the process itself.
pub(crate) fn run(opts: Options) -> i32 {
    let mut daemon = match setup(&opts) {
        Ok(d) => d,
        Err(SetupError::Exit(code)) => return code,
        Err(SetupError::LockTaken) => return 0,
    };
    let code = daemon.run_loop();
    give_up_links();
    // The config's lock file goes now (it is still locked, so no other daemon can be
    // waiting on a file it would then find gone): none is left behind per stop.
    if let Some(l) = &daemon.config_lock {
        l.remove_file();
    }
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
    give_up_links();
    let rec = daemon
        .jobs
        .values_mut()
        .filter_map(|js| js.take_answered())
        .find(|r| r.request.is_some() && r.request == request);
    Ok(rec)
}

/// Removes the jobs' temp folder links (`sys::tmp_link`): no run of this process starts
/// any more, and the next holder of the instance makes them again.
fn give_up_links() {
    let n = crate::service::sys::tmp_link::release_shared();
    if n > 0 {
        tracing::debug!(links = n, "removed the jobs' temp folder links");
    }
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
    // The instance first, from the config with its users not looked up: a user database that
    // hangs (LDAP, sssd) then holds a daemon that holds its instance, which ctrl sees (and
    // judges by its heartbeat), not one that never took its lock, beside which ctrl launched
    // another each time a launch's grace ran out.
    let named = load_config(opts, || {
        config::apart(|| config::load_with(&opts.config, crate::model::config::Users::NamesOnly))
    })?;
    let st = trusted_state_dir(&named)?;
    // Only its instance is kept: the whole of it, alive while the config is parsed again,
    // would leave its blocks between the kept jobs once freed (`load_compact`).
    let locked = (
        named.daemon.instance.clone(),
        named.daemon.state_dir.clone(),
    );
    drop(named);
    let locked_at = Utc::now();
    let held = take_instance(&st, opts)?;
    let cfg = load_config(opts, || config::load_compact(&opts.config))?;
    if (&cfg.daemon.instance, &cfg.daemon.state_dir) != (&locked.0, &locked.1) {
        // Edited between the two reads: this is not the instance it locked.
        let why = "the config names another instance or state dir than a moment ago (edited while the daemon started); the next ctrl starts it again";
        eprintln!("robotmk-daemon: {why}");
        crate::service::logging::append_once(&st.log_file(), &format!("daemon not started: {why}"));
        if opts.oneshot.is_none() {
            let _ = std::fs::remove_file(st.starting_file());
        }
        return Err(SetupError::Exit(1));
    }
    clear_launch_files(&st, opts);
    let config_lock = take_config(&cfg, &st, opts)?;
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
    let begun = begin_life(&st, opts);
    if let Err(e) = state::reserve_alert(&st) {
        error!(
            "cannot reserve {}: {e}; a full disk may go unreported",
            st.alert_file().display()
        );
    }
    let st_kept = st.clone();
    Daemon::new(cfg, st, opts, stamp, (held, config_lock), locked_at, begun).map_err(|e| {
        error!("daemon cannot start: {e}");
        eprintln!("robotmk-daemon: {e}");
        if opts.oneshot.is_none() {
            // For the ctrl that launched it, which waits for the lock and a status and would
            // otherwise only see no daemon. Written while this process holds the lock, in the
            // state dir it checked; whatever `new` had opened is closed by now (a descriptor
            // limit is a common cause).
            let failure = crate::model::request::StartFailure {
                at: Utc::now(),
                error: e.clone(),
                stage: crate::model::request::StartStage::Setup,
            };
            let _ = state::write_json(&st_kept.start_error_file(), &failure, Durability::NoSync);
            lifecycle::end(&st_kept, 1);
        }
        SetupError::Exit(1)
    })
}

/// The config, or exit code 2 with the error on stderr — and in the state dir for the ctrl
/// that launched this daemon, when nobody else could have planted a link there.
fn load_config(
    opts: &Options,
    load: impl FnOnce() -> Result<Config, crate::model::config::ConfigError>,
) -> Result<Config, SetupError> {
    let e = match load() {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    eprintln!("robotmk-daemon: config error: {e}");
    let Some((_, dir)) = config::locate_daemon(&opts.config) else {
        return Err(SetupError::Exit(2));
    };
    let trusted = crate::service::security::check_config(&opts.config)
        .and_then(|_| crate::service::security::check_state_dir(&dir));
    if trusted.is_ok() && state::create_private_dir(&dir).is_ok() {
        let st = StateDir::new(&dir);
        crate::service::logging::append_once(
            &st.log_file(),
            &format!("daemon not started: config error: {e}"),
        );
        // For the ctrl that launched this daemon: it does not look users up, so it learns of
        // a user that is not there from here.
        let failure = crate::model::request::StartFailure {
            at: Utc::now(),
            error: e.to_string(),
            stage: crate::model::request::StartStage::Config,
        };
        let _ = state::write_json(&st.start_error_file(), &failure, Durability::NoSync);
        // The launch is over: the next ctrl launches again (and learns why).
        if opts.oneshot.is_none() {
            let _ = std::fs::remove_file(st.starting_file());
        }
    }
    Err(SetupError::Exit(2))
}

/// The state dir, created if need be, after the checks that nobody else can replace what is
/// in it. Refused before anything is created or written: the refusal goes to stderr (and
/// ctrl reports it), never into a state dir another user controls.
fn trusted_state_dir(cfg: &Config) -> Result<StateDir, SetupError> {
    let refuse = |e: &dyn std::fmt::Display| {
        eprintln!("robotmk-daemon: {e}");
        SetupError::Exit(1)
    };
    crate::service::security::check(cfg).map_err(|e| refuse(&e))?;
    let st = StateDir::new(&cfg.daemon.state_dir);
    st.ensure().map_err(|e| refuse(&e))?;
    // Again now that the state dir exists (it may have been created just now).
    crate::service::security::check_state_dir(&cfg.daemon.state_dir).map_err(|e| refuse(&e))?;
    // The folder the path leads to now is this daemon's for its whole life: every file it
    // writes, its lock and its watches go there, not through a symlink an admin may repoint
    // later (that is a move of the instance: the daemon hands over, see `control`).
    let Some(real) = sys::resolved_dir(&st.root) else {
        return Ok(st);
    };
    // The config's check saw the path as written; a link may lead to one that is no text.
    if let Some(why) = crate::service::config::not_text(&real) {
        return Err(refuse(&format!(
            "the state dir {} leads to {}, whose path {why}; point it at a folder whose path is UTF-8 (daemon.state_dir or MK_VARDIR)",
            st.root.display(),
            real.display()
        )));
    }
    Ok(StateDir::new(real))
}

/// The instance lock. A one-shot does not wait for it: if a daemon holds it, the request goes
/// to that daemon.
fn take_instance(st: &StateDir, opts: &Options) -> Result<lock::InstanceLock, SetupError> {
    let patience = if opts.oneshot.is_some() {
        std::time::Duration::ZERO
    } else {
        lock::ACQUIRE_PATIENCE
    };
    match lock::acquire_within(&st.lock_file(), patience) {
        Ok(Some(l)) => Ok(l),
        Ok(None) if opts.oneshot.is_some() => Err(SetupError::LockTaken),
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
            Err(SetupError::Exit(0))
        }
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            Err(SetupError::Exit(1))
        }
    }
}

/// The config file's own lock (see `service::one_daemon`): a daemon of this config that runs
/// with another state dir (another `MK_VARDIR`) keeps this one from starting, and the ctrl
/// that launched it reads why in `start-error`. A one-shot takes none: it is an admin's
/// explicit run, and a daemon of the config elsewhere must not stop it.
fn take_config(
    cfg: &Config,
    st: &StateDir,
    opts: &Options,
) -> Result<Option<sys::config_lock::ConfigLock>, SetupError> {
    if opts.oneshot.is_some() {
        return Ok(None);
    }
    use crate::service::one_daemon::Taken;
    let why = match crate::service::one_daemon::take(&cfg.path, &st.root) {
        Taken::Locked(l) => return Ok(Some(l)),
        Taken::Refused(why) | Taken::Failed(why) | Taken::Unsafe(why) => why,
    };
    // The admin's terminal (a daemon started by hand): shown, not executed.
    eprintln!("robotmk-daemon: {}", crate::app::term::sanitize(&why));
    crate::service::logging::append_once(&st.log_file(), &format!("daemon not started: {why}"));
    // Written while this process holds the instance lock, in the state dir it checked (as a
    // failure past the config is).
    let failure = crate::model::request::StartFailure {
        at: Utc::now(),
        error: why,
        stage: crate::model::request::StartStage::Setup,
    };
    let _ = state::write_json(&st.start_error_file(), &failure, Durability::NoSync);
    Err(SetupError::Exit(1))
}

/// Removes what belongs to the launch this daemon came from, or to its predecessor.
fn clear_launch_files(st: &StateDir, opts: &Options) {
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
}

/// Records this daemon's start (see `lifecycle`) and sets the panic hook. A daemon sends its
/// stderr where the next one can read it (what a crash leaves); a one-shot's stderr is the
/// admin's terminal.
fn begin_life(st: &StateDir, opts: &Options) -> lifecycle::Begun {
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
    let previous = crate::service::report::read_status(st);
    let mut begun = if opts.oneshot.is_none() {
        std::panic::set_hook(Box::new(lifecycle::note_panic));
        let mut begun = lifecycle::begin(st, !opts.foreground, ended_by_ctrl);
        // The predecessor's last word, before this daemon's status replaces it: `status`
        // goes on saying when and why it stopped (an upgrade, say) while this one runs.
        begun.previous_stop = previous
            .as_ref()
            .and_then(crate::model::status::LastStop::of);
        begun
    } else {
        std::panic::set_hook(Box::new(|p| error!("daemon panicked: {p}")));
        lifecycle::Begun::default()
    };
    // Also a one-shot's: its status replaces the predecessor's, and the next daemon reads it.
    begun.clock_set_back_since = previous.and_then(|s| {
        crate::logic::staleness::set_back_since_at(
            s.daemon.clock_set_back_since,
            s.updated,
            Utc::now(),
        )
    });
    begun
}

impl Daemon {
    /// `config_stamp`: the config file's stamp, taken before it was read.
    fn new(
        cfg: Config,
        state: StateDir,
        opts: &Options,
        config_stamp: Option<String>,
        (lock, config_lock): (lock::InstanceLock, Option<sys::config_lock::ConfigLock>),
        locked_at: DateTime<Utc>,
        begun: lifecycle::Begun,
    ) -> Result<Daemon, String> {
        let spawner = start_spawner()?;
        let (tx, rx) = mpsc::channel();
        let clock_seen_behind = begun.clock_set_back_since;
        let info = daemon_info(&cfg, opts, config_stamp, begun);
        let mut control = watch_control(&state, opts, locked_at, &tx, &spawner);
        // The user database as the config's users were just looked up in it.
        control.users_stamp = crate::service::config::users_stamp(&cfg);
        let mut d = Daemon {
            cfg,
            state,
            jobs: Default::default(),
            table: RunTable::default(),
            tx: tx.clone(),
            rx,
            phase: Phase::Running,
            shown: Shown::new(info),
            release_owed: true,
            idle_since: Daemon::idle_at_start(std::time::Instant::now()),
            clock_behind: None,
            clock_behind_since: None,
            clock_seen_behind,
            clock_ref: None,
            drained: Default::default(),
            control,
            reloading: Default::default(),
            unsaved: Vec::new(),
            state_errors: BTreeMap::new(),
            lock,
            config_lock,
            oneshot: opts.oneshot.is_some(),
            finisher: None,
            envs: Side::default(),
            spawner,
            backlog: super::backlog::Backlog::default(),
        };
        d.publish_agent_mode();
        info!(
            pid = d.shown.info().pid, instance = %d.cfg.daemon.instance,
            config = %d.cfg.path.display(), route = %opts.route, jobs = d.cfg.jobs.len(),
            build = crate::model::BUILD_ID, "daemon started"
        );
        crate::service::preflight::warnings_of(&d.cfg)
            .iter()
            .for_each(|w| warn!("{}{w}", crate::service::preflight::LOG_MARK));
        d.finisher = Some(finish::Finisher::new(d.state.clone(), tx.clone()));
        let tx_sig = tx;
        sys::forward_control_signals(move |s| {
            let _ = tx_sig.send(Event::Control(s));
        })
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let recovered = d.recover();
        let now = Utc::now();
        d.plan_jobs(recovered, now);
        // Before the first status: a result from the future is judged from it on, and the
        // predecessor's word on the clock (`clock_seen_behind`) is taken over or dropped now.
        d.look_at_clock();
        d.envs_configure();
        if let Some(os) = &opts.oneshot {
            let Some(js) = d.jobs.get(&os.job) else {
                return Err(format!("no job {:?} in {}", os.job, d.cfg.path.display()));
            };
            let job = Arc::clone(&js.job);
            d.enqueue(Pending {
                job,
                due: now,
                trigger: crate::model::record::Trigger::RunOnce,
                prepared: None,
                request: Some(os.request.clone()),
            });
        }
        Ok(d)
    }

    /// Each configured job's state from what recovery found, its first firing planned (a
    /// one-shot runs its request, nothing on schedule).
    fn plan_jobs(&mut self, mut recovered: Recovered, now: DateTime<Utc>) {
        // Built whole (see `JobTable`).
        let mut entries = Vec::with_capacity(self.cfg.jobs.len());
        for job in self.cfg.jobs.clone() {
            let name = job.name.clone();
            let (last_due, last) = recovered.remove(&*name).unwrap_or_default();
            let mut js = JobState::new(job, last_due, last);
            if !self.oneshot {
                js.slots.plan_initial(&js.job, now);
            }
            js.set_running(self.table.pids_of(&name));
            if let Some(n) = js.slots.next {
                info!(job = %name, next_due = %crate::model::record::ts(n.due), trigger = n.trigger.as_str(), "scheduled");
            }
            entries.push(js);
        }
        self.jobs = entries.into_iter().collect();
    }
}

/// The one spawner of the daemon. Every child of this process is started by it or, a helper
/// of its own, through `sys::children` (see `run`'s reaper). Descendants of runs that leave
/// their process group become our children when their parents die, so a timeout can still
/// find and end them.
fn start_spawner() -> Result<crate::service::run::Spawner, String> {
    let spawner =
        crate::service::run::Spawner::new().map_err(|e| format!("cannot start runs: {e}"))?;
    spawner.become_subreaper();
    // The spawner raised the limit on descriptors (each run holds some of the daemon's);
    // the log says so, with the limit its runners get back.
    let fds = crate::service::sys::descriptors::raise();
    if fds.now != fds.was {
        info!(
            "file descriptor limit raised from {} to {} (the hard limit); runners get {}",
            fds.was, fds.now, fds.was
        );
    }
    match spawner.enable_cgroups() {
        Ok(dir) => info!("runs get a cgroup each under {}", dir.display()),
        Err(why) => warn!(
            "runs get no cgroup of their own ({why}); each runner holds its descendants as their subreaper, and what it leaves behind is ended with the run"
        ),
    }
    Ok(spawner)
}

/// The daemon's own part of the status as it starts.
fn daemon_info(
    cfg: &Config,
    opts: &Options,
    config_stamp: Option<String>,
    begun: lifecycle::Begun,
) -> DaemonInfo {
    let me = sys::ProcessId::current();
    DaemonInfo {
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
        config_error: cfg.users_held_note(),
        config_error_kind: cfg
            .users_held_note()
            .map(|_| crate::model::status::ConfigErrorKind::UsersHeld),
        state_error: None,
        behind: None,
        heartbeat_timeout_s: cfg.daemon.heartbeat_timeout.map(|d| d.as_secs_f64()),
        agent_mode: None,
        starts: begun.starts,
        previous_crash: begun.previous_crash,
        previous_stop: begun.previous_stop,
        time_zone: Some(crate::service::zone::in_force()),
        clock_set_back_since: None,
    }
}

/// What the daemon watches, wired to the loop: the watcher's changes and the exits of
/// orphans it inherited arrive as events.
fn watch_control(
    state: &StateDir,
    opts: &Options,
    locked_at: DateTime<Utc>,
    tx: &Sender<Event>,
    spawner: &crate::service::run::Spawner,
) -> Control {
    let mut control = Control::new(state, opts.run_flag.clone(), locked_at);
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
    control
}
