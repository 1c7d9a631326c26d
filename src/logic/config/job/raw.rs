//! A `[[job]]` table as serde reads it (`RawJob`, with its `kind`), and a job's place in the
//! file (`At`), through which every check of the job reports its line, field and job. Plain
//! data: touches nothing.

use crate::logic::config::base::{Locator, Place};
use crate::model::config::{CatchUp, ConfigError, Overlap, Retry, Services};
use crate::model::duration::Dur;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

/// The kind of runner a job describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind {
    Command,
    Robot,
    /// A Nagios-compatible plugin: exit code → state, output → summary, details, metrics.
    Plugin,
}

/// A `[[job]]` table as written. Reached only from `logic::config` (this module is private to
/// `job`, which is private to `config`), as before the split.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    pub(super) name: Spanned<String>,
    pub(super) kind: Option<Kind>,
    pub(super) command: Option<Spanned<Vec<String>>>,
    pub(super) suite: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub(super) robot_args: Vec<String>,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, String>,
    pub(super) robot: Option<PathBuf>,
    pub(super) python: Option<PathBuf>,
    pub(super) every: Option<Spanned<Dur>>,
    pub(super) offset: Option<Spanned<Dur>>,
    pub(super) cron: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<Dur>>,
    pub(super) overlap: Option<Overlap>,
    pub(super) catch_up: Option<CatchUp>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) working_dir: Option<PathBuf>,
    pub(super) result: Option<Spanned<String>>,
    pub(super) attempts: Option<Spanned<u32>>,
    pub(super) retry: Option<Retry>,
    pub(super) services: Option<Services>,
    pub(super) test_runtime_warn: Option<Dur>,
    pub(super) test_runtime_crit: Option<Dur>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) runtime_warn: Option<Spanned<Dur>>,
    pub(super) runtime_crit: Option<Spanned<Dur>>,
    pub(super) requirements: Option<Spanned<PathBuf>>,
    pub(super) pyproject: Option<Spanned<PathBuf>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) service: Option<Spanned<String>>,
    pub(super) timeout_state: Option<Spanned<String>>,
}

/// One job's place in the file, so each check reports its line, field and job.
pub(super) struct At<'a> {
    pub(super) loc: &'a Locator<'a>,
    pub(super) index: usize,
    pub(super) name: &'a str,
    /// Where the job's table starts (for a missing key).
    pub(super) start: usize,
}

impl At<'_> {
    fn field(&self, f: &str) -> Option<String> {
        Some(format!("job[{}].{f}", self.index))
    }

    /// The error at `offset`, in field `f`, naming the job.
    pub(super) fn err(
        &self,
        offset: usize,
        f: &str,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        let message = format!("job {:?}: {message}", self.name);
        self.loc.at(offset, self.field(f), message)
    }

    /// Where the preparation step reports a failure of what is at `offset` in field `f`.
    pub(super) fn place(&self, offset: usize, f: &str) -> Place {
        Place(self.err(offset, f, ""))
    }
}
