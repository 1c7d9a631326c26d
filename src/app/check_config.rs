//! `check-config`: validates the config as the daemon would load it and prints what it
//! would do (daemon settings, time zone, users, limits, environments, each job's next due
//! times).

use super::load_or_report;
use crate::app::findings;
use crate::service::sys;
use chrono::Utc;
use std::path::Path;
use std::time::Duration;

/// `check-config`: exit 0 when the config loads and runs can start, else 2.
pub(crate) fn check_config(path: &Path) -> i32 {
    let cfg = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = crate::service::security::check(&cfg) {
        eprintln!("robotmk-daemon: {e}");
        return 2;
    }
    // Printed first, the resolved view after: what the problems are about is in it.
    let runs_can_start = findings::print_check(&cfg);
    print_daemon(&cfg, runs_can_start);
    let build_user = print_build_user(&cfg);
    print_limits(&cfg);
    print_shared_envs(&cfg, &build_user);
    let now = Utc::now();
    for j in &cfg.jobs {
        print_job(j, now);
    }
    if runs_can_start {
        0
    } else {
        2
    }
}

/// `check-config`: the daemon's settings as they will be in force; whether runs can start
/// as the checks before found.
fn print_daemon(cfg: &crate::model::config::Config, runs_can_start: bool) {
    let d = &cfg.daemon;
    if runs_can_start {
        println!("config {} is valid", cfg.path.display());
    } else {
        println!(
            "config {} parses, but runs will fail (errors above)",
            cfg.path.display()
        );
    }
    println!("instance:          {}", d.instance);
    println!("state_dir:         {}", d.state_dir.display());
    println!(
        "heartbeat_timeout: {}",
        d.heartbeat_timeout
            .map_or("off".into(), crate::model::duration::format)
    );
    println!(
        "max_parallel:      {}",
        if d.max_parallel == 0 {
            "no limit".into()
        } else {
            d.max_parallel.to_string()
        }
    );
    println!("keep_runs:         {}", d.keep_runs);
    println!(
        "stop_grace:        {}",
        crate::model::duration::format(d.stop_grace)
    );
    println!(
        "hang_timeout:      {}",
        d.hang_timeout.map_or(
            "off (a hung daemon is reported, never replaced)".into(),
            |t| format!(
                "{} (a daemon not answering this long is replaced)",
                crate::model::duration::format(t)
            )
        )
    );
    print_time_zone();
    println!(
        "environments:      built with {}, env_build_timeout {}",
        d.uv.as_ref()
            .map_or("python -m venv + pip".into(), |u| format!(
                "uv ({})",
                u.display()
            )),
        crate::model::duration::format(d.env_build_timeout)
    );
}

/// `check-config`: the zone cron schedules are evaluated in. A daemon ctrl or `start`
/// launches takes the host's zone; this shell's `TZ` reaches only `start --foreground`.
fn print_time_zone() {
    println!(
        "cron time:         local time, {}",
        crate::service::zone::host()
    );
    if let Some(tz) = crate::service::zone::tz_env() {
        println!(
            "                   (TZ={tz} here is not passed on to a daemon ctrl or start launches; \
             it applies to start --foreground, and to the next due times below)"
        );
    }
}

/// `check-config`: who builds the environments of jobs without a `user` — looked up (and
/// said) only when some job needs it; the lookup's result decides the environments' keys.
fn print_build_user(
    cfg: &crate::model::config::Config,
) -> Result<crate::model::user::UserInfo, String> {
    let d = &cfg.daemon;
    // Who builds them: looked up only when some job's environment needs the build user.
    let needs_build_user = sys::is_root()
        && cfg
            .jobs
            .iter()
            .any(|j| j.pyenv.is_some() && j.user.is_none() && !j.user_deferred);
    let build_user = if needs_build_user {
        crate::service::pyenv::resolve_build_user(&d.build_user)
    } else {
        Err(String::new())
    };
    if needs_build_user {
        match &build_user {
            Ok(u) => println!(
                "build_user:        {} (environments of jobs without a `user` are built as it)",
                crate::service::pyenv::builder_label(u)
            ),
            Err(e) => {
                println!("build_user:        {} (missing)", d.build_user);
                eprintln!("robotmk-daemon: warning: {e}");
            }
        }
    }
    build_user
}

/// `check-config`: result limits, start delay and the number of jobs.
fn print_limits(cfg: &crate::model::config::Config) {
    let d = &cfg.daemon;
    println!(
        "results:           read up to {} bytes each, within {} per run",
        d.result_limits.max_bytes,
        crate::model::duration::format(d.result_limits.max_time)
    );
    if !d.start_delay.is_zero() {
        println!(
            "start_delay:       {} after boot",
            crate::model::duration::format(d.start_delay)
        );
    }
    println!("jobs:              {}", cfg.jobs.len());
}

/// `check-config`: which jobs share which environment.
fn print_shared_envs(
    cfg: &crate::model::config::Config,
    build_user: &Result<crate::model::user::UserInfo, String>,
) {
    // Which jobs share which environment: same file content and interpreter, one build.
    let mut shared: std::collections::BTreeMap<String, (String, Vec<&str>)> = Default::default();
    for j in &cfg.jobs {
        if let Some(e) = &j.pyenv {
            let builder = crate::service::pyenv::builder_for(j.user.as_deref(), build_user);
            // A held job's environment is its user's, built once the user is back.
            let key = match builder {
                _ if j.user_deferred => "(none while the job is held)".into(),
                Ok(b) => crate::service::pyenv::key_of(e, b.map(|u| u.uid))
                    .unwrap_or_else(|err| format!("unreadable ({err})")),
                Err(_) => "(no build user)".into(),
            };
            shared
                .entry(key)
                .or_insert_with(|| (format!("{} ({})", e.source.display(), e.python), Vec::new()))
                .1
                .push(&j.name);
        }
    }
    for (key, (from, jobs)) in &shared {
        println!("environment {key}: {from}; jobs: {}", jobs.join(", "));
    }
}

/// `check-config`: one job as it will run, with its next three due times.
fn print_job(j: &crate::model::config::Job, now: chrono::DateTime<Utc>) {
    println!();
    println!("job {}", j.name);
    println!(
        "  command:  {}",
        j.command
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("  schedule: {}", j.schedule);
    println!("  timeout:  {}", crate::model::duration::format(j.timeout));
    println!(
        "  overlap:  {}, catch_up: {}",
        findings::word(j.overlap),
        findings::word(j.catch_up)
    );
    if let Some(u) = &j.user {
        // As looked up by this build (see docs/SECURITY.md): what the runs will get.
        let groups: Vec<String> = u.groups.iter().map(u32::to_string).collect();
        println!(
            "  user:     {} (uid {}, gid {}, groups {}, home {})",
            u.name,
            u.uid,
            u.gid,
            groups.join(","),
            u.home.display()
        );
    }
    if let Some(w) = j.working_dir() {
        println!("  working_dir: {}", w.display());
    }
    if let Some(r) = &j.result {
        println!("  result:   {r}");
    }
    if let Some(e) = &j.pyenv {
        println!(
            "  {}: {} (python {})",
            e.kind.as_str(),
            e.source.display(),
            e.python
        );
    }
    if j.attempts > 1 {
        println!("  attempts: {} (merged with rebot)", j.attempts);
    }
    if j.services == crate::model::config::Services::PerTest {
        let lvl = |d: Option<Duration>| d.map_or("-".into(), crate::model::duration::format);
        println!(
            "  services: per-test (runtime levels {} / {})",
            lvl(j.test_runtime_warn()),
            lvl(j.test_runtime_crit())
        );
    }
    let next: Vec<String> = j
        .schedule
        .upcoming(now, 3)
        .into_iter()
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .collect();
    println!("  next due: {}", next.join(", "));
}
