//! The daemon's file descriptors: the limit it runs with, the limit its runners get back, and
//! running out of them.
//!
//! Every run in flight holds descriptors of the daemon's (a pidfd, a cgroup, the output files
//! while it starts, its result files while they are read), and a daemon started with the
//! usual soft limit of 1024 runs out with a few hundred runs at once. So at start the soft
//! limit is raised to the hard one (as systemd recommends for daemons, and as Go's runtime
//! does); each runner gets the soft limit the daemon was started with back before it execs:
//! a program that uses `select()` breaks on descriptors of 1024 and above.
//!
//! When descriptors run out all the same (EMFILE, or ENFILE for the whole system), whatever
//! step failed says so in the words of [`words`], and [`mark`] notes when: the descriptor
//! table is the process's, so is this note, which the daemon's loop shows (WARN) while it is
//! recent ([`last_seen`]).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The soft limit the process was started with, once [`raise`] raised it (`NOT_RAISED`:
/// runners keep the process's own limit). Windows has no such limit to give back.
#[cfg(unix)]
static ORIGINAL_SOFT: AtomicU64 = AtomicU64::new(NOT_RAISED);
#[cfg(unix)]
const NOT_RAISED: u64 = u64::MAX;

/// When descriptors last ran out (nanoseconds after [`epoch`], plus one: 0 is never) and
/// how often.
static LAST_SEEN: AtomicU64 = AtomicU64::new(0);
static TIMES_SEEN: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// What [`raise`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raised {
    /// The soft limit the process was started with.
    pub(crate) was: u64,
    /// The soft limit now (the hard limit, where it could be raised).
    pub(crate) now: u64,
}

/// Raises the soft limit on descriptors to the hard one, once per process (later calls say
/// what the first did). Runners get the original back (see [`restore_in_child`]).
pub(crate) fn raise() -> Raised {
    static DONE: OnceLock<Raised> = OnceLock::new();
    *DONE.get_or_init(os::raise)
}

/// The soft limit on descriptors in force in this process.
pub(crate) fn limit() -> u64 {
    os::limit()
}

/// Sets the soft limit the process was started with back, for a runner about to exec (its
/// descriptors above it are closed at the exec). Nothing if [`raise`] changed nothing.
///
/// # Safety
/// In a new child before exec: one async-signal-safe call, no allocation.
#[cfg(unix)]
pub(crate) unsafe fn restore_in_child() {
    let was = ORIGINAL_SOFT.load(Ordering::Relaxed);
    if was != NOT_RAISED {
        os::set_soft(was);
    }
}

/// Whether `e` (or an error it wraps, or its words) is the daemon's running out of
/// descriptors: the process's limit (EMFILE) or the system's (ENFILE).
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    if e.raw_os_error().is_some_and(os::is_exhaustion) {
        return true;
    }
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<io::Error>()) {
        if out_of_descriptors(inner) {
            return true;
        }
    }
    names_exhaustion(&e.to_string())
}

/// Whether `text` (an error passed on as words: a wrapped error keeps its source's) names the
/// daemon's running out of descriptors, in the OS's own words for it.
pub(crate) fn names_exhaustion(text: &str) -> bool {
    os::EXHAUSTION
        .iter()
        .any(|code| text.contains(&io::Error::from_raw_os_error(*code).to_string()))
}

/// Notes that descriptors ran out now, when `e` says so; returns whether it does.
pub(crate) fn mark(e: &io::Error) -> bool {
    let out = out_of_descriptors(e);
    if out {
        mark_now();
    }
    out
}

/// As [`mark`], for an error passed on as words.
pub(crate) fn mark_text(text: &str) -> bool {
    let out = names_exhaustion(text);
    if out {
        mark_now();
    }
    out
}

fn mark_now() {
    let at = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
    LAST_SEEN.fetch_max(at, Ordering::Relaxed);
    TIMES_SEEN.fetch_add(1, Ordering::Relaxed);
}

/// When descriptors last ran out in this process, and how many times they did in all.
pub(crate) fn last_seen() -> Option<(Instant, u64)> {
    match LAST_SEEN.load(Ordering::Relaxed) {
        0 => None,
        n => Some((
            epoch() + Duration::from_nanos(n - 1),
            TIMES_SEEN.load(Ordering::Relaxed),
        )),
    }
}

/// The cause, in the words a record and the daemon's line give it, with what to do.
pub(crate) fn words() -> String {
    format!(
        "the daemon has no file descriptor left (limit {}): too many runs at once? raise LimitNOFILE or max_parallel",
        limit()
    )
}

#[cfg(unix)]
mod os {
    use super::{Raised, NOT_RAISED, ORIGINAL_SOFT};
    use std::sync::atomic::Ordering;

    pub(super) const EXHAUSTION: &[i32] = &[libc::EMFILE, libc::ENFILE];

    pub(super) fn is_exhaustion(code: i32) -> bool {
        EXHAUSTION.contains(&code)
    }

    fn get() -> libc::rlimit {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
        lim
    }

    pub(super) fn limit() -> u64 {
        get().rlim_cur
    }

    pub(super) fn raise() -> Raised {
        let lim = get();
        let was = lim.rlim_cur;
        if lim.rlim_cur >= lim.rlim_max {
            return Raised { was, now: was };
        }
        let up = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &up) } != 0 {
            return Raised { was, now: was };
        }
        // Only now: a runner lowers its limit only when the daemon's was raised.
        if was != NOT_RAISED {
            ORIGINAL_SOFT.store(was, Ordering::Relaxed);
        }
        Raised {
            was,
            now: lim.rlim_max,
        }
    }

    /// # Safety
    /// Async-signal-safe: two system calls on the stack.
    pub(super) unsafe fn set_soft(soft: u64) {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = soft.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(windows)]
mod os {
    use super::Raised;

    /// ERROR_TOO_MANY_OPEN_FILES: Windows handles have no per-process limit to raise; the
    /// error stays for what does run out.
    pub(super) const EXHAUSTION: &[i32] = &[4];

    pub(super) fn is_exhaustion(code: i32) -> bool {
        EXHAUSTION.contains(&code)
    }

    pub(super) fn limit() -> u64 {
        // The handle table's own bound (2^24 per process).
        1 << 24
    }

    pub(super) fn raise() -> Raised {
        Raised {
            was: limit(),
            now: limit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_is_told_from_the_code_a_wrapper_and_the_words() {
        let code = os::EXHAUSTION[0];
        let e = io::Error::from_raw_os_error(code);
        assert!(out_of_descriptors(&e));
        let wrapped = io::Error::new(e.kind(), format!("cannot open /x/y: {e}"));
        assert!(out_of_descriptors(&wrapped));
        assert!(out_of_descriptors(&io::Error::other(e)));
        assert!(!out_of_descriptors(&io::Error::from(
            io::ErrorKind::NotFound
        )));
        assert!(names_exhaustion(&format!("cannot write x: {wrapped}")));
        assert!(!names_exhaustion("No space left on device (os error 28)"));
    }
}
