//! What an admin is told about the daemon's life from its last `status.json`: why and when it
//! last stopped, and since when the config it runs is in force.

use crate::model::status::{Phase, Status};
use chrono::{DateTime, Utc};

/// The time in a config stamp (`service::config::stamp`: the file's mtime in nanoseconds,
/// then size and change stamp).
pub(crate) fn stamp_time(stamp: Option<&str>) -> Option<DateTime<Utc>> {
    let nanos: i64 = stamp?.split(':').next()?.parse().ok()?;
    Some(DateTime::from_timestamp_nanos(nanos))
}

/// "stopped 2026-12-04 17:39:02 UTC (2m ago): heartbeat stale: no ctrl for 5m" from the
/// status a daemon that holds no lock left behind.
pub(crate) fn last_stop(s: &Status, now: DateTime<Utc>) -> String {
    let when = format!(
        "{} ({} ago)",
        s.updated
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S %Z"),
        crate::model::duration::human_age((now - s.updated).num_seconds().max(0) as f64)
    );
    let d = &s.daemon;
    match (&d.phase, d.reason.as_deref()) {
        (Phase::Stopped, Some(why)) => format!("stopped {when}: {why}"),
        (Phase::Stopped, None) => format!("stopped {when}"),
        // It wrote "running" or "draining" last and holds no lock: it ended without a word.
        (_, _) => format!(
            "ended without stopping (a crash, kill -9, the OOM killer or a reboot); its last word was at {when} (pid {}); the next daemon's log says more",
            d.pid
        ),
    }
}
