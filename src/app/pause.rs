//! A pause for maintenance: the `pause` and `resume` commands, the daemon's check before it
//! starts a run, and how ctrl, `status` and `history` show a pause.
//!
//! `stop` is undone by the agent's next call; a pause is not: the daemon keeps running (and
//! its heartbeat kept), it only starts no new run of the paused jobs (`run-once` still runs
//! one: the admin asked for it). The pause lives in `pause.json` in the state dir, so it
//! survives a daemon restart; only root writes it (the daemon trusts the state dir because
//! only root can write there), and it is read with the rules of every state file.
//!
//! ctrl shows a paused job's check as OK with "paused by <user> until <time>" instead of a
//! result going stale, and WARN once the pause is older than its `--warn-after` (default 1d),
//! so a forgotten pause is noticed.

use crate::model::pause::{Pause, PauseState};
use crate::model::record::Trigger;
use crate::model::report::{PausedReport, Report};
use crate::service::config;
use crate::service::state::StateDir;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// How long a pause stays OK in ctrl's output when `pause` is not told otherwise.
pub(crate) const DEFAULT_WARN_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `pause.json` with the time after which ctrl shows the pause as WARN.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    state: PauseState,
    /// Seconds a pause is OK before it shows as WARN.
    #[serde(default)]
    warn_after_s: Option<u64>,
}

fn read(st: &StateDir) -> std::io::Result<Stored> {
    Ok(crate::service::state::read_json(&crate::service::pause::file(st))?.unwrap_or_default())
}

fn write(st: &StateDir, s: &Stored) -> std::io::Result<()> {
    if s.state.all.is_none() && s.state.jobs.is_empty() {
        return crate::service::pause::write(st, &s.state);
    }
    crate::service::state::write_json(
        &crate::service::pause::file(st),
        s,
        crate::service::state::Durability::Sync,
    )
}

/// The daemon's check, where a run is about to start: the pause that keeps `job` from
/// starting one now, in words for the log. A run the admin asked for (`run-once`) runs.
pub(crate) fn holds(st: &StateDir, job: &str, trigger: Trigger) -> Option<String> {
    if trigger == Trigger::RunOnce {
        return None;
    }
    match read(st) {
        Ok(s) => s.state.of(job, Utc::now()).map(Pause::words),
        Err(e) => {
            // A pause file that cannot be read pauses nothing: runs go on, the log says why.
            tracing::warn!("cannot read the pause state: {e}");
            None
        }
    }
}

/// Who is pausing: the login behind sudo, else the user's name.
fn who() -> String {
    ["SUDO_USER", "USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|v| !v.trim().is_empty()))
        // Shown in a local check's text: nothing that could end its service name or line.
        .map(|v| {
            v.chars()
                .map(
                    |c| match c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '\\') {
                        true => c,
                        false => '_',
                    },
                )
                .take(64)
                .collect::<String>()
        })
        .unwrap_or_else(|| format!("uid {}", crate::service::sys::current_uid()))
}

/// The instance and its state dir for `pause`/`resume`, with the jobs checked by name.
fn target(path: &Path, jobs: &[String]) -> Result<(String, StateDir), i32> {
    if cfg!(unix) && !crate::service::sys::is_root() {
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
    let mut s = read(&st).map_err(|e| {
        eprintln!("robotmk-daemon: {e}");
        1
    })?;
    change(&mut s);
    write(&st, &s).map_err(|e| {
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
        by: who(),
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

/// The pauses in force for the instance at `dir`, with the WARN age.
fn in_force(dir: &Path, now: DateTime<Utc>) -> Option<(PauseState, Duration)> {
    let s = read(&StateDir::new(dir)).ok()?;
    if s.state.is_empty_at(now) {
        return None;
    }
    let warn = s
        .warn_after_s
        .map_or(DEFAULT_WARN_AFTER, Duration::from_secs);
    Some((s.state, warn))
}

/// ctrl's output with each paused job's checks (its own and its tests') OK, WARN past the
/// warn age, and saying so; the daemon line names a pause of the whole instance.
pub(crate) fn annotate_output(out: String, r: &Report) -> String {
    let now = Utc::now();
    let Some(dir) = &r.state_dir else { return out };
    let Some((state, warn)) = in_force(dir, now) else {
        return out;
    };
    let instance = r.instance.as_deref().unwrap_or("?");
    let daemon = format!("Robotmk {instance} daemon");
    let all = state.all.as_ref().filter(|p| p.holds(now));
    // Jobs named by their own `service` (plugin jobs): known where the report lists jobs.
    let custom: Vec<(String, &str)> = r
        .jobs
        .iter()
        .map(|j| {
            (
                crate::logic::agent::service_name(j, instance),
                j.name.as_str(),
            )
        })
        .collect();
    let pause_of = |svc: &str| -> Option<&Pause> {
        if svc == daemon {
            return None;
        }
        let job = custom
            .iter()
            .find(|(s, _)| s == svc)
            .map(|(_, j)| *j)
            .or_else(|| {
                let rest = svc.strip_prefix(&format!("Robotmk {instance} "))?;
                Some(rest.split(' ').next().unwrap_or(rest))
            })?;
        all.or_else(|| state.jobs.get(job).filter(|p| p.holds(now)))
    };
    let mut o = String::with_capacity(out.len() + 256);
    for line in out.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let svc = body
            .get(3..)
            .filter(|_| body.get(1..3) == Some(" \""))
            .and_then(|b| b.split_once('"'))
            .map(|(svc, _)| svc);
        let rewritten = match svc {
            Some(svc) if svc == daemon && body.starts_with("0 ") => {
                all.map(|p| format!("{body}, all jobs {}", check_text(&p.words())))
            }
            Some(svc) => pause_of(svc).map(|p| paused_line(body, svc, p, warn, now)),
            None => None,
        };
        match rewritten {
            Some(l) => {
                o.push_str(&l);
                o.push('\n');
            }
            None => o.push_str(line),
        }
    }
    o
}

/// `<state> "<service>" <metrics> <WORD> - <text>` as a paused check.
fn paused_line(body: &str, svc: &str, p: &Pause, warn: Duration, now: DateTime<Utc>) -> String {
    let rest = &body[2 + svc.len() + 3..];
    let (metrics, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let text = text.split_once(" - ").map_or(text, |(_, t)| t);
    let age = (now - p.since).to_std().unwrap_or_default();
    let (state, old) = if age > warn {
        (
            1,
            format!(
                " (paused for {}, longer than {})",
                crate::model::duration::human_age(age.as_secs_f64()),
                crate::model::duration::format(warn)
            ),
        )
    } else {
        (0, String::new())
    };
    crate::logic::agent::local_line(
        state,
        svc,
        metrics,
        &format!("{}{old}; before the pause: {text}", check_text(&p.words())),
    )
}

/// A pause's words as they may stand in a check's text: who paused is whatever the
/// environment said (`CORP\nina` holds a literal `\n`, which would start the details).
fn check_text(words: &str) -> String {
    crate::logic::check_details::text(words)
}

/// The pauses in force for `status` (`status --json` carries them as they are).
pub(crate) fn report(r: &Report) -> Option<PausedReport> {
    let now = Utc::now();
    let (state, warn) = r.state_dir.as_deref().and_then(|d| in_force(d, now))?;
    Some(PausedReport {
        all: state.all.filter(|p| p.holds(now)),
        jobs: state
            .jobs
            .into_iter()
            .filter(|(_, p)| p.holds(now))
            .collect(),
        warn_after_s: warn.as_secs(),
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
    read(st)
        .ok()
        .and_then(|s| {
            s.state
                .of(job, now)
                .map(|p| format!("job {job} is {}\n", p.words()))
        })
        .unwrap_or_default()
}

/// Whether a pause file is there (ctrl's fast path looks no further without one).
pub(crate) fn any(dir: &Path) -> bool {
    crate::service::sys::file::plain_metadata(&crate::service::pause::file(&StateDir::new(dir)))
        .is_some()
}
