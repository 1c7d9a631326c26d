//! What `check-config` looks at on the host beyond the parse: whether each job's program,
//! suite and Python environment are there so that its first run can start (problems: the
//! config is valid but will fail), and warnings that need the host (a config with secrets
//! readable by others, a state dir in a temporary folder) added to the config's own
//! ([`crate::logic::config::warnings`]). The daemon logs the warnings once when it starts, and
//! `status` shows them under its table.

use crate::model::config::{Config, Job};
use crate::model::env::SourceKind;
use crate::service::sys;
use chrono::Utc;
use std::path::{Path, PathBuf};

/// What the daemon's log lines of these warnings start with.
pub(crate) const LOG_MARK: &str = "config warning: ";

/// What the host says about a valid config.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Each will make runs fail: `check-config` exits 2 on any.
    pub(crate) problems: Vec<String>,
    /// Runs work, but not as the admin likely meant.
    pub(crate) warnings: Vec<String>,
}

/// Looks at `cfg` on this host.
pub(crate) fn check(cfg: &Config) -> Findings {
    let mut f = Findings {
        problems: Vec::new(),
        warnings: crate::logic::config::warnings(cfg, Utc::now()),
    };
    for j in &cfg.jobs {
        job_problems(cfg, j, &mut f.problems);
    }
    f.warnings.extend(warnings(cfg));
    f
}

/// The warnings only, for the daemon's log and `status` (no program lookups).
pub(crate) fn warnings_of(cfg: &Config) -> Vec<String> {
    let mut w = crate::logic::config::warnings(cfg, Utc::now());
    w.extend(warnings(cfg));
    w
}

fn warnings(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = cfg
        .users_held
        .iter()
        .map(|(job, why)| format!("job {job} is held, not run, while {why}"))
        .collect();
    if cfg.jobs.iter().any(|j| j.argument_file().is_some()) {
        if let Some(mode) = std::fs::metadata(&cfg.path)
            .ok()
            .and_then(|m| sys::others_may_read(&m))
        {
            out.push(format!(
                "{} holds `variables` (often passwords) and is readable by other users (mode {mode:03o}); chmod 600 {}",
                cfg.path.display(),
                cfg.path.display()
            ));
        }
    }
    if let Some(tmp) = temporary_folder(&cfg.daemon.state_dir) {
        out.push(format!(
            "state_dir {} is in the temporary folder {}: the run history is lost at reboot or when the folder is cleaned; set `state_dir` to a folder such as {}",
            cfg.daemon.state_dir.display(),
            tmp.display(),
            sys::default_state_base()
                .join("robotmk-daemon")
                .join(&cfg.daemon.instance)
                .display()
        ));
    }
    out
}

/// The temporary folder `dir` is in, if any (`/tmp`, `/var/tmp`, `/dev/shm`, `$TMPDIR`).
fn temporary_folder(dir: &Path) -> Option<PathBuf> {
    let mut temps: Vec<PathBuf> = vec![std::env::temp_dir()];
    temps.extend(crate::service::sys::TEMP_DIRS.iter().map(PathBuf::from));
    temps
        .into_iter()
        .find(|t| t.is_absolute() && dir.starts_with(t))
}

/// robot's argv in a job's command (inside the retry wrapper when it has one).
fn robot_argv(job: &Job) -> Vec<&str> {
    let argv: Vec<&str> = job.command.iter().collect();
    if argv.get(1) == Some(&"robot-attempts") {
        if let Some(i) = argv.iter().position(|a| *a == "--") {
            return argv[i + 1..].to_vec();
        }
    }
    argv
}

fn job_problems(cfg: &Config, j: &Job, out: &mut Vec<String>) {
    let argv = robot_argv(j);
    let file = cfg.path.display();
    if j.robot {
        if let Some(suite) = argv.last() {
            if std::fs::metadata(suite).is_err() {
                out.push(format!(
                    "job {:?}: the suite {suite} does not exist; fix `suite` in {file}",
                    j.name
                ));
            }
        }
    }
    match &j.pyenv {
        // The environment brings robot; its base interpreter and file must be right.
        Some(e) => {
            if let Err(why) = program(&e.python, j) {
                out.push(format!(
                    "job {:?}: python {} {why}; fix `python` in {file}",
                    j.name, e.python
                ));
            }
            if let Some(why) = lacks_robotframework(&e.source, e.kind) {
                out.push(format!(
                    "job {:?}: {} {why}; the job runs the environment's `robot`: add a line `robotframework` to it",
                    j.name,
                    e.source.display()
                ));
            }
        }
        None => {
            let Some(&first) = argv.first() else { return };
            if first.contains('{') {
                return; // a placeholder: known at run time only
            }
            if let Err(why) = program(first, j) {
                let key = if !j.robot {
                    "`command`'s first element"
                } else if argv.get(1) == Some(&"-m") {
                    "`python`"
                } else {
                    "`robot` (or `python`)"
                };
                out.push(format!(
                    "job {:?}: {first:?} {why}; fix {key} in {file}",
                    j.name
                ));
            }
        }
    }
}

/// Why a program cannot be started, in words that follow its name.
#[derive(Debug, thiserror::Error)]
enum Unstartable {
    #[error("does not exist")]
    Missing,
    #[error("cannot be read: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error("is not a file")]
    NotAFile,
    #[error("is not executable; chmod +x {}", .0.display())]
    NotExecutable(PathBuf),
    #[error("is not found on PATH ({0}); name it by its full path")]
    NotOnPath(String),
}

/// Whether `p` can be started: a path must be an executable file; a bare name is looked up on
/// the PATH the runs get (`logic::run_env`: the job's `env.PATH`, else the default one of a
/// run as another user, else this process's).
fn program(p: &str, job: &Job) -> Result<PathBuf, Unstartable> {
    let path = Path::new(p);
    if path.components().count() > 1 {
        return executable(path).map(|_| path.to_path_buf());
    }
    let var = crate::logic::run_env::run_path(job.env(), job.user.is_some())
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    for d in std::env::split_paths(&var) {
        for c in [
            d.join(p),
            d.join(format!("{p}{}", std::env::consts::EXE_SUFFIX)),
        ] {
            if executable(&c).is_ok() {
                return Ok(c);
            }
        }
    }
    Err(Unstartable::NotOnPath(var.to_string_lossy().into_owned()))
}

fn executable(path: &Path) -> Result<(), Unstartable> {
    let m = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Unstartable::Missing,
        _ => Unstartable::Unreadable(e),
    })?;
    if !m.is_file() {
        return Err(Unstartable::NotAFile);
    }
    if !sys::mode_executable(&m) {
        return Err(Unstartable::NotExecutable(path.to_path_buf()));
    }
    Ok(())
}

/// Why an environment file does not name Robot Framework, if it plainly does not (a file that
/// includes others, or names projects by path or URL, is given the benefit of the doubt).
fn lacks_robotframework(source: &Path, kind: SourceKind) -> Option<String> {
    let bytes =
        sys::file::read(source, sys::file::cap::ENV_SOURCE, sys::file::Links::Follow).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let names: Vec<String> = match kind {
        SourceKind::Requirements => {
            let mut names = Vec::new();
            for line in text.lines() {
                let line = line.split(" #").next().unwrap_or("").trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if line.starts_with("-r")
                    || line.starts_with("--requirement")
                    || line.starts_with("-e")
                    || line.starts_with("--editable")
                    || line.starts_with('.')
                    || line.starts_with('/')
                    || line.contains("://")
                {
                    return None;
                }
                if line.starts_with('-') {
                    continue; // --index-url, --find-links, …
                }
                names.push(line.to_string());
            }
            names
        }
        SourceKind::Pyproject => {
            let doc: toml::Table = toml::from_str(&text).ok()?;
            let deps = doc.get("project")?.get("dependencies")?.as_array()?;
            deps.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        }
    };
    let named = names.iter().any(|n| {
        let name: String = n
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        name.to_ascii_lowercase().replace(['_', '.'], "-") == "robotframework"
    });
    (!named).then(|| match kind {
        SourceKind::Requirements => "does not list `robotframework`".to_string(),
        SourceKind::Pyproject => {
            "does not list `robotframework` in [project].dependencies".to_string()
        }
    })
}
