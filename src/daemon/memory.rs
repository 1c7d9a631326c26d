//! Giving memory back when the daemon goes idle (see [`crate::sys::memory`]).
//!
//! Start-up (argument and config parsing) and a burst of runs (forks, records, robot results)
//! leave freed heap behind that malloc keeps. Once nothing is due, queued or running for
//! [`IDLE`], and the process touched enough new pages since the last release, it is handed
//! back, so the idle daemon's private memory stays flat however many runs came before.

use super::Daemon;
use crate::config::{self, Config, ConfigError, Job};
use chrono::Utc;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Released only before a quiet spell at least this long, and at most once per spell this
/// long: the pages come back (minor faults) on the next pass that uses them, so releasing
/// between closely spaced runs would only trade them back and forth.
const IDLE: Duration = Duration::from_secs(30);
/// New page faults since the last release that make another one worth it: one wake-up for a
/// heartbeat maps a few dozen pages of code again, a run many more; a loop that only sleeps
/// maps none.
const MIN_NEW_FAULTS: u64 = 16;

impl Daemon {
    /// Called before the loop sleeps.
    pub(super) fn release_when_idle(&mut self) {
        if self.oneshot {
            return;
        }
        let faults = crate::sys::memory::page_faults();
        // The first quiet spell always releases: start-up touched most of the program.
        if let Some((at, when)) = self.released {
            if faults < at.saturating_add(MIN_NEW_FAULTS) || when.elapsed() < IDLE {
                return;
            }
        }
        if !self.active.is_empty()
            || !self.queue.is_empty()
            || !self.lingering.is_empty()
            || self.finishing > 0
        {
            return;
        }
        let horizon = Utc::now() + IDLE;
        if self
            .jobs
            .values()
            .any(|js| js.next.is_some_and(|n| n.fire_at < horizon))
        {
            return;
        }
        // A burst of runs leaves its high-water capacity behind (a slot of `active` or `queue`
        // holds a whole run record): nothing is in flight now, so it goes.
        self.active.shrink_to_fit();
        self.queue.shrink_to_fit();
        self.lingering.shrink_to_fit();
        self.just_started.shrink_to_fit();
        for js in self.jobs.values_mut() {
            js.running.shrink_to_fit();
        }
        crate::sys::memory::release_unused();
        self.released = Some((crate::sys::memory::page_faults(), Instant::now()));
    }
}

/// [`config::load`] for the daemon, which keeps the result for its whole life.
///
/// Parsing a config leaves several times the size of the result behind as garbage (the TOML
/// document, the raw tables, spans), freed in small pieces between the pieces that live on:
/// holes malloc cannot hand back (10,000 jobs: 9 MB of holes around 4.5 MB). So the parse
/// runs on a short-lived thread, which glibc gives a heap (arena) of its own, and the result
/// is copied onto this thread's heap, where it lies packed; the parse heap is then all free,
/// and [`crate::sys::memory::release_unused`] hands it back.
pub(super) fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let parsed = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("config".into())
            .spawn_scoped(s, || config::load(path))
            .ok()
            .map(|h| h.join())
    });
    match parsed {
        Some(Ok(result)) => result.map(|c| deep_copy(&c)),
        // No thread (or it died): parse here, packed or not.
        _ => config::load(path),
    }
}

/// A copy of `c` that shares nothing with it (`Config::clone` shares the jobs).
fn deep_copy(c: &Config) -> Config {
    Config {
        path: c.path.clone(),
        daemon: c.daemon.clone(),
        jobs: c.jobs.iter().map(|j| Arc::new(Job::clone(j))).collect(),
    }
}
