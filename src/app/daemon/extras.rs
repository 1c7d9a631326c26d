//! What the daemon adds to a finished run besides robot's result: a `kind = "plugin"` job's
//! reading of its plugin (state, summary, details, metrics: [`crate::logic::nagios`]), the first line
//! a failed command printed, and the published log ([`crate::service::publish`]). Done by the
//! finisher, after the result is read and before the record is written; nothing here can
//! lose a run: what fails becomes a note on it.

use crate::logic::nagios;
use crate::logic::robot::RunFolder;
use crate::model::config::Config;
use crate::model::record::{Outcome, RunRecord, STDERR_FILE, STDOUT_FILE};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Longest first line of a failed command shown.
const MAX_HEAD: usize = 300;
/// What is read of a failed command's output to find its first line.
const HEAD_READ: u64 = 64 * 1024;
/// Longest note about what was not published.
const MAX_SKIPPED_NOTE: usize = 300;

/// What a job's finished runs get besides robot's result.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras {
    /// A plugin job: the state a timed-out run gets.
    pub(crate) plugin_timeout_state: Option<u8>,
    pub(crate) publish: Option<Arc<crate::service::publish::Settings>>,
}

impl Extras {
    /// The extras of `job` under `cfg` (none for a job no longer configured).
    pub(crate) fn of(cfg: &Config, job: &str) -> Extras {
        let Some(j) = cfg.jobs.iter().find(|j| *j.name == *job) else {
            return Extras::default();
        };
        Extras {
            plugin_timeout_state: j.plugin.as_ref().map(|p| p.timeout_state),
            publish: cfg.daemon.publish.as_ref().map(|p| {
                Arc::new(crate::service::publish::Settings {
                    dir: p.dir.clone(),
                    url: p.url.clone(),
                    instance: cfg.daemon.instance.clone(),
                    keep: cfg.daemon.keep_runs,
                    caps: Default::default(),
                })
            }),
        }
    }
}

/// Adds the extras to an ended record whose result has been read.
pub(crate) fn apply(rec: &mut RunRecord, extras: &Extras, folder: &dyn RunFolder) {
    if let Some(timeout_state) = extras.plugin_timeout_state {
        match plugin_output(rec, timeout_state) {
            Ok(out) => rec.plugin = out.map(Box::new),
            // What the plugin said is unknown: never judged from an output not read.
            Err(why) => {
                if matches!(rec.outcome, Some(Outcome::Success | Outcome::Failure)) {
                    rec.outcome = Some(Outcome::Error);
                }
                add_note(rec, format!("the plugin's output was not read: {why}"));
            }
        }
    } else if rec.result.is_none()
        && rec.tests.is_none()
        && matches!(rec.outcome, Some(Outcome::Failure | Outcome::Timeout))
    {
        rec.output_head = first_line(&rec.run_dir);
    }
    if let (Some(s), Some(_)) = (&extras.publish, &rec.log) {
        match crate::service::publish::publish(s, rec, folder) {
            Ok(out) if !out.skipped.is_empty() => {
                let mut text = out.skipped.join("; ");
                crate::model::clip::clip(&mut text, MAX_SKIPPED_NOTE);
                add_note(rec, format!("published without {text}"));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(job = %rec.job, "run {} not published: {e}", rec.run_id);
                add_note(rec, format!("log not published: {e}"));
            }
        }
    }
}

fn add_note(rec: &mut RunRecord, note: String) {
    rec.note = Some(match rec.note.take() {
        Some(n) => format!("{n}; {note}"),
        None => note,
    });
}

/// What the plugin said, for a run that ran (a run that could not start, or was ended by a
/// stop, is judged by its outcome like any other).
/// `Err`: the daemon could not read it, in words naming the cause.
fn plugin_output(
    rec: &RunRecord,
    timeout_state: u8,
) -> Result<Option<nagios::PluginOutput>, String> {
    let Some(outcome) = rec.outcome else {
        return Ok(None);
    };
    let (state, reason) = match outcome {
        Outcome::Success | Outcome::Failure => nagios::state_of_exit(rec.exit_code, rec.signal),
        Outcome::Timeout => (
            timeout_state,
            Some(format!(
                "the plugin did not finish within its timeout of {} and was ended",
                crate::model::duration::format(rec.timeout())
            )),
        ),
        _ => return Ok(None),
    };
    let stdout = match open_capped(&rec.run_dir.join(STDOUT_FILE), nagios::MAX_STDOUT) {
        Err(e) if crate::service::sys::descriptors::mark(&e) => {
            return Err(crate::service::sys::descriptors::words())
        }
        read => read.unwrap_or_default(),
    };
    Ok(Some(nagios::parse(&stdout, state, reason)))
}

/// The start of a file of the run folder (root's: the runner's stdout and stderr), as text,
/// decoded as Checkmk decodes a plugin's lines (UTF-8, else Latin-1: [`nagios::decode`]).
fn read_capped(path: &Path, cap: u64) -> String {
    open_capped(path, cap).unwrap_or_default()
}

/// As [`read_capped`], with the error of the open.
fn open_capped(path: &Path, cap: u64) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let f = crate::service::sys::file::open_read(path)?;
    // One byte past the cap tells whether the output goes on (its last character may then
    // be cut in two).
    let _ = f.take(cap.saturating_add(1)).read_to_end(&mut buf);
    let cut = buf.len() as u64 > cap;
    buf.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    Ok(nagios::decode(&buf, cut))
}

/// The first non-blank line of the run's stderr, else of its stdout.
fn first_line(run_dir: &Path) -> Option<String> {
    [STDERR_FILE, STDOUT_FILE].iter().find_map(|name| {
        let text = read_capped(&run_dir.join(name), HEAD_READ);
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        let mut line = line.to_string();
        crate::model::clip::clip(&mut line, MAX_HEAD);
        Some(line)
    })
}
