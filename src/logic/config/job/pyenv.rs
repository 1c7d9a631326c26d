//! A robot job's Python environment (`requirements` or `pyproject`): checked here, built by
//! the daemon later; the file's readability is a `Need` for the preparation step. Pure.

use super::command::program;
use super::raw::{At, RawJob};
use crate::logic::config::base::{lexical, Need};
use crate::model::config::ConfigError;
use crate::model::env::{EnvSpec, SourceKind};
use std::path::Path;

/// The Python environment of a robot job (`requirements` or `pyproject`), checked: `robot`
/// cannot name another runner, and the file must be readable now (a typo is a config error,
/// not a failed build at 3 am: the preparation step reads it, see `Need::EnvSource`).
pub(super) fn python_env(
    at: &At,
    raw: &RawJob,
    base: &Path,
    needs: &mut Vec<Need>,
) -> Result<Option<EnvSpec>, ConfigError> {
    let (file, kind, key) = match (&raw.requirements, &raw.pyproject) {
        (None, None) => return Ok(None),
        (Some(_), Some(p)) => {
            let m = "set either `requirements` or `pyproject`, not both";
            return Err(at.err(p.span().start, "pyproject", m));
        }
        (Some(r), None) => (r, SourceKind::Requirements, "requirements"),
        (None, Some(p)) => (p, SourceKind::Pyproject, "pyproject"),
    };
    if raw.robot.is_some() {
        return Err(at.err(
            file.span().start,
            "robot",
            format!(
                "`robot` cannot be combined with `{key}`: the job runs the environment's robot (`python` names the interpreter the environment is built from)"
            ),
        ));
    }
    needs.push(Need::EnvSource {
        job: at.index,
        place: at.place(file.span().start, key),
    });
    let python = match &raw.python {
        Some(p) => program(p, base),
        None if cfg!(windows) => "python".into(),
        None => "python3".into(),
    };
    Ok(Some(EnvSpec {
        source: lexical(&base.join(file.get_ref())),
        kind,
        python,
        shared: raw.user.is_some(),
        job_env: raw.user.is_some().then(|| raw.env.clone()),
    }))
}
