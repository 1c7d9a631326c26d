//! The walk as the tree's owner: a child forked from the daemon takes the owner's effective
//! uid and gid, walks, and reports through a pipe; the parent reads the report within the
//! look's deadline, then ends and collects the child. Touches processes (fork, signals, the
//! daemon's record of its children in `sys::children`) and the tree only through the walk.

use super::fail::{Fail, Op};
use super::name::Name;
use super::report::{decode, encode, REPORT};
use super::walk::Walk;
use crate::service::sys::tree::{Removal, RemoveError};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long past its look's deadline a child may take before it is killed.
const CHILD_GRACE: Duration = Duration::from_secs(2);

/// Runs the walk in a child that took the tree owner's identity; returns what it reported.
pub(super) fn as_owner(
    walk: &mut Walk<'_>,
    uid: u32,
    gid: u32,
    tree: &Path,
) -> Result<(Result<Removal, Fail>, u64, Name), RemoveError> {
    let err = |source: io::Error| RemoveError::AsOwner {
        tree: tree.to_path_buf(),
        uid,
        source,
    };
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just created both; nothing else owns them.
    let (report_r, report_w) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    // Recorded as the daemon's own before anyone can look at it: a subreaper's spawner would
    // take it for an orphan a run left and end it (see `sys::children`).
    // Every signal blocked across the fork: none of the daemon's handlers may run in the
    // child (they write to the daemon's pipes); the child resets them, then unblocks.
    // SAFETY: signal sets on the stack; fork's child runs only `child_main`, which makes
    // system calls on memory prepared before the fork, and `_exit`s.
    let started = crate::service::sys::children::start(|| unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::fork();
        if pid == 0 {
            child_main(walk, uid, gid, report_w.as_raw_fd(), me);
        }
        let fork_err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(fork_err);
        }
        Ok((pid as u32, ()))
    });
    let pid = started.map_err(err)?.0 as libc::pid_t;
    drop(report_w);
    // The child's own handle, for the signal below: it names that process even if something
    // else collected it meanwhile (a PID could be another process's by then).
    // SAFETY: pidfd_open(2) with a PID and no flags; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new descriptor owned by nobody else.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) });
    let mut buf = [0u8; REPORT];
    let (got, killed) = read_report(&report_r, walk.deadline + CHILD_GRACE, &mut buf);
    kill_child(pid, pidfd.as_ref());
    collect(pid, pidfd.as_ref());
    if killed {
        return Err(err(io::Error::new(
            io::ErrorKind::TimedOut,
            "it did not end within its look (a hung file system in the folder?) and was killed",
        )));
    }
    match decode(&buf[..got]) {
        Some((Err(f), _, _)) if f.op == Op::Identity => {
            Err(err(io::Error::from_raw_os_error(f.errno)))
        }
        Some(r) => Ok(r),
        None => Err(err(io::Error::other(
            "it ended without a report (killed by its user?)",
        ))),
    }
}

/// Reads the walking child's report from `report_r` into `buf` until it is whole, the
/// child closes its end, or `until`; returns the bytes read and whether time ran out.
fn read_report(report_r: &OwnedFd, until: Instant, buf: &mut [u8; REPORT]) -> (usize, bool) {
    let mut got = 0;
    let mut killed = false;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            killed = true;
            break;
        }
        let mut pfd = libc::pollfd {
            fd: report_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, 60_000) as libc::c_int;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            continue;
        }
        // SAFETY: reading into the rest of our buffer.
        let n = unsafe {
            libc::read(
                report_r.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                REPORT - got,
            )
        };
        if n > 0 {
            got += n as usize;
            if got < REPORT {
                continue;
            }
        } else if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break;
    }
    (got, killed)
}

/// Ends the walking child.
fn kill_child(pid: libc::pid_t, pidfd: Option<&OwnedFd>) {
    // Its work is done (or its time is up): ended for sure, since its user may have stopped
    // it (SIGSTOP) between its report and its exit, and a stopped child is never collected.
    match pidfd {
        // SAFETY: pidfd_send_signal on our own pidfd, no info, no flags.
        Some(fd) => unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        },
        // SAFETY: our own child, not collected by us yet.
        None => unsafe {
            libc::kill(pid, libc::SIGKILL);
        },
    }
}

/// Collects the child (SIGKILLed: ending), as a recorded child of ours (see
/// `sys::children`). One that hangs in the kernel a while (an NFS or FUSE wait) is collected by
/// a thread of its own, not by the finisher.
fn collect(pid: libc::pid_t, pidfd: Option<&OwnedFd>) {
    let reap = move || {
        crate::service::sys::children::collect(pid as u32, || {
            let mut status = 0;
            // SAFETY: waitpid on our own child, which has exited, without blocking.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        })
    };
    if let Some(fd) = pidfd {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd (readable once the child has exited).
        if unsafe { libc::poll(&mut pfd, 1, 1000) } > 0 {
            return reap();
        }
    }
    let _ = std::thread::Builder::new()
        .name("tree-child".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            crate::service::sys::children::wait_exited(pid as u32);
            reap()
        });
}

/// The child's side: takes the owner's identity, walks, reports, exits.
///
/// # Safety
/// Only in a child fresh from `fork` with every signal blocked. It makes system calls only,
/// on memory prepared before the fork, and never returns.
unsafe fn child_main(
    walk: &mut Walk<'_>,
    uid: u32,
    gid: u32,
    report: RawFd,
    parent: libc::pid_t,
) -> ! {
    // The daemon's handlers would write to its pipes: default actions here.
    for sig in 1..65 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
    close_other_fds(walk.root.as_raw_fd(), report);
    // The owner's rights for every file system check (the effective ids; with an effective
    // uid that is not 0 the kernel clears every effective capability), but root's real and
    // saved uid: a process may signal another only if its own uids match the target's real or
    // saved one, so the user cannot stop this child (`kill(-1, SIGSTOP)` in a loop held each
    // removal to its deadline, two seconds past its look, while that user's runs kept ending).
    // The child runs no code of the user's and cannot be traced (below).
    let groups = [gid];
    let (mut r, mut e, mut sv) = (u32::MAX, u32::MAX, u32::MAX);
    let identity = libc::setgroups(1, groups.as_ptr()) == 0
        && libc::setresgid(gid, gid, gid) == 0
        && libc::setresuid(0, uid, 0) == 0
        && libc::getresuid(&mut r, &mut e, &mut sv) == 0
        && (r, e, sv) == (0, uid, 0)
        && libc::getegid() == gid;
    let errno = *libc::__errno_location();
    // A copy of the daemon's memory (its config, secrets) must not be readable by the user:
    // no ptrace, no /proc/PID/mem. Set after the uid change, which resets both of these.
    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    if libc::getppid() != parent {
        libc::_exit(3);
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    let result = if identity {
        walk.as_owner = true;
        walk.run()
    } else {
        Err(Fail {
            op: Op::Identity,
            errno: if errno == 0 { libc::EPERM } else { errno },
            depth: 0,
        })
    };
    let b = encode(&result, walk.entries, &walk.failed);
    libc::write(report, b.as_ptr().cast(), b.len());
    libc::_exit(0)
}

/// Closes every descriptor above stderr but `a` and `b` (close_range, Linux 5.9+; on an older
/// kernel they stay open, in a process the user can neither trace nor read).
///
/// # Safety
/// In a forked child only: it closes descriptors the parent's objects own.
unsafe fn close_other_fds(a: RawFd, b: RawFd) {
    let mut from: libc::c_uint = 3;
    for keep in [a.min(b), a.max(b)] {
        let keep = keep as libc::c_uint;
        if keep >= from {
            if keep > from {
                libc::syscall(libc::SYS_close_range, from, keep - 1, 0);
            }
            from = keep + 1;
        }
    }
    libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0);
}
