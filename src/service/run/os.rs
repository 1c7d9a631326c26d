//! The Unix calls the spawner's parts share, none of which knows the others: locks, pidfds,
//! pipes, signals to a process group, a process's children in /proc, and the steps a new
//! child takes before it execs (with the signal mask its parent holds around the fork).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every signal blocked on this thread while it lives.
pub(super) struct BlockSignals(libc::sigset_t);

impl BlockSignals {
    pub(super) fn new() -> BlockSignals {
        // SAFETY: sigfillset/pthread_sigmask on local sets.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            BlockSignals(old)
        }
    }
}

impl Drop for BlockSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

/// The one step that holds a run's processes together, taken in the child before it execs
/// (and before it drops root for a job's `user`): it joins the run's cgroup (`cg_procs`, the
/// cgroup's `cgroup.procs`); where there is none, or joining failed, it becomes the subreaper
/// of its own descendants (`PR_SET_CHILD_SUBREAPER` survives `execve`), so that an orphan
/// among them stays below the runner while it lives, in reach of a timeout, and comes to the
/// daemon only when the runner has ended.
///
/// The cost of the subreaper: zombies of the run's orphans wait below the runner (which
/// rarely collects children it did not start) until it ends; the daemon collects them then.
///
/// `clone3(CLONE_INTO_CGROUP)` (Linux 5.7) could join the cgroup without this step, but not
/// become a subreaper, and std's `Command` has neither.
///
/// # Safety
/// In a new child before exec: async-signal-safe calls only, no allocation; `cg_procs` is
/// null or a valid C string.
pub(super) unsafe fn hold(cg_procs: *const libc::c_char) {
    if !cg_procs.is_null() {
        let fd = libc::open(cg_procs, libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            let joined = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if joined {
                return;
            }
        }
    }
    libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

/// Sets `signals` back to their default action, then unblocks every signal: the handlers are
/// the daemon's (signal-hook's forwarders), and a signal that reaches the child before exec
/// must not run them there. The spawning thread blocked every signal across the fork or
/// clone.
///
/// # Safety
/// In a new child before exec: async-signal-safe calls only, no allocation.
pub(super) unsafe fn reset_signals(signals: &[libc::c_int]) {
    for &sig in signals {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
    }
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
}

/// A pidfd for `pid`, or `None` where the kernel has none.
pub(super) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// A new non-blocking pipe (read end, write end), closed on exec.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::PipeFlags;
    Ok(rustix::pipe::pipe_with(
        PipeFlags::CLOEXEC | PipeFlags::NONBLOCK,
    )?)
}

/// A process group we may signal: never 0 (our own group) or 1, nor out of range.
fn group(pgid: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(i32::try_from(pgid).ok().filter(|g| *g > 1)?)
}

pub(super) fn signal_group(pgid: u32, sig: i32) -> bool {
    let (Some(g), Some(sig)) = (group(pgid), rustix::process::Signal::from_named_raw(sig)) else {
        return false;
    };
    rustix::process::kill_process_group(g, sig).is_ok()
}

/// True while any process of the group exists.
pub(super) fn group_alive(pgid: u32) -> bool {
    group(pgid).is_some_and(|g| match rustix::process::test_kill_process_group(g) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    })
}

/// The children of `pid` (every thread's), from /proc.
pub(super) fn children_of(pid: &str) -> Vec<u32> {
    let tasks = format!("/proc/{pid}/task");
    let Ok(list) = crate::service::sys::dir::entries(std::path::Path::new(&tasks)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in list.flatten() {
        let children = format!("{tasks}/{}/children", t.name.to_string_lossy());
        if let Ok(list) = std::fs::read_to_string(children) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}
