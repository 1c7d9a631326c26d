//! The instance's report as ctrl and `status` show it, assembled from the config, the lock
//! (running or not), the heartbeat's mtime and the daemon's `status.json` — small files only,
//! never the run folders.

use crate::logic::liveness;
use crate::model::config::{Config, Job};
use crate::model::report::{ConfigView, DaemonReport, Report};
use crate::model::status::{DaemonInfo, JobStatus, Status};
use crate::service::lock;
use crate::service::state::{self, StateDir};
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn age_s(now: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    ((now - t).num_milliseconds() as f64 / 1000.0).max(0.0)
}

/// What to tell an admin whose config `path` names the state dir `st` that the running
/// daemon of another config file holds (two configs with one `state_dir`): its ctrl would
/// otherwise show that daemon as its own, keep it alive with its heartbeat and stop it with
/// its `stop`, while its own jobs never run. `None`: no daemon, or one of this config (the
/// same file by another path too).
pub(crate) fn daemon_of_another_config(st: &StateDir, path: &std::path::Path) -> Option<String> {
    if !lock::is_held(&st.lock_file()).unwrap_or(false) {
        return None;
    }
    let d = read_status(st)?.daemon;
    if d.config == path {
        return None;
    }
    if let (Ok(a), Ok(b)) = (
        std::fs::canonicalize(&d.config),
        std::fs::canonicalize(path),
    ) {
        if a == b {
            return None;
        }
    }
    // A hard link of the config is the config.
    if crate::service::sys::same_file_at(&d.config, path) == Some(true) {
        return None;
    }
    Some(format!(
        "the state dir {} is in use by the daemon (pid {}) of another config, {}: give each config a state_dir of its own, or stop that daemon first (robotmk-daemon --config {} stop)",
        st.root.display(),
        d.pid,
        d.config.display(),
        d.config.display()
    ))
}

/// The daemon's `status.json`, if there is a readable one.
pub(crate) fn read_status(st: &StateDir) -> Option<Status> {
    state::read_json(&st.status_file()).ok().flatten()
}

/// Builds the report. `located` is (instance, state dir) when known even with a broken config.
pub(crate) fn build(
    config_path: PathBuf,
    cfg: ConfigView,
    located: Option<(String, PathBuf)>,
) -> Report {
    let (running, status) = match &located {
        Some((_, dir)) => {
            let st = StateDir::new(dir);
            (
                lock::is_held(&st.lock_file()).unwrap_or(false),
                read_status(&st),
            )
        }
        None => (false, None),
    };
    build_from(config_path, cfg, located, running, status)
}

/// Builds the report from a lock probe and status the caller already has.
pub fn build_from(
    config_path: PathBuf,
    cfg: ConfigView,
    located: Option<(String, PathBuf)>,
    running: bool,
    status: Option<Status>,
) -> Report {
    let now = Utc::now();
    let mut report = Report {
        instance: located.as_ref().map(|l| l.0.clone()),
        config: config_path,
        config_error: match cfg {
            ConfigView::Broken(e) => Some(e.to_string()),
            _ => None,
        },
        state_dir: located.as_ref().map(|l| l.1.clone()),
        daemon: DaemonReport::default(),
        ctrl: None,
        jobs: Vec::new(),
        envs: Vec::new(),
        paused: None,
        config_warnings: Vec::new(),
        section_cut: None,
        generated: now,
    };
    let Some((_, dir)) = located else {
        report.clip();
        return report;
    };
    let st = StateDir::new(dir);
    report.daemon.running = running;
    report.daemon.heartbeat_age_s = st.heartbeat_mtime().and_then(|m| {
        SystemTime::now()
            .duration_since(m)
            .ok()
            .map(|d| d.as_secs_f64())
            .or(Some(0.0))
    });
    if let Some(s) = &status {
        if matches!(cfg, ConfigView::Broken(_)) {
            // The config cannot say for sure; the daemon's own word is better than a default.
            report.instance = Some(s.instance.clone());
        }
        fill_daemon(&mut report.daemon, s, &st, now);
    }
    if let ConfigView::Loaded(c) = cfg {
        // A running daemon's own figure is the one in force (raised for the cached mode).
        if !(report.daemon.running && status.is_some()) {
            report.daemon.heartbeat_timeout_s = c.daemon.heartbeat_timeout.map(|d| d.as_secs_f64());
        }
    }
    report.envs = status.as_ref().map(|s| s.envs.clone()).unwrap_or_default();
    // The daemon's word on when it saw the clock behind (see `staleness::seen`), also a
    // stopped one's: with no daemon running no run comes either, and a result from the future
    // must not turn fresh again (counted from now) because none runs to say so.
    let set_back_since = status.as_ref().and_then(|s| {
        crate::logic::staleness::set_back_since_at(s.daemon.clock_set_back_since, s.updated, now)
    });
    let known: Vec<JobStatus> = status.map(|s| s.jobs).unwrap_or_default();
    report.jobs = match cfg {
        // The config is the authority on which jobs exist; the status adds what the daemon
        // knows about them.
        ConfigView::Loaded(c) => c
            .jobs
            .iter()
            .map(|j| {
                let running = report.daemon.running;
                job_report(j, c, &known, &st, running, now, set_back_since)
            })
            .collect(),
        _ => known,
    };
    report.clip();
    report
}

/// What the status `s` tells of the daemon, running or stopped.
fn fill_daemon(r: &mut DaemonReport, s: &Status, st: &StateDir, now: DateTime<Utc>) {
    let d = &s.daemon;
    if r.running {
        r.pid = Some(d.pid);
        r.started = Some(d.started);
        r.uptime_s = Some(age_s(now, d.started));
        r.phase = Some(d.phase.clone());
        r.reason = d.reason.clone();
        r.route = Some(d.route.clone());
        r.build = Some(d.build.clone());
        r.config_error = d.config_error.clone();
        r.config_error_kind = d.config_error_kind;
        r.config_from = crate::logic::lifecycle_words::stamp_time(d.config_stamp.as_deref());
        r.agent_mode = d.agent_mode.clone();
        // The alert file carries a write failure that status.json itself could not.
        r.state_error = d.state_error.clone().or_else(|| state::read_alert(st));
        r.not_responding_since = not_responding_since(st, d, r.state_error.is_some());
        r.previous_crash = d.previous_crash.clone();
        if let Some(l) = &d.previous_stop {
            r.last_stop = Some(crate::logic::lifecycle_words::previous_stop(
                l, &d.build, now,
            ));
            r.last_stopped = Some(l.clone());
        }
        r.unstable = liveness::unstable(d, now);
        r.behind = d.behind.clone();
        r.time_zone = d.time_zone.clone();
    } else {
        r.phase = Some(crate::model::status::Phase::Stopped);
        r.reason = d.reason.clone();
        r.last_stop = Some(crate::logic::lifecycle_words::last_stop(s, now));
        r.last_stopped = crate::model::status::LastStop::of(s);
    }
    r.heartbeat_timeout_s = d.heartbeat_timeout_s;
}

/// Job `j` as the config `c` defines it, with what the daemon knows of it (`known`), or else
/// its latest result on disk.
fn job_report(
    j: &Job,
    c: &Config,
    known: &[JobStatus],
    st: &StateDir,
    running: bool,
    now: DateTime<Utc>,
    set_back_since: Option<DateTime<Utc>>,
) -> JobStatus {
    let mut js = known
        .iter()
        .find(|k| *k.name == *j.name)
        .cloned()
        .unwrap_or_else(|| JobStatus {
            name: j.name.to_string(),
            schedule: j.schedule.to_string(),
            interval_s: j.schedule.nominal_interval(now).as_secs_f64(),
            timeout_s: j.timeout.as_secs_f64(),
            next_due: None,
            running: Vec::new(),
            queued: 0,
            last: state::read_json::<crate::model::record::RunRecord>(&st.latest_file(&j.name))
                .ok()
                .flatten()
                .as_ref()
                .map(Into::into),
            last_skipped: None,
            skipped_total: 0,
            services: j.services,
            test_runtime_warn_s: j.test_runtime_warn().map(|d| d.as_secs_f64()),
            test_runtime_crit_s: j.test_runtime_crit().map(|d| d.as_secs_f64()),
            checkmk: Default::default(),
        });
    // The config is the authority on schedules and levels, also for a status
    // written by a daemon that has not seen the latest edit.
    js.checkmk = crate::logic::staleness::checkmk_view(
        j,
        &c.daemon,
        js.last.as_ref().map(|l| l.due),
        now,
        set_back_since,
    );
    if !running {
        js.next_due = None;
        js.running.clear();
        js.queued = 0;
    }
    js
}

/// The beat the daemon `d` has not answered, and its age, from the state dir's heartbeat and
/// ack (see [`liveness::unanswered`]).
pub(crate) fn unanswered(
    st: &StateDir,
    d: &DaemonInfo,
    state_error: bool,
) -> Option<(SystemTime, Duration)> {
    liveness::unanswered(
        d,
        state_error,
        || st.heartbeat_mtime(),
        || st.heartbeat_ack(),
        SystemTime::now(),
    )
}

/// When the beat the daemon `d` leaves unanswered past the grace was written.
pub(crate) fn not_responding_since(
    st: &StateDir,
    d: &DaemonInfo,
    state_error: bool,
) -> Option<DateTime<Utc>> {
    liveness::silent_since(unanswered(st, d, state_error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::liveness::ANSWER_GRACE;
    use crate::model::status::sample_daemon_info as info;

    #[test]
    fn an_answered_beat_is_fine_and_an_old_unanswered_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::create(st.heartbeat_file())
            .unwrap()
            .set_modified(old)
            .unwrap();
        let d = info(true);
        assert!(unanswered(&st, &d, false).is_some(), "no ack yet");
        let since = not_responding_since(&st, &d, false).expect("past the grace");
        assert_eq!(SystemTime::from(since), old);
        // Not judged: an older daemon, or one that reports it cannot write state.
        assert!(unanswered(&st, &info(false), false).is_none());
        assert!(unanswered(&st, &d, true).is_none());

        st.ack_heartbeat(st.heartbeat_mtime().unwrap()).unwrap();
        assert!(unanswered(&st, &d, false).is_none(), "answered");

        // An mtime older than any date chrono can hold is a beat long past, not a panic.
        // (tmpfs stores any mtime; ext4 and NTFS clamp it, and SystemTime may not reach it.)
        let shm = tempfile::tempdir_in("/dev/shm").ok();
        let st = shm.as_ref().map_or(st, |d| StateDir::new(d.path()));
        let ancient = SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(1 << 60));
        let set = ancient.filter(|t| {
            let f = crate::service::sys::file::open_or_create(&st.heartbeat_file());
            f.and_then(|f| f.set_modified(*t)).is_ok() && st.heartbeat_mtime() == Some(*t)
        });
        if set.is_some() {
            let since = not_responding_since(&st, &d, false).expect("long past");
            assert_eq!(since, chrono::DateTime::UNIX_EPOCH);
        } else {
            eprintln!("SKIP: this file system cannot store an mtime before year -262000");
        }

        st.touch_heartbeat().unwrap();
        let (_, age) = unanswered(&st, &d, false).expect("a new beat");
        assert!(age < ANSWER_GRACE);
        assert!(
            not_responding_since(&st, &d, false).is_none(),
            "within the grace"
        );
    }
}
