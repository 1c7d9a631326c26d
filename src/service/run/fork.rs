//! Starting a runner as a job's user: a real `fork`, the identity dropped in the child, and
//! the wait for its exec bounded and watched.
//!
//! **Why the wait is watched.** Once the child has dropped root (setuid) and until it execs,
//! any process of that user may signal it: a `kill(-1, SIGSTOP)` loop of the user's stops it
//! there, and a parent that waits for the exec-status pipe — std's `Command::spawn` does, with
//! no bound — waits for ever: on the daemon's loop thread, or an environment build's worker,
//! with the reaper's gate held, so the reaper waits too (and every spawn after it). So the
//! spawning thread waits for the pipe in ticks of [`TICK`] and, between ticks, asks the kernel
//! whether the child was stopped (`waitid(WSTOPPED | WCONTINUED)`: a stop, or a continue
//! after one, is reported until collected, so a stop the user lifted again between two ticks
//! is seen too). A child stopped before its exec, or not exec'd [`DEADLINE`] after its fork
//! (slowed in another way the user controls, such as a FUSE mount below its working
//! directory), is killed (SIGKILL: root may signal it), collected, and the spawn fails naming
//! the cause: the run is recorded as failed with that reason.
//!
//! **Why no PID is ever reused under this.** Only this thread collects the child before the
//! spawn returns: the caller holds the reaper's gate, without which the reaper never collects
//! a child that is no runner (see `reaper`), the daemon's helpers collect only their own PIDs
//! (`sys::children`), and, unlike std's `Command`, nothing here collects it behind the
//! watcher's back (std waits for a child that reported an exec error; one stopped between that
//! report and its exit would hang that wait as well). So the PID signalled is still this
//! child, alive or a zombie.

use super::os::BlockSignals;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

/// How often the spawning thread looks whether the child was stopped while it waits for its
/// exec (an exec ends the wait at once: the pipe's end).
const TICK: Duration = Duration::from_millis(5);

/// How long a child may take from its fork to its exec. A normal one takes well under a
/// millisecond; this bounds how long a user can hold the spawning thread (and the reaper,
/// behind the gate this spawn shares) by slowing its own child without stopping it.
pub(super) const DEADLINE: Duration = Duration::from_secs(5);

/// Everything the child does between the fork and exec, prepared before the fork (the child
/// allocates nothing: another thread may have held the allocator's lock at the fork): what a
/// runner with the daemon's identity does (`vfork`'s plan), then the user's identity.
pub(super) struct Plan<'a> {
    pub(crate) shared: super::vfork::SharedPlan<'a>,
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
    pub(crate) groups: &'a [libc::gid_t],
}

/// The child's side: returns only if a step failed, with the errno.
///
/// # Safety
/// Called only in a new forked child while every signal is blocked. Async-signal-safe calls
/// only, no allocation.
unsafe fn exec_child(plan: &Plan) -> libc::c_int {
    let p = &plan.shared;
    // As root, before the identity is dropped: the run's cgroup is root's. Then groups, gid
    // and uid, each checked: a failure never execs as root. Then, as the user, the working
    // directory: a folder root chose is not entered through links the user may not follow.
    if p.first_steps()
        && libc::setgroups(plan.groups.len(), plan.groups.as_ptr()) == 0
        && libc::setgid(plan.gid) == 0
        && libc::setuid(plan.uid) == 0
    {
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            // Told apart from the exec's (negated): the fix is the folders', not the program's.
            return -*libc::__errno_location();
        }
        libc::execve(p.exe.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
    }
    *libc::__errno_location()
}

/// Starts the child; returns its PID once it has exec'd. An error if it could not (its errno),
/// or if it was stopped or slowed before its exec (then it was killed and collected). The
/// caller holds the reaper's gate (see the module doc).
pub(super) fn spawn(plan: Plan) -> io::Result<u32> {
    debug_assert!(plan.shared.argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(plan.shared.envp.last().is_some_and(|p| p.is_null()));
    // The exec-status pipe: the child's end closes at its exec (close-on-exec), or carries
    // its errno.
    let (status_r, status_w) = super::os::pipe()?;
    let report: RawFd = status_w.as_raw_fd();
    // Every signal blocked across the fork: the child resets the daemon's handlers before it
    // unmasks.
    let blocked = BlockSignals::new();
    // SAFETY: in the child, only async-signal-safe calls on memory prepared before the fork
    // (`exec_child`'s contract), then `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: the new child, every signal blocked.
        unsafe {
            let errno = exec_child(&plan);
            libc::write(
                report,
                std::ptr::addr_of!(errno).cast(),
                std::mem::size_of::<libc::c_int>(),
            );
            libc::_exit(127)
        }
    }
    let fork_err = io::Error::last_os_error();
    drop(blocked);
    drop(status_w);
    if pid < 0 {
        return Err(fork_err);
    }
    watch(pid, status_r.as_fd(), plan.uid).map_err(|e| match e.raw_os_error() {
        // The run folder could not be entered as the user (see `exec_child`).
        Some(n) if n < 0 => {
            let e = io::Error::from_raw_os_error(-n);
            io::Error::new(
                e.kind(),
                format!(
                    "cannot enter the run folder {} as uid {}: {e}; every folder above it must let that user pass (chmod o+x, or a group of the user's)",
                    plan.shared.cwd.to_string_lossy(),
                    plan.uid
                ),
            )
        }
        _ => e,
    })
}

/// Waits for the child's exec (see the module doc).
fn watch(pid: libc::pid_t, status: BorrowedFd, uid: libc::uid_t) -> io::Result<u32> {
    let forked = Instant::now();
    loop {
        let mut pfd = libc::pollfd {
            fd: status.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, TICK.as_millis() as libc::c_int) };
        if n > 0 {
            if let Some(result) = read_status(pid, status) {
                return result;
            }
        }
        let why = if let Some(sig) = stopped(pid) {
            // Stopped after its exec (the pipe closed just now) is the runner's own business,
            // ended by the run's timeout: the spawn succeeded.
            if let Some(result) = read_status(pid, status) {
                return result;
            }
            format!(
                "the runner was stopped before it could start (a process of uid {uid} sent it \
                 {}); ended",
                stop_signal_name(sig)
            )
        } else if forked.elapsed() >= DEADLINE {
            if let Some(result) = read_status(pid, status) {
                return result;
            }
            format!(
                "the runner had not started {}s after its fork (held up before its exec, \
                 where processes of uid {uid} may signal or slow it); ended",
                DEADLINE.as_secs()
            )
        } else {
            continue;
        };
        end(pid);
        return Err(io::Error::other(why));
    }
}

/// What the exec-status pipe says, if it says anything yet: its end (the child exec'd — or
/// died of a signal before, which the reaper then reports as the run's exit), or the errno of
/// the step that failed (the child is collected then).
fn read_status(pid: libc::pid_t, status: BorrowedFd) -> Option<io::Result<u32>> {
    let mut buf = [0u8; std::mem::size_of::<libc::c_int>()];
    match rustix::io::read(status, &mut buf) {
        Ok(0) => Some(Ok(pid as u32)),
        Ok(n) => {
            // The child is done (it `_exit`s after its report): it is collected here.
            end(pid);
            Some(Err(if n == buf.len() {
                io::Error::from_raw_os_error(libc::c_int::from_ne_bytes(buf))
            } else {
                io::Error::other("short read on the runner's exec-status pipe")
            }))
        }
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => None,
        Err(e) => {
            end(pid);
            Some(Err(e.into()))
        }
    }
}

/// The signal that stopped `pid`, if it was stopped (or continued after a stop) since the
/// last look; never collects it.
fn stopped(pid: libc::pid_t) -> Option<libc::c_int> {
    // SAFETY: zero is a valid siginfo_t; waitid on our own child with a valid out pointer.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG,
        )
    };
    // SAFETY: set (or left zero) by a successful waitid.
    let (found, sig) = unsafe { (info.si_pid(), info.si_status()) };
    (r == 0 && found == pid).then_some(sig)
}

fn stop_signal_name(sig: libc::c_int) -> String {
    match sig {
        libc::SIGSTOP => "SIGSTOP".into(),
        libc::SIGTSTP => "SIGTSTP".into(),
        libc::SIGTTIN => "SIGTTIN".into(),
        libc::SIGTTOU => "SIGTTOU".into(),
        // Reported as continued: the stop was lifted again before this look.
        libc::SIGCONT => "a stop signal, then SIGCONT".into(),
        n => format!("signal {n}"),
    }
}

/// Kills and collects the child (ours, and collected by no one else: see the module doc).
fn end(pid: libc::pid_t) {
    // SAFETY: kill and waitpid on our own uncollected child, with a valid out pointer.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut st = 0;
        while libc::waitpid(pid, &mut st, 0) < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}
