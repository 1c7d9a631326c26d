//! A pause for maintenance: the `pause` and `resume` commands, and how `status` and
//! `history` show a pause.
//!
//! `stop` is undone by the agent's next call; a pause is not: the daemon keeps running (and
//! its heartbeat kept), it only starts no new run of the paused jobs (`run-once` still runs
//! one: the admin asked for it). The pause lives in `pause.json` in the state dir, so it
//! survives a daemon restart; only root writes it (the daemon trusts the state dir because
//! only root can write there), and it is read with the rules of every state file.
//!
//! ctrl shows a paused job's check as OK with "paused by <user> until <time>" instead of a
//! result going stale, and WARN once the pause is older than its `--warn-after` (default 1d),
//! so a forgotten pause is noticed (`logic::pause_view`, an input to the rendering).
//! `pause.json` itself, and the daemon's check before it starts a run, are
//! `service::pause`'s.

use crate::model::pause::{Pause, PauseState};
use crate::model::report::{PausedReport, Report};
use crate::service::pause::Stored;
use crate::service::state::StateDir;
use crate::service::{self, config};
use chrono::Utc;
use std::path::Path;
use std::time::Duration;

/// The instance and its state dir for `pause`/`resume`, with the jobs checked by name.
fn target(path: &Path, jobs: &[String]) -> Result<(String, StateDir), i32> {
    if !crate::service::sys::may_write_state_dir() {
        eprintln!(
            "robotmk-daemon: pause and resume need root: the daemon, which runs as root, trusts only a pause root wrote; run it with sudo"
        );
        return Err(1);
    }
    let cfg = config::load_with(path, crate::model::config::Users::NamesOnly).map_err(|e| {
        eprintln!("robotmk-daemon: config error: {e}");
        2
    })?;
    if let Some(bad) = jobs
        .iter()
        .find(|j| !cfg.jobs.iter().any(|c| *c.name == **j))
    {
        let names: Vec<&str> = cfg.jobs.iter().map(|j| &*j.name).collect();
        eprintln!(
            "robotmk-daemon: no job {bad:?} in {}; jobs: {}",
            cfg.path.display(),
            names.join(", ")
        );
        return Err(2);
    }
    let trust = crate::service::security::check_config(&cfg.path)
        .and_then(|_| crate::service::security::check_state_dir(&cfg.daemon.state_dir));
    if let Err(e) = trust {
        eprintln!("robotmk-daemon: {e}");
        return Err(1);
    }
    let st = StateDir::new(&cfg.daemon.state_dir);
    if let Err(e) = st.ensure() {
        eprintln!("robotmk-daemon: {e}");
        return Err(1);
    }
    Ok((cfg.daemon.instance, st))
}

/// Finds the instance (see [`target`]), changes its pauses with `change` and writes them:
/// the instance's name and the pauses now, or the exit code after the message.
fn edit(
    path: &Path,
    jobs: &[String],
    change: impl FnOnce(&mut Stored),
) -> Result<(String, Stored), i32> {
    let (instance, st) = target(path, jobs)?;
    let mut s = service::pause::read(&st).map_err(|e| {
        eprintln!("robotmk-daemon: {e}");
        1
    })?;
    change(&mut s);
    service::pause::write(&st, &s).map_err(|e| {
        eprintln!("robotmk-daemon: cannot write the pause: {e}");
        1
    })?;
    Ok((instance, s))
}

/// `pause [--for DURATION] [--warn-after DURATION] [JOB…]`.
pub(crate) fn pause(
    path: &Path,
    for_: Option<Duration>,
    warn_after: Duration,
    jobs: &[String],
) -> i32 {
    let now = Utc::now();
    let until = for_.and_then(|d| chrono::Duration::from_std(d).ok().map(|d| now + d));
    let p = Pause {
        // Who is pausing: the login behind sudo, else the user's name.
        by: crate::service::sys::user_label(),
        since: now,
        until,
    };
    let instance = match edit(path, jobs, |s| {
        if jobs.is_empty() {
            s.state.all = Some(p.clone());
        } else {
            for j in jobs {
                s.state.jobs.insert(j.clone(), p.clone());
            }
        }
        s.warn_after_s = Some(warn_after.as_secs());
    }) {
        Ok((instance, _)) => instance,
        Err(code) => return code,
    };
    let what = if jobs.is_empty() {
        format!("all jobs of instance {instance}")
    } else {
        format!(
            "{} {}",
            if jobs.len() == 1 { "job" } else { "jobs" },
            jobs.join(", ")
        )
    };
    println!(
        "{what}: {}; no new runs start (runs in flight go on); `robotmk-daemon resume` ends it",
        p.words()
    );
    0
}

/// `resume [JOB…]`: no jobs, every pause ends.
pub(crate) fn resume(path: &Path, jobs: &[String]) -> i32 {
    let (instance, s) = match edit(path, jobs, |s| {
        if jobs.is_empty() {
            s.state = PauseState::default();
        } else {
            for j in jobs {
                s.state.jobs.remove(j);
            }
        }
    }) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if let Some(all) = s.state.all.as_ref().filter(|p| p.holds(Utc::now())) {
        println!(
            "resumed {}, but all jobs of instance {instance} are still {}; `robotmk-daemon resume` without a job ends that",
            jobs.join(", "),
            all.words()
        );
    } else if jobs.is_empty() {
        println!("resumed all jobs of instance {instance}: runs start on their schedules again");
    } else {
        println!(
            "resumed {}: runs start on their schedules again",
            jobs.join(", ")
        );
    }
    0
}

/// The pauses in force for `status` (`status --json` carries them as they are).
pub(crate) fn report(r: &Report) -> Option<PausedReport> {
    let now = Utc::now();
    let v = r
        .state_dir
        .as_deref()
        .and_then(|d| service::pause::in_force(d, now))?;
    Some(PausedReport {
        all: v.state.all.filter(|p| p.holds(now)),
        jobs: v
            .state
            .jobs
            .into_iter()
            .filter(|(_, p)| p.holds(now))
            .collect(),
        warn_after_s: v.warn_after.as_secs(),
    })
}

/// What `status` prints about the pauses in `r` (nothing without one).
pub(crate) fn status_lines(r: &Report) -> String {
    let Some(p) = &r.paused else {
        return String::new();
    };
    let mut o = String::new();
    if let Some(all) = &p.all {
        o.push_str(&format!("paused:     all jobs, {}\n", all.words()));
    }
    for (job, p) in &p.jobs {
        o.push_str(&format!("paused:     job {job}, {}\n", p.words()));
    }
    o
}

/// What `history` prints above a paused job's runs (nothing when it is not paused).
pub(crate) fn history_line(st: &StateDir, job: &str) -> String {
    let now = Utc::now();
    service::pause::read(st)
        .ok()
        .and_then(|s| {
            s.state
                .of(job, now)
                .map(|p| format!("job {job} is {}\n", p.words()))
        })
        .unwrap_or_default()
}
