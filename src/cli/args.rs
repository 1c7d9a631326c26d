//! The command line's clap definitions: every subcommand and option, with the help text that
//! `--help`, the completions and the man page show.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Runs Robot Framework suites (or any command) on their own schedules, detached from the
/// Checkmk agent. Copied or linked under a name ending in `ctrl` and run without arguments, it
/// acts as `ctrl`.
#[derive(Debug, Parser)]
#[command(name = "robotmk-daemon", version = crate::model::BUILD_ID)]
pub struct Cli {
    /// Config file [default: $ROBOTMK_DAEMON_CONFIG, else $MK_CONFDIR/robotmk-daemon.toml, else
    /// /etc/check_mk/robotmk-daemon.toml (Windows: C:\ProgramData\checkmk\agent\config\)]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// For the agent: refresh the heartbeat, start the daemon if none runs, print the agent
    /// sections. Exit 0 whenever it printed them.
    Ctrl,
    /// Start the daemon detached (a no-op if it runs). Without the agent calling ctrl it exits
    /// after `heartbeat_timeout`. Exit 0 started or running, 1 failed.
    Start {
        /// Run the daemon in this process, logging to stderr too.
        #[arg(long)]
        foreground: bool,
        /// Exit when this file disappears (the Checkmk agent's extension contract).
        #[arg(long, value_name = "FILE")]
        run_flag: Option<PathBuf>,
    },
    /// Ask the daemon to stop: start no new run, wait for runs in flight. Exit 0 stopped or not
    /// running, 1 still running after the timeout.
    Stop {
        /// End runs in flight (their whole process trees) instead of waiting for them.
        #[arg(long)]
        now: bool,
        /// How long to wait for the daemon to exit.
        #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_dur)]
        timeout: Duration,
    },
    /// Daemon and per-job state; when and why the daemon last stopped (`stop`, heartbeat
    /// silence, a crash, an upgrade); the pauses in force; the config's warnings as notes.
    /// Exit 0 running, 3 not running, 2 config error, 4 cannot tell (the state dir cannot be
    /// read: run as root).
    Status {
        /// Print JSON for scripts instead of a table (with `paused`, `config_warnings` and
        /// `daemon.last_stopped`).
        #[arg(long)]
        json: bool,
    },
    /// Validate the config, check that each job's suite, program and Python environment are
    /// there (errors) and what will not do what you meant (warnings, on stderr), and print the
    /// resolved jobs and their next due times. Exit 0 valid, 2 invalid or runs would fail.
    CheckConfig,
    /// Run one job now in the foreground and record it like a scheduled run. Exit 0 success,
    /// 1 failure, 2 config error, 3 timeout, 4 could not start.
    RunOnce {
        /// The job's name.
        job: String,
    },
    /// A robot job's runner when it has `attempts` > 1: runs the attempts and merges them.
    #[command(hide = true)]
    RobotAttempts {
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long)]
        attempts: u32,
        #[arg(long, value_parser = parse_retry)]
        retry: crate::model::config::Retry,
        /// rebot's argv as a JSON array.
        #[arg(long)]
        rebot_json: String,
        /// robot's argv.
        #[arg(last = true, required = true)]
        robot: Vec<String>,
    },
    /// Reads a Robot Framework result (output.xml or output.json) the way the daemon does and
    /// prints what it found as JSON (for checks and benchmarks).
    #[command(hide = true)]
    ParseResult {
        file: PathBuf,
        /// Print this process's peak RSS (`peak_rss_kib=N`, Linux) to stderr at the end.
        #[arg(long)]
        peak_rss: bool,
    },
    /// A job's recent runs, newest first: due, start, outcome, runtime, tests, attempts, run
    /// id, with a strip of outcomes and a sparkline of runtimes. Exit 0, 2 unknown job.
    History {
        /// The job's name.
        job: String,
        /// How many runs to show.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20)]
        n: usize,
        /// Print the records as JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One run of a job (default: the last) in words, the tail of its output, and where its
    /// log.html and report.html are. Exit 0, 2 unknown job or run.
    Show {
        /// The job's name.
        job: String,
        /// The run id (or a unique start of it), as `history` lists them.
        run: Option<String>,
        /// Lines of stdout and stderr to show.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
        n: usize,
    },
    /// The daemon's log (daemon.log in the state dir, and its rotated files).
    Logs {
        /// Keep printing new lines as the daemon writes them, across rotations (Ctrl-C ends).
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print first.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20)]
        n: usize,
    },
    /// No new runs, for maintenance: of the jobs named, or of all; the daemon keeps running
    /// (a `stop` is undone by the agent's next call, a pause is not), runs in flight go on,
    /// `run-once` still runs a job, and the pause survives a daemon restart. ctrl shows a
    /// paused job as OK, "paused by <user> until <time>", and WARN once the pause is older
    /// than --warn-after; `status` and `history` show it. Root only. Exit 0 paused, 1 not root
    /// or cannot write, 2 unknown job.
    Pause {
        /// End the pause by itself after this long (e.g. 2h); default: until `resume`.
        #[arg(long = "for", value_name = "DUR", value_parser = parse_dur)]
        for_: Option<Duration>,
        /// Show the pause as WARN in Checkmk once it is older than this.
        #[arg(long, value_name = "DUR", default_value = "1d", value_parser = parse_dur)]
        warn_after: Duration,
        /// The jobs to pause; none: all jobs of the instance.
        jobs: Vec<String>,
    },
    /// End a pause: of the jobs named, or (no job) every pause. Root only. Exit 0, 1 not root
    /// or cannot write, 2 unknown job.
    Resume {
        /// The jobs to resume; none: every pause ends.
        jobs: Vec<String>,
    },
    /// Prints the config's job names, one a line (for the shell completions).
    #[command(hide = true)]
    CompleteJobs,
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per command into a folder; the
    /// packages install them.
    #[command(hide = true)]
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Builds one Python environment (started by the daemon; output goes to its build.log).
    #[command(hide = true)]
    EnvBuild {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        source: PathBuf,
        /// `requirements` or `pyproject`.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        python: String,
        /// Build with this uv; without it, `python -m venv` and pip.
        #[arg(long)]
        uv: Option<PathBuf>,
        /// The builder's own folder (a build as another user than the daemon's): the
        /// installers' HOME, caches and TMPDIR, and a scrubbed environment.
        #[arg(long)]
        home: Option<PathBuf>,
    },
    /// The daemon itself, as launched by ctrl (use `start` instead).
    #[command(hide = true)]
    Daemon {
        #[arg(long, default_value = "manual")]
        route: crate::model::status::Route,
        #[arg(long, value_name = "FILE")]
        run_flag: Option<PathBuf>,
    },
}

fn parse_dur(s: &str) -> Result<Duration, crate::model::duration::DurationError> {
    crate::model::duration::parse(s)
}

fn parse_retry(s: &str) -> Result<crate::model::config::Retry, RetryError> {
    match s {
        "failed" => Ok(crate::model::config::Retry::Failed),
        "all" => Ok(crate::model::config::Retry::All),
        _ => Err(RetryError(s.to_string())),
    }
}

/// A `--retry` clap cannot take.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: use \"failed\" or \"all\"")]
struct RetryError(String);
