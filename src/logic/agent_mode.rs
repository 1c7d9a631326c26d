//! How the Checkmk agent runs ctrl — on every agent call (synchronous) or as a cached
//! (asynchronous) plugin every few minutes — and what that means for the dead man switch.
//!
//! What the agents tell a plugin (read from their sources, Checkmk 2.3–2.5):
//!
//! - **Linux** (`check_mk_agent`, `run_plugins`/`run_cached`): a plugin in a numeric folder
//!   `plugins/<seconds>/` is cached. The agent runs it from the plugins folder as
//!   `<seconds>/<name>` (that is its `argv[0]`) whenever its cache file is older than
//!   `<seconds>` (whole seconds, `-gt`), and prints the cache with `:cached(MTIME,<seconds>)`.
//!   Under systemd only `check-mk-agent-async.service` does that (`MK_RUN_SYNC_PARTS=false`),
//!   in a loop that sleeps `MK_LOOP_INTERVAL=60` s between passes; the per-connection unit
//!   (`MK_RUN_ASYNC_PARTS=false`) only prints the cache. So ctrl runs every `<seconds>` plus
//!   up to one loop: every 60 or 120 s for `plugins/60/`, every ~360 s for `plugins/300/`.
//!   Nothing else tells the plugin: no argument, no variable with the interval.
//! - **Windows** (`agents/wnx`, `PluginEntry::getResultsAsync`): a plugin with `async: yes`
//!   and `cache_age: N` (at least 120) is restarted when an agent query finds its data about
//!   to be N seconds old. It is started by its path with no argument, and the environment
//!   (`MK_CONFDIR`, `MK_STATEDIR`, …) is the same for every plugin: ctrl cannot see the cache
//!   age, so the admin repeats it in `[daemon] agent_cache_age`.
//!
//! ctrl records what it saw in the heartbeat file's content (the channel to the daemon,
//! written atomically and only when it changes; its mtime stays the beat). The daemon's dead
//! man timeout is then at least twice the interval plus [`MARGIN`].

use crate::model::status::AgentMode;
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

/// Added to twice the cache interval: one pass of the Linux agent's async loop (it sleeps
/// 60 s between passes) or one check interval of the Windows agent (its restarts come with a
/// query, typically every minute). Twice the interval already allows one refresh to be missed.
pub(crate) const MARGIN: Duration = Duration::from_secs(60);

/// What ctrl saw of the agent, as recorded in the heartbeat file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Beat {
    /// The cache interval the agent runs ctrl at; `None`: on every agent call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cache_interval_s: Option<u64>,
    /// Where ctrl learnt it (`plugins/300/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<String>,
}

/// The cache interval of a plugin run as `argv0`: the Linux agent runs a cached plugin as
/// `<seconds>/<name>` from its plugins folder (`[1-9]*/*`), so the folder the program was
/// invoked from names it. Anything else is the synchronous mode.
pub(crate) fn detect(argv0: &OsStr) -> Beat {
    let folder = Path::new(argv0)
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let numeric = folder.bytes().all(|b| b.is_ascii_digit()) && !folder.starts_with('0');
    match folder.parse::<u64>() {
        Ok(n) if numeric && n > 0 => Beat {
            cache_interval_s: Some(n),
            source: Some(format!("plugins/{n}/")),
        },
        _ => Beat::default(),
    }
}

/// The cache interval that counts: the larger of what ctrl saw and the config's
/// `agent_cache_age`, with a word on where it comes from.
pub(crate) fn interval(
    beat: &Beat,
    agent_cache_age: Option<Duration>,
) -> Option<(Duration, String)> {
    let seen = beat.cache_interval_s.map(|s| {
        (
            Duration::from_secs(s),
            beat.source.clone().unwrap_or_else(|| "ctrl".into()),
        )
    });
    let configured = agent_cache_age.map(|d| (d, "agent_cache_age".to_string()));
    match (seen, configured) {
        (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The dead man timeout in force: the configured one (`None` = off stays off), raised to
/// twice the cache interval plus [`MARGIN`].
pub(crate) fn dead_man_timeout(
    configured: Option<Duration>,
    interval: Option<Duration>,
) -> Option<Duration> {
    let t = configured?;
    Some(match interval {
        Some(i) => t.max(2 * i + MARGIN),
        None => t,
    })
}

/// The mode the `interval` in force makes (`sync` or `cached 300s (plugins/300/)`).
pub(crate) fn describe(interval: &Option<(Duration, String)>) -> AgentMode {
    match interval {
        None => AgentMode::Sync,
        Some((i, source)) => AgentMode::Cached {
            interval_s: i.as_secs(),
            source: source.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(beat: Beat) -> Option<u64> {
        beat.cache_interval_s
    }

    #[test]
    fn the_plugins_folder_names_the_interval() {
        let d = |s: &str| secs(detect(OsStr::new(s)));
        // As the Linux agent runs them (cwd = the plugins folder).
        assert_eq!(d("60/robotmk_daemon_ctrl"), Some(60));
        assert_eq!(d("./robotmk_daemon_ctrl"), None);
        assert_eq!(
            d("/usr/lib/check_mk_agent/plugins/300/robotmk_daemon_ctrl"),
            Some(300)
        );
        assert_eq!(
            d("/usr/lib/check_mk_agent/plugins/robotmk_daemon_ctrl"),
            None
        );
        assert_eq!(d("robotmk-daemon"), None);
        for not in ["0/x", "05/x", "12a/x", "-1/x", "/x", ""] {
            assert_eq!(d(not), None, "{not}");
        }
        assert_eq!(
            detect(OsStr::new("300/x")).source.as_deref(),
            Some("plugins/300/")
        );
    }

    #[test]
    fn the_dead_man_waits_for_two_intervals_and_a_margin() {
        let m = |s| Duration::from_secs(s);
        assert_eq!(dead_man_timeout(Some(m(60)), None), Some(m(60)));
        // plugins/60/ with heartbeat_timeout = "60s": was dead between refreshes.
        assert_eq!(dead_man_timeout(Some(m(60)), Some(m(60))), Some(m(180)));
        // plugins/300/ with the default 5m.
        assert_eq!(dead_man_timeout(Some(m(300)), Some(m(300))), Some(m(660)));
        assert_eq!(dead_man_timeout(Some(m(3600)), Some(m(300))), Some(m(3600)));
        assert_eq!(dead_man_timeout(None, Some(m(300))), None, "off stays off");
        let beat = detect(OsStr::new("120/x"));
        let i = interval(&beat, Some(m(300)));
        assert_eq!(describe(&i), "cached 300s (agent_cache_age)");
        assert_eq!(
            describe(&interval(&beat, None)),
            "cached 120s (plugins/120/)"
        );
        assert_eq!(describe(&interval(&Beat::default(), None)), "sync");
    }
}
