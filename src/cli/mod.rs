//! The command line: clap definitions and the commands that are not ctrl or the daemon
//! (`start`, `stop`, `status`, `check-config`, `run-once`; `history`, `show` and `logs` live
//! in [`crate::app::history`] and [`crate::app::logs`], completions and the man page in
//! [`crate::cli::completions`]).

mod args;
mod completions;
mod findings;

pub use args::{Cli, Command};

use crate::app::{ctrl, daemon};
use crate::model::config::Config;
use crate::model::report::{self, Report};
use crate::model::request::{StopMode, StopRequest};
use crate::model::status::JobStatus;
use crate::service::config::{self};
use crate::service::state::{self, Durability, StateDir};
use crate::service::{lock, sys};
use chrono::Utc;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// True when the program was invoked under a name ending in `ctrl` (the agent's plugin), which
/// means "act as ctrl" when no arguments are given.
pub fn invoked_as_ctrl(argv0: &std::ffi::OsStr) -> bool {
    let name = std::path::Path::new(argv0)
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with("ctrl")
}

/// Runs a parsed command line; returns the exit code.
pub fn dispatch(cli: Cli) -> i32 {
    if !matches!(
        cli.command,
        Command::Daemon { .. }
            | Command::Start {
                foreground: true,
                ..
            }
            | Command::EnvBuild { .. }
            | Command::RobotAttempts { .. }
            // ctrl ignores a failed write by design (the agent went away); run-once may hold
            // the run itself (no daemon), which a signal must not end half-recorded.
            | Command::Ctrl
            | Command::RunOnce { .. }
    ) {
        sys::pipe::end_quietly_on_closed_stdout();
    }
    let path = config::absolute(&cli.config.unwrap_or_else(config::discover));
    match cli.command {
        Command::Ctrl => ctrl::run(&path),
        Command::Pause {
            for_,
            warn_after,
            jobs,
        } => crate::app::pause::pause(&path, for_, warn_after, &jobs),
        Command::Resume { jobs } => crate::app::pause::resume(&path, &jobs),
        Command::CompleteJobs => crate::cli::completions::job_names(&path),
        Command::History { job, n, json } => crate::app::history::history(&path, &job, n, json),
        Command::Show { job, run, n } => crate::app::history::show(&path, &job, run.as_deref(), n),
        Command::Logs { follow, n } => crate::app::logs::logs(&path, follow, n),
        Command::Completions { shell } => crate::cli::completions::completions(shell),
        Command::Man { dir } => crate::cli::completions::man(dir.as_deref()),
        Command::Start {
            foreground: true,
            run_flag,
        } => daemon::run(daemon::Options {
            config: path,
            route: crate::model::status::Route::Foreground,
            run_flag,
            foreground: true,
            oneshot: None,
        }),
        Command::Start {
            foreground: false,
            run_flag,
        } => start(&path, run_flag),
        Command::Daemon { route, run_flag } => daemon::run(daemon::Options {
            config: path,
            route,
            run_flag,
            foreground: false,
            oneshot: None,
        }),
        Command::Stop { now, timeout } => stop(&path, now, timeout),
        Command::Status { json } => status(&path, json),
        Command::CheckConfig => check_config(&path),
        Command::RunOnce { job } => run_once(&path, &job),
        Command::EnvBuild {
            dir,
            source,
            kind,
            python,
            uv,
            home,
        } => env_build(dir, source, &kind, python, uv, home),
        Command::RobotAttempts {
            run_dir,
            attempts,
            retry,
            rebot_json,
            robot,
        } => robot_attempts(run_dir, attempts, retry, &rebot_json, robot),
        Command::ParseResult { file, peak_rss } => parse_result(&file, peak_rss),
    }
}

/// `env-build` (internal): builds one Python environment, run by the daemon as the
/// environment's builder.
fn env_build(
    dir: PathBuf,
    source: PathBuf,
    kind: &str,
    python: String,
    uv: Option<PathBuf>,
    home: Option<PathBuf>,
) -> i32 {
    let kind = match kind {
        "requirements" => crate::model::env::SourceKind::Requirements,
        "pyproject" => crate::model::env::SourceKind::Pyproject,
        _ => {
            eprintln!("robotmk-daemon: --kind must be requirements or pyproject");
            return 2;
        }
    };
    crate::service::pyenv::build(&crate::service::pyenv::BuildPlan {
        dir,
        source,
        kind,
        python,
        uv,
        home,
    })
}

/// `robot-attempts` (internal): the retry wrapper a job with `attempts` runs as its runner.
fn robot_attempts(
    run_dir: PathBuf,
    attempts: u32,
    retry: crate::model::config::Retry,
    rebot_json: &str,
    robot: Vec<String>,
) -> i32 {
    let Ok(rebot) = serde_json::from_str::<Vec<String>>(rebot_json) else {
        eprintln!("robotmk-daemon: --rebot-json is not a JSON array of strings");
        return 252;
    };
    crate::app::attempts::run(&crate::app::attempts::Plan {
        run_dir,
        attempts,
        retry,
        rebot,
        robot,
    })
}

/// `parse-result` (internal): reads a result as the daemon does and prints what it found.
fn parse_result(file: &Path, peak_rss: bool) -> i32 {
    let code = match crate::service::results::read_result(file) {
        Ok(t) => {
            println!("{}", serde_json::to_string(&t).unwrap_or_default());
            0
        }
        Err(e) => {
            eprintln!("robotmk-daemon: {}: {e}", file.display());
            1
        }
    };
    if peak_rss {
        // The kernel's high-water mark of this process alone: a parent's rusage would
        // also count what the forking parent held before exec.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .map(|v| v.trim().trim_end_matches("kB").trim().to_string())
        {
            eprintln!("peak_rss_kib={kib}");
        }
    }
    code
}

fn load_or_report(path: &Path) -> Result<Config, i32> {
    config::load(path).map_err(|e| {
        eprintln!("robotmk-daemon: config error: {e}");
        2
    })
}

fn start(path: &Path, run_flag: Option<PathBuf>) -> i32 {
    if run_flag.is_some() {
        eprintln!(
            "robotmk-daemon: --run-flag needs --foreground (the agent starts extensions itself)"
        );
        return 1;
    }
    let cfg = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = crate::service::security::check(&cfg) {
        eprintln!("robotmk-daemon: {e}");
        return 1;
    }
    let st = StateDir::new(&cfg.daemon.state_dir);
    if let Some(why) = crate::service::report::daemon_of_another_config(&st, path) {
        eprintln!("robotmk-daemon: {why}");
        return 1;
    }
    if let Err(e) = st.ensure().and_then(|_| st.touch_heartbeat()) {
        eprintln!("robotmk-daemon: {e}");
        return 1;
    }
    match ctrl::ensure_daemon(&cfg, &st) {
        Ok(e) => {
            let r = crate::service::report::build(
                path.to_path_buf(),
                report::ConfigView::Loaded(&cfg),
                Some((cfg.daemon.instance.clone(), cfg.daemon.state_dir.clone())),
            );
            let pid = r.daemon.pid.map_or("?".into(), |p| p.to_string());
            if e.started {
                println!(
                    "daemon started for instance {} (pid {pid}, via {})",
                    cfg.daemon.instance,
                    e.route.as_ref().map_or("?", |r| r.as_str())
                );
            } else {
                println!(
                    "daemon already running for instance {} (pid {pid})",
                    cfg.daemon.instance
                );
            }
            if let Some(n) = e.note {
                eprintln!("robotmk-daemon: note: {n}");
            }
            if let Some(t) = cfg.daemon.heartbeat_timeout {
                eprintln!(
                    "robotmk-daemon: note: the daemon exits after {} without a ctrl call (the Checkmk agent makes one every minute; heartbeat_timeout in {}; \"0\" keeps it running without an agent)",
                    crate::model::duration::format(t),
                    cfg.path.display()
                );
            }
            if r.daemon.running {
                0
            } else {
                eprintln!(
                    "robotmk-daemon: the daemon is not running; see {}",
                    st.log_file().display()
                );
                1
            }
        }
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            1
        }
    }
}

fn stop(path: &Path, now: bool, timeout: Duration) -> i32 {
    // A broken config must not keep an admin from stopping the daemon: find it leniently
    // (nor a user that is gone: no lookups).
    let located = match config::load_with(path, crate::model::config::Users::NamesOnly) {
        Ok(c) => Some((c.daemon.instance, c.daemon.state_dir)),
        Err(e) => {
            eprintln!("robotmk-daemon: warning: config error: {e}");
            config::locate_daemon(path)
        }
    };
    let Some((instance, dir)) = located else {
        eprintln!(
            "robotmk-daemon: cannot tell which state dir the config at {} uses",
            path.display()
        );
        return 2;
    };
    // A config or state dir another user could change may name another instance, hold a
    // forged status (a PID to signal) or links to redirect the stop request: do not act on it.
    if let Err(e) = crate::service::security::check_config(path)
        .and_then(|_| crate::service::security::check_state_dir(&dir))
    {
        eprintln!("robotmk-daemon: {e}");
        return 1;
    }
    let st = StateDir::new(dir);
    if let Some(why) = crate::service::report::daemon_of_another_config(&st, path) {
        eprintln!("robotmk-daemon: not stopped: {why}");
        return 1;
    }
    match lock::is_held(&st.lock_file()) {
        Ok(false) => {
            println!("no daemon running for instance {instance}");
            return 0;
        }
        Ok(true) => {}
        Err(e) => {
            eprintln!("robotmk-daemon: cannot tell whether a daemon runs: {e}");
            return 1;
        }
    }
    let status: Option<crate::model::status::Status> =
        state::read_json(&st.status_file()).ok().flatten();
    // Only ever a PID verified as this instance's daemon is signalled or ended.
    let daemon = status
        .map(|s| s.daemon)
        .filter(|d| sys::is_instance_daemon(d.pid, d.pid_start, &st.lock_file()));
    // A beat of this command's own: whether the daemon answers it tells, past the timeout, a
    // daemon that is busy ending its runs from one that is frozen or hung. Setting an mtime
    // needs no free space.
    let beat = st
        .touch_heartbeat()
        .ok()
        .and_then(|()| st.heartbeat_mtime());
    let req = StopRequest {
        mode: if now { StopMode::Now } else { StopMode::Drain },
        requested: Utc::now(),
        upgrade_to: None,
    };
    match state::write_json(&st.stop_file(), &req, Durability::NoSync) {
        // Wake the daemon at once instead of at its next look at the stop file.
        Ok(()) => {
            if let Some(d) = &daemon {
                let _ = sys::signal_stop(d.pid);
            }
        }
        // A full disk is when an admin stops things: the signal needs no disk. SIGTERM alone
        // means a polite stop; `--now` has a signal of its own.
        Err(e) => {
            let Some(d) = &daemon else {
                eprintln!(
                    "robotmk-daemon: cannot write the stop request: {e}; and the daemon's PID is not known or not verified, so it cannot be signalled instead"
                );
                return 1;
            };
            eprintln!(
                "robotmk-daemon: cannot write the stop request: {e}; signalling the daemon (pid {}) instead",
                d.pid
            );
            let sent = if now {
                sys::signal_stop_now(d.pid)
            } else {
                sys::signal_stop(d.pid)
            };
            if let Err(e) = sent {
                eprintln!(
                    "robotmk-daemon: cannot signal the daemon (pid {}): {e}",
                    d.pid
                );
                return 1;
            }
        }
    }
    let deadline = Instant::now() + timeout;
    let mut progress = crate::app::term::Progress::stderr();
    while lock::is_held(&st.lock_file()).unwrap_or(false) {
        if progress.due() {
            progress.draw(&stop_progress(&st, &instance));
        }
        if Instant::now() >= deadline {
            progress.finish();
            return stop_overdue(&st, &instance, now, timeout, beat);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    progress.finish();
    println!("daemon for instance {instance} stopped");
    0
}

/// `stop` past its timeout with the daemon still running. A daemon that has not answered
/// this command's beat is frozen or hung: with `--now` it is ended as ctrl ends one past
/// `hang_timeout` (a verified PID, SIGKILL; the next daemon adopts its runs as after a
/// crash); without, the admin is told so and how to end it.
fn stop_overdue(
    st: &StateDir,
    instance: &str,
    now: bool,
    timeout: Duration,
    beat: Option<std::time::SystemTime>,
) -> i32 {
    let r: Option<crate::model::status::Status> =
        state::read_json(&st.status_file()).ok().flatten();
    let inflight: usize = r
        .as_ref()
        .map(|s| s.jobs.iter().map(|j| j.running.len()).sum())
        .unwrap_or(0);
    let after = crate::model::duration::format(timeout);
    let silent = r
        .as_ref()
        .map(|s| &s.daemon)
        .zip(beat)
        .filter(|(d, beat)| d.acks_heartbeat && st.heartbeat_ack() != Some(*beat));
    let Some((d, beat)) = silent else {
        eprintln!(
            "robotmk-daemon: daemon for instance {instance} still running after {after} ({inflight} run(s) in flight){}",
            if now { "" } else { "; use --now to end them" }
        );
        return 1;
    };
    let silent = format!(
        "the daemon for instance {instance} (pid {}) did not answer within {after}",
        d.pid
    );
    if !now {
        eprintln!("robotmk-daemon: {silent} (frozen or hung?); `stop --now` ends it");
        return 1;
    }
    match crate::app::hang::end_unanswering(st, d, beat) {
        Ok(crate::app::hang::Ending::Ended) => {
            let why = format!("{silent} to stop --now; stop ended it");
            // For the next daemon's log and daemon line: the one ended could not write it.
            let _ =
                state::write_atomic(&st.restart_note_file(), why.as_bytes(), Durability::NoSync);
            println!(
                "{silent}: ended it (SIGKILL){}",
                if inflight > 0 {
                    format!("; its {inflight} run(s) in flight go on, and the daemon the next ctrl starts adopts them")
                } else {
                    String::new()
                }
            );
            0
        }
        Ok(crate::app::hang::Ending::Gone) => {
            println!("daemon for instance {instance} stopped");
            0
        }
        Ok(crate::app::hang::Ending::Answered) => {
            eprintln!(
                "robotmk-daemon: daemon for instance {instance} still running after {after} ({inflight} run(s) in flight); it answers, so it was not ended"
            );
            1
        }
        Err(e) => {
            eprintln!("robotmk-daemon: {silent}; not ended: {e}");
            1
        }
    }
}

/// The progress line of `stop` on a terminal: what the daemon still waits for.
fn stop_progress(st: &StateDir, instance: &str) -> String {
    let s: Option<crate::model::status::Status> =
        state::read_json(&st.status_file()).ok().flatten();
    let inflight: usize = s
        .map(|s| s.jobs.iter().map(|j| j.running.len()).sum())
        .unwrap_or(0);
    format!("waiting for the daemon of instance {instance} to stop: {inflight} run(s) in flight")
}

fn status(path: &Path, json: bool) -> i32 {
    let cfg = config::load(path);
    let located = match &cfg {
        Ok(c) => Some((c.daemon.instance.clone(), c.daemon.state_dir.clone())),
        Err(_) => config::locate_daemon(path),
    };
    let trust = crate::service::security::check_config(path).and_then(|_| match &located {
        Some((_, dir)) => crate::service::security::check_state_dir(dir),
        None => Ok(()),
    });
    if let Err(e) = trust {
        eprintln!("robotmk-daemon: {e}");
        return 2;
    }
    if let Some(why) = findings::cannot_tell(path, cfg.is_ok(), located.as_ref()) {
        println!("daemon:     cannot tell whether it runs: {why}");
        eprintln!("robotmk-daemon: run status as root (sudo robotmk-daemon status)");
        return findings::CANNOT_TELL;
    }
    // Another config's daemon in this config's state dir is not this config's daemon.
    let foreign = located.as_ref().and_then(|(_, dir)| {
        crate::service::report::daemon_of_another_config(&StateDir::new(dir), path)
    });
    let mut r = crate::service::report::build(path.to_path_buf(), (&cfg).into(), located);
    if let Some(why) = foreign {
        r.config_error = Some(why);
    }
    r.paused = crate::app::pause::report(&r);
    if let Ok(c) = &cfg {
        r.config_warnings = crate::service::preflight::warnings_of(c);
    }
    if json {
        // serde_json leaves C1 controls and U+2028/9 raw; a build's log (the builder's
        // to steer) may hold them: escaped, the document is the same, the terminal safe.
        let text = serde_json::to_string_pretty(&r).unwrap_or_default();
        println!("{}", crate::app::term::json_escaped(&text));
    } else {
        print!("{}", table(&r));
        print!("{}", crate::app::pause::status_lines(&r));
        print!("{}", findings::status_notes(&r.config_warnings));
        if let Some(dir) = &r.state_dir {
            // As `systemctl status` does: the last problems under the state, for context.
            print!("{}", crate::app::logs::problems_block(dir));
        }
    }
    if r.config_error.is_some() {
        2
    } else if r.daemon.running {
        0
    } else {
        3
    }
}

/// The status as a table for people.
pub(crate) fn table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let d = &r.daemon;
    let s = crate::app::term::Style::stdout();
    let _ = writeln!(o, "instance:   {}", r.instance.as_deref().unwrap_or("?"));
    let _ = writeln!(o, "config:     {}", r.config.display());
    if let Some(e) = &r.config_error {
        let _ = writeln!(o, "{} {e}", s.paint("31", "CONFIG ERROR:"));
        if d.running {
            let from = d.config_from.map_or(String::new(), |t| {
                format!(" from {}", crate::model::record::ts(t))
            });
            let _ = writeln!(
                o,
                "            the daemon is running the last good config{from} (WARN in Checkmk)"
            );
        }
    }
    if let Some(sd) = &r.state_dir {
        let _ = writeln!(o, "state dir:  {}", sd.display());
    }
    if d.running {
        let _ = writeln!(
            o,
            "daemon:     {}, pid {}, up {}{} (via {})",
            s.paint("32", "running"),
            d.pid.map_or("?".into(), |p| p.to_string()),
            crate::model::duration::human_age(d.uptime_s.unwrap_or(0.0)),
            findings::phase_words(d),
            d.route.as_ref().map_or("?", |r| r.as_str())
        );
        // A crash of the predecessor has its own line ("previous:") below.
        if let (Some(why), None) = (&d.last_stop, &d.previous_crash) {
            let _ = writeln!(o, "last stop:  {why}");
        }
    } else {
        let _ = writeln!(o, "daemon:     {}", s.paint("31", "not running"));
        if let Some(why) = &d.last_stop {
            let _ = writeln!(o, "last stop:  {why}");
        }
    }
    health_lines(&mut o, d);
    // The running daemon's word; with none running, the host's zone a launch would take.
    match (&d.time_zone, d.running) {
        (Some(tz), _) => {
            let _ = writeln!(o, "cron time:  local time, {tz}");
        }
        (None, false) => {
            let _ = writeln!(
                o,
                "cron time:  local time, {} (of a daemon started by ctrl or start)",
                crate::service::zone::host()
            );
        }
        (None, true) => {}
    }
    let _ = writeln!(o);
    jobs_table(&mut o, &r.jobs, &s);
    envs_table(&mut o, &r.envs);
    o
}

/// The daemon's heartbeat, and what went wrong with it or its state.
fn health_lines(o: &mut String, d: &crate::model::report::DaemonReport) {
    use std::fmt::Write as _;
    let hb = match (d.heartbeat_age_s, d.heartbeat_timeout_s) {
        (Some(a), Some(t)) => format!(
            "{} ago (timeout {})",
            crate::model::duration::human_age(a),
            crate::model::duration::human_age(t)
        ),
        (Some(a), None) => format!("{} ago (switch off)", crate::model::duration::human_age(a)),
        (None, _) => "never".into(),
    };
    let _ = writeln!(*o, "heartbeat:  {hb}");
    if let Some(e) = &d.config_error {
        let from = d.config_from.map_or(String::new(), |t| {
            format!(" from {}", crate::model::record::ts(t))
        });
        let _ = writeln!(
            *o,
            "daemon config error (running the last good config{from}): {e}"
        );
    }
    if let Some(e) = &d.state_error {
        let _ = writeln!(*o, "STATE ERROR: {e}");
    }
    if let Some(why) = &d.unstable {
        let _ = writeln!(*o, "UNSTABLE: {why}");
    } else if let Some(c) = &d.previous_crash {
        let _ = writeln!(
            *o,
            "previous:   the daemon before this one (pid {}, started {}) did not exit cleanly{}: {}",
            c.pid,
            crate::model::record::ts(c.started),
            c.died
                .map(|t| format!(", died {}", crate::model::record::ts(t)))
                .unwrap_or_default(),
            c.cause
        );
    }
    if let Some(t) = d.not_responding_since {
        let _ = writeln!(
            *o,
            "NOT RESPONDING: no answer to ctrl's heartbeat of {} (stopped or hung)",
            crate::model::record::ts(t)
        );
    }
}

/// One line per job: schedule, next due, runs in flight, the last result.
fn jobs_table(o: &mut String, jobs: &[JobStatus], s: &crate::app::term::Style) {
    use std::fmt::Write as _;
    let _ = writeln!(
        *o,
        "{:<24} {:<22} {:<20} {:>7} {:<12} {:>9} WHEN",
        "JOB", "SCHEDULE", "NEXT DUE", "RUNNING", "LAST", "RUNTIME"
    );
    let now = Utc::now();
    for j in jobs {
        let next = j.next_due.map_or("-".into(), |n| {
            n.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        });
        let (last, runtime, when) = match &j.last {
            Some(l) => (
                l.outcome.map_or("?", |o| o.as_str()).to_string(),
                l.duration_s.map_or("-".into(), |d| format!("{d:.1}s")),
                l.finished.map_or("-".into(), |f| {
                    format!(
                        "{} ago",
                        crate::model::duration::human_age((now - f).num_seconds() as f64)
                    )
                }),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let colour = findings::outcome_colour(j.last.as_ref().and_then(|l| l.outcome));
        let _ = writeln!(
            *o,
            "{:<24} {:<22} {:<20} {:>7} {} {:>9} {}",
            j.name,
            j.schedule,
            next,
            j.running.len(),
            match colour {
                Some(c) => s.paint(c, &format!("{last:<12}")),
                None => format!("{last:<12}"),
            },
            runtime,
            when
        );
    }
}

/// The Python environments under the jobs' table.
fn envs_table(o: &mut String, envs: &[crate::model::env::EnvState]) {
    use std::fmt::Write as _;
    if envs.is_empty() {
        return;
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<34} {:<9} {:<5} {:>8} {:<20} JOBS",
        "ENVIRONMENT", "STATE", "TOOL", "BUILD", "BUILT"
    );
    for e in envs {
        let state = serde_json::to_value(e.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{:<34} {:<9} {:<5} {:>8} {:<20} {}",
            e.key,
            state,
            e.tool.as_deref().unwrap_or("-"),
            e.duration_s.map_or("-".into(), |d| format!("{d:.1}s")),
            e.built.map_or("-".into(), |b| b
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()),
            e.jobs.join(", ")
        );
        match &e.builder {
            Some(b) => {
                let _ = writeln!(o, "  from {}, built as {b}", e.source.display());
            }
            None => {
                let _ = writeln!(o, "  from {}", e.source.display());
            }
        }
        if let Some(err) = &e.error {
            // The end of the build's log: what the installers printed, steered by the job
            // user's pip config; shown, never executed, on the admin's terminal.
            for line in err.lines() {
                let _ = writeln!(o, "  {}", crate::app::term::sanitize(line));
            }
        }
    }
}

fn check_config(path: &Path) -> i32 {
    let cfg = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = crate::service::security::check(&cfg) {
        eprintln!("robotmk-daemon: {e}");
        return 2;
    }
    // Printed first, the resolved view after: what the problems are about is in it.
    let runs_can_start = findings::print_check(&cfg);
    print_daemon(&cfg, runs_can_start);
    let build_user = print_build_user(&cfg);
    print_limits(&cfg);
    print_shared_envs(&cfg, &build_user);
    let now = Utc::now();
    for j in &cfg.jobs {
        print_job(j, now);
    }
    if runs_can_start {
        0
    } else {
        2
    }
}

/// `check-config`: the daemon's settings as they will be in force; whether runs can start
/// as the checks before found.
fn print_daemon(cfg: &crate::model::config::Config, runs_can_start: bool) {
    let d = &cfg.daemon;
    if runs_can_start {
        println!("config {} is valid", cfg.path.display());
    } else {
        println!(
            "config {} parses, but runs will fail (errors above)",
            cfg.path.display()
        );
    }
    println!("instance:          {}", d.instance);
    println!("state_dir:         {}", d.state_dir.display());
    println!(
        "heartbeat_timeout: {}",
        d.heartbeat_timeout
            .map_or("off".into(), crate::model::duration::format)
    );
    println!(
        "max_parallel:      {}",
        if d.max_parallel == 0 {
            "no limit".into()
        } else {
            d.max_parallel.to_string()
        }
    );
    println!("keep_runs:         {}", d.keep_runs);
    println!(
        "stop_grace:        {}",
        crate::model::duration::format(d.stop_grace)
    );
    println!(
        "hang_timeout:      {}",
        d.hang_timeout.map_or(
            "off (a hung daemon is reported, never replaced)".into(),
            |t| format!(
                "{} (a daemon not answering this long is replaced)",
                crate::model::duration::format(t)
            )
        )
    );
    print_time_zone();
    println!(
        "environments:      built with {}, env_build_timeout {}",
        d.uv.as_ref()
            .map_or("python -m venv + pip".into(), |u| format!(
                "uv ({})",
                u.display()
            )),
        crate::model::duration::format(d.env_build_timeout)
    );
}

/// `check-config`: the zone cron schedules are evaluated in. A daemon ctrl or `start`
/// launches takes the host's zone; this shell's `TZ` reaches only `start --foreground`.
fn print_time_zone() {
    println!(
        "cron time:         local time, {}",
        crate::service::zone::host()
    );
    if let Some(tz) = crate::service::zone::tz_env() {
        println!(
            "                   (TZ={tz} here is not passed on to a daemon ctrl or start launches; \
             it applies to start --foreground, and to the next due times below)"
        );
    }
}

/// `check-config`: who builds the environments of jobs without a `user` — looked up (and
/// said) only when some job needs it; the lookup's result decides the environments' keys.
fn print_build_user(
    cfg: &crate::model::config::Config,
) -> Result<crate::model::user::UserInfo, String> {
    let d = &cfg.daemon;
    // Who builds them: looked up only when some job's environment needs the build user.
    let needs_build_user = sys::is_root()
        && cfg
            .jobs
            .iter()
            .any(|j| j.pyenv.is_some() && j.user.is_none() && !j.user_deferred);
    let build_user = if needs_build_user {
        crate::service::pyenv::resolve_build_user(&d.build_user)
    } else {
        Err(String::new())
    };
    if needs_build_user {
        match &build_user {
            Ok(u) => println!(
                "build_user:        {} (environments of jobs without a `user` are built as it)",
                crate::service::pyenv::builder_label(u)
            ),
            Err(e) => {
                println!("build_user:        {} (missing)", d.build_user);
                eprintln!("robotmk-daemon: warning: {e}");
            }
        }
    }
    build_user
}

/// `check-config`: result limits, start delay and the number of jobs.
fn print_limits(cfg: &crate::model::config::Config) {
    let d = &cfg.daemon;
    println!(
        "results:           read up to {} bytes each, within {} per run",
        d.result_limits.max_bytes,
        crate::model::duration::format(d.result_limits.max_time)
    );
    if !d.start_delay.is_zero() {
        println!(
            "start_delay:       {} after boot",
            crate::model::duration::format(d.start_delay)
        );
    }
    println!("jobs:              {}", cfg.jobs.len());
}

/// `check-config`: which jobs share which environment.
fn print_shared_envs(
    cfg: &crate::model::config::Config,
    build_user: &Result<crate::model::user::UserInfo, String>,
) {
    // Which jobs share which environment: same file content and interpreter, one build.
    let mut shared: std::collections::BTreeMap<String, (String, Vec<&str>)> = Default::default();
    for j in &cfg.jobs {
        if let Some(e) = &j.pyenv {
            let builder = crate::service::pyenv::builder_for(j.user.as_deref(), build_user);
            // A held job's environment is its user's, built once the user is back.
            let key = match builder {
                _ if j.user_deferred => "(none while the job is held)".into(),
                Ok(b) => crate::service::pyenv::key_of(e, b.map(|u| u.uid))
                    .unwrap_or_else(|err| format!("unreadable ({err})")),
                Err(_) => "(no build user)".into(),
            };
            shared
                .entry(key)
                .or_insert_with(|| (format!("{} ({})", e.source.display(), e.python), Vec::new()))
                .1
                .push(&j.name);
        }
    }
    for (key, (from, jobs)) in &shared {
        println!("environment {key}: {from}; jobs: {}", jobs.join(", "));
    }
}

/// `check-config`: one job as it will run, with its next three due times.
fn print_job(j: &crate::model::config::Job, now: chrono::DateTime<Utc>) {
    println!();
    println!("job {}", j.name);
    println!(
        "  command:  {}",
        j.command
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("  schedule: {}", j.schedule);
    println!("  timeout:  {}", crate::model::duration::format(j.timeout));
    println!(
        "  overlap:  {}, catch_up: {}",
        findings::word(j.overlap),
        findings::word(j.catch_up)
    );
    if let Some(u) = &j.user {
        // As looked up by this build (see docs/SECURITY.md): what the runs will get.
        let groups: Vec<String> = u.groups.iter().map(u32::to_string).collect();
        println!(
            "  user:     {} (uid {}, gid {}, groups {}, home {})",
            u.name,
            u.uid,
            u.gid,
            groups.join(","),
            u.home.display()
        );
    }
    if let Some(w) = j.working_dir() {
        println!("  working_dir: {}", w.display());
    }
    if let Some(r) = &j.result {
        println!("  result:   {r}");
    }
    if let Some(e) = &j.pyenv {
        println!(
            "  {}: {} (python {})",
            e.kind.as_str(),
            e.source.display(),
            e.python
        );
    }
    if j.attempts > 1 {
        println!("  attempts: {} (merged with rebot)", j.attempts);
    }
    if j.services == crate::model::config::Services::PerTest {
        let lvl = |d: Option<Duration>| d.map_or("-".into(), crate::model::duration::format);
        println!(
            "  services: per-test (runtime levels {} / {})",
            lvl(j.test_runtime_warn()),
            lvl(j.test_runtime_crit())
        );
    }
    let next: Vec<String> = j
        .schedule
        .upcoming(now, 3)
        .into_iter()
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .collect();
    println!("  next due: {}", next.join(", "));
}

fn run_once(path: &Path, name: &str) -> i32 {
    let cfg = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(job) = cfg.jobs.iter().find(|j| *j.name == *name) else {
        let names: Vec<&str> = cfg.jobs.iter().map(|j| &*j.name).collect();
        eprintln!(
            "robotmk-daemon: no job {name:?} in {}; jobs: {}",
            cfg.path.display(),
            names.join(", ")
        );
        return 2;
    };
    // Runs the config's command as this (root) user: the same check as the daemon's.
    if let Err(e) = crate::service::security::check(&cfg) {
        eprintln!("robotmk-daemon: {e}");
        return 2;
    }
    sys::set_private_umask();
    // With no daemon running, this process becomes a one-shot daemon, with the daemon's
    // spawner (the reaper of what the run leaves behind, too).
    crate::app::once::run(&cfg, &job.name, path)
}

#[cfg(test)]
mod tests {
    /// A failed build's error holds the end of its log, which the job user's pip config can
    /// steer: C1 controls (CSI U+009B, OSC U+009D) are shown, not sent to the terminal.
    #[test]
    fn a_build_error_reaches_the_terminal_as_text() {
        let env: crate::model::env::EnvState = serde_json::from_value(serde_json::json!({
            "key": "k", "source": "/r.txt", "kind": "requirements", "python": "python3",
            "state": "failed", "error": "pip failed\n\u{9b}2J\u{9d}0;owned\u{7}",
        }))
        .unwrap();
        let mut o = String::new();
        super::envs_table(&mut o, &[env]);
        assert!(!o.chars().any(|c| c.is_control() && c != '\n'), "{o:?}");
        assert!(o.contains("\\x9b2J\\x9d0;owned\\x07"), "{o}");
    }
}
