//! The children this process starts for its own use — not runs: the tree remover's child that
//! takes a user's rights (`tree_unix/child.rs`), `getent` in the static build (`users`) — and collects
//! itself.
//!
//! Why a record: the daemon is a subreaper, so a process a run leaves behind becomes its child,
//! and its reaper (`run`'s spawner) takes every child that is neither a runner nor recorded
//! here for such an orphan: it ends it at the end of a run and collects it when it exits. A
//! helper of the daemon's own taken for one was killed in the middle of its work (a user's
//! folder was never removed while runs kept ending). So every child of this process is started
//! either by the spawner (a runner) or through [`start`] (recorded before any other thread can
//! look at it), and a recorded one is collected through [`collect`] by whoever started it.
//!
//! One record per process, not a value somebody owns, because the kernel keeps one list of
//! children per process: whoever looks at that list (the spawner's reaper) must see every
//! helper in it, whichever part of the program started it (a config reload looks users up, the
//! finisher removes folders), and those parts do not hold the spawner.
//!
//! No PID is ever taken for another process's: a PID stays recorded until [`collect`] has
//! collected it, under the record's lock, and the reaper decides about a child under that lock
//! too; while a child is not collected its PID cannot be reused.

use std::io;
use std::sync::{Mutex, MutexGuard};

static OWN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn lock() -> MutexGuard<'static, Vec<u32>> {
    OWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `start`, which starts exactly one child of this process and returns its PID (and
/// whatever else it has to give), and records that PID before any other thread can decide
/// about the child: the record's lock is held across the start.
pub(crate) fn start<T>(start: impl FnOnce() -> io::Result<(u32, T)>) -> io::Result<(u32, T)> {
    let mut own = lock();
    let started = start()?;
    own.push(started.0);
    Ok(started)
}

/// Blocks until the child `pid` has exited (or is no child of ours), leaving it uncollected:
/// then [`collect`] does not wait under the record's lock.
pub(crate) fn wait_exited(pid: u32) {
    while waitid_exited(Some(pid), libc::WNOWAIT).is_none()
        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

/// `waitid(2)` for an exited child: `pid`, or any child (`None`), with `flags` beside
/// `WEXITED` (`WNOHANG`, `WNOWAIT`). The PID found, or `None`: none yet, or an error (errno).
pub(crate) fn waitid_exited(pid: Option<u32>, flags: libc::c_int) -> Option<u32> {
    let (idtype, id) = pid.map_or((libc::P_ALL, 0), |p| (libc::P_PID, p as libc::id_t));
    // SAFETY: zero is a valid siginfo_t; waitid with a valid out pointer.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::waitid(idtype, id, &mut info, libc::WEXITED | flags) };
    // SAFETY: si_pid is set (or left 0) by a successful waitid.
    let found = unsafe { info.si_pid() };
    (r == 0 && found > 0).then_some(found as u32)
}

/// Collects the child `pid` (which has exited: see [`wait_exited`]) with `collect`, under the
/// record's lock, and forgets it: from now on its PID may be another process's.
pub(crate) fn collect<T>(pid: u32, collect: impl FnOnce() -> T) -> T {
    let mut own = lock();
    let out = collect();
    own.retain(|p| *p != pid);
    out
}

/// The record held still: while this lives no helper is started or collected.
pub(crate) struct Held(MutexGuard<'static, Vec<u32>>);

impl Held {
    /// Whether `pid` is a helper of ours, not a run's orphan.
    pub(crate) fn is_own(&self, pid: u32) -> bool {
        self.0.contains(&pid)
    }
}

/// Holds the record while the caller decides about children of this process (see the module
/// doc). Whoever takes it and the spawner's gate takes the gate first.
pub(crate) fn hold() -> Held {
    Held(lock())
}
