//! What the parse of every table shares: errors located in the text (line, column, field),
//! the needs left to the host with their place in the file, names, and lexical paths. A leaf:
//! the tables' parsers (daemon, job, locate) import it, it imports none of them.

use crate::model::config::ConfigError;
use std::path::{Path, PathBuf};

/// Longest accepted job or instance name: names become file and unit names.
const MAX_NAME_LEN: usize = 64;

/// Longest `service` name.
pub(super) const MAX_SERVICE_LEN: usize = 200;

/// Longest piggyback host name: Checkmk's (`HostAddress` refuses more than 240 characters,
/// and its agent parser then drops the whole piggyback block), below a DNS name's 253.
pub(super) const MAX_HOST_LEN: usize = 240;

/// The program a retry wrapper runs until the preparation step knows this program's path
/// (see [`Need::SelfExe`]), and what it stays when that cannot be found.
pub(crate) const SELF_EXE_FALLBACK: &str = "robotmk-daemon";

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
pub(crate) struct Place(pub(crate) ConfigError);

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
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Locator<'_> {
    pub(crate) fn at(
        &self,
        offset: usize,
        field: Option<String>,
        message: impl std::fmt::Display,
    ) -> ConfigError {
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
            message: message.to_string(),
        }
    }

    /// The key written on the line at `offset` (`every` in `every = "5x"`), to name the field
    /// in serde errors that only carry a span.
    pub(crate) fn key_at(&self, offset: usize) -> Option<String> {
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

/// Checks a job or instance name: it becomes a folder and a systemd unit name.
pub(crate) fn check_name(name: &str) -> Result<(), ValueError> {
    if name.is_empty() {
        return Err(ValueError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ValueError::NameTooLong);
    }
    if name == "." || name == ".." {
        return Err(ValueError::DotName(name.to_string()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(ValueError::NameChar(name.to_string(), c));
    }
    Ok(())
}

/// A value of the config that breaks its field's rules (the caller adds the file, line and
/// field: see [`Locator::at`]).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ValueError {
    #[error("must not be empty")]
    Empty,
    #[error("longer than {MAX_NAME_LEN} characters")]
    NameTooLong,
    #[error("{0:?} is not a usable name")]
    DotName(String),
    #[error("{0:?} contains {1:?}; a name may use only the ASCII letters a-z and A-Z, the digits 0-9, '_', '.' and '-' (it becomes a folder and a systemd unit name)")]
    NameChar(String, char),
    #[error("`service` must not be empty")]
    ServiceEmpty,
    #[error("`service` {0:?} starts or ends with a space")]
    ServiceSpace(String),
    #[error("`service` is longer than {} characters", MAX_SERVICE_LEN)]
    ServiceTooLong,
    #[error("`service` {0:?} contains {1:?}, which a Checkmk service name of a local check cannot carry")]
    ServiceChar(String, char),
    #[error("`service` {0:?} begins with \"Robotmk \": those names are the daemon's own (its daemon line, each job's and each test's check, of every instance); choose another name, or leave `service` out for \"Robotmk <instance> <job>\"")]
    ServiceReserved(String),
    #[error("`service` {0:?} is nothing to the monitoring core: it drops `;,=!?'\"<>|` and the like from service names, and the spaces around what is left; choose a name with letters or digits")]
    ServiceNothingLeft(String),
    #[error("`host` must not be empty (leave it out for the agent's own host)")]
    HostEmpty,
    #[error("`host` is longer than {} characters", MAX_HOST_LEN)]
    HostTooLong,
    #[error("`host` {0:?} contains {1:?}; a Checkmk host name has only letters, digits, '_', '.' and '-'")]
    HostChar(String, char),
    #[error("`host` {0:?} must start with a letter, digit or '_'")]
    HostStart(String),
    #[error("invalid variable name {0:?}")]
    VariableName(String),
    #[error("variable {0:?}: a value cannot contain line breaks or start or end with spaces (robot's argument file strips them)")]
    VariableValue(String),
    #[error("invalid size {0:?}; write e.g. \"10MB\"")]
    Size(String),
    #[error("invalid size unit {0:?}; use KB, MB or GB")]
    SizeUnit(String),
    #[error("size {0:?} is too small; at least 4KB")]
    SizeTooSmall(String),
}
