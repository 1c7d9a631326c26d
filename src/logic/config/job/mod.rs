//! One `[[job]]` table: its raw form, the `kind = "robot"` shorthand, and every rule a job
//! must satisfy (name, exactly one schedule, command or suite, timeout, environment).
//!
//! This file resolves one job from its checks, in the order the admin reads the table; the
//! checks that need a file of their own are beside it: `raw.rs` (the table as read, and the
//! job's place for errors), `command.rs` (the command line), `result.rs` (where the result
//! is), `plugin.rs`, `checkmk.rs` (names that go into the agent output), `pyenv.rs`. Pure, as
//! all of `logic/config/`: what needs the host is handed over as `Need`s.

mod checkmk;
mod command;
mod plugin;
mod pyenv;
mod raw;
mod result;

pub(crate) use checkmk::{check_host, check_service};
pub(super) use raw::RawJob;

use crate::logic::config::base::{check_name, lexical, Locator, Need};
use crate::logic::schedule;
use crate::model::config::{
    CatchUp, CheckmkSettings, ConfigError, Job, Overlap, RunSetup, Services,
};
use crate::model::schedule::Schedule;
use checkmk::checkmk_settings;
use chrono::{DateTime, Utc};
use command::{command_of, robot_command};
use plugin::{plugin_excludes, plugin_spec};
use pyenv::python_env;
use raw::{At, Kind};
use result::result_of;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// `timeout`, or the schedule's interval when it is not set.
fn timeout_of(
    at: &At,
    raw: &RawJob,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Duration, ConfigError> {
    match &raw.timeout {
        Some(t) if t.get_ref().0.is_zero() => {
            Err(at.err(t.span().start, "timeout", "must be longer than 0"))
        }
        Some(t) => Ok(t.get_ref().0),
        // Without a timeout a hanging runner would block its job forever; the interval is the
        // natural bound since a run longer than it is already late for the next one.
        None => Ok(schedule.nominal_interval(now)),
    }
}

/// The names of `env`: what a process environment can hold.
fn check_env_names(at: &At, raw: &RawJob) -> Result<(), ConfigError> {
    for key in raw.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            let m = format!("invalid environment variable name {key:?}");
            return Err(at.err(at.start, "env", m));
        }
    }
    Ok(())
}

/// Resolves and validates the `index`th job; what needs the host (its user, its environment
/// file, this program's path) is added to `needs` as job number `index`.
pub(super) fn resolve(
    loc: &Locator,
    index: usize,
    raw: Spanned<RawJob>,
    base: &Path,
    now: DateTime<Utc>,
    needs: &mut Vec<Need>,
) -> Result<Job, ConfigError> {
    let start = raw.span().start;
    let raw = raw.into_inner();
    let name = raw.name.get_ref().clone();
    check_name(&name)
        .map_err(|m| loc.at(raw.name.span().start, Some(format!("job[{index}].name")), m))?;
    let at = At {
        loc,
        index,
        name: &name,
        start,
    };
    let (host, runtime_warn, runtime_crit) = checkmk_settings(&at, &raw)?;
    let schedule = schedule_of(&at, &raw)?;
    if let Some(u) = &raw.user {
        needs.push(Need::User {
            job: index,
            name: u.get_ref().clone(),
            place: at.place(u.span().start, "user"),
        });
    }
    let pyenv = python_env(&at, &raw, base, needs)?;
    let kind = raw.kind.unwrap_or(if raw.suite.is_some() {
        Kind::Robot
    } else {
        Kind::Command
    });
    let plugin = plugin_spec(&at, &raw, kind)?;
    let (command, argument_file) = command_by_kind(&at, &raw, kind, base, pyenv.is_some(), needs)?;
    // No program can be passed one (and the job's argv keeps its arguments NUL-separated).
    if let Some(i) = command.iter().position(|a| a.contains('\0')) {
        let m = format!(
            "argument {i} of the command line contains a NUL character (\\u0000), which no program can be passed"
        );
        return Err(at.err(start, "command", m));
    }
    check_attempts(&at, &raw, kind)?;
    let result = result_of(&at, &raw, kind, &command)?;
    check_levels(&at, &raw)?;
    let timeout = timeout_of(&at, &raw, &schedule, now)?;
    check_env_names(&at, &raw)?;
    Ok(Job {
        name: name.into_boxed_str(),
        command: command.into(),
        robot: kind == Kind::Robot,
        schedule,
        timeout,
        overlap: raw.overlap.unwrap_or(Overlap::Skip),
        catch_up: raw.catch_up.unwrap_or(CatchUp::Once),
        setup: RunSetup {
            env: raw.env,
            working_dir: raw.working_dir.map(|w| lexical(&base.join(w))),
            argument_file,
        }
        .boxed(),
        result: result.map(String::into_boxed_str),
        attempts: raw.attempts.map_or(1, |a| a.into_inner()),
        services: raw.services.unwrap_or(Services::Job),
        checkmk: CheckmkSettings {
            host,
            runtime_warn,
            runtime_crit,
            test_runtime_warn: raw.test_runtime_warn.map(|d| d.0),
            test_runtime_crit: raw.test_runtime_crit.map(|d| d.0),
        }
        .boxed(),
        pyenv: pyenv.map(Box::new),
        // Looked up by the preparation step (see `Need::User`).
        user: None,
        user_deferred: raw.user.is_some(),
        plugin,
    })
}

/// The job's command line (and a robot job's argument file), as its kind builds it.
fn command_by_kind(
    at: &At,
    raw: &RawJob,
    kind: Kind,
    base: &Path,
    has_env: bool,
    needs: &mut Vec<Need>,
) -> Result<(Vec<String>, Option<String>), ConfigError> {
    Ok(match kind {
        Kind::Command => (command_of(at, raw)?, None),
        Kind::Plugin => {
            let command = command_of(at, raw)?;
            plugin_excludes(at, raw)?;
            (command, None)
        }
        Kind::Robot => robot_command(at, raw, base, has_env, needs)?,
    })
}

/// `every` (with its `offset`) or `cron`: exactly one.
fn schedule_of(at: &At, raw: &RawJob) -> Result<Schedule, ConfigError> {
    match (&raw.every, &raw.cron) {
        (Some(_), Some(c)) => Err(at.err(
            c.span().start,
            "cron",
            "set either `every` or `cron`, not both",
        )),
        (None, None) => Err(at.err(
            at.start,
            "every",
            "needs a schedule: `every = \"5m\"` or `cron = \"*/5 * * * *\"`",
        )),
        (Some(every), None) => {
            let interval = every.get_ref().0;
            if interval < Duration::from_secs(1) {
                return Err(at.err(every.span().start, "every", "must be at least 1s"));
            }
            if interval.subsec_millis() != 0 {
                return Err(at.err(every.span().start, "every", "must be whole seconds"));
            }
            let offset = raw
                .offset
                .as_ref()
                .map_or(Duration::ZERO, |o| o.get_ref().0);
            if offset >= interval {
                let pos = raw
                    .offset
                    .as_ref()
                    .map_or(every.span().start, |o| o.span().start);
                return Err(at.err(pos, "offset", "must be shorter than `every`"));
            }
            Ok(Schedule::Every { interval, offset })
        }
        (None, Some(c)) => {
            if let Some(o) = &raw.offset {
                let m = "`offset` only applies to `every` schedules";
                return Err(at.err(o.span().start, "offset", m));
            }
            let cron =
                schedule::parse_cron(c.get_ref()).map_err(|m| at.err(c.span().start, "cron", m))?;
            Ok(Schedule::Cron {
                text: c.get_ref().trim().into(),
                cron: std::sync::Arc::new(cron),
            })
        }
    }
}

/// `attempts` only for robot jobs, 1 to 10; `retry` only with `attempts`.
fn check_attempts(at: &At, raw: &RawJob, kind: Kind) -> Result<(), ConfigError> {
    if let Some(a) = &raw.attempts {
        if kind != Kind::Robot {
            let m = "`attempts` only applies to `kind = \"robot\"` jobs";
            return Err(at.err(a.span().start, "attempts", m));
        }
        if !(1..=10).contains(a.get_ref()) {
            return Err(at.err(a.span().start, "attempts", "must be between 1 and 10"));
        }
    }
    if raw.retry.is_some() && raw.attempts.is_none() {
        let m = "`retry` needs `attempts = N` (N > 1)";
        return Err(at.err(at.start, "retry", m));
    }
    Ok(())
}

/// The per-test runtime levels: WARN not above CRIT.
fn check_levels(at: &At, raw: &RawJob) -> Result<(), ConfigError> {
    if let (Some(w), Some(c)) = (&raw.test_runtime_warn, &raw.test_runtime_crit) {
        if w.0 > c.0 {
            let m = "must not be longer than `test_runtime_crit`";
            return Err(at.err(at.start, "test_runtime_warn", m));
        }
    }
    Ok(())
}
