//! How times read when the agent caches ctrl's output (`plugins/<N>/` on Linux, a cached
//! plugin on Windows): Checkmk shows that output for up to N seconds and more, so "last run
//! 16s ago" would still say 16s when the cache is minutes old. In cached mode a time is
//! written as an absolute time (UTC), and a job without a result yet says that results follow
//! with the agent's next refresh instead of looking like a missing result (UNKNOWN).
//!
//! The mode is a property of one rendering (the report's `ctrl.mode`), set for its duration
//! with [`Scope`]; the line renderer asks [`absolute`]. Pure logic: no I/O.

use chrono::{DateTime, Utc};
use std::cell::RefCell;

thread_local! {
    /// The mode of the rendering in progress on this thread: `cached 300s (plugins/300/)`.
    static CACHED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Sets the mode for one rendering; the previous one comes back when it is dropped.
pub(crate) struct Scope {
    before: Option<String>,
}

impl Scope {
    /// `mode`: the report's `ctrl.mode` (`sync`, `cached 300s (…)`), if any.
    pub(crate) fn new(mode: Option<&str>) -> Scope {
        let now = mode.filter(|m| m.starts_with("cached")).map(str::to_string);
        Scope {
            before: CACHED.with(|c| c.replace(now)),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let before = self.before.take();
        CACHED.with(|c| *c.borrow_mut() = before);
    }
}

/// The cached mode in force for this rendering, if any.
pub(crate) fn absolute() -> Option<String> {
    CACHED.with(|c| c.borrow().clone())
}

/// `t` as an absolute time: `2026-12-04 17:03:21 UTC`.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// What a job without a result says in cached mode, after its due time.
pub(crate) fn pending(mode: &str) -> String {
    format!("; its result follows with the agent's next refresh of this output ({mode})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_holds_for_one_rendering() {
        assert_eq!(absolute(), None);
        {
            let _s = Scope::new(Some("cached 300s (plugins/300/)"));
            assert_eq!(absolute().as_deref(), Some("cached 300s (plugins/300/)"));
            {
                let _inner = Scope::new(Some("sync"));
                assert_eq!(absolute(), None);
            }
            assert!(absolute().is_some());
        }
        assert_eq!(absolute(), None);
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(time(t), "2023-11-14 22:13:20 UTC");
    }
}
