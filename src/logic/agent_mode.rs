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
//!
//! A ctrl run by hand (an admin looking, `robotmk-daemon ctrl`) is not the agent: it runs
//! from no plugins folder and beats as `sync`. Were the latest beat's mode the one in force,
//! one such call would cut a cached agent's timeout to `heartbeat_timeout`, and the daemon
//! would exit between the agent's refreshes. So a cached beat's mode stays in force until that
//! agent has been silent for its own timeout ([`in_force`]); a sync beat meanwhile only adds a
//! beat. When the agent's plugin really moved to the synchronous folder, its cached mode lapses
//! that long after its last cached run, and the plain timeout applies from then on.
//!
//! That cached beat must outlive the daemon that saw it: a daemon started after a call by hand
//! (a crash and the next ctrl, an upgrade, `stop`/`start`, a reboot) would otherwise know only
//! the sync beat and exit between the agent's runs. So ctrl, the heartbeat's one writer,
//! carries the last cached beat it replaced, with its wall time, in every later sync beat
//! ([`recorded`]); a daemon that did not see that beat itself takes it from there
//! ([`latest_cached`]), and the same lapse rule applies (its age counts).

use crate::model::status::AgentMode;
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Added to twice the cache interval: one pass of the Linux agent's async loop (it sleeps
/// 60 s between passes) or one check interval of the Windows agent (its restarts come with a
/// query, typically every minute). Twice the interval already allows one refresh to be missed.
pub(crate) const MARGIN: Duration = Duration::from_secs(60);

/// The source of an interval that the config's `agent_cache_age` names (the Windows agent
/// tells a plugin nothing): every call, manual or the agent's, is cached by it alike.
pub(crate) const CONFIGURED: &str = "agent_cache_age";

/// What ctrl saw of the agent, as recorded in the heartbeat file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Beat {
    /// The cache interval the agent runs ctrl at; `None`: on every agent call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cache_interval_s: Option<u64>,
    /// Where ctrl learnt it (`plugins/300/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<String>,
    /// On a sync beat: the last cached beat before it, which may still be in force (see the
    /// module doc). Absent in heartbeats of older builds: read as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_cached: Option<LastCached>,
}

/// A cached beat as a later sync beat carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastCached {
    pub(crate) cache_interval_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<String>,
    /// When it beat, in Unix milliseconds (the heartbeat's mtime then: the wall clock, since
    /// it must mean the same to a daemon started later, even after a reboot).
    pub(crate) at_unix_ms: i64,
}

impl LastCached {
    fn beat(&self) -> Beat {
        Beat {
            cache_interval_s: Some(self.cache_interval_s),
            source: self.source.clone(),
            last_cached: None,
        }
    }
}

/// What ctrl records for its `call`, given the heartbeat's `previous` content and mtime (Unix
/// milliseconds; `None`: no readable heartbeat): a cached call as it is; a sync call with the
/// last cached beat carried over, the previous one if that was cached (its mtime is its beat),
/// else what the previous one carried. Whether it lapsed is the daemon's to judge
/// ([`in_force`]), with its config; a long lapsed one is carried on unchanged, and costs no
/// write.
pub(crate) fn recorded(call: &Beat, previous: Option<(&Beat, i64)>) -> Beat {
    if call.cache_interval_s.is_some() {
        return Beat {
            last_cached: None,
            ..call.clone()
        };
    }
    let last_cached = previous.and_then(|(p, at_unix_ms)| match p.cache_interval_s {
        Some(s) => Some(LastCached {
            cache_interval_s: s,
            source: p.source.clone(),
            at_unix_ms,
        }),
        None => p.last_cached.clone(),
    });
    Beat {
        last_cached,
        ..call.clone()
    }
}

/// The latest cached beat a daemon knows after reading `beat` at `now` (monotonic) and
/// `now_unix_ms` (wall): `beat` itself if cached (seen now); else the later of the one it
/// `held` (seen by itself) and the one `beat` carries (seen its age ago on the wall clock).
/// A carried beat that cannot be placed (from the future: a clock set back; older than the
/// monotonic clock, a boot on Windows) never displaces a held one, and without one counts as
/// seen now: that mode then holds at most one timeout longer than it should.
pub(crate) fn latest_cached(
    held: Option<(Beat, Instant)>,
    beat: &Beat,
    now: Instant,
    now_unix_ms: i64,
) -> Option<(Beat, Instant)> {
    if beat.cache_interval_s.is_some() {
        return Some((
            Beat {
                last_cached: None,
                ..beat.clone()
            },
            now,
        ));
    }
    // `None`: it cannot be placed on the monotonic clock (from the future by the wall clock,
    // or from before the monotonic clock's start).
    let carried = beat.last_cached.as_ref().map(|c| {
        let age = u64::try_from(now_unix_ms.saturating_sub(c.at_unix_ms)).ok();
        let at = age.and_then(|ms| now.checked_sub(Duration::from_millis(ms)));
        (c.beat(), at)
    });
    match (held, carried) {
        (Some(h), Some((b, Some(at)))) if at > h.1 => Some((b, at)),
        (Some(h), _) => Some(h),
        (None, Some((b, at))) => Some((b, at.unwrap_or(now))),
        (None, None) => None,
    }
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
            last_cached: None,
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
    let configured = agent_cache_age.map(|d| (d, CONFIGURED.to_string()));
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

/// A beat the daemon saw: what ctrl recorded, and when the daemon saw it (its monotonic
/// clock, see `daemon::control`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub(crate) beat: &'a Beat,
    pub(crate) at: Instant,
}

/// The agent mode in force and the dead man switch's deadline (see [`in_force`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InForce {
    /// The cache interval in force and where it comes from; `None`: the synchronous mode.
    pub(crate) interval: Option<(Duration, String)>,
    /// That mode's dead man timeout (`None`: the switch is off).
    pub(crate) timeout: Option<Duration>,
    /// No ctrl after this: the daemon is orphaned. `None`: never (the switch is off).
    pub(crate) deadline: Option<Instant>,
    /// When a cached mode held over later sync beats lapses into their mode: the daemon looks
    /// then, to say so.
    pub(crate) lapses: Option<Instant>,
}

/// The mode in force at `now`, given the `latest` beat and the latest `cached` one (a beat
/// that named a cache interval; `None`: none seen), the configured `heartbeat_timeout` and
/// `agent_cache_age`: the latest beat's, unless that is sync and the cached agent has not yet
/// been silent for its own timeout (twice its interval plus [`MARGIN`], at least
/// `heartbeat_timeout`; also where the switch is off, for the mode shown). The deadline is
/// the later of the two beats' own: the sync beat counts as a beat.
pub(crate) fn in_force(
    latest: Seen,
    cached: Option<Seen>,
    configured: Option<Duration>,
    agent_cache_age: Option<Duration>,
    now: Instant,
) -> InForce {
    let of = |s: Seen| {
        let interval = interval(s.beat, agent_cache_age);
        let timeout = dead_man_timeout(configured, interval.as_ref().map(|i| i.0));
        InForce {
            deadline: timeout.map(|t| s.at + t),
            interval,
            timeout,
            lapses: None,
        }
    };
    let own = of(latest);
    let held = cached
        .filter(|c| c.beat.cache_interval_s.is_some() && latest.beat.cache_interval_s.is_none())
        .and_then(|c| {
            let i = interval(c.beat, agent_cache_age)?.0;
            let silent = dead_man_timeout(Some(configured.unwrap_or_default()), Some(i))?;
            Some((c, c.at + silent))
        })
        .filter(|(_, lapses)| now <= *lapses);
    match held {
        None => own,
        Some((c, lapses)) => {
            let cached = of(c);
            InForce {
                deadline: cached.deadline.max(own.deadline),
                lapses: Some(lapses),
                ..cached
            }
        }
    }
}

/// Whether the daemon's mode in force (`daemon`) also says how this ctrl call was run
/// (`call`: from its folder). Not so for a call by hand (sync) while a cached agent's mode is
/// in force, nor for the first cached call after sync beats; a mode from `agent_cache_age`
/// covers every call alike (none of them can tell, and the larger interval rules).
pub(crate) fn describes(daemon: &AgentMode, call: &AgentMode) -> bool {
    match (daemon, call) {
        (AgentMode::Cached { source, .. }, _) if source == CONFIGURED => true,
        (d, c) => d == c,
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

    #[test]
    fn a_sync_beat_does_not_cut_a_cached_agents_timeout() {
        let s = Duration::from_secs;
        let t0 = Instant::now();
        let (sync, cached) = (Beat::default(), detect(OsStr::new("60/x")));
        let seen = |beat, at| Seen { beat, at };
        let ten = Some(s(10));
        // The agent's cached ctrl at t0, one by hand a second later.
        let at = |now| {
            in_force(
                seen(&sync, t0 + s(1)),
                Some(seen(&cached, t0)),
                ten,
                None,
                now,
            )
        };
        let f = at(t0 + s(2));
        assert_eq!(describe(&f.interval), "cached 60s (plugins/60/)");
        assert_eq!(f.timeout, Some(s(180)));
        assert_eq!(f.deadline, Some(t0 + s(180)), "not t0 + 11s");
        assert_eq!(f.lapses, Some(t0 + s(180)));
        // Silent for its own timeout (and the manual call's long over): dead, in its words.
        assert_eq!(at(t0 + s(180)).timeout, Some(s(180)));
        // Moved to plugins/: sync beats go on; the cached mode lapses, and the plain
        // timeout rules from then on, not forever the cached one.
        let later = t0 + s(179);
        let f = in_force(
            seen(&sync, later),
            Some(seen(&cached, t0)),
            ten,
            None,
            t0 + s(181),
        );
        assert_eq!(f.interval, None);
        assert_eq!(f.timeout, ten);
        assert_eq!(f.deadline, Some(later + s(10)));
        assert_eq!(f.lapses, None);
        // A cached beat is the mode in force at once, whatever was held.
        let to300 = detect(OsStr::new("300/x"));
        let f = in_force(
            seen(&to300, t0 + s(5)),
            Some(seen(&to300, t0 + s(5))),
            ten,
            None,
            t0 + s(6),
        );
        assert_eq!(describe(&f.interval), "cached 300s (plugins/300/)");
        assert_eq!(f.deadline, Some(t0 + s(665)));
        // Switch off: no deadline, but the mode shown still holds for the agent's timeout.
        let f = in_force(
            seen(&sync, t0 + s(1)),
            Some(seen(&cached, t0)),
            None,
            None,
            t0 + s(100),
        );
        assert_eq!((f.deadline, f.timeout), (None, None));
        assert_eq!(describe(&f.interval), "cached 60s (plugins/60/)");
        let f = in_force(
            seen(&sync, t0 + s(1)),
            Some(seen(&cached, t0)),
            None,
            None,
            t0 + s(200),
        );
        assert_eq!(f.interval, None);
        // A longer heartbeat_timeout keeps the cached mode as long.
        let f = in_force(
            seen(&sync, t0 + s(1)),
            Some(seen(&cached, t0)),
            Some(s(600)),
            None,
            t0 + s(500),
        );
        assert_eq!((f.timeout, f.deadline), (Some(s(600)), Some(t0 + s(601))));
        assert_eq!(describe(&f.interval), "cached 60s (plugins/60/)");
    }

    #[test]
    fn the_cached_mode_outlives_the_daemon_that_saw_it() {
        let s = Duration::from_secs;
        let (sync, c60) = (Beat::default(), detect(OsStr::new("60/x")));
        // ctrl: a sync call after a cached one carries it, with the heartbeat's mtime then;
        // later sync calls carry it on; a cached call is the mode and carries nothing.
        let wall = 1_000_000_i64;
        let by_hand = recorded(&sync, Some((&c60, wall)));
        let carried = by_hand.last_cached.clone().unwrap();
        assert_eq!((carried.cache_interval_s, carried.at_unix_ms), (60, wall));
        assert_eq!(recorded(&sync, Some((&by_hand, wall + 5_000))), by_hand);
        assert_eq!(recorded(&c60, Some((&by_hand, wall + 5_000))), c60);
        assert_eq!(recorded(&sync, Some((&sync, wall))), sync);
        assert_eq!(recorded(&sync, None), sync);
        // A daemon started 20 s after that cached beat (no beat of its own seen): the cached
        // mode is in force, and lapses when the agent has been silent for its own timeout
        // (180 s after its beat), not 10 s after the start.
        let now = Instant::now() + s(1000);
        let start = |age_s: i64| {
            let c = latest_cached(None, &by_hand, now, wall + age_s * 1000).unwrap();
            assert_eq!(c.0, c60);
            in_force(
                Seen {
                    beat: &by_hand,
                    at: now,
                },
                Some(Seen {
                    beat: &c.0,
                    at: c.1,
                }),
                Some(s(10)),
                None,
                now,
            )
        };
        let f = start(20);
        assert_eq!(describe(&f.interval), "cached 60s (plugins/60/)");
        assert_eq!(f.deadline, Some(now + s(160)));
        assert_eq!(f.lapses, Some(now + s(160)));
        // Lapsed before the start (the agent moved to sync long ago): the plain timeout.
        let f = start(181);
        assert_eq!((f.interval, f.deadline), (None, Some(now + s(10))));
        // A wall clock set back (the beat "in the future"): seen now, at most one timeout.
        assert_eq!(start(-50).deadline, Some(now + s(180)));
        // A daemon that saw the cached beat itself keeps its own (monotonic) time unless the
        // carried one is later (a cached beat it missed between two looks).
        let own = Some((c60.clone(), now - s(5)));
        assert_eq!(
            latest_cached(own.clone(), &by_hand, now, wall + 3_600_000),
            own,
            "a wall clock set forward does not age it"
        );
        assert_eq!(
            latest_cached(own.clone(), &by_hand, now, wall + 1_000).map(|c| c.1),
            Some(now - s(1))
        );
        assert_eq!(
            latest_cached(own.clone(), &by_hand, now, wall - 60_000),
            own,
            "a wall clock set back does not make it new"
        );
        assert_eq!(latest_cached(own.clone(), &sync, now, wall), own);
        assert_eq!(latest_cached(None, &sync, now, wall), None);
        assert_eq!(latest_cached(own, &c60, now, wall), Some((c60, now)));
    }

    #[test]
    fn the_daemons_mode_describes_a_call_unless_it_was_run_otherwise() {
        let m = |t: &str| AgentMode::from(t.to_string());
        let c60 = m("cached 60s (plugins/60/)");
        assert!(describes(&c60, &c60));
        assert!(describes(&m("sync"), &m("sync")));
        assert!(
            !describes(&c60, &m("sync")),
            "by hand while the agent's mode holds"
        );
        assert!(!describes(&m("sync"), &c60), "the first cached call");
        let age = m("cached 120s (agent_cache_age)");
        assert!(describes(&age, &m("sync")) && describes(&age, &c60));
    }
}
