//! What an admin is told about the daemon's life from its last `status.json`: why and when it
//! last stopped, and since when the config it runs is in force.

use crate::model::status::{LastStop, Status};
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
    match LastStop::of(s) {
        Some(l) => stop_words(&l, now),
        // It wrote "running" or "draining" last and holds no lock: it ended without a word.
        None => format!(
            "ended without stopping (a crash, kill -9, the OOM killer or a reboot); its last word was at {} (pid {}); the next daemon's log says more",
            when(s.updated, now),
            s.daemon.pid
        ),
    }
}

/// How the running daemon's predecessor (`l`) stopped; `build`: the build running now, which
/// names an upgrade the predecessor did not know of (it stopped, then a new build started).
pub(crate) fn previous_stop(l: &LastStop, build: &str, now: DateTime<Utc>) -> String {
    let words = stop_words(l, now);
    let told = l
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("upgrade"));
    if l.build != build && !told {
        format!("{words} (then upgraded: build {} → {build})", l.build)
    } else {
        words
    }
}

fn stop_words(l: &LastStop, now: DateTime<Utc>) -> String {
    match l.reason.as_deref() {
        Some(why) => format!("stopped {}: {why}", when(l.at, now)),
        None => format!("stopped {}", when(l.at, now)),
    }
}

/// "2026-12-04 17:39:02 UTC (2m ago)".
fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "{} ({} ago)",
        t.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S %Z"),
        crate::model::duration::human_age((now - t).num_seconds().max(0) as f64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_before_a_new_build_started_names_the_upgrade() {
        let now = Utc::now();
        let l = |reason: &str| LastStop {
            pid: 7,
            build: "0.1.0".into(),
            at: now,
            reason: Some(reason.into()),
        };
        let said = previous_stop(&l("stop requested"), "0.2.0", now);
        assert!(
            said.ends_with("(0s ago): stop requested (then upgraded: build 0.1.0 → 0.2.0)"),
            "{said}"
        );
        let said = previous_stop(&l("upgrade (build 0.1.0 → 0.2.0)"), "0.2.0", now);
        assert!(
            said.ends_with("ago): upgrade (build 0.1.0 → 0.2.0)"),
            "{said}"
        );
        let said = previous_stop(&l("stop requested"), "0.1.0", now);
        assert!(said.ends_with("ago): stop requested"), "{said}");
    }
}
