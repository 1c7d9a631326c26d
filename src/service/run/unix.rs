//! Unix runs: each runner leads a new process group; SIGTERM then SIGKILL go to its tree.
//!
//! Spawning is a plain `fork` + `execve` that returns as soon as the child exists, instead of
//! std's spawn, which blocks until the child has exec'd (~0.5 ms each here: 100 runs due at once
//! would start 50 ms late). Everything the child needs is prepared before the fork, and the
//! child calls only async-signal-safe functions. An exec error travels back through a
//! close-on-exec pipe and is reported with the exit.
//!
//! A process group does not hold a run: a descendant may call `setsid` or `setpgid` and leave
//! it. So each run is *held* by one step the child takes before it execs ([`hold`]): it joins
//! the run's cgroup where there is one (see `cgroup`), else it becomes the subreaper of its own
//! descendants, so none of them leaves its tree while it lives. What belongs to a run and how
//! it is ended is `tree`'s.
//!
//! Each runner is waited for by its own PID. One reaper thread polls a pidfd per runner
//! (Linux 5.3+) plus a wake pipe, and collects exactly the runners that became readable. A
//! process that inherits orphans ([`become_subreaper`]: the daemon, a one-shot `run-once`)
//! collects them too, whatever they are, as soon as they exit: a SIGCHLD handler wakes the
//! reaper, which peeks at the exited child with `waitid(WNOWAIT)` before it collects it, and
//! collects it as an orphan only if it is no runner — a spawn holds the `gate` from before its
//! clone until its runner is registered, and the reaper takes it before it decides. Such a
//! process must therefore start every child of its own through [`spawn`]: any other child's
//! exit would be collected as an orphan's. On a kernel without pidfds the reaper falls back to
//! `waitpid(-1)` (documented in docs/RELIABILITY.md).

#[path = "cgroup.rs"]
mod cgroup;
#[path = "tree.rs"]
mod tree;

use super::{ExitInfo, RunSpec};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Held by a spawn from before its clone until its runner is registered, and by whoever
    /// decides that a child of ours is no runner (to collect it or to claim it as an orphan):
    /// a runner spawned an instant ago is never taken for an orphan.
    gate: Mutex<()>,
    wake_r: OwnedFd,
    wake_w: OwnedFd,
    /// pidfd_open works here; without it the reaper uses `waitpid(-1)`.
    pidfds: bool,
    /// A wake-up is already on its way: a burst of 1000 spawns wakes the reaper once, not
    /// 1000 times (each wake-up competes with the spawning thread for the CPU and the lock).
    wake_pending: AtomicBool,
}

/// This process inherits orphans (it is a subreaper): every child that is no runner is one.
static INHERITS: AtomicBool = AtomicBool::new(false);

/// The read end of the pipe SIGCHLD's handler writes to, once this process inherits orphans.
static SIGCHLD_PIPE: OnceLock<OwnedFd> = OnceLock::new();

/// Told whenever an inherited child was collected (the daemon's loop then looks whether
/// a finished run has anything left).
type OnInherited = Box<dyn Fn() + Send>;
static ON_INHERITED: Mutex<Option<OnInherited>> = Mutex::new(None);

/// Calls `f` (on the reaper thread) each time orphans this process inherited were collected.
pub fn on_inherited_exit(f: impl Fn() + Send + 'static) {
    *ON_INHERITED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
}

fn inherited_exited() {
    if let Some(f) = ON_INHERITED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        f();
    }
}

/// A pidfd for `pid`, or `None` where the kernel has none.
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
        let (wake_r, wake_w) = pipe(libc::O_CLOEXEC | libc::O_NONBLOCK)?;
        // pidfd_open on ourselves tells whether the kernel has it.
        let pidfds = pidfd_open(std::process::id()).is_some();
        Ok(Reaper {
            children: Mutex::new(HashMap::new()),
            gate: Mutex::new(()),
            wake_r,
            wake_w,
            pidfds,
            wake_pending: AtomicBool::new(false),
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

/// A new pipe (read end, write end) with `flags` on both ends.
fn pipe(flags: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 with a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created these descriptors and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Reaper {
    fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: writing one byte to our own non-blocking pipe; a full pipe is fine (the
        // reaper wakes anyway).
        unsafe {
            libc::write(self.wake_w.as_raw_fd(), [1u8].as_ptr().cast(), 1);
        }
    }

    fn is_runner(&self, pid: u32) -> bool {
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&pid)
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
        match Reaper::try_reap(pid) {
            Some(status) => {
                self.finish_runner(pid, status);
                true
            }
            None => false,
        }
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

    /// Collects every child that has exited: runners (reported) and inherited orphans. Each is
    /// looked at first without being collected (`WNOWAIT`), so a runner's exit status is never
    /// taken for an orphan's.
    fn collect_exited(&self) {
        let mut inherited = false;
        // Bounded: a child that cannot be collected must not spin this thread.
        for _ in 0..100_000 {
            // SAFETY: zero is a valid siginfo_t; waitid(P_ALL) with a valid out pointer.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let r = unsafe {
                libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            // SAFETY: si_pid is set (or left 0) by a successful waitid.
            let pid = unsafe { info.si_pid() };
            if r != 0 || pid <= 0 {
                break;
            }
            let pid = pid as u32;
            let collected = if self.is_runner(pid) {
                self.reap_runner(pid)
            } else {
                let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
                if self.is_runner(pid) {
                    drop(_gate);
                    self.reap_runner(pid)
                } else {
                    inherited = true;
                    tree::collect_inherited(pid)
                }
            };
            if !collected {
                break;
            }
        }
        if inherited {
            inherited_exited();
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

/// Runs get a cgroup each from now on, where one can be had (see `cgroup`). Returns where, or
/// why not.
pub fn enable_cgroups() -> Result<PathBuf, String> {
    cgroup::enable()
}

/// At exit: removes this process's own cgroup subtree, where empty.
pub fn cleanup() {
    cgroup::cleanup();
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

fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 256];
    // SAFETY: draining our own non-blocking pipe into a local buffer.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 256) } > 0 {}
}

fn reap_forever(r: &'static Reaper) {
    if !r.pidfds {
        return reap_all_forever(r);
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
        let sigchld = SIGCHLD_PIPE.get();
        fds.push(sigchld.map_or(
            libc::pollfd {
                fd: -1,
                events: 0,
                revents: 0,
            },
            poll,
        ));
        for (pid, run) in r.children.lock().unwrap_or_else(|e| e.into_inner()).iter() {
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
            r.collect_exited();
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
            if r.is_runner(pid as u32) {
                r.finish_runner(pid as u32, status);
            } else {
                inherited_exited();
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
        // After the drain (see reap_forever).
        r.wake_pending.store(false, Ordering::Release);
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
    /// How the run is held (see [`hold`]): `cgroup.procs` of the run's cgroup, or null.
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
    hold(p.cg_procs);
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
/// With std's `Command` this would be a `pre_exec` step (std then forks instead of using
/// `posix_spawn`); `clone3(CLONE_INTO_CGROUP)` (Linux 5.7) could join the cgroup without one,
/// but not become a subreaper.
///
/// # Safety
/// As [`exec_child`]: async-signal-safe calls only, no allocation; `cg_procs` is null or a
/// valid C string.
unsafe fn hold(cg_procs: *const libc::c_char) {
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
    // process (setxid broadcast): only safe in a real fork.
    let vfork = spec.user.is_none() && r.pidfds;
    // From the clone to the registration, no exited child is taken for an orphan (see
    // `Reaper::gate`). Without pidfds the waitpid(-1) reaper could collect an instant exit
    // before the child is registered: hold the map's lock as well then. With pidfds the reaper
    // learns of a runner only through its registered pidfd, or under the gate.
    let gate = r.gate.lock().unwrap_or_else(|e| e.into_inner());
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
    drop(gate);
    tree::new_group(pid);
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
/// time (PID reuse) just before. Its cgroup, if it has a run cgroup, holds it from now on.
pub fn adopt(pid: u32, _start: Option<u64>) -> bool {
    if let Some(dir) = cgroup::of_adopted(pid) {
        run_cgroups()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid, dir);
    }
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
/// so what a run leaves behind becomes its child instead of init's: still in reach, and
/// collected once it exits (a SIGCHLD handler wakes the reaper). From now on every child of
/// this process that is no runner is taken for such an orphan (see the module doc).
pub fn become_subreaper() {
    // SAFETY: prctl with one integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    if INHERITS.swap(true, Ordering::AcqRel) {
        return;
    }
    match pipe(libc::O_CLOEXEC | libc::O_NONBLOCK) {
        Ok((read, write)) => {
            // The handler writes a byte to the pipe (non-blocking, so a full pipe just drops
            // it: the reaper is woken already); installed before any run is spawned, so the
            // spawner resets it in its children (see `signals_to_reset`).
            if signal_hook::low_level::pipe::register(libc::SIGCHLD, write).is_ok() {
                let _ = SIGCHLD_PIPE.set(read);
            }
        }
        Err(e) => tracing::warn!(
            "cannot create the SIGCHLD pipe: {e}; orphans are collected only when a run ends"
        ),
    }
    // Started now, so that it polls the pipe from the first SIGCHLD on.
    if let Ok(r) = reaper() {
        r.wake();
    }
}

/// What is known of the run of group `pgid` (see `tree`).
fn run_of(pgid: u32, run_dir: &str) -> tree::Run<'_> {
    tree::Run {
        pgid,
        run_dir,
        cgroup: cgroup_of(pgid),
        runner_alive: reaper().is_ok_and(|r| r.is_runner(pgid)),
    }
}

/// The cgroups of the runs whose runners live: an orphan in one of them is that run's.
fn live_cgroups() -> Vec<PathBuf> {
    let Ok(r) = reaper() else {
        return Vec::new();
    };
    let runners = r.children.lock().unwrap_or_else(|e| e.into_inner());
    let cgroups = run_cgroups().lock().unwrap_or_else(|e| e.into_inner());
    runners
        .keys()
        .filter_map(|p| cgroups.get(p).cloned())
        .collect()
}

/// Asks the run's whole tree to end (SIGTERM, once per process): see `tree`.
pub fn terminate_tree(pgid: u32, run_dir: &str) -> bool {
    tree::signal(&run_of(pgid, run_dir), libc::SIGTERM)
}

/// Ends the run's whole tree (SIGKILL).
pub fn kill_tree(pgid: u32, run_dir: &str) -> bool {
    tree::signal(&run_of(pgid, run_dir), libc::SIGKILL)
}

/// True while anything of the run is left. Once nothing is, its cgroup is removed.
pub fn tree_alive(pgid: u32, run_dir: &str) -> bool {
    let run = run_of(pgid, run_dir);
    let alive = tree::alive(&run);
    if !alive {
        if let Some(dir) = run.cgroup {
            // Empty now; kept, and retried, if not.
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
