//! The config file parsed from its text to a validated spec, without I/O.
//!
//! Two stages, as in ripgrep's flags: `Raw*` types mirror the TOML exactly (serde with
//! `deny_unknown_fields`, spans kept where validation needs them), then [`Config`] holds what
//! the daemon acts on, with defaults applied and every cross-field rule checked. Every error
//! names the file, line, column and field so an admin can fix it without guessing.
//!
//! What only the host can tell — a job's user, whether an environment file is readable,
//! where uv is, this program's path, the default state dir — is not looked at here: the
//! parse hands it over as [`Need`]s, each with its place in the file, and
//! `service::config::prepare` does the looking (so that a failure there is reported at the
//! line and field that asked for it).

mod daemon;
mod job;
mod locate;

pub use job::check_host;
pub(crate) use locate::{daemon_block, daemon_table, location};

use crate::model::config::{Config, ConfigError};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// Longest accepted job or instance name: names become file and unit names.
const MAX_NAME_LEN: usize = 64;

/// The program a retry wrapper runs until the preparation step knows this program's path
/// (see [`Need::SelfExe`]), and what it stays when that cannot be found.
pub(crate) const SELF_EXE_FALLBACK: &str = "robotmk-daemon";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    daemon: Option<Spanned<daemon::RawDaemon>>,
    #[serde(default)]
    job: Vec<Spanned<job::RawJob>>,
}

/// A config parsed and validated from its text, with what only the host can tell still to be
/// done ([`Need`]s, in the order of the file).
#[derive(Debug)]
pub(crate) struct Draft {
    /// Complete but for the needs: the default state dir empty, uv not found yet, jobs'
    /// users not looked up (`user_deferred`), retry wrappers run [`SELF_EXE_FALLBACK`].
    pub(crate) config: Config,
    pub(crate) needs: Vec<Need>,
}

/// What the preparation step looks up or reads (each is I/O).
#[derive(Debug)]
pub(crate) enum Need {
    /// No `state_dir`: the OS default for the instance (`$MK_VARDIR`, the agent's, …).
    DefaultStateDir,
    /// uv: the program named (it must be there), or (`None`) on PATH if the host has it.
    Uv { named: Option<(PathBuf, Place)> },
    /// The user the `job`th job runs as: looked up (or left deferred), and the daemon must be
    /// root.
    User {
        job: usize,
        name: String,
        place: Place,
    },
    /// The `job`th job's environment file must be readable now (a typo is a config error,
    /// not a failed build at 3 am).
    EnvSource { job: usize, place: Place },
    /// The `job`th job's retry wrapper is this very program (its first argument).
    SelfExe { job: usize },
}

/// Where in the file a need came from: the error its failure becomes (line, column, field,
/// the job's name), waiting for its message.
#[derive(Debug, Clone)]
pub(crate) struct Place(ConfigError);

impl Place {
    /// The error `message` at this place.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> ConfigError {
        ConfigError {
            message: format!("{}{message}", self.0.message),
            ..self.0.clone()
        }
    }
}

/// An error about the file as a whole (no line).
pub(crate) fn plain(path: &Path, message: String) -> ConfigError {
    ConfigError {
        path: path.to_path_buf(),
        line: None,
        column: None,
        field: None,
        message,
    }
}

/// Drops `.` and `..` from `path` lexically (no symlinks are resolved), so paths in messages
/// and records read as the admin expects. The caller makes it absolute first.
pub(crate) fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Locates errors in `text` by byte offset.
pub(crate) struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn at(&self, offset: usize, field: Option<String>, message: impl Into<String>) -> ConfigError {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ConfigError {
            path: self.path.to_path_buf(),
            line: Some(line),
            column: Some(column),
            field,
            message: message.into(),
        }
    }

    /// The key written on the line at `offset` (`every` in `every = "5x"`), to name the field
    /// in serde errors that only carry a span.
    fn key_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let line = &self.text[line_start..line_end];
        let (key, _) = line.split_once('=')?;
        let key = key.trim().trim_matches('"');
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        valid.then(|| key.to_string())
    }
}

/// Parses and validates config text. `path` is used for messages; relative paths in the file
/// are relative to `base` (the config's folder, absolute); `now` is when a cron job's default
/// timeout (its interval) is measured.
pub(crate) fn parse(
    path: &Path,
    base: &Path,
    text: &str,
    now: DateTime<Utc>,
) -> Result<Draft, ConfigError> {
    let loc = Locator { path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        let field = e.span().and_then(|s| loc.key_at(s.start));
        loc.at(start, field, e.message().trim().to_string())
    })?;
    let mut needs = Vec::new();
    let daemon = daemon::resolve_daemon(&loc, raw.daemon, base, &mut needs)?;
    let mut jobs = Vec::with_capacity(raw.job.len());
    for (i, job) in raw.job.into_iter().enumerate() {
        let job = job::resolve(&loc, i, job, base, now, &mut needs)?;
        jobs.push(Arc::new(job));
    }
    let mut seen = HashSet::new();
    for (i, job) in jobs.iter().enumerate() {
        if !seen.insert(job.name.clone()) {
            // Re-locate the duplicate: the resolved job no longer carries its span.
            let offset = nth_name_offset(text, &job.name, 2).unwrap_or(0);
            return Err(loc.at(
                offset,
                Some(format!("job[{i}].name")),
                format!(
                    "duplicate job name {:?}; job names must be unique",
                    job.name
                ),
            ));
        }
    }
    let config = Config {
        path: path.to_path_buf(),
        daemon,
        jobs,
    };
    Ok(Draft { config, needs })
}

/// Byte offset of the `n`th `name = "<value>"` line (1-based `n`).
fn nth_name_offset(text: &str, value: &str, n: usize) -> Option<usize> {
    let mut count = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            if k.trim() == "name" && v == value {
                count += 1;
                if count == n {
                    return Some(offset + line.len() - line.trim_start().len());
                }
            }
        }
        offset += line.len();
    }
    None
}

/// Checks a job or instance name: it becomes a folder and a systemd unit name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a usable name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; use only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}
