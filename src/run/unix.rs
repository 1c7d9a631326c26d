//! Unix runs: each runner leads a new process group; SIGTERM then SIGKILL go to the group.
//!
//! Spawning is a plain `fork` + `execve` that returns as soon as the child exists, instead of
//! std's spawn, which blocks until the child has exec'd (~0.5 ms each here: 100 runs due at once
//! would start 50 ms late). Everything the child needs is prepared before the fork, and the
//! child calls only async-signal-safe functions. An exec error travels back through a
//! close-on-exec pipe and is reported with the exit.
//!
//! A process group does not hold a run: a descendant may call `setsid` or `setpgid` and leave
//! it. Every descendant carries the run's tag in its environment (`ROBOTMK_RUN_DIR=<run
//! folder>`, set for the runner and inherited), and the supervising process is a *child
//! subreaper*, so escaped descendants whose parents die become its children instead of
//! init's. Ending a run's tree = its group plus every process carrying its tag; telling
//! whether anything is left = its group, or a child of ours that is no runner and carries
//! the tag (cheap: our own children list, no scan of all processes).
//!
//! Each child is waited for by its own PID, never with `waitpid(-1)`: a global reap would
//! steal the exit of any child this process starts another way (`std::process::Command`). One
//! reaper thread polls a pidfd per child (Linux 5.3+) plus a wake pipe, and collects exactly
//! the children that became readable. The orphans this subreaper inherits from runs are
//! collected the same way once they are known (see [`tree_alive`], [`kill_tree`]). On a kernel
//! without pidfds the reaper falls back to `waitpid(-1)` (documented in docs/RELIABILITY.md).

#[path = "cgroup.rs"]
mod cgroup;

use super::{ExitInfo, RunSpec};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

type OnExit = Box<dyn FnOnce(u32, ExitInfo) + Send>;

/// A runner in flight: what to call when it exits, its exec-error pipe, its pidfd.
struct Runner {
    on_exit: OnExit,
    exec_error: ExecError,
    pidfd: Option<OwnedFd>,
}

/// How a runner's exec error is learnt: known when a `CLONE_VFORK` spawn returns, or read
/// from a close-on-exec pipe once a forked child is gone.
enum ExecError {
    Known(Option<String>),
    Pipe(OwnedFd),
}

/// Children in flight, and the pipe that tells the reaper the set changed.
struct Reaper {
    children: Mutex<HashMap<u32, Runner>>,
    /// Descendants of runs to collect once they are our children and have exited (we are
    /// their subreaper): a pidfd each, and whether it is parked (exited, but still its old
    /// parent's child: retried every second until it is ours or gone).
    orphans: Mutex<HashMap<u32, (OwnedFd, bool)>>,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    /// pidfd_open works here; without it the reaper uses `waitpid(-1)`.
    pidfds: bool,
    /// A wake-up is already on its way: a burst of 1000 spawns wakes the reaper once, not
    /// 1000 times (each wake-up competes with the spawning thread for the CPU and the lock).
    wake_pending: std::sync::atomic::AtomicBool,
}

/// A pidfd for `pid` (a child of ours), or `None` where the kernel has none.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) with a PID and no flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a new descriptor owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn reaper() -> io::Result<&'static Reaper> {
    static REAPER: OnceLock<io::Result<Reaper>> = OnceLock::new();
    static STARTED: OnceLock<io::Result<()>> = OnceLock::new();
    let r = match REAPER.get_or_init(|| {
        let mut fds = [0; 2];
        // SAFETY: pipe2 with a valid array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 just created these descriptors.
        let (wake_r, wake_w) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // pidfd_open on ourselves tells whether the kernel has it.
        let pidfds = pidfd_open(std::process::id()).is_some();
        Ok(Reaper {
            children: Mutex::new(HashMap::new()),
            orphans: Mutex::new(HashMap::new()),
            wake_r,
            wake_w,
            pidfds,
            wake_pending: std::sync::atomic::AtomicBool::new(false),
        })
    }) {
        Ok(r) => r,
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create the reaper's pipe: {e}"),
            ))
        }
    };
    let started = STARTED.get_or_init(|| {
        raise_fd_limit();
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                background_thread();
                reap_forever(r)
            })
            .map(|_| ())
    });
    match started {
        Ok(()) => Ok(r),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot start the reaper thread: {e}"),
        )),
    }
}

impl Reaper {
    fn wake(&self) {
        use std::sync::atomic::Ordering;
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: writing one byte to our own non-blocking pipe; a full pipe is fine (the
        // reaper wakes anyway).
        unsafe {
            libc::write(self.wake_w.as_raw_fd(), [1u8].as_ptr().cast(), 1);
        }
    }

    /// Collects `pid` if it has exited (never blocks, never touches another child).
    fn try_reap(pid: u32) -> Option<libc::c_int> {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid on one specific PID, WNOHANG, valid out pointer.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        (r == pid as libc::pid_t).then_some(status)
    }

    fn finish_runner(&self, pid: u32, status: libc::c_int) {
        let entry = self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
        if let Some(run) = entry {
            let mut exit = decode(status);
            exit.spawn_error = match run.exec_error {
                ExecError::Known(e) => e,
                ExecError::Pipe(p) => read_exec_error(&p),
            };
            (run.on_exit)(pid, exit);
        }
    }

    /// Descendants of a run to collect from now on (they carry its tag, or were in its group):
    /// whether they are our children yet or not, the pidfd names exactly that process.
    fn adopt_orphans(&self, pids: impl IntoIterator<Item = u32>) {
        if !self.pidfds {
            return; // the waitpid(-1) fallback collects them anyway
        }
        let pids: Vec<u32> = {
            let runners = self.children.lock().unwrap_or_else(|e| e.into_inner());
            pids.into_iter()
                .filter(|p| !runners.contains_key(p))
                .collect()
        };
        let mut orphans = self.orphans.lock().unwrap_or_else(|e| e.into_inner());
        let mut added = false;
        for pid in pids {
            if let std::collections::hash_map::Entry::Vacant(v) = orphans.entry(pid) {
                if let Some(fd) = pidfd_open(pid) {
                    v.insert((fd, false));
                    added = true;
                }
            }
        }
        drop(orphans);
        if added {
            self.wake();
        }
    }
}

/// The cgroup of each run that has one, by its process group id.
fn run_cgroups() -> &'static Mutex<HashMap<u32, PathBuf>> {
    static CGROUPS: OnceLock<Mutex<HashMap<u32, PathBuf>>> = OnceLock::new();
    CGROUPS.get_or_init(Default::default)
}

fn cgroup_of(pgid: u32) -> Option<PathBuf> {
    run_cgroups()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&pgid)
        .cloned()
}

/// Runs get a cgroup each from now on, if this process sits in a cgroup systemd delegated to
/// it (the daemon's transient unit). Returns where, or why not.
pub fn enable_cgroups() -> Result<PathBuf, String> {
    cgroup::enable()
}

/// What became of a watched orphan.
enum Orphan {
    /// Collected (it was our child and had exited).
    Reaped,
    /// Exited, but still another process's child: try again later.
    NotOurs,
    /// Gone: its parent collected it.
    Gone,
}

/// Tries to collect the process `fd` names (exactly that one: no PID reuse can mislead it).
fn reap_pidfd(fd: &OwnedFd) -> Orphan {
    // SAFETY: zero is a valid siginfo_t; waitid(P_PIDFD) with a valid descriptor and flags.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            fd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    // SAFETY: si_pid is set by a successful waitid that found a child.
    if r == 0 && unsafe { info.si_pid() } != 0 {
        return Orphan::Reaped;
    }
    // Signal 0 through the pidfd: ESRCH once the process is fully gone.
    // SAFETY: pidfd_send_signal with a valid descriptor, signal 0, no info, no flags.
    let alive = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    } == 0
        || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    if alive {
        Orphan::NotOurs
    } else {
        Orphan::Gone
    }
}

/// Each run in flight holds two descriptors (its exec-error pipe and its pidfd) until it is
/// reaped: lift the soft limit to the hard one, so 1000 parallel runs do not hit a default of
/// 1024.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn reap_forever(r: &'static Reaper) {
    if !r.pidfds {
        return reap_all_forever(r);
    }
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut who: Vec<(u32, bool)> = Vec::new(); // (pid, is a runner)
    loop {
        fds.clear();
        who.clear();
        let poll = |fd: &OwnedFd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        fds.push(poll(&r.wake_r));
        for (pid, run) in r.children.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(fd) = &run.pidfd {
                fds.push(poll(fd));
                who.push((*pid, true));
            }
        }
        let mut parked = false;
        for (pid, (fd, is_parked)) in r.orphans.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if *is_parked {
                parked = true;
            } else {
                fds.push(poll(fd));
                who.push((*pid, false));
            }
        }
        // Parked orphans are retried every second; otherwise sleep until something happens.
        let timeout = if parked { 1000 } else { -1 };
        // SAFETY: poll on a valid array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 256];
            // SAFETY: draining our own non-blocking pipe into a local buffer.
            while unsafe { libc::read(r.wake_r.as_raw_fd(), buf.as_mut_ptr().cast(), 256) } > 0 {}
            // Cleared after the drain, never before: a spawner that saw the flag set skipped
            // its byte, and one cleared before the drain would lose the byte of the next
            // spawner with it, leaving the flag set and every later child unwatched. Any
            // child registered before this point is in the set the next pass builds.
            r.wake_pending
                .store(false, std::sync::atomic::Ordering::Release);
        }
        for (i, &(pid, runner)) in who.iter().enumerate() {
            if fds[i + 1].revents != 0 && runner {
                if let Some(status) = Reaper::try_reap(pid) {
                    r.finish_runner(pid, status);
                }
            }
        }
        // Orphans that exited (readable) and parked ones: collect, park, or forget.
        let mut orphans = r.orphans.lock().unwrap_or_else(|e| e.into_inner());
        let ready: Vec<u32> = who
            .iter()
            .enumerate()
            .filter(|(i, (_, runner))| !runner && fds[i + 1].revents != 0)
            .map(|(_, (pid, _))| *pid)
            .chain(orphans.iter().filter(|(_, o)| o.1).map(|(p, _)| *p))
            .collect();
        for pid in ready {
            let Some((fd, _)) = orphans.get(&pid) else {
                continue;
            };
            match reap_pidfd(fd) {
                Orphan::Reaped | Orphan::Gone => {
                    orphans.remove(&pid);
                }
                Orphan::NotOurs => {
                    if let Some(o) = orphans.get_mut(&pid) {
                        o.1 = true;
                    }
                }
            }
        }
    }
}

/// The fallback without pidfds: collect every child with `waitpid(-1)` (then this process
/// must start children through this module alone).
fn reap_all_forever(r: &'static Reaper) {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid with a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            r.finish_runner(pid as u32, status);
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
        let mut buf = [0u8; 256];
        // SAFETY: draining our own non-blocking pipe.
        while unsafe { libc::read(r.wake_r.as_raw_fd(), buf.as_mut_ptr().cast(), 256) } > 0 {}
        // After the drain (see reap_forever).
        r.wake_pending
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The errno the child wrote before `_exit(127)` if it could not exec, else `None` (the pipe
/// was closed by a successful exec).
fn read_exec_error(pipe: &OwnedFd) -> Option<String> {
    let mut buf = [0u8; 4];
    // SAFETY: reading into a 4-byte buffer from a pipe whose writers are all gone.
    let n = unsafe { libc::read(pipe.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
    (n == 4).then(|| io::Error::from_raw_os_error(i32::from_ne_bytes(buf)).to_string())
}

fn decode(status: libc::c_int) -> ExitInfo {
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    ExitInfo {
        code,
        signal,
        spawn_error: None,
    }
}

fn cstring(s: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"))
}

fn is_executable(p: &Path) -> bool {
    let Ok(c) = cstring(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) on a valid C string.
    p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
}

/// Resolved programs by (name, PATH): a PATH search is a stat per directory, and the same
/// runner is resolved again at every start. A hit is re-checked with one `access`.
fn resolve_cached(program: &str, path_var: Option<&OsStr>, cwd: &Path) -> io::Result<PathBuf> {
    type Cache = Mutex<HashMap<(String, OsString), PathBuf>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    if program.contains('/') {
        return resolve(program, path_var, cwd);
    }
    let key = (
        program.to_string(),
        path_var.map(OsStr::to_os_string).unwrap_or_default(),
    );
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        if is_executable(p) {
            return Ok(p.clone());
        }
    }
    let p = resolve(program, path_var, cwd)?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, p.clone());
    Ok(p)
}

/// Finds `program` like execvp would, but in the parent, so that a missing runner is an error
/// at once instead of a child that dies.
fn resolve(program: &str, path_var: Option<&OsStr>, cwd: &Path) -> io::Result<PathBuf> {
    if program.contains('/') {
        let p = cwd.join(program);
        return if is_executable(&p) {
            Ok(p)
        } else if p.exists() {
            Err(io::Error::from_raw_os_error(libc::EACCES))
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        };
    }
    let path = path_var
        .map(OsStr::to_os_string)
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

/// The daemon's own environment, read once: every runner gets it plus its job's variables.
/// Nothing in this process changes its environment after start.
fn base_env() -> &'static [(OsString, OsString)] {
    static ENV: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
    ENV.get_or_init(|| std::env::vars_os().collect())
}

/// The signals whose disposition a runner must not inherit: those with a handler of the
/// daemon's, and SIGPIPE, which Rust ignores (ignored ones stay ignored, as across any exec).
/// Looked up once, at the first spawn (64 syscalls each time would cost more than the rest of
/// a spawn's preparation): the daemon installs its handlers before it starts any run.
fn signals_to_reset() -> &'static [libc::c_int] {
    static RESET: OnceLock<Vec<libc::c_int>> = OnceLock::new();
    RESET.get_or_init(|| {
        (1..=libc::SIGRTMAX())
            .filter(|&sig| {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    return false;
                }
                // SAFETY: a query only (null new action), into a zeroed local struct.
                let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
                if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
                    return false;
                }
                old.sa_sigaction != libc::SIG_DFL
                    && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            })
            .collect()
    })
}

/// Everything the child does between the fork (or clone) and exec, prepared in the parent as
/// raw pointers into memory that outlives the child's use of it.
struct ChildPlan {
    exe: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdout: *const libc::c_char,
    stderr: *const libc::c_char,
    null_fd: libc::c_int,
    /// `cgroup.procs` of the run's cgroup, or null.
    cg_procs: *const libc::c_char,
    /// Signals to set back to their default action (see [`signals_to_reset`]).
    reset: *const libc::c_int,
    reset_len: usize,
    /// (uid, gid, groups) to take, for a job's `user`.
    run_as: Option<(libc::uid_t, libc::gid_t, *const libc::gid_t, usize)>,
}

/// The child's side: returns only if exec failed, with the errno.
///
/// # Safety
/// Called only in a new child (forked, or cloned with `CLONE_VM | CLONE_VFORK` while every
/// signal is blocked). It calls async-signal-safe functions only and never allocates: a
/// `CLONE_VM` child shares the parent's memory, where a lock may be held.
unsafe fn exec_child(p: &ChildPlan) -> libc::c_int {
    libc::setpgid(0, 0);
    if !p.cg_procs.is_null() {
        let fd = libc::open(p.cg_procs, libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
    // Handlers are the daemon's (signal-hook's forwarders): a signal that reached the child
    // before exec must not run them here. Then unmask.
    for i in 0..p.reset_len {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(*p.reset.add(i), &dfl, std::ptr::null_mut());
    }
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    libc::dup2(p.null_fd, 0);
    let out = open_output(p.stdout);
    let err = open_output(p.stderr);
    if out >= 0
        && err >= 0
        && libc::dup2(out, 1) >= 0
        && libc::dup2(err, 2) >= 0
        // Output files first (root's, in the daemon's own folder), then the identity: groups
        // before gid before uid, each checked, so a failure never execs as root.
        && p.run_as.is_none_or(|(uid, gid, groups, n)| {
            libc::setgroups(n as _, groups) == 0 && libc::setgid(gid) == 0 && libc::setuid(uid) == 0
        })
        && libc::chdir(p.cwd) == 0
    {
        if out > 2 {
            libc::close(out);
        }
        if err > 2 {
            libc::close(err);
        }
        libc::execve(p.exe, p.argv, p.envp);
    }
    *libc::__errno_location()
}

/// Opens a runner's output file in the child: never through a link planted in the run folder,
/// and a regular file only. A FIFO would block the open until some reader came, and with
/// `CLONE_VFORK` the daemon's loop waits for this child: `O_NONBLOCK` turns that into an error
/// (ENXIO without a reader; EINVAL for any other kind of file), then is cleared again.
///
/// # Safety
/// As [`exec_child`]: async-signal-safe calls only, no allocation.
unsafe fn open_output(path: *const libc::c_char) -> libc::c_int {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_NOFOLLOW;
    let fd = libc::open(path, flags | libc::O_NONBLOCK, 0o600 as libc::c_uint);
    if fd < 0 {
        return fd;
    }
    let mut st: libc::stat = std::mem::zeroed();
    if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        libc::close(fd);
        *libc::__errno_location() = libc::EINVAL;
        return -1;
    }
    libc::fcntl(
        fd,
        libc::F_SETFL,
        flags & !libc::O_CREAT & !libc::O_NOFOLLOW,
    );
    fd
}

/// A `CLONE_VM` child's plan and what it reports back (shared memory: the parent is
/// suspended until the child has exec'd or exited).
struct VforkChild {
    plan: ChildPlan,
    errno: libc::c_int,
}

extern "C" fn vfork_child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's VforkChild, alive while the parent waits (CLONE_VFORK);
    // exec_child's contract holds (see spawn).
    unsafe {
        let c = arg.cast::<VforkChild>();
        let errno = exec_child(&(*c).plan);
        std::ptr::write_volatile(std::ptr::addr_of_mut!((*c).errno), errno);
        libc::_exit(127)
    }
}

/// The stack `CLONE_VM` children run on until they exec: one, reused (the parent waits for
/// each child to exec before it spawns the next).
const VFORK_STACK: usize = 64 * 1024;

/// Starts the child with `clone(CLONE_VM | CLONE_VFORK)`: no copy of the daemon's page tables
/// and no copy-on-write faults and TLB shootdowns in the daemon afterwards, which is what a
/// fork of a multi-threaded daemon costs per start (perf: most of the spawning thread's time
/// at 1000 runs due at once). Returns the PID and the exec error, known at return.
fn spawn_vfork(plan: ChildPlan) -> io::Result<(u32, Option<String>)> {
    static STACK: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    let mut stack = STACK.lock().unwrap_or_else(|e| e.into_inner());
    if stack.is_empty() {
        stack.resize(VFORK_STACK, 0);
    }
    // The stack grows down from its (16-byte aligned) end.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let mut child = VforkChild { plan, errno: 0 };
    // Every signal blocked across the clone: a handler must never run in the child while it
    // shares our memory. The child resets dispositions, then unmasks.
    // SAFETY: sigfillset/pthread_sigmask on local sets; clone with a valid function, stack
    // and argument that all outlive the child's use of them (CLONE_VFORK suspends this
    // thread until the child execs or exits).
    let (pid, errno) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            vfork_child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of_mut!(child).cast(),
        );
        let clone_err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_err);
        }
        (
            pid,
            std::ptr::read_volatile(std::ptr::addr_of!(child.errno)),
        )
    };
    drop(stack);
    let exec_error = (errno != 0).then(|| io::Error::from_raw_os_error(errno).to_string());
    Ok((pid as u32, exec_error))
}

/// Starts the runner in its own process group; `on_exit` is called (on the reaper thread) when
/// it exits. Returns its PID, which is also the group id.
pub fn spawn(
    spec: RunSpec,
    on_exit: impl FnOnce(u32, ExitInfo) + Send + 'static,
) -> io::Result<u32> {
    let Some(program) = spec.argv.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    // Everything the child touches is built here: it may not allocate after the fork.
    let own = |k: &OsStr| spec.env.contains_key(k.to_str().unwrap_or_default());
    let envp: Vec<CString> = base_env()
        .iter()
        .filter(|(k, _)| !own(k))
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(kv)
        })
        .chain(spec.env.iter().map(|(k, v)| cstring(format!("{k}={v}"))))
        .collect::<io::Result<_>>()?;
    let path_var = match spec.env.get("PATH") {
        Some(p) => Some(OsStr::new(p.as_str())),
        None => base_env()
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_os_str()),
    };
    let exe = resolve_cached(program, path_var, &spec.working_dir)?;
    let exe = cstring(exe.into_os_string().into_vec())?;
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let cwd = cstring(spec.working_dir.as_os_str().as_bytes())?;
    static DEV_NULL: OnceLock<std::fs::File> = OnceLock::new();
    let null = match DEV_NULL.get() {
        Some(f) => f,
        None => {
            let f = std::fs::File::open("/dev/null")?;
            DEV_NULL.get_or_init(|| f)
        }
    };
    let out_path = cstring(spec.stdout.as_os_str().as_bytes())?;
    let err_path = cstring(spec.stderr.as_os_str().as_bytes())?;
    // A job's `user`: the identity is dropped in the child, from values prepared here.
    let groups: Vec<libc::gid_t> = spec
        .user
        .as_ref()
        .map(|u| u.groups.iter().map(|g| *g as libc::gid_t).collect())
        .unwrap_or_default();
    let run_as = spec.user.as_ref().map(|u| {
        (
            u.uid as libc::uid_t,
            u.gid as libc::gid_t,
            groups.as_ptr(),
            groups.len(),
        )
    });
    let r = reaper()?;
    // Its cgroup exists before the fork: the child joins it before it execs, so nothing it
    // starts is ever outside.
    let cg = cgroup::create();
    let plan = ChildPlan {
        exe: exe.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        cwd: cwd.as_ptr(),
        stdout: out_path.as_ptr(),
        stderr: err_path.as_ptr(),
        null_fd: null.as_raw_fd(),
        cg_procs: cg.as_ref().map_or(std::ptr::null(), |c| c.procs.as_ptr()),
        reset: signals_to_reset().as_ptr(),
        reset_len: signals_to_reset().len(),
        run_as,
    };
    // A user's identity is taken with glibc's setuid, which signals every thread of the
    // process (setxid broadcast): only safe in a real fork. A cgroup join from a child that
    // shares our memory is untested under systemd: a fork too. Both keep the old path.
    let vfork = spec.user.is_none() && cg.is_none() && r.pidfds;
    // Without pidfds the waitpid(-1) reaper could collect an instant exit before the child is
    // registered: hold the lock from the fork to the registration then. With pidfds the reaper
    // learns of a child only through its registered pidfd, so the lock is taken just to insert.
    let held = (!r.pidfds).then(|| r.children.lock().unwrap_or_else(|e| e.into_inner()));
    let spawned = if vfork {
        spawn_vfork(plan).map(|(pid, e)| (pid, ExecError::Known(e)))
    } else {
        spawn_fork(&plan).map(|(pid, pipe)| (pid, ExecError::Pipe(pipe)))
    };
    let (pid, exec_error) = match spawned {
        Ok(s) => s,
        Err(e) => {
            if let Some(cg) = &cg {
                cgroup::remove(&cg.dir);
            }
            return Err(e);
        }
    };
    if let Some(cg) = cg {
        run_cgroups()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid, cg.dir);
    }
    let mut children = held.unwrap_or_else(|| r.children.lock().unwrap_or_else(|e| e.into_inner()));
    // Works on a child that already exited (a zombie): its pidfd is readable at once.
    let pidfd = if r.pidfds { pidfd_open(pid) } else { None };
    children.insert(
        pid,
        Runner {
            on_exit: Box::new(on_exit),
            exec_error,
            pidfd,
        },
    );
    drop(children);
    r.wake();
    Ok(pid)
}

/// Starts the child with `fork`; the exec error comes back through the returned pipe.
fn spawn_fork(plan: &ChildPlan) -> io::Result<(u32, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two descriptors, both close-on-exec.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created these descriptors and nothing else owns them.
    let (err_r, err_w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: after fork the child only runs exec_child (async-signal-safe calls on memory
    // prepared before), write and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; the child never returns from this block.
        unsafe {
            let errno = exec_child(plan);
            libc::write(err_w.as_raw_fd(), (&errno as *const libc::c_int).cast(), 4);
            libc::_exit(127);
        }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((pid as u32, err_r))
}

/// Takes over a run the previous daemon left running. Nothing to open on Unix: its process
/// group stays reserved while any member lives, and the caller checked the runner's start
/// time (PID reuse) just before.
pub fn adopt(_pid: u32, _start: Option<u64>) -> bool {
    true
}

/// Lowers the calling thread below the loop thread (nice 10): the finisher's writes and
/// fsyncs and the reaper's collecting then yield the CPU to the loop and to runners
/// just started when a batch of runs is due, and take what is left (nice 10 still gets about a
/// tenth of a busy CPU: delayed, never starved). Best effort: a failure changes nothing else.
pub fn background_thread() {
    // SAFETY: gettid and setpriority on this thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// The environment variable that tags every process of a run.
pub const TAG: &str = "ROBOTMK_RUN_DIR";

/// Makes this process the reaper of its orphaned descendants (Linux `PR_SET_CHILD_SUBREAPER`),
/// so a runner's descendant that left its process group is still found (as our child) once
/// its parents are gone, and reaped.
pub fn become_subreaper() {
    // SAFETY: prctl with one integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Whether the process carries `TAG=<run_dir>` in its environment.
fn tagged(pid: u32, needle: &[u8]) -> bool {
    crate::sys::has_env(pid, needle)
}

fn needle(run_dir: &str) -> Vec<u8> {
    format!("{TAG}={run_dir}").into_bytes()
}

/// Every live process carrying the run's tag (a scan of /proc: for ending a tree, which is
/// rare, not for polling).
fn tagged_processes(run_dir: &str) -> Vec<u32> {
    crate::sys::processes_with_env(TAG, run_dir)
}

/// Our children that are no runner of ours: descendants of runs whose parents died (we are
/// their subreaper).
fn adopted_children() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        out.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    // Runners are looked up in the reaper's map: this runs at every run's end, and with 1000
    // runs in flight a list compared against every child was a million comparisons each time.
    // (Spawns happen on the caller's thread: no runner can appear between the read and here.)
    if let Ok(r) = reaper() {
        let runners = r.children.lock().unwrap_or_else(|e| e.into_inner());
        out.retain(|p| !runners.contains_key(p));
    }
    out
}

fn pgid_of(pid: u32) -> Option<u32> {
    crate::sys::process_group(pid)
}

/// Our children (we are their subreaper) that belong to the run: they carry its tag, or are
/// in its group (a zombie's environment is gone, its group is not). Each is handed to the
/// reaper, which collects it once it exits, so escaped descendants leave no zombies.
fn run_orphans(pgid: u32, run_dir: &str) -> Vec<u32> {
    let needle = needle(run_dir);
    let orphans: Vec<u32> = adopted_children()
        .into_iter()
        .filter(|&pid| pgid_of(pid) == Some(pgid) || tagged(pid, &needle))
        .collect();
    if let Ok(r) = reaper() {
        r.adopt_orphans(orphans.iter().copied());
    }
    orphans
}

fn signal_tree(pgid: u32, run_dir: &str, sig: i32) -> bool {
    let mut any = signal_group(pgid, sig);
    // Only those outside the group: one polite signal each, never two (robot quits at once,
    // without writing its result, on a second one).
    let mut escaped = Vec::new();
    for pid in tagged_processes(run_dir)
        .into_iter()
        .filter(|p| pgid_of(*p) != Some(pgid))
    {
        // SAFETY: kill on a process that carries this run's tag (checked just before).
        if unsafe { libc::kill(pid as libc::pid_t, sig) } == 0 {
            any = true;
        }
        escaped.push(pid);
    }
    // The run's cgroup holds even those that cleared their environment.
    if let Some(dir) = cgroup_of(pgid) {
        if sig == libc::SIGKILL {
            any |= cgroup::kill(&dir);
        } else {
            for pid in cgroup::members(&dir) {
                if pgid_of(pid) == Some(pgid) || escaped.contains(&pid) {
                    continue;
                }
                // SAFETY: kill on a member of the run's own cgroup.
                if unsafe { libc::kill(pid as libc::pid_t, sig) } == 0 {
                    any = true;
                }
                escaped.push(pid);
            }
        }
    }
    // Collected when they die, once they are our children (their parents may still live).
    if let Ok(r) = reaper() {
        r.adopt_orphans(escaped);
    }
    run_orphans(pgid, run_dir);
    any
}

/// Asks the run's whole tree to end (SIGTERM): its group and every process carrying its tag.
pub fn terminate_tree(pgid: u32, run_dir: &str) -> bool {
    signal_tree(pgid, run_dir, libc::SIGTERM)
}

/// Ends the run's whole tree (SIGKILL).
pub fn kill_tree(pgid: u32, run_dir: &str) -> bool {
    signal_tree(pgid, run_dir, libc::SIGKILL)
}

/// True while anything of the run is left: a member of its group, or an orphaned descendant
/// (now our child) that carries its tag.
pub fn tree_alive(pgid: u32, run_dir: &str) -> bool {
    let orphans = run_orphans(pgid, run_dir);
    let cg = cgroup_of(pgid);
    if group_alive(pgid) || cg.as_deref().is_some_and(cgroup::populated) {
        return true;
    }
    // A zombie is gone already; the reaper collects it.
    let alive = orphans
        .into_iter()
        .any(|pid| crate::sys::process_start_time(pid).is_some());
    if !alive {
        // The run is over: its cgroup goes (empty now; kept, and retried, if not).
        if let Some(dir) = cg {
            if cgroup::remove(&dir) {
                run_cgroups()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&pgid);
            }
        }
    }
    alive
}

fn signal_group(pgid: u32, sig: i32) -> bool {
    if pgid <= 1 || pgid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: killpg on a group we created; 0, 1 and out-of-range ids are excluded above.
    unsafe { libc::killpg(pgid as libc::pid_t, sig) == 0 }
}

/// Asks every process of the run's group to end (SIGTERM).
pub fn terminate_group(pgid: u32) -> bool {
    signal_group(pgid, libc::SIGTERM)
}

/// Ends every process of the run's group (SIGKILL).
pub fn kill_group(pgid: u32) -> bool {
    signal_group(pgid, libc::SIGKILL)
}

/// True while any process of the group exists.
pub fn group_alive(pgid: u32) -> bool {
    if pgid <= 1 || pgid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::killpg(pgid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The reaper collects its own children only: a child started with std's Command
    /// while a run is in flight is still there for Command's own wait.
    #[test]
    fn the_reaper_never_takes_a_child_it_did_not_start() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let spec = RunSpec {
            argv: vec!["sleep".into(), "2".into()],
            env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
            working_dir: dir.path().to_path_buf(),
            stdout: dir.path().join("out"),
            stderr: dir.path().join("err"),
            user: None,
        };
        let pid = spawn(spec, move |_, exit| {
            let _ = tx.send(exit);
        })
        .unwrap();
        for _ in 0..20 {
            let status = std::process::Command::new("true")
                .status()
                .expect("Command's own wait must find its child");
            assert!(status.success());
        }
        let exit = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the runner's exit is still reported");
        assert_eq!(exit.code, Some(0), "runner {pid}");
    }

    fn run_to_end(argv: &[&str], dir: &Path) -> (u32, ExitInfo) {
        let (tx, rx) = std::sync::mpsc::channel();
        let spec = RunSpec {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
            working_dir: dir.to_path_buf(),
            stdout: dir.join("out"),
            stderr: dir.join("err"),
            user: None,
        };
        let pid = spawn(spec, move |_, exit| {
            let _ = tx.send(exit);
        })
        .unwrap();
        let exit = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the runner's exit is reported");
        (pid, exit)
    }

    /// The spawner blocks every signal around its clone: the runner must not inherit that
    /// mask, nor the SIGPIPE Rust ignores, and it leads a process group of its own.
    #[test]
    fn a_runner_starts_with_no_signal_blocked_sigpipe_default_in_its_own_group() {
        let dir = tempfile::tempdir().unwrap();
        let (pid, exit) = run_to_end(&["cat", "/proc/self/status", "/proc/self/stat"], dir.path());
        assert!(exit.success(), "{exit:?}");
        let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
                .unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "blocked signals in the runner:\n{out}");
        let pipe_bit = 1u64 << (libc::SIGPIPE - 1);
        assert_eq!(
            field("SigIgn:") & pipe_bit,
            0,
            "SIGPIPE ignored in the runner"
        );
        // /proc/self/stat: "pid (comm) state ppid pgrp ..."
        let stat = out.lines().last().unwrap();
        let after = stat.rsplit_once(") ").unwrap().1;
        let pgrp: u32 = after.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, pid, "the runner leads its own process group");
    }

    /// A runner that cannot be executed (its interpreter is missing) is reported as such with
    /// its exit, not as an ordinary failure.
    /// A FIFO where the runner's output goes must not block the spawn: with `CLONE_VFORK` that
    /// would stop the daemon's loop until some reader opened it.
    #[test]
    fn a_fifo_as_the_output_file_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let fifo =
            std::ffi::CString::new(dir.path().join("out").into_os_string().into_vec()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        // On a thread of its own: a spawn that hangs must fail the test, not hang it.
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(run_to_end(&["true"], &d).1);
        });
        let exit = rx.recv_timeout(std::time::Duration::from_secs(10));
        if exit.is_err() {
            // Release the child blocked in its open (it then runs `true`), leaving nothing.
            let _reader = std::fs::File::open(dir.path().join("out"));
            let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
            panic!("the spawn hung on a FIFO");
        }
        let exit = exit.unwrap();
        assert_eq!(exit.code, Some(127), "{exit:?}");
        assert!(exit.spawn_error.is_some(), "{exit:?}");
        // A regular file still works, with no O_NONBLOCK left on the runner's stdout.
        std::fs::remove_file(dir.path().join("out")).unwrap();
        let (_, exit) = run_to_end(&["sh", "-c", "grep flags /proc/self/fdinfo/1"], dir.path());
        assert!(exit.success(), "{exit:?}");
        let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
        let flags = u32::from_str_radix(out.split_whitespace().nth(1).unwrap(), 8).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK as u32, 0, "{out}");
    }

    #[test]
    fn an_exec_error_is_reported_with_the_exit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("runner");
        std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_, exit) = run_to_end(&[script.to_str().unwrap()], dir.path());
        assert_eq!(exit.code, Some(127), "{exit:?}");
        let e = exit.spawn_error.expect("the exec error is reported");
        assert!(e.contains("No such file"), "{e}");
    }
}
