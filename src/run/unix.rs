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
//! One reaper thread collects every child with `waitpid(-1)`. That is only sound because this
//! process starts children through this module alone: a process that uses the reaper must not
//! also wait on children started with `std::process` (ctrl's launcher runs in another process).

use super::{ExitInfo, RunSpec};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

type OnExit = Box<dyn FnOnce(u32, ExitInfo) + Send>;

/// Children in flight: what to call when each exits, and its exec-error pipe.
struct Reaper {
    children: Mutex<HashMap<u32, (OnExit, OwnedFd)>>,
    /// Counts spawns, so a reaper that found no children sleeps until there is one.
    spawned: Mutex<u64>,
    wake: Condvar,
}

fn reaper() -> io::Result<&'static Reaper> {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    static STARTED: OnceLock<io::Result<()>> = OnceLock::new();
    let r = REAPER.get_or_init(|| Reaper {
        children: Mutex::new(HashMap::new()),
        spawned: Mutex::new(0),
        wake: Condvar::new(),
    });
    let started = STARTED.get_or_init(|| {
        raise_fd_limit();
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || reap_forever(r))
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

/// Each run in flight holds a descriptor (its exec-error pipe) until it is reaped: lift the
/// soft limit to the hard one, so 1000 parallel runs do not hit a default of 1024.
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
    loop {
        // Read the spawn count before waiting: a child spawned after an ECHILD then changes it.
        let seen = *r.spawned.lock().unwrap_or_else(|e| e.into_inner());
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid with a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            // The spawner holds this lock from fork to registration: an instant exit waits here
            // until its entry exists.
            let entry = r
                .children
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(pid as u32));
            if let Some((on_exit, err_pipe)) = entry {
                let mut exit = decode(status);
                exit.spawn_error = read_exec_error(&err_pipe);
                on_exit(pid as u32, exit);
            }
            continue;
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        let mut count = r.spawned.lock().unwrap_or_else(|e| e.into_inner());
        while *count == seen {
            count = r.wake.wait(count).unwrap_or_else(|e| e.into_inner());
        }
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
    let mut env: HashMap<OsString, OsString> = std::env::vars_os().collect();
    for (k, v) in &spec.env {
        env.insert(k.into(), v.into());
    }
    let exe = resolve_cached(
        program,
        env.get(OsStr::new("PATH")).map(OsString::as_os_str),
        &spec.working_dir,
    )?;
    let exe = cstring(exe.into_os_string().into_vec())?;
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let envp: Vec<CString> = env
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            cstring(kv)
        })
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
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two descriptors, both close-on-exec.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created these descriptors and nothing else owns them.
    let (err_r, err_w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A job's `user`: the identity is dropped in the child, from values prepared here.
    let run_as = spec
        .user
        .as_ref()
        .map(|u| (u.uid as libc::uid_t, u.gid as libc::gid_t));
    let groups: Vec<libc::gid_t> = spec
        .user
        .as_ref()
        .map(|u| u.groups.iter().map(|g| *g as libc::gid_t).collect())
        .unwrap_or_default();
    let r = reaper()?;
    let mut children = r.children.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: after fork the child only calls async-signal-safe functions (setpgid,
    // pthread_sigmask, signal, open, dup2, close, setgroups, setgid, setuid, chdir, execve,
    // write, _exit) on memory prepared above.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; the child never returns from this block.
        unsafe {
            libc::setpgid(0, 0);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            // Rust ignores SIGPIPE; a runner must get the default back.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::dup2(null.as_raw_fd(), 0);
            // Never through a link planted in the run folder.
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_NOFOLLOW;
            let out = libc::open(out_path.as_ptr(), flags, 0o600 as libc::c_uint);
            let err = libc::open(err_path.as_ptr(), flags, 0o600 as libc::c_uint);
            if out >= 0
                && err >= 0
                && libc::dup2(out, 1) >= 0
                && libc::dup2(err, 2) >= 0
                // Output files first (root's, in the daemon's own folder), then the identity:
                // groups before gid before uid, each checked, so a failure never execs as root.
                && run_as.is_none_or(|(uid, gid)| {
                    libc::setgroups(groups.len() as _, groups.as_ptr()) == 0
                        && libc::setgid(gid) == 0
                        && libc::setuid(uid) == 0
                })
                && libc::chdir(cwd.as_ptr()) == 0
            {
                if out > 2 {
                    libc::close(out);
                }
                if err > 2 {
                    libc::close(err);
                }
                libc::execve(exe.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            }
            let errno = *libc::__errno_location();
            libc::write(err_w.as_raw_fd(), (&errno as *const libc::c_int).cast(), 4);
            libc::_exit(127);
        }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(err_w);
    children.insert(pid as u32, (Box::new(on_exit), err_r));
    drop(children);
    *r.spawned.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    r.wake.notify_all();
    Ok(pid as u32)
}

/// Takes over a run the previous daemon left running. Nothing to open on Unix: its process
/// group stays reserved while any member lives, and the caller checked the runner's start
/// time (PID reuse) just before.
pub fn adopt(_pid: u32, _start: Option<u64>) -> bool {
    true
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
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle))
}

fn needle(run_dir: &str) -> Vec<u8> {
    format!("{TAG}={run_dir}").into_bytes()
}

/// Every live process carrying the run's tag (a scan of /proc: for ending a tree, which is
/// rare, not for polling).
fn tagged_processes(run_dir: &str) -> Vec<u32> {
    let needle = needle(run_dir);
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && tagged(pid, &needle))
        .collect()
}

/// Our children that are no runner of ours: descendants of runs whose parents died (we are
/// their subreaper).
fn adopted_children() -> Vec<u32> {
    let known: Vec<u32> = match reaper() {
        Ok(r) => r
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect(),
        Err(_) => Vec::new(),
    };
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
                .filter_map(|p| p.parse::<u32>().ok())
                .filter(|p| !known.contains(p)),
        );
    }
    out
}

/// The process group of `pid`, from `/proc/PID/stat` (field 5).
fn pgid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

fn signal_tree(pgid: u32, run_dir: &str, sig: i32) -> bool {
    let mut any = signal_group(pgid, sig);
    // Only those outside the group: one polite signal each, never two (robot quits at once,
    // without writing its result, on a second one).
    for pid in tagged_processes(run_dir)
        .into_iter()
        .filter(|p| pgid_of(*p) != Some(pgid))
    {
        // SAFETY: kill on a process that carries this run's tag (checked just before).
        if unsafe { libc::kill(pid as libc::pid_t, sig) } == 0 {
            any = true;
        }
    }
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
    if group_alive(pgid) {
        return true;
    }
    let needle = needle(run_dir);
    adopted_children().into_iter().any(|pid| {
        // A zombie is gone already; the reaper collects it.
        crate::sys::process_start_time(pid).is_some() && tagged(pid, &needle)
    })
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
