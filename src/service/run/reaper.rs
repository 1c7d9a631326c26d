//! The reaper: collects every runner of one [`Spawner`](super::Spawner) by its PID and reports
//! its exit, and — in a process that inherits orphans — collects those too.
//!
//! One thread per spawner polls a pidfd per runner (Linux 5.3+) plus a wake pipe, and collects
//! exactly the runners that became readable. A process that inherits orphans
//! ([`Reaper::inherit_orphans`]: the daemon, a one-shot `run-once`) collects them as soon as
//! they exit: a SIGCHLD handler wakes the reaper, which peeks at the exited child with
//! `waitid(WNOWAIT)` before it collects it, and collects it as an orphan only if it is no
//! runner — a spawn holds the [`Reaper::gate`] from before its child exists until the runner
//! is registered, and the reaper takes it before it decides — and no helper of the daemon's
//! own: those are recorded in `sys::children` under its lock from before they exist until
//! their starter has collected them, and the reaper holds that lock too when it decides
//! (always after the gate). So **every child of such a process is started either by its one
//! spawner or through `sys::children::start`**: any other child would be taken for an orphan
//! of a run, ended at a run's end, and collected under its starter's feet. On a kernel
//! without pidfds the reaper waits for any child (`waitid(P_ALL)`) and decides the same way
//! (documented in docs/RELIABILITY.md).

use super::os::{children_of, lock, pidfd_open, pipe};
use crate::service::run::ExitInfo;
use crate::service::sys::children::waitid_exited;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(super) type OnExit = Box<dyn FnOnce(u32, ExitInfo) + Send>;
/// Told whenever an inherited child was collected (the daemon's loop then looks whether a
/// finished run has anything left).
type OnInherited = Box<dyn Fn() + Send>;

/// A runner in flight: what to call when it exits, and its pidfd.
struct Runner {
    on_exit: OnExit,
    pidfd: Option<OwnedFd>,
}

/// Runners in flight, and the pipes that wake the reaper.
pub(super) struct Reaper {
    children: Mutex<HashMap<u32, Runner>>,
    /// Held by a spawn from before its child exists until its runner is registered (shared:
    /// spawns run side by side), and alone by whoever decides that a child of ours is no
    /// runner (to collect it or to claim it as an orphan): a runner spawned an instant ago is
    /// never taken for an orphan.
    gate: RwLock<()>,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    /// pidfd_open works here; without it the reaper waits for any child.
    pidfds: bool,
    /// A wake-up is already on its way: a burst of 1000 spawns wakes the reaper once, not
    /// 1000 times (each wake-up competes with the spawning thread for the CPU and the lock).
    wake_pending: AtomicBool,
    /// This process inherits orphans (it is a subreaper): every child that is no runner is one.
    inherits: AtomicBool,
    /// The read end of the pipe SIGCHLD's handler writes to, once orphans are inherited.
    sigchld: OnceLock<OwnedFd>,
    on_inherited: Mutex<Option<OnInherited>>,
    /// The orphans a run's end claimed (see `tree`): the process group of the run that claimed
    /// each, by the orphan's PID. Here because an orphan stops being a claim when the reaper
    /// collects it.
    claims: Mutex<HashMap<u32, u32>>,
}

impl Reaper {
    pub(super) fn new() -> io::Result<Reaper> {
        let (wake_r, wake_w) = pipe().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create the reaper's pipe: {e}"))
        })?;
        Ok(Reaper {
            children: Mutex::new(HashMap::new()),
            gate: RwLock::new(()),
            wake_r,
            wake_w,
            // pidfd_open on ourselves tells whether the kernel has it.
            pidfds: pidfd_open(std::process::id()).is_some(),
            wake_pending: AtomicBool::new(false),
            inherits: AtomicBool::new(false),
            sigchld: OnceLock::new(),
            on_inherited: Mutex::new(None),
            claims: Mutex::default(),
        })
    }

    /// Held around a spawn, from before its child exists until [`Reaper::register`]; other
    /// spawns may hold it too.
    pub(super) fn spawning(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Held while deciding that a child is no runner: no spawn is under way meanwhile.
    pub(super) fn deciding(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches a runner just started (under the gate). Works on a child that already exited
    /// (a zombie): its pidfd is readable at once.
    pub(super) fn register(&self, pid: u32, on_exit: OnExit) {
        let pidfd = if self.pidfds { pidfd_open(pid) } else { None };
        lock(&self.children).insert(pid, Runner { on_exit, pidfd });
    }

    pub(super) fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        // A full pipe is fine: the reaper wakes anyway.
        let _ = rustix::io::write(&self.wake_w, &[1]);
    }

    pub(super) fn is_runner(&self, pid: u32) -> bool {
        lock(&self.children).contains_key(&pid)
    }

    /// The PIDs of the runners in flight (a set: a run's end looks up each child of this
    /// process in it, and a thousand runs may be in flight).
    pub(super) fn runners(&self) -> HashSet<u32> {
        lock(&self.children).keys().copied().collect()
    }

    pub(super) fn inherits(&self) -> bool {
        self.inherits.load(Ordering::Acquire)
    }

    /// From now on every child of this process that is no runner is taken for an orphan it
    /// inherited, and collected as soon as it exits (a SIGCHLD handler wakes the reaper).
    pub(super) fn inherit_orphans(&self) {
        if self.inherits.swap(true, Ordering::AcqRel) {
            return;
        }
        match pipe() {
            Ok((read, write)) => {
                // The handler writes a byte to the pipe (non-blocking, so a full pipe just
                // drops it: the reaper is woken already); installed before any run is
                // spawned, so the spawner resets it in its children (`Prep::reset`).
                if signal_hook::low_level::pipe::register(libc::SIGCHLD, write).is_ok() {
                    let _ = self.sigchld.set(read);
                }
            }
            Err(e) => tracing::warn!(
                "cannot create the SIGCHLD pipe: {e}; orphans are collected only when a run ends"
            ),
        }
        // So that it polls the pipe from the first SIGCHLD on.
        self.wake();
    }

    pub(super) fn on_inherited_exit(&self, f: OnInherited) {
        *lock(&self.on_inherited) = Some(f);
    }

    fn inherited_exited(&self) {
        if let Some(f) = lock(&self.on_inherited).as_ref() {
            f();
        }
    }

    /// The claimed orphans (see `tree`), locked after the gate and the helpers' record.
    pub(super) fn claims(&self) -> MutexGuard<'_, HashMap<u32, u32>> {
        lock(&self.claims)
    }

    /// An inherited child exited and is collected now: it is no one's claim any more.
    /// Collected under the claims' lock, so a claimed PID is never reused while it is
    /// signalled.
    fn collect_inherited(&self, pid: u32) -> bool {
        let mut claims = self.claims();
        let collected = waitid_exited(Some(pid), libc::WNOHANG).is_some();
        claims.remove(&pid);
        collected
    }

    /// Collects `pid` if it has exited (never blocks, never touches another child).
    fn try_reap(pid: u32) -> Option<libc::c_int> {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid on one specific PID, WNOHANG, valid out pointer.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        (r == pid as libc::pid_t).then_some(status)
    }

    /// Collects the runner `pid` if it has exited, and reports its exit; false if it had not.
    fn reap_runner(&self, pid: u32) -> bool {
        let Some(status) = Reaper::try_reap(pid) else {
            return false;
        };
        if let Some(run) = lock(&self.children).remove(&pid) {
            (run.on_exit)(pid, decode(status));
        }
        true
    }
}

fn decode(status: libc::c_int) -> ExitInfo {
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    ExitInfo { code, signal }
}

/// Collects every child that has exited: runners (reported) and inherited orphans. Each is
/// looked at first without being collected (`WNOWAIT`), so a runner's exit status is never
/// taken for an orphan's.
fn collect_exited(r: &Reaper) {
    let mut inherited = false;
    // Bounded: a child that cannot be collected must not spin this thread.
    for _ in 0..100_000 {
        let Some(pid) = peek(libc::WNOHANG) else {
            break;
        };
        let collected = if r.is_runner(pid) {
            r.reap_runner(pid)
        } else {
            let gate = r.deciding();
            let own = crate::service::sys::children::hold();
            if r.is_runner(pid) {
                drop((own, gate));
                r.reap_runner(pid)
            } else if own.is_own(pid) {
                // A helper of the daemon's own (`sys::children`): its starter collects it.
                // `waitid(P_ALL)` would show it again and again, so the rest are looked up
                // by PID instead.
                drop((own, gate));
                inherited |= collect_each_exited(r);
                break;
            } else {
                inherited = true;
                r.collect_inherited(pid)
            }
        };
        if !collected {
            break;
        }
    }
    if inherited {
        r.inherited_exited();
    }
}

/// Collects, one by one, each child of this process that has exited and is neither a runner
/// nor a helper of the daemon's own: while an exited helper waits for its starter,
/// `waitid(P_ALL)` shows only that one. True if any was collected.
fn collect_each_exited(r: &Reaper) -> bool {
    let mut any = false;
    for pid in children_of("self") {
        if r.is_runner(pid) {
            r.reap_runner(pid);
            continue;
        }
        let gate = r.deciding();
        let own = crate::service::sys::children::hold();
        if !r.is_runner(pid) && !own.is_own(pid) {
            any |= r.collect_inherited(pid);
        }
        drop((own, gate));
    }
    any
}

/// The PID of a child that has exited, left uncollected (`flags`: `WNOHANG`, or 0 to wait).
fn peek(flags: libc::c_int) -> Option<u32> {
    waitid_exited(None, libc::WNOWAIT | flags)
}

fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 256];
    while rustix::io::read(fd, &mut buf).is_ok_and(|n| n > 0) {}
}

/// The reaper thread's body: never returns.
pub(super) fn run(r: &Reaper) {
    if !r.pidfds {
        return run_without_pidfds(r);
    }
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut who: Vec<u32> = Vec::new();
    let poll = |fd: &OwnedFd| libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        fds.clear();
        who.clear();
        fds.push(poll(&r.wake_r));
        let sigchld = r.sigchld.get();
        fds.push(sigchld.map_or(
            libc::pollfd {
                fd: -1,
                events: 0,
                revents: 0,
            },
            poll,
        ));
        for (pid, run) in lock(&r.children).iter() {
            if let Some(fd) = &run.pidfd {
                fds.push(poll(fd));
                who.push(*pid);
            }
        }
        // SAFETY: poll on a valid array of pollfds (a negative fd is ignored).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            drain(&r.wake_r);
            // Cleared after the drain, never before: a spawner that saw the flag set skipped
            // its byte, and one cleared before the drain would lose the byte of the next
            // spawner with it, leaving the flag set and every later child unwatched. Any
            // child registered before this point is in the set the next pass builds.
            r.wake_pending.store(false, Ordering::Release);
        }
        for (i, &pid) in who.iter().enumerate() {
            if fds[i + 2].revents != 0 {
                r.reap_runner(pid);
            }
        }
        if let Some(p) = sigchld.filter(|_| fds[1].revents != 0) {
            drain(p);
            collect_exited(r);
        }
    }
}

/// The fallback without pidfds: wait for any child to exit, then collect it as
/// [`collect_exited`] does (a runner by its PID, under the gate). Every child of this process
/// is collected here but the daemon's own helpers (`sys::children`), which their starters
/// collect.
fn run_without_pidfds(r: &Reaper) {
    loop {
        if let Some(pid) = peek(0) {
            collect_exited(r);
            if crate::service::sys::children::hold().is_own(pid) {
                // Its starter collects it in a moment; until then `peek` would show it again
                // at once. A pause rather than a spin (exits meanwhile wait that long).
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            continue;
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // No children: sleep until a spawn writes to the wake pipe.
        let mut fd = libc::pollfd {
            fd: r.wake_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        unsafe { libc::poll(&mut fd, 1, -1) };
        drain(&r.wake_r);
        // After the drain (see `run`).
        r.wake_pending.store(false, Ordering::Release);
    }
}
