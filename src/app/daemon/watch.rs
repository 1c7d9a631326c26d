//! What the daemon's looks (see `control`) keep between passes: the heartbeat as last seen
//! and answered, the run flag, the config's trust, the agent's mode, the watcher that wakes
//! the loop, and the retry of records not written yet.

use crate::logic::agent_mode::Beat;
use crate::service::state::StateDir;
use chrono::Utc;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use tracing::warn;

/// How often the daemon looks when a watch could not be set up (or on a platform without
/// one): long, since the watches are the normal way.
pub(crate) const FALLBACK_POLL: Duration = Duration::from_secs(30);

/// The looks' state (see the module doc).
pub(crate) struct Control {
    pub(super) hb_mtime: Option<SystemTime>,
    pub(super) hb_seen: Instant,
    /// The heartbeat mtime last copied to `heartbeat-ack` (retried every tick until it is).
    pub(super) acked: Option<SystemTime>,
    pub(super) run_flag: Option<PathBuf>,
    /// Why the config file is not trusted now (another user could change it); reloads wait
    /// until it is trusted again.
    pub(super) untrusted: Option<String>,
    /// When this daemon took the instance lock: older stop requests were not meant for it.
    pub(super) locked_at: chrono::DateTime<Utc>,
    /// What the last ctrl saw of the agent: the cached mode stretches the dead man timeout.
    pub(super) beat: Beat,
    /// The last beat that named a cache interval, and when it was seen (or, one this daemon
    /// did not see, when it beat): its mode stays in force over sync beats (a ctrl run by
    /// hand) until it lapses (`agent_mode::in_force`).
    pub(super) cached: Option<(Beat, Instant)>,
    /// Wakes the loop on changes of the watched paths; `None` if it could not start.
    pub(super) watcher: Option<crate::service::sys::Watcher>,
    /// A watched path changed since the last look.
    pub(super) changed: bool,
    pub(super) last_look: Instant,
    /// Why the watches are incomplete (then the daemon polls), as last logged.
    pub(super) degraded: Option<String>,
    /// When to retry unsaved records, and the delay after that.
    pub(super) retry: Option<(Instant, Duration)>,
    /// The user database's files as last read for the config (see `users_stamp`); `None`
    /// while no job names a `user`.
    pub(super) users_stamp: Option<String>,
    /// The host's zone files as last seen (`zone::host_stamp`; `None` while `TZ` rules).
    pub(super) zone_stamp: Option<String>,
    /// A change of the host's zone seen, to apply once chrono has read it (see `look_at_zone`).
    pub(super) zone_settle: Option<Instant>,
}

impl Control {
    pub(crate) fn new(
        st: &StateDir,
        run_flag: Option<PathBuf>,
        locked_at: chrono::DateTime<Utc>,
    ) -> Control {
        // A manual `start` has no ctrl before it: count the start as a beat.
        if st.heartbeat_mtime().is_none() {
            let _ = st.touch_heartbeat();
        }
        let hb_mtime = st.heartbeat_mtime();
        // Answered at once: the ctrl that launched this daemon beat just before the watches
        // were set up, and the first look comes only after recovery (slow with many runs).
        let acked = hb_mtime.filter(|m| st.ack_heartbeat(*m).is_ok());
        let beat = st.read_beat();
        // The cached mode a predecessor held over sync beats holds here too: ctrl carries it.
        let cached = crate::logic::agent_mode::latest_cached(
            None,
            &beat,
            Instant::now(),
            crate::service::state::unix_ms(SystemTime::now()),
        );
        Control {
            hb_mtime,
            hb_seen: Instant::now(),
            acked,
            run_flag,
            untrusted: None,
            locked_at,
            beat,
            cached,
            watcher: None,
            // The first pass looks (and arms the watches).
            changed: true,
            last_look: Instant::now(),
            degraded: None,
            retry: None,
            users_stamp: None,
            zone_stamp: crate::service::zone::host_stamp(),
            zone_settle: None,
        }
    }

    /// Starts the watcher thread; its changes reach the loop as `wake` calls.
    pub(crate) fn watch(&mut self, wake: impl Fn() + Send + 'static) {
        match crate::service::sys::Watcher::start(wake) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => {
                let why = format!("cannot watch files ({e})");
                warn!("{why}; looking every {}s instead", FALLBACK_POLL.as_secs());
                self.degraded = Some(why);
            }
        }
    }

    /// Whether a sleep may be long: a set wall clock wakes the loop.
    pub(crate) fn sees_clock_changes(&self) -> bool {
        self.watcher
            .as_ref()
            .is_some_and(|w| w.sees_clock_changes())
    }
}
