//! ctrl — what the agent runs every minute: refresh the heartbeat, make sure exactly one
//! daemon runs for the instance, print the agent sections. It returns in milliseconds and
//! never waits on a run.
//!
//! Exactly one daemon, even with 50 ctrls racing: the lock tells whether a daemon runs; if
//! none does, a ctrl takes `start.lock`, looks again, launches, and keeps `start.lock` until
//! the new daemon holds its lock, so the ctrls queued behind it find it running.

use crate::app::hang::Judgement;
use crate::logic::agent;
use crate::logic::agent_mode::{self, Beat};
use crate::logic::liveness::{self};
use crate::model::config::Config;
use crate::model::report::{self, CtrlAction, CtrlReport};
use crate::service::config::{self};
use crate::service::state::StateDir;
use crate::service::{launch, lock};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a ctrl waits for another ctrl's launch, or for its own daemon to take the lock.
const START_PATIENCE: Duration = Duration::from_secs(3);
/// How long a ctrl that asked an idle daemon of another build to stop waits for it to exit
/// before it starts the new build itself (it exits within milliseconds; past this, the next
/// ctrl starts the new build).
const RETIRE_PATIENCE: Duration = Duration::from_secs(3);
/// How long a launch counts as in progress (the `starting` marker): past this the daemon is
/// taken to have died while starting, and the next ctrl launches again.
const LAUNCH_GRACE: Duration = Duration::from_secs(30);

/// What [`ensure_daemon`] found or did.
#[derive(Debug)]
pub(crate) struct Ensured {
    pub(crate) started: bool,
    pub(crate) route: Option<crate::model::status::Route>,
    pub(crate) note: Option<String>,
}

/// Why [`ensure_daemon`] did not make sure a daemon runs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The config or state dir could be changed by another user (see `security`): the
    /// message says which path and the fix.
    #[error("{0}")]
    Untrusted(#[source] crate::service::sys::trust::TrustError),
    #[error("cannot start the daemon: {0}")]
    Failed(String),
    #[error("cannot start the daemon: {0}")]
    Launch(#[from] crate::service::launch::LaunchError),
    /// The daemon launched refused its config (a user that is not there: ctrl does not look
    /// users up, the daemon does).
    #[error("{0}")]
    Config(String),
    /// A daemon of this config runs with another state dir (`service::one_daemon`): none is
    /// launched here; the words name it, its state dir and the fix.
    #[error("{0}")]
    Elsewhere(String),
}

impl From<String> for StartError {
    fn from(e: String) -> Self {
        StartError::Failed(e)
    }
}

/// Starts a detached daemon for `cfg` unless one runs.
pub(crate) fn ensure_daemon(cfg: &Config, st: &StateDir) -> Result<Ensured, StartError> {
    let lock_file = st.lock_file();
    let running = |_: ()| lock::is_held(&lock_file).map_err(|e| StartError::Failed(e.to_string()));
    // A daemon of another build asked to stop here that has no run in flight exits at once:
    // this ctrl waits for that and starts the new build itself, so that no agent output of an
    // upgrade says "daemon not running" between the old daemon's end and the next ctrl.
    let mut handover = None;
    if running(())? {
        let retiring = retire_older_build(st);
        let quick = retiring.as_ref().is_some_and(|r| r.idle);
        if !quick || !lock::released_within(&lock_file, RETIRE_PATIENCE) {
            return Ok(Ensured {
                started: false,
                route: None,
                note: retiring.map(|r| r.note),
            });
        }
        handover = retiring;
    }
    // Say it here, at once, rather than launch a daemon that refuses and leaves ctrl waiting.
    crate::service::security::check(cfg).map_err(StartError::Untrusted)?;
    let guard = lock::acquire_within(&st.start_lock_file(), START_PATIENCE)
        .map_err(|e| format!("cannot take {}: {e}", st.start_lock_file().display()))?;
    if guard.is_none() {
        return Ok(Ensured {
            started: false,
            route: None,
            note: Some("another ctrl is starting the daemon".into()),
        });
    }
    if running(())? {
        return Ok(Ensured {
            started: false,
            route: None,
            note: None,
        });
    }
    if let Some(age) = launch_in_progress(st) {
        return Ok(Ensured {
            started: false,
            route: None,
            note: Some(format!(
                "a daemon launched {:.1}s ago is still starting",
                age.as_secs_f64()
            )),
        });
    }
    // No daemon here, but one of this config may run with another state dir (another
    // MK_VARDIR): a daemon launched here would refuse to start, so none is.
    match crate::service::one_daemon::probe(&cfg.path, &cfg.daemon.state_dir) {
        crate::service::one_daemon::Probe::Free => {}
        crate::service::one_daemon::Probe::Here(pid) => {
            return Ok(Ensured {
                started: false,
                route: None,
                note: Some(format!(
                "a daemon (pid {pid}) of this state dir is starting, or taking its lock file again"
            )),
            })
        }
        crate::service::one_daemon::Probe::Elsewhere(why) => {
            return Err(StartError::Elsewhere(why))
        }
        // A daemon launched would refuse to start: said at once, on the daemon's line.
        crate::service::one_daemon::Probe::Unsafe(why) => return Err(StartError::Failed(why)),
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let exe = launch::daemon_exe(&exe, &cfg.daemon.state_dir)?;
    let args: Vec<OsString> = vec![
        "--config".into(),
        cfg.path.clone().into_os_string(),
        "daemon".into(),
    ];
    // The daemon whose status is there before the launch (a predecessor, a `run-once` that
    // held the instance): its status is not the new daemon's, whatever the wall clock says.
    let before =
        crate::service::report::read_status(st).map(|s| (s.daemon.pid, s.daemon.pid_start));
    // A refusal left by an earlier launch is not this one's (see `wait_until_ready`).
    let _ = std::fs::remove_file(st.start_error_file());
    // Written before the launch: a ctrl that finds start.lock free next must not launch again
    // while this daemon is still coming up.
    crate::service::state::write_atomic(
        &st.starting_file(),
        b"",
        crate::service::state::Durability::NoSync,
    )
    .map_err(|e| e.to_string())?;
    // A launch that failed started nothing: the mark goes, so the next ctrl tries again and
    // says why, instead of waiting for a daemon "still starting" for the mark's grace.
    let launched = launch::launch(&exe, &args, &cfg.daemon.instance).inspect_err(|_| {
        let _ = std::fs::remove_file(st.starting_file());
    })?;
    let mut note = wait_until_ready(st, before, launched.note.clone())?;
    drop(guard);
    if let Some(h) = handover {
        let done = format!("{}; it stopped, and this ctrl started {}", h.note, h.next);
        note = Some(match note {
            Some(n) => format!("{done}; {n}"),
            None => done,
        });
    }
    Ok(Ensured {
        started: !launched.already_running,
        route: Some(launched.route),
        note,
    })
}

/// Waits until the daemon just launched is ready, or refused its config, or `START_PATIENCE`
/// is over (then `note` says so). `before`: the PID and process start time the status named
/// before the launch.
fn wait_until_ready(
    st: &StateDir,
    before: Option<(u32, Option<u64>)>,
    mut note: Option<String>,
) -> Result<Option<String>, StartError> {
    let lock_file = st.lock_file();
    let running = || lock::is_held(&lock_file).map_err(|e| StartError::Failed(e.to_string()));
    let deadline = Instant::now() + START_PATIENCE;
    // Ready = holds the lock and has published its status, so this ctrl's report already
    // shows the new daemon's PID. Judged by the process the status names, never by the wall
    // clock: a status written while the clock stood ahead (a `run-once` that has ended, the
    // clock stepped back since) has a start time after this launch's, and file mtimes come
    // from the kernel's coarse clock. The process is the one that started then (its start
    // time, as everywhere a PID comes from a file), holds this instance's lock, and is not the
    // one the status named before the launch (which may still be exiting).
    let published = || {
        crate::service::report::read_status(st).is_some_and(|s| {
            let d = &s.daemon;
            before != Some((d.pid, d.pid_start))
                && crate::service::sys::is_instance_daemon(d.pid, d.pid_start, &lock_file)
        })
    };
    // A daemon that refused its config, or failed past it, says why in `start-error` (and
    // exits); an earlier launch's was removed before this one.
    let refused = || {
        crate::service::state::read_json::<crate::model::request::StartFailure>(
            &st.start_error_file(),
        )
        .ok()
        .flatten()
    };
    loop {
        if running()? && published() {
            break;
        }
        if let Some(f) = refused() {
            return Err(match f.stage {
                crate::model::request::StartStage::Config => StartError::Config(f.error),
                crate::model::request::StartStage::Setup => StartError::Failed(f.error),
            });
        }
        if Instant::now() >= deadline {
            let more = format!(
                "the daemon did not take its lock within {}s; see {}",
                START_PATIENCE.as_secs(),
                st.log_file().display()
            );
            note = Some(match note {
                Some(n) => format!("{n}; {more}"),
                None => more,
            });
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(note)
}

/// How long ago a launch that has not reached its lock yet began, if within the grace time.
fn launch_in_progress(st: &StateDir) -> Option<Duration> {
    let m = crate::service::sys::file::plain_metadata(&st.starting_file())?
        .modified()
        .ok()?;
    let age = std::time::SystemTime::now()
        .duration_since(m)
        .unwrap_or_default();
    (age < LAUNCH_GRACE).then_some(age)
}

/// A daemon of another build that [`retire_older_build`] asked to stop, or found stopping.
struct Retiring {
    /// What ctrl's section says of it.
    note: String,
    /// The build the next daemon runs ("build 0.2.0", "another build of 0.1.0").
    next: String,
    /// It had no run in flight: it exits as soon as it reads the request.
    idle: bool,
}

/// Upgrades: a running daemon of an older build, or one whose program file ctrl's has replaced
/// (see [`runs_replaced_program`]), is asked to stop politely (no new runs; it exits once its
/// runs are done), and the first ctrl after it has exited starts this build (from a fresh copy
/// on Windows, see [`launch::daemon_exe`]).
fn retire_older_build(st: &StateDir) -> Option<Retiring> {
    let status = crate::service::report::read_status(st)?;
    let idle = status.jobs.iter().all(|j| j.running.is_empty());
    let d = status.daemon;
    let me = crate::model::BUILD_ID;
    // What the daemon runs against this ctrl (`was`), what the next ctrl starts (`next`), and
    // the build the daemon records it stops for ("upgrade (build 0.2.0 → …)").
    let (was, next, to) = if older_build(&d.build, me) {
        (
            format!("build {}", d.build),
            format!("build {me}"),
            me.to_string(),
        )
    } else if let Some(path) = runs_replaced_program(&d) {
        let (next, to) = if d.build == me {
            (
                format!("another build of {me}"),
                format!("another build of {me}"),
            )
        } else {
            (format!("build {me}"), me.to_string())
        };
        (
            format!(
                "build {} from the replaced file {}",
                d.build,
                path.display()
            ),
            next,
            to,
        )
    } else {
        return None;
    };
    if d.phase != crate::model::status::Phase::Running {
        return Some(Retiring {
            note: format!("the daemon ({was}) is stopping; {next} starts after it"),
            next,
            idle,
        });
    }
    let req = crate::model::request::StopRequest {
        mode: crate::model::request::StopMode::Drain,
        requested: chrono::Utc::now(),
        upgrade_to: Some(to),
    };
    let written = crate::service::state::write_json(
        &st.stop_file(),
        &req,
        crate::service::state::Durability::NoSync,
    );
    // The PID comes from a file: signal it only if that process is this program holding this
    // instance's lock (the daemon also watches for the stop request file and reads it at once).
    // Without a request (a full disk) the signal alone asks it to stop politely: an upgrade
    // is still applied, only the reason it records is the signal's.
    let verified = crate::service::sys::is_instance_daemon(d.pid, d.pid_start, &st.lock_file());
    let signalled = if verified {
        crate::service::sys::signal_stop(d.pid).map_err(|e| e.to_string())
    } else {
        Err(format!(
            "pid {} is not verified as this instance's daemon",
            d.pid
        ))
    };
    // Asked neither way, it is not leaving: nothing to wait for.
    let idle = idle && (written.is_ok() || signalled.is_ok());
    let note = match (written, signalled) {
        (Ok(()), _) => format!(
            "the daemon runs {was}, this ctrl is {next}: asked it to stop after its runs; the next ctrl starts {next}"
        ),
        (Err(e), Ok(())) => format!(
            "the daemon runs {was}, this ctrl is {next}: the stop request could not be written ({e}), so it was signalled to stop after its runs; the next ctrl starts {next}"
        ),
        (Err(e), Err(s)) => format!(
            "the daemon runs {was}, but the stop request failed: {e}; nor could it be signalled: {s}"
        ),
    };
    Some(Retiring { note, next, idle })
}

/// The path of the daemon `d`'s program if ctrl's own has replaced it there: the daemon was
/// started from the very path ctrl runs from, whose file has since been replaced (a package's
/// upgrade, downgrade or rebuild renames the new file over the old: the daemon's
/// `/proc/PID/exe` reads `… (deleted)`), and it runs another program than ctrl's — another
/// version, or the same version built differently (another GNU build-id; without one, other
/// bytes). The same build renamed over itself (a reinstall) is not replaced. A daemon started
/// from another path — an admin's other copy — is never ctrl's to replace, whatever it runs:
/// two copies calling ctrl in turn never retire each other's daemon. Anything that cannot be
/// told (no `/proc`, another user's daemon, Windows, where the daemon runs from its own copy)
/// is not replaced.
fn runs_replaced_program(d: &crate::model::status::DaemonInfo) -> Option<PathBuf> {
    use crate::service::sys;
    // The PID comes from a file: only the process that started then is the daemon.
    if d.pid_start.is_none() || sys::process_start_time(d.pid) != d.pid_start {
        return None;
    }
    // It runs the very file this ctrl runs (every agent call but an upgrade's): nothing
    // replaced it, whatever path either was started from.
    if sys::runs_my_file(d.pid) == Some(true) {
        return None;
    }
    let theirs = sys::process_program(Some(d.pid))?;
    let mine = sys::process_program(None)?;
    let replaced = replaced_at_my_path(&theirs, &mine)
        && (d.build != crate::model::BUILD_ID
            || sys::same_program(Some(d.pid), None) == Some(false));
    replaced.then_some(mine.path)
}

/// True if `theirs` was started from the path `mine` runs from and is another file than mine
/// there now. A ctrl whose own file was replaced while it ran is the stale one: it replaces
/// nothing.
fn replaced_at_my_path(
    theirs: &crate::service::sys::Program,
    mine: &crate::service::sys::Program,
) -> bool {
    // Where it was launched from, also when that file (or its folder) was moved aside and
    // the new build put in its place; else where its file is named now.
    let from = theirs.launched.as_ref().unwrap_or(&theirs.path);
    if mine.deleted || (theirs.path != mine.path && *from != mine.path) {
        return false;
    }
    match (theirs.file, mine.file) {
        (Some(a), Some(b)) => a != b,
        _ => theirs.deleted,
    }
}

/// True if build `a` is older than `b` (numeric dotted versions; a build suffix after `-` or
/// `+` is ignored). Unparsable and different counts as older, so an odd build is replaced.
fn older_build(a: &str, b: &str) -> bool {
    fn parse(v: &str) -> Option<Vec<u64>> {
        let core = v.split(['-', '+']).next()?;
        core.split('.').map(|p| p.parse().ok()).collect()
    }
    if a == b {
        return false;
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x < y,
        _ => true,
    }
}

/// ctrl's fast path: the daemon runs and has validated exactly this config file (same
/// stamp, no error), so ctrl reads only the `[daemon]` table and prints the output the daemon
/// pre-rendered when its status last changed ([`crate::logic::ctrl_view`]), adding only what depends
/// on the time of this call. Its cost grows with the bytes it prints, not with parsing and
/// formatting every job. Anything unusual — no daemon, an edit the daemon has not seen, a
/// config error, no view — takes the full path.
/// Returns `None`, having printed nothing, when it does not apply; else the agent's cached
/// mode it printed in ([`agent::cached_mode`]).
fn fast_output(
    path: &Path,
    trusted: bool,
    quick: Option<(String, std::path::PathBuf)>,
    beat: &Beat,
    t0: Instant,
) -> Option<Option<String>> {
    // Untrusted paths take the full path, which says why and touches nothing.
    if !trusted {
        return None;
    }
    let stamp = config::stamp(path)?;
    let (instance, dir) = quick?;
    crate::service::security::check_state_dir(&dir).ok()?;
    let st = StateDir::new(&dir);
    if !lock::is_held(&st.lock_file()).ok()? {
        return None;
    }
    let bytes = crate::service::sys::file::read_whole(
        &st.ctrl_view_file(),
        crate::service::sys::file::cap::STATUS,
    )
    .ok()?;
    // The daemon writes the view right after `status.json`, and removes the old one when it
    // cannot write a new one: a view older than the status is not the current one.
    let mtime = |p: &Path| {
        crate::service::sys::file::plain_metadata(p)?
            .modified()
            .ok()
    };
    if mtime(&st.status_file())? > mtime(&st.ctrl_view_file())? {
        return None;
    }
    // The daemon writes valid UTF-8; anything else is not its view.
    let view = crate::logic::ctrl_view::parse(std::str::from_utf8(&bytes).ok()?)?;
    // A view written later than now: the wall clock was set back since. Its deadlines count
    // from where the clock stood then; the full path counts them again (see
    // `staleness::set_back_since_at`) until the daemon writes a view of its own.
    if view.status.updated > chrono::Utc::now() + chrono::Duration::seconds(1) {
        return None;
    }
    let status = view.status.clone();
    let d = &status.daemon;
    let vouched = d.config == path
        && d.config_stamp.as_deref() == Some(stamp.as_str())
        && d.config_error.is_none()
        && d.build == crate::model::BUILD_ID
        && status.instance == instance
        && runs_replaced_program(d).is_none();
    if !vouched {
        return None;
    }
    // No beat while the previous one is unanswered (see `liveness`); a daemon silent past
    // the grace is judged, and maybe ended, on the full path.
    match crate::service::report::unanswered(&st, d, d.state_error.is_some()) {
        None => st.beat(beat).ok()?,
        Some((_, age)) if age <= liveness::ANSWER_GRACE => st.note_beat(beat).ok()?,
        Some(_) => return None,
    }
    let located = Some((instance, dir));
    let mut report = crate::service::report::build_from(
        path.to_path_buf(),
        report::ConfigView::VouchedByDaemon,
        located,
        true,
        Some(status),
    );
    view.annotate(&mut report);
    report.ctrl = Some(CtrlReport {
        action: CtrlAction::Running,
        mode: Some(agent_mode::describe(&agent_mode::interval(beat, None))),
        route: None,
        note: None,
        error: None,
        duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
    });
    let pause = paused(&report);
    let mut stdout =
        crate::app::test_crash::in_piggyback(crate::service::sys::fatal::LineSafeStdout::new());
    // A failed write (the agent went away) is not a reason to print the sections again.
    let _ = view
        .write_to(&report, pause.as_ref(), &mut stdout)?
        .and_then(|_| stdout.flush());
    Some(agent::cached_mode(&report))
}

/// Runs ctrl and prints the sections; always exits 0 once it printed them.
pub(crate) fn run(config_path: &Path) -> i32 {
    let t0 = Instant::now();
    let path = config::absolute(config_path);
    // The agent tells a cached plugin its interval only by the folder it runs it from.
    // What this process was invoked as (the agent runs ctrl without arguments).
    let beat = std::env::args_os()
        .next()
        .map(|a| agent_mode::detect(&a))
        .unwrap_or_default();
    // Read once for the instance and for the other instances it names.
    let text = config::read_quick(&path);
    let quick = text
        .as_deref()
        .and_then(|t| config::locate_daemon_in(&path, t));
    install_safety_net(quick.as_ref().map_or("system", |q| q.0.as_str()));
    crate::app::test_crash::at("ctrl");
    let own = quick
        .as_ref()
        .map_or("system", |q| q.0.as_str())
        .to_string();
    // Whether no other user can change the config: asked once, for this instance's fast path
    // and for the other instances' sections (`text` was read before either).
    let trusted = crate::service::security::check_config(&path).is_ok();
    let shown = match fast_output(&path, trusted, quick, &beat, t0) {
        Some(cached) => Shown { code: 0, cached },
        None => full(&path, t0, &beat),
    };
    if trusted {
        print_others(&path, text.as_deref(), &own, shown.cached.as_deref());
    }
    shown.code
}

/// What ctrl printed for its own instance: its exit code, and the agent's cached mode the
/// sections were printed in (`None`: sync), which the other instances' sections share — the
/// agent caches ctrl's whole output.
struct Shown {
    code: i32,
    cached: Option<String>,
}

/// The sections of the other instances the config names (`service::others`), after this one's,
/// in the agent's mode `cached` of this call; called only for a config no other user could have
/// changed.
fn print_others(path: &Path, text: Option<&str>, own: &str, cached: Option<&str>) {
    let Some(text) = text else { return };
    let others = config::other_instances_in(path, text);
    if others.is_empty() {
        return;
    }
    let text = render_others(&crate::service::others::read_all(&others, own), cached);
    let mut stdout = crate::service::sys::fatal::LineSafeStdout::new();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// The sections of the other instances, each rendered as this one's are ([`render_instance`]).
fn render_others(others: &[crate::service::others::Other], cached: Option<&str>) -> String {
    others
        .iter()
        .map(|o| match &o.shown {
            Ok(r) => render_instance(r, cached),
            Err(e) => agent::error_section(&o.name, &e.to_string()),
        })
        .collect()
}

/// An instance's sections as this call of ctrl prints them from its report (the full path;
/// the fast path prints the daemon's pre-rendered view with the same inputs): with the pauses
/// in force in its state dir ([`paused`]; a pause of another instance shows in the output
/// the agent reads as in that instance's own ctrl, WARN past its warn age included), in the
/// agent's mode `cached` of this call (times absolute when the agent caches the output),
/// every line through `logic::agent`'s grammar. The one rendering of this instance's report
/// and of every other instance's, so that each guarantee holds for both.
fn render_instance(report: &report::Report, cached: Option<&str>) -> String {
    agent::render_as(report, paused(report).as_ref(), cached)
}

/// Whatever kills ctrl — a panic (the release build aborts), a fatal signal (a crash in a
/// library), SIGTERM, SIGINT or SIGHUP (the agent's or `timeout(1)`'s timeout, systemd
/// stopping the agent's connection unit) — the agent still gets a CRIT line for the daemon's
/// service saying so, never an empty output (issue 20: a crash in glibc's NSS left Checkmk
/// with no section at all), and never after a cut line: ctrl's output goes out in whole
/// lines ([`crate::service::sys::fatal::LineSafeStdout`]).
fn install_safety_net(instance: &str) {
    // The local section starts on a line of its own (the note adds a newline while a line is
    // under way), and on this host: a crash inside a piggyback block would give the line to
    // that host (`<<<<>>>>` ends a block, and is nothing outside one).
    // The line's end (the signal, the panic) follows when ctrl dies.
    let head = format!(
        "<<<<>>>>\n{}\n{}",
        agent::LOCAL_HEADER,
        agent::local_line(
            2,
            &agent::daemon_service(instance),
            "-",
            "ctrl (the agent plugin) died: "
        )
    );
    let _ = crate::service::sys::fatal::note_fatal_signals(
        crate::service::sys::fatal::Stream::Stdout,
        head.clone().into_bytes(),
        false,
    );
    let _ = crate::service::sys::fatal::note_end_signals();
    std::panic::set_hook(Box::new(move |p| {
        crate::service::sys::fatal::mark_fatal_noted();
        // One printable line, as every text that reaches the agent.
        let mut what: String = p
            .to_string()
            .chars()
            .map(|c| {
                if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        crate::model::clip::clip(&mut what, crate::model::clip::MAX_TEXT);
        let mut out = std::io::stdout().lock();
        if crate::service::sys::fatal::stdout_midline() {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{head}{what}");
        let _ = out.flush();
    }));
}

fn print_report(report: &report::Report) -> Shown {
    // A config that cannot be read names no instance: report under the default one's name
    // (what the config says when it sets none), not under a service the admin never saw.
    let named;
    let report = match report.instance {
        Some(_) => report,
        None => {
            let mut r = report.clone();
            r.instance = Some(crate::model::config::DEFAULT_INSTANCE.into());
            named = r;
            &named
        }
    };
    let cached = agent::cached_mode(report);
    let out = render_instance(report, cached.as_deref());
    let mut stdout = crate::service::sys::fatal::LineSafeStdout::new();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    Shown { code: 0, cached }
}

/// The pauses in force for the instance `report` is of, as its output shows them now.
fn paused(report: &report::Report) -> Option<crate::logic::pause_view::PauseView> {
    let dir = report.state_dir.as_deref()?;
    crate::service::pause::in_force(dir, chrono::Utc::now())
}

/// The report of a ctrl that found the config or state dir open to others: nothing read
/// from the state dir, only `error`.
fn refuse_untrusted(
    path: PathBuf,
    cfg: &Result<Config, crate::model::config::ConfigError>,
    located: Option<(String, PathBuf)>,
    mut ctrl: CtrlReport,
    error: &str,
    t0: Instant,
) -> Shown {
    ctrl.action = CtrlAction::Error;
    ctrl.error = Some(error.to_string());
    let mut report = crate::service::report::build_from(path, cfg.into(), None, false, None);
    if let Some((instance, dir)) = located {
        report.instance = Some(instance);
        report.state_dir = Some(dir);
    }
    ctrl.duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
    report.ctrl = Some(ctrl);
    print_report(&report)
}

/// Refreshes the heartbeat and starts a daemon unless one runs; what ctrl did goes into
/// `ctrl`. Returns the error of a daemon that refused the config.
fn beat_and_ensure(
    st: &StateDir,
    beat: &Beat,
    cfg: &Result<Config, crate::model::config::ConfigError>,
    ctrl: &mut CtrlReport,
) -> Option<String> {
    // The heartbeat is kept even while the config is broken: a typo must not make the
    // daemon think the agent is gone.
    if let Err(e) = st.ensure().and_then(|_| st.beat(beat)) {
        ctrl.error = Some(format!("cannot refresh the heartbeat: {e}"));
    }
    if let Ok(c) = &cfg {
        match ensure_daemon(c, st) {
            Ok(e) => {
                ctrl.action = if e.started {
                    CtrlAction::Started
                } else {
                    CtrlAction::Running
                };
                ctrl.route = e.route;
                ctrl.note = e.note;
            }
            Err(StartError::Config(e)) => return Some(e),
            Err(e) => {
                ctrl.action = CtrlAction::Error;
                ctrl.error = Some(e.to_string());
            }
        }
    }
    None
}

/// The full path: parse the whole config, start a daemon if needed.
fn full(path: &Path, t0: Instant, beat: &Beat) -> Shown {
    let path = path.to_path_buf();
    // No user lookups: the daemon does them and reports a user that is not there, and ctrl
    // prints its sections whatever the host's user database does.
    let cfg = config::load_with(&path, crate::model::config::Users::NamesOnly);
    let located = match &cfg {
        Ok(c) => Some((c.daemon.instance.clone(), c.daemon.state_dir.clone())),
        Err(_) => crate::service::one_daemon::locate(&path),
    };
    let mut ctrl = CtrlReport {
        action: CtrlAction::Running,
        mode: Some(agent_mode::describe(&agent_mode::interval(beat, None))),
        route: None,
        note: None,
        error: None,
        duration_ms: 0.0,
    };
    // A config or state dir that another user could change is not acted on at all: no
    // heartbeat, no launch, no read of the state dir (whose files that user may have forged).
    let trust = crate::service::security::check_config(&path).and_then(|_| match &located {
        Some((_, dir)) => crate::service::security::check_state_dir(dir),
        None => Ok(()),
    });
    if let Err(e) = trust {
        return refuse_untrusted(path, &cfg, located, ctrl, &e.to_string(), t0);
    }
    // Judged before this ctrl's beat, while the heartbeat still holds the previous one.
    let mut silent = false;
    let mut ended = None;
    let mut refused = None;
    if let Some((_, dir)) = &located {
        let hang_timeout = cfg.as_ref().ok().and_then(|c| c.daemon.hang_timeout);
        match crate::app::hang::judge(&StateDir::new(dir), hang_timeout) {
            Judgement::Answering => {}
            Judgement::Silent(note) => {
                silent = true;
                ctrl.note = note;
                // No beat, but a change of the agent's mode still reaches the daemon.
                if let Err(e) = StateDir::new(dir).note_beat(beat) {
                    ctrl.error = Some(format!("cannot refresh the heartbeat: {e}"));
                }
            }
            Judgement::Ended(why) => ended = Some(why),
        }
    }
    // Another config's daemon in this state dir is not this config's to beat for or judge.
    let foreign = located.as_ref().and_then(|(_, dir)| {
        crate::service::report::daemon_of_another_config(&StateDir::new(dir), &path)
    });
    if let Some(why) = foreign {
        ctrl.action = CtrlAction::Error;
        ctrl.error = Some(why);
    } else if let Some((_, dir)) = located.as_ref().filter(|_| !silent) {
        refused = beat_and_ensure(&StateDir::new(dir), beat, &cfg, &mut ctrl);
    }
    if let Some(why) = ended {
        // Also when a racing ctrl launched the new daemon: this one ended the old, and
        // says so (once) even though it did not start the new one.
        if matches!(ctrl.action, CtrlAction::Started | CtrlAction::Running) {
            ctrl.action = CtrlAction::Restarted;
        }
        ctrl.note = Some(match ctrl.note.take() {
            Some(n) => format!("{why}; {n}"),
            None => why,
        });
    }
    if cfg.is_err() || refused.is_some() {
        ctrl.action = CtrlAction::ConfigError;
    }
    let mut report = crate::service::report::build(path, (&cfg).into(), located);
    if let Some(e) = refused {
        report.config_error = Some(e);
        report.clip();
    }
    ctrl.duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
    report.ctrl = Some(ctrl);
    print_report(&report)
}

#[cfg(test)]
mod tests {
    use super::{older_build, replaced_at_my_path};
    use crate::service::sys::Program;

    fn program(path: &str, deleted: bool, file: Option<(u64, u64)>) -> Program {
        Program {
            path: path.into(),
            deleted,
            file,
            launched: None,
        }
    }

    #[test]
    fn only_a_program_at_my_own_path_is_replaced_by_mine() {
        let mine = program("/usr/bin/robotmk-daemon", false, Some((1, 20)));
        // Renamed over: the daemon's file lost its name.
        let old = program("/usr/bin/robotmk-daemon", true, Some((1, 10)));
        assert!(replaced_at_my_path(&old, &mine));
        // The same path, another file (as a mount namespace may show it, undeleted).
        let other = program("/usr/bin/robotmk-daemon", false, Some((1, 11)));
        assert!(replaced_at_my_path(&other, &mine));
        // The very file this ctrl runs.
        assert!(!replaced_at_my_path(&mine.clone(), &mine));
        // Launched from my path, its file (or folder) since moved aside.
        let moved = Program {
            launched: Some("/usr/bin/robotmk-daemon".into()),
            ..program("/usr/bin.old/robotmk-daemon", false, Some((1, 10)))
        };
        assert!(replaced_at_my_path(&moved, &mine));
        // Launched from my path, and still running the file there.
        let same = Program {
            launched: Some("/usr/bin/robotmk-daemon".into()),
            ..mine.clone()
        };
        assert!(!replaced_at_my_path(&same, &mine));
        // Another copy, wherever it is and whatever became of it.
        let copy = program("/opt/rmk/robotmk-daemon", true, Some((1, 10)));
        assert!(!replaced_at_my_path(&copy, &mine));
        // A ctrl whose own file was replaced while it ran replaces nothing.
        let stale = program("/usr/bin/robotmk-daemon", true, Some((1, 30)));
        assert!(!replaced_at_my_path(&old, &stale));
        // Without file identities (Windows): only a file that lost its name.
        let bare = program("/usr/bin/robotmk-daemon", false, None);
        assert!(!replaced_at_my_path(&bare, &bare));
        assert!(replaced_at_my_path(
            &program("/usr/bin/robotmk-daemon", true, None),
            &bare
        ));
    }

    #[test]
    fn only_an_older_build_is_retired() {
        assert!(older_build("0.1.0", "0.2.0"));
        assert!(older_build("0.9.9", "0.10.0"));
        assert!(!older_build("0.2.0", "0.1.0"));
        assert!(!older_build("0.1.0", "0.1.0"));
        assert!(!older_build("0.1.0-rc1", "0.1.0"));
        assert!(older_build("weird", "0.1.0"));
    }
}
