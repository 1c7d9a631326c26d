//! The command line: clap definitions, the dispatch to each command (in [`crate::app`]), and
//! the argument adapters of the three internal commands the daemon runs; completions and the
//! man page in [`crate::cli::completions`].

mod args;
mod completions;

pub use args::{Cli, Command};

use crate::app::{ctrl, daemon};
use crate::service::config::{self};
use crate::service::sys;
use std::path::{Path, PathBuf};

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
        } => crate::app::start_stop::start(&path, run_flag),
        Command::Daemon { route, run_flag } => daemon::run(daemon::Options {
            config: path,
            route,
            run_flag,
            foreground: false,
            oneshot: None,
        }),
        Command::Stop { now, timeout } => crate::app::start_stop::stop(&path, now, timeout),
        Command::Status { json } => crate::app::status::status(&path, json),
        Command::CheckConfig => crate::app::check_config::check_config(&path),
        Command::RunOnce { job } => crate::app::once::command(&path, &job),
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
