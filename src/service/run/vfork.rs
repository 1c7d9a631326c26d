//! Starting a runner that keeps the daemon's identity in a child that shares the daemon's
//! memory until it execs: `clone(CLONE_VM | CLONE_VFORK)`.
//!
//! Why not std's `Command`: every run takes one step before it execs (`hold`: join its cgroup,
//! or become the subreaper of its descendants), which std can only do in a `pre_exec` closure,
//! and with one std forks — a copy of the daemon's page tables, then copy-on-write faults and
//! TLB shootdowns in the (multi-threaded) daemon. What that costs is measured in the module
//! doc of `unix`.
//!
//! The child calls only async-signal-safe functions on memory prepared before the clone and
//! never allocates: it shares the parent's memory, where a lock may be held. It can take no
//! other identity: [`SharedPlan`] has no place for one (glibc's `setuid` signals every thread
//! of the process, the setxid broadcast — only safe in a real fork, which `Spawner::spawn_as`
//! does).

use super::os::{hold, reset_signals, BlockSignals};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;

/// Everything the child does between the clone and exec, as raw pointers into memory the
/// caller keeps alive for `'a` (the whole spawn). No identity: see the module doc.
pub(super) struct SharedPlan<'a> {
    pub(crate) exe: &'a CString,
    /// NUL-terminated arrays of pointers into the caller's strings.
    pub(crate) argv: &'a [*const libc::c_char],
    pub(crate) envp: &'a [*const libc::c_char],
    pub(crate) cwd: &'a CString,
    /// stdin, stdout, stderr: descriptors above 2 (so that no `dup2` overwrites another).
    pub(crate) stdio: [BorrowedFd<'a>; 3],
    /// `cgroup.procs` of the run's cgroup (see `hold`).
    pub(crate) cg_procs: Option<&'a CString>,
    /// Signals to set back to their default action (see `Prep::reset`).
    pub(crate) reset: &'a [libc::c_int],
}

/// The stacks `CLONE_VM` children run on until they exec: one per spawn under way, reused
/// (each spawn waits for its child's exec before it gives its stack back; spawns on two
/// threads take two). Mapped at their first use rather than allocated zeroed: only the pages a
/// child's few calls reach become memory. A zeroed 64 KiB buffer was 64 KiB of the daemon's
/// private memory for its whole life (issue 25: an idle daemon's private dirty memory is
/// measured against cron's).
#[derive(Default)]
pub(super) struct Stack(Mutex<Vec<Mapped>>);

/// The stack's anonymous mapping, `STACK_SIZE` bytes.
struct Mapped(std::ptr::NonNull<libc::c_void>);

// SAFETY: the mapping is plain memory owned by the `Stack`; the mutex serialises its use.
unsafe impl Send for Mapped {}

impl Mapped {
    fn new() -> io::Result<Mapped> {
        use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};
        // SAFETY: a fresh private anonymous mapping at an address the kernel picks; nothing
        // else refers to it.
        let p = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                STACK_SIZE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::STACK,
            )
        }?;
        std::ptr::NonNull::new(p)
            .map(Mapped)
            .ok_or_else(|| io::Error::other("mmap returned a null stack"))
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: our own mapping of STACK_SIZE bytes; no child runs on it any more (each
        // spawn waits for its child's exec while holding the stack).
        let _ = unsafe { rustix::mm::munmap(self.0.as_ptr(), STACK_SIZE) };
    }
}

const STACK_SIZE: usize = 64 * 1024;

/// What the child reads (its plan) and writes back (the exec error).
struct Child<'a> {
    plan: SharedPlan<'a>,
    errno: libc::c_int,
}

impl SharedPlan<'_> {
    /// What every runner's child does first, as root: a session and process group of its
    /// own, its run's cgroup (root's) or the hold of its descendants, default signal actions,
    /// its stdio, and nothing else open across the exec. False if a step failed (errno says
    /// which).
    ///
    /// A session of its own, not only a group: a runner must never have the terminal of
    /// whoever started the daemon or `run-once` as its controlling terminal, where a job's
    /// user could write escape sequences past the daemon's sanitising or push input into the
    /// admin's root shell (`TIOCSTI`). And every descriptor above stderr is closed at the exec,
    /// whatever the starting process inherited and kept (a `run-once` or `start --foreground`
    /// run as `7</etc/shadow`): the runner gets its stdio only, and the soft limit on
    /// descriptors the daemon was started with (`sys::descriptors`).
    ///
    /// # Safety
    /// Only in a new child (forked or cloned) while every signal is blocked: async-signal-safe
    /// calls only, no allocation.
    pub(super) unsafe fn first_steps(&self) -> bool {
        if libc::setsid() < 0 {
            libc::setpgid(0, 0);
        }
        hold(self.cg_procs.map_or(std::ptr::null(), |c| c.as_ptr()));
        reset_signals(self.reset);
        let [stdin, stdout, stderr] = self.stdio.map(|fd| fd.as_raw_fd());
        let stdio =
            libc::dup2(stdin, 0) >= 0 && libc::dup2(stdout, 1) >= 0 && libc::dup2(stderr, 2) >= 0;
        // Close-on-exec for the rest (Linux 5.11+; older kernels: docs/SECURITY.md).
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        // The daemon's raised limit is not the runner's: a program that uses `select()`
        // breaks on descriptors of 1024 and above. Last, as this child still needs
        // descriptors above that limit (the daemon's numbers) until the exec closes them.
        crate::service::sys::descriptors::restore_in_child();
        stdio
    }
}

/// The child's side: returns only if exec failed, with the errno.
///
/// # Safety
/// Called only in a child cloned with `CLONE_VM | CLONE_VFORK` while every signal is blocked.
/// Async-signal-safe calls only, no allocation (reading the plan's pointers allocates
/// nothing).
unsafe fn exec_child(p: &SharedPlan) -> libc::c_int {
    if p.first_steps() && libc::chdir(p.cwd.as_ptr()) == 0 {
        libc::execve(p.exe.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
    }
    *libc::__errno_location()
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's Child, alive while the parent waits (CLONE_VFORK);
    // exec_child's contract holds (see `spawn`).
    unsafe {
        let c = arg.cast::<Child>();
        let errno = exec_child(&(*c).plan);
        std::ptr::write_volatile(std::ptr::addr_of_mut!((*c).errno), errno);
        libc::_exit(127)
    }
}

/// Starts the child; returns its PID once it has exec'd, and the exec error if it could not
/// (the child has exited then, and is left for the caller to collect).
pub(super) fn spawn(plan: SharedPlan, stack: &Stack) -> io::Result<(u32, Option<io::Error>)> {
    debug_assert!(plan.argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(plan.envp.last().is_some_and(|p| p.is_null()));
    let free = stack.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mine = match free {
        Some(m) => m,
        None => Mapped::new()?,
    };
    // Given back however this spawn ends.
    struct Back<'a>(&'a Stack, Option<Mapped>);
    impl Drop for Back<'_> {
        fn drop(&mut self) {
            if let Some(m) = self.1.take() {
                self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).push(m);
            }
        }
    }
    let base = mine.0.as_ptr() as usize;
    let _back = Back(stack, Some(mine));
    // The stack grows down from its (16-byte aligned) end.
    let top = (base + STACK_SIZE) & !15;
    let mut child = Child { plan, errno: 0 };
    // Every signal blocked across the clone: a handler must never run in the child while it
    // shares our memory. The child resets dispositions, then unmasks.
    let blocked = BlockSignals::new();
    // SAFETY: clone with a valid function, stack and argument that all outlive the child's
    // use of them (CLONE_VFORK suspends this thread until the child execs or exits).
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of_mut!(child).cast(),
        )
    };
    let clone_err = io::Error::last_os_error();
    drop(blocked);
    if pid < 0 {
        return Err(clone_err);
    }
    // SAFETY: the child wrote it (or not) before it exec'd or exited; it is done with it.
    let errno = unsafe { std::ptr::read_volatile(std::ptr::addr_of!(child.errno)) };
    Ok((
        pid as u32,
        (errno != 0).then(|| io::Error::from_raw_os_error(errno)),
    ))
}
