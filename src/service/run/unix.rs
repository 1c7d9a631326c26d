//! Unix runs: the [`Spawner`] starts each runner as the leader of a new process group, holds
//! its tree, reports its exit, and ends the tree (SIGTERM, then SIGKILL).
//!
//! A spawner is a value: the daemon creates one (its reaper thread, the runs in flight, their
//! cgroups, the orphans they left) and hands clones of it to whatever starts or ends runs.
//!
//! **Which path each run takes.** Both return once the child has exec'd (or failed to: the
//! exec error is the spawn's error), with stdin on /dev/null and stdout and stderr on files the
//! parent opened (never through a link, regular files only, see [`open_output`]).
//! - A run that keeps the daemon's identity ([`Spawner::spawn`]: every job without `user`, and
//!   every run of a daemon that is not root) starts in a child that shares the daemon's memory
//!   until it execs, `clone(CLONE_VM | CLONE_VFORK)` (see `vfork`).
//! - A run as a job's `user` ([`Spawner::spawn_as`]; an environment build as its builder)
//!   forks (see `fork`): the same steps, then the identity dropped. Between that drop and its
//!   exec the child is the user's to signal, so its wait for the exec is watched and bounded:
//!   a child the user stops (or slows) there is killed and the spawn fails, instead of
//!   holding the daemon's loop for ever — why it is not std's `Command`, whose spawn waits for
//!   the exec without a bound.
//!
//! std's `Command` uses `posix_spawn` (glibc's is `CLONE_VM | CLONE_VFORK` too) only without a
//! `pre_exec` step, uid, gid or groups (rustc 1.95, library/std/src/sys/process/unix/unix.rs,
//! `posix_spawn`), and every run needs one step std cannot express (`os::hold`: join the run's
//! cgroup, or become the subreaper of its descendants) — so with std every run would fork.
//! Measured with scripts/bench-lateness.sh (`sh -c 'date …'` jobs due together, five
//! interleaved rounds each starting at a load average of at most 1.5, on this project's 2-core
//! VM beside other builds; lateness p50/p99, medians of the rounds):
//!
//! | jobs due together | this clone | std `Command` (fork) | fork+exec floor |
//! |---|---|---|---|
//! | 100 | 78.9 / 144.6 ms | 116.9 / 209.1 ms (+48 % / +45 %) | 68.5 / 113.6 ms |
//! | 1,000 | 627 / 1,695 ms | 1,039 / 2,774 ms (+66 % / +64 %) | 622 / 1,160 ms |
//!
//! std was later at p50 in every one of the ten rounds. Daemon CPU per batch differed less
//! than its noise (100 jobs: 41 vs 37 ticks, 1,000: 404 vs 379, medians). So the hand-written
//! clone stays for runs that keep the daemon's identity.
//!
//! A process group does not hold a run: a descendant may call `setsid` or `setpgid` and leave
//! it. So each run is *held* by one step the child takes before it execs (`os::hold`): it joins
//! the run's cgroup where there is one (see `cgroup`), else it becomes the subreaper of its own
//! descendants, so none of them leaves its tree while it lives. What belongs to a run and how
//! it is ended is `tree`'s; collecting exits and orphans is `reaper`'s.

#[path = "cgroup.rs"]
mod cgroup;
#[path = "fork.rs"]
mod fork;
#[path = "os.rs"]
mod os;
#[path = "reaper.rs"]
mod reaper;
#[path = "tree.rs"]
mod tree;
#[path = "vfork.rs"]
mod vfork;

use super::{ExitInfo, RunAs, RunSpec};
use os::lock;
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Starts runs and ends their trees (see the module doc). Cheap to clone: the clones share one
/// reaper and one record of the runs in flight.
#[derive(Clone)]
pub struct Spawner {
    s: Arc<Shared>,
}

/// What a spawner and its reaper thread share. Its parts know nothing of each other (nor of
/// this struct): what needs several is here, or takes them as [`tree::Parts`].
struct Shared {
    reaper: reaper::Reaper,
    cgroups: cgroup::Cgroups,
    tree: tree::Tree,
    prep: Prep,
}

/// What every spawn reuses.
struct Prep {
    /// The daemon's own environment, read once: every runner of the daemon's own identity
    /// gets it under its spec's variables (a runner as another user gets none of it).
    /// Nothing in this process changes its environment after start.
    env: Vec<(OsString, OsString)>,
    /// The signals whose disposition a runner must not inherit: those with a handler of the
    /// daemon's, and SIGPIPE, which Rust ignores (ignored ones stay ignored, as across any
    /// exec). Looked up at the first spawn (64 syscalls each time would cost more than the
    /// rest of a spawn's preparation): the daemon installs its handlers before it starts any
    /// run.
    reset: OnceLock<Vec<libc::c_int>>,
    /// Every runner's stdin.
    null: OwnedFd,
    /// Resolved programs by (name, PATH): a PATH search is a stat per directory, and the same
    /// runner is resolved again at every start. A hit is re-checked with one `access`.
    programs: Mutex<HashMap<(String, OsString), PathBuf>>,
    stack: vfork::Stack,
}

impl Spawner {
    /// A spawner with its reaper thread.
    pub fn new() -> io::Result<Spawner> {
        // Each run in flight holds a pidfd until it is reaped (and more while it starts):
        // 1000 parallel runs must not hit a default soft limit of 1024.
        crate::service::sys::descriptors::raise();
        let null = above_stdio(File::open("/dev/null")?.into())?;
        let s = Arc::new(Shared {
            reaper: reaper::Reaper::new()?,
            cgroups: cgroup::Cgroups::default(),
            tree: tree::Tree::default(),
            prep: Prep {
                env: std::env::vars_os().collect(),
                reset: OnceLock::new(),
                null,
                programs: Mutex::default(),
                stack: vfork::Stack::default(),
            },
        });
        let r = Arc::clone(&s);
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                background_thread();
                reaper::run(&r.reaper)
            })
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start the reaper thread: {e}"))
            })?;
        Ok(Spawner { s })
    }

    /// Starts the runner with the daemon's identity, in its own process group; `on_exit` is
    /// called (on the reaper thread) when it exits. Returns its PID, which is also the group
    /// id. An error if it could not be started, its exec included.
    pub fn spawn(
        &self,
        spec: RunSpec,
        on_exit: impl FnOnce(u32, ExitInfo) + Send + 'static,
    ) -> io::Result<u32> {
        let p = self.s.prepare(&spec, Inherit::Daemons)?;
        let args: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let vars: Vec<CString> = self
            .s
            .env_for(&spec)
            .map(|(k, v)| {
                let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
                kv.extend_from_slice(k.as_bytes());
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(kv)
            })
            .collect::<io::Result<_>>()?;
        let (argv, envp) = (pointers(&args), pointers(&vars));
        let cwd = cstring(spec.working_dir.as_os_str().as_bytes())?;
        let reset = self.s.prep.reset();
        let tag = spec
            .env
            .get(super::TAG)
            .and_then(|t| t.to_str())
            .map(str::to_string);
        self.start(tag.as_deref(), Box::new(on_exit), |cg| {
            let plan = vfork::SharedPlan {
                exe: &p.exe,
                argv: &argv,
                envp: &envp,
                cwd: &cwd,
                stdio: [self.s.prep.null.as_fd(), p.out.as_fd(), p.err.as_fd()],
                cg_procs: cg.map(|c| &c.procs),
                reset,
            };
            match vfork::spawn(plan, &self.s.prep.stack)? {
                (pid, None) => Ok(pid),
                (pid, Some(e)) => {
                    // Exited already (or about to): collected here, under the gate.
                    let mut status = 0;
                    // SAFETY: waitpid on our own child, with a valid out pointer.
                    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
                    Err(e)
                }
            }
        })
    }

    /// Starts the runner as `user` (groups, then gid, then uid, each checked: a failure never
    /// execs as root), in its own process group, like [`Spawner::spawn`], with the spec's
    /// environment and nothing of the daemon's. Always a real fork (see the module doc), whose
    /// wait for its exec is bounded: a child the user stopped before its exec is killed, and
    /// the error says so (see `fork`).
    pub fn spawn_as(
        &self,
        spec: RunSpec,
        user: RunAs,
        on_exit: impl FnOnce(u32, ExitInfo) + Send + 'static,
    ) -> io::Result<u32> {
        let p = self.s.prepare(&spec, Inherit::Nothing)?;
        // What the runner writes is the user's: its output files are opened by root (in the
        // state dir, where the user cannot reach them by path) and handed over as descriptors,
        // and given to the user, so that what it writes through them — `fallocate` included,
        // and after the run through a descriptor it kept — counts to the user's disk quota,
        // never root's.
        for f in [&p.out, &p.err] {
            let (uid, gid) = (
                rustix::fs::Uid::from_raw(user.uid),
                rustix::fs::Gid::from_raw(user.gid),
            );
            rustix::fs::fchown(f, Some(uid), Some(gid)).map_err(|e| {
                io::Error::other(format!(
                    "cannot give the run's output file to uid {}: {e}",
                    user.uid
                ))
            })?;
        }
        // The spec's environment and nothing of the daemon's (root's): see `RunSpec::env`.
        let args: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let vars: Vec<CString> = spec
            .env
            .iter()
            .map(|(k, v)| cstring([k.as_bytes(), b"=", v.as_bytes()].concat()))
            .collect::<io::Result<_>>()?;
        let (argv, envp) = (pointers(&args), pointers(&vars));
        let cwd = cstring(spec.working_dir.as_os_str().as_bytes())?;
        let groups: Vec<libc::gid_t> = user.groups.iter().map(|g| *g as libc::gid_t).collect();
        let reset = self.s.prep.reset();
        let tag = spec
            .env
            .get(super::TAG)
            .and_then(|t| t.to_str())
            .map(str::to_string);
        self.start(tag.as_deref(), Box::new(on_exit), |cg| {
            fork::spawn(fork::Plan {
                shared: vfork::SharedPlan {
                    exe: &p.exe,
                    argv: &argv,
                    envp: &envp,
                    cwd: &cwd,
                    stdio: [self.s.prep.null.as_fd(), p.out.as_fd(), p.err.as_fd()],
                    cg_procs: cg.map(|c| &c.procs),
                    reset,
                },
                uid: user.uid as libc::uid_t,
                gid: user.gid as libc::gid_t,
                groups: &groups,
            })
        })
    }

    /// Registers the runner `start` starts (it gets the run's cgroup, if runs have one): under
    /// the reaper's gate, so that an instant exit is never taken for an orphan's.
    /// `tag`: the run it starts (its folder, as in the runner's environment), which tells its
    /// group and cgroup apart from those of an ended run whose runner had the same PID.
    fn start(
        &self,
        tag: Option<&str>,
        on_exit: reaper::OnExit,
        start: impl FnOnce(Option<&cgroup::RunCgroup>) -> io::Result<u32>,
    ) -> io::Result<u32> {
        let s = &*self.s;
        // Its cgroup exists before the child: the child joins it before it execs, so nothing
        // it starts is ever outside.
        let cg = s.cgroups.create();
        let gate = s.reaper.spawning();
        let pid = match start(cg.as_ref()) {
            Ok(pid) => pid,
            Err(e) => {
                if let Some(cg) = &cg {
                    cgroup::remove(&cg.dir);
                }
                return Err(e);
            }
        };
        if let Some(cg) = cg {
            s.cgroups.insert(pid, tag, cg.dir);
        }
        s.reaper.register(pid, on_exit);
        drop(gate);
        s.tree.new_group(pid, tag);
        s.reaper.wake();
        Ok(pid)
    }

    /// Makes this process the reaper of its orphaned descendants (Linux
    /// `PR_SET_CHILD_SUBREAPER`), so what a run leaves behind becomes its child instead of
    /// init's: still in reach, and collected once it exits. From now on every child of this
    /// process that is no runner of this spawner, nor a helper recorded in `sys::children`, is
    /// taken for such an orphan: a process that calls this has one spawner and starts every
    /// child through it or through `sys::children::start`.
    pub fn become_subreaper(&self) {
        // SAFETY: prctl with one integer argument.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        self.s.reaper.inherit_orphans();
    }

    /// Calls `f` (on the reaper thread) each time orphans this process inherited were
    /// collected.
    pub(crate) fn on_inherited_exit(&self, f: impl Fn() + Send + 'static) {
        self.s.reaper.on_inherited_exit(Box::new(f));
    }

    /// Keeps the cgroups of the `n` runs prepared and not started made ahead of their start
    /// (see `cgroup`): the caller prepares runs ahead of their due time, and so can their
    /// cgroups.
    pub(crate) fn keep_spare(&self, n: usize) {
        self.s.cgroups.keep_spare(n);
    }

    /// Runs get a cgroup each from now on, where one can be had (see `cgroup`). Returns
    /// where, or why not.
    pub(crate) fn enable_cgroups(&self) -> Result<PathBuf, super::NoCgroup> {
        self.s.cgroups.enable()
    }

    /// At exit, in a process that inherits orphans: ends and collects every orphan of a run
    /// it holds (SIGTERM, SIGKILL after `grace`), so that none is left to PID 1 — which may
    /// never collect a zombie — or an outer subreaper. Live runs and what their cgroups hold
    /// are left alone (a next daemon adopts them). Returns the PIDs still there when it gave
    /// up (`grace` and a few seconds more).
    pub(crate) fn end_orphans(&self, grace: std::time::Duration) -> Vec<u32> {
        tree::end_orphans(&self.s.parts(), grace)
    }

    /// At exit: removes this process's own cgroup subtree, where empty.
    pub(crate) fn cleanup(&self) {
        self.s.cgroups.cleanup();
    }

    /// Takes over a run the previous daemon left running. Nothing to open on Unix: its process
    /// group stays reserved while any member lives, and the caller checked the runner's start
    /// time (PID reuse) just before. Its cgroup, if it has a run cgroup, holds it from now on.
    pub(crate) fn adopt(&self, pid: u32, start: Option<u64>) -> bool {
        if let Some(dir) = self.s.cgroups.of_adopted(pid) {
            self.s.cgroups.insert(pid, None, dir);
        }
        // Its group is signalled by its id while it lives (see `tree`'s `group_is_the_runs`).
        if let Some(start) = start {
            self.s.tree.adopt(pid, start);
        }
        true
    }

    /// What is known of the run of group `pgid` (see `tree`).
    fn run_of<'a>(&self, pgid: u32, run_dir: &'a str) -> tree::Run<'a> {
        tree::Run {
            pgid,
            run_dir,
            cgroup: self.s.cgroups.of_run(pgid, run_dir),
            // The runner with that PID is this run's, not a later run's that got the PID of
            // this one's ended runner.
            runner_alive: self.s.reaper.is_runner(pgid) && self.s.tree.runs_group(pgid, run_dir),
        }
    }

    /// Asks the run's whole tree to end (SIGTERM, once per process): see `tree`.
    pub(crate) fn terminate_tree(&self, pgid: u32, run_dir: &str) -> bool {
        tree::signal(&self.s.parts(), &self.run_of(pgid, run_dir), libc::SIGTERM)
    }

    /// Ends the run's whole tree (SIGKILL).
    /// Ends what a run of `run_dir` that no daemon holds any more left running: a build or
    /// run of a daemon that was killed (SIGKILL, the OOM killer) goes on as an orphan,
    /// found by its tag, and must not write beside a new one in the same folder. True if
    /// anything was there.
    pub fn end_leftovers(&self, run_dir: &str) -> bool {
        let mut any = false;
        for pid in crate::service::sys::processes_with_env(super::TAG, run_dir) {
            let start = crate::service::sys::process_start_time(pid);
            any |= crate::service::sys::kill_process(pid, start).is_ok();
        }
        any
    }

    pub fn kill_tree(&self, pgid: u32, run_dir: &str) -> bool {
        tree::signal(&self.s.parts(), &self.run_of(pgid, run_dir), libc::SIGKILL)
    }

    /// True while anything of the run is left. Once nothing is, its cgroup is removed.
    pub fn tree_alive(&self, pgid: u32, run_dir: &str) -> bool {
        let run = self.run_of(pgid, run_dir);
        let alive = tree::alive(&self.s.parts(), &run);
        if !alive {
            self.s.tree.forget(pgid, run_dir);
            if run.cgroup.is_some() {
                self.s.cgroups.remove_run(pgid, run_dir);
            }
        }
        alive
    }
}

/// Whether a runner's environment is the spec's over the daemon's ([`Spawner::spawn`]) or the
/// spec's alone ([`Spawner::spawn_as`]).
#[derive(Clone, Copy)]
enum Inherit {
    Daemons,
    Nothing,
}

/// What a spawn prepares in the parent, whichever way it starts the child: the program (its
/// path resolved here, so that a missing one is an error at once) and the output files.
struct Prepared {
    exe: CString,
    out: File,
    err: File,
}

impl Shared {
    fn parts(&self) -> tree::Parts<'_> {
        tree::Parts {
            reaper: &self.reaper,
            cgroups: &self.cgroups,
            tree: &self.tree,
        }
    }

    /// `inherit`: whether the runner gets the daemon's environment under the spec's, and so
    /// its `PATH` when the spec names none.
    fn prepare(&self, spec: &RunSpec, inherit: Inherit) -> io::Result<Prepared> {
        let Some(program) = spec.argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let path_var = match (spec.env.get("PATH"), inherit) {
            (Some(p), _) => Some(p.as_os_str()),
            (None, Inherit::Daemons) => self
                .prep
                .env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_os_str()),
            (None, Inherit::Nothing) => None,
        };
        let exe = self.resolve_cached(program, path_var, &spec.working_dir)?;
        Ok(Prepared {
            exe: cstring(exe.into_os_string().into_vec())?,
            out: open_output(&spec.stdout)?,
            err: open_output(&spec.stderr)?,
        })
    }

    /// The environment of a runner with the daemon's identity: the daemon's, with the spec's
    /// variables over it.
    fn env_for<'a>(&'a self, spec: &'a RunSpec) -> impl Iterator<Item = (&'a OsStr, &'a OsStr)> {
        let own = |k: &OsStr| k.to_str().is_some_and(|k| spec.env.contains_key(k));
        self.prep
            .env
            .iter()
            .filter(move |(k, _)| !own(k))
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
            .chain(
                spec.env
                    .iter()
                    .map(|(k, v)| (OsStr::new(k.as_str()), v.as_os_str())),
            )
    }

    fn resolve_cached(
        &self,
        program: &str,
        path_var: Option<&OsStr>,
        cwd: &Path,
    ) -> io::Result<PathBuf> {
        if program.contains('/') {
            return resolve(program, path_var, cwd);
        }
        let key = (
            program.to_string(),
            path_var.map(OsStr::to_os_string).unwrap_or_default(),
        );
        if let Some(p) = lock(&self.prep.programs).get(&key) {
            if is_executable(p) {
                return Ok(p.clone());
            }
        }
        let p = resolve(program, path_var, cwd)?;
        lock(&self.prep.programs).insert(key, p.clone());
        Ok(p)
    }
}

impl Prep {
    fn reset(&self) -> &[libc::c_int] {
        self.reset.get_or_init(|| {
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
}

/// A NUL-terminated array of pointers into `strings`.
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Opens a runner's output file: never through a link planted in the run folder, and a
/// regular file only. A FIFO would block the open until some reader came, and the daemon's
/// loop with it: `O_NONBLOCK` turns that into an error (ENXIO without a reader; EINVAL for any
/// other kind of file), then is cleared again, so the runner writes as to any file.
fn open_output(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| output_error(path, e))?;
    if !f.metadata()?.is_file() {
        return Err(output_error(
            path,
            io::Error::from_raw_os_error(libc::EINVAL),
        ));
    }
    rustix::fs::fcntl_setfl(&f, rustix::fs::OFlags::APPEND)
        .map_err(|e| output_error(path, e.into()))?;
    Ok(File::from(above_stdio(f.into())?))
}

fn output_error(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot open {} for the runner's output (a regular file, not a link): {e}",
            path.display()
        ),
    )
}

/// `fd`, or a copy of it above 2 if it is 0, 1 or 2 (those closed in this process): the child
/// moves its stdin, stdout and stderr there, and none may overwrite another on the way.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

fn cstring(s: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"))
}

fn is_executable(p: &Path) -> bool {
    p.is_file() && rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok()
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

/// Lowers the calling thread below the loop thread (nice 10): the finisher's writes and
/// fsyncs and the reaper's collecting then yield the CPU to the loop and to runners
/// just started when a batch of runs is due, and take what is left (nice 10 still gets about a
/// tenth of a busy CPU: delayed, never starved). Best effort: a failure changes nothing else.
pub(crate) fn background_thread() {
    // SAFETY: gettid and setpriority on this thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(argv: &[&str], dir: &Path) -> RunSpec {
        RunSpec {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
            working_dir: dir.to_path_buf(),
            stdout: dir.join("out"),
            stderr: dir.join("err"),
        }
    }

    /// What a killed daemon's build or run left running in a folder (an orphan that kept the
    /// folder's tag) is ended before a new one starts there; others are not touched.
    #[test]
    fn leftovers_of_a_folder_are_ended_by_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("env-a").display().to_string();
        let start = |tag: &str| {
            std::process::Command::new("sleep")
                .arg("30")
                .env(super::super::TAG, tag)
                .spawn()
                .unwrap()
        };
        let (mut orphan, mut other) = (start(&mine), start("/elsewhere"));
        // The kernel fills in a new program's environment late in its exec, after `spawn`
        // returned: an orphan is found once it has one (a deadline, not a sleep).
        let needle = format!("{}={mine}", super::super::TAG).into_bytes();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !crate::service::sys::has_env(orphan.id(), &needle)
            && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        let spawner = Spawner::new().unwrap();
        assert!(spawner.end_leftovers(&mine));
        let ended = orphan.wait().unwrap();
        let other_alive = other.try_wait().unwrap().is_none();
        let _ = (other.kill(), other.wait());
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&ended),
            Some(libc::SIGKILL)
        );
        assert!(other_alive, "a process of another folder was ended");
        assert!(!spawner.end_leftovers(&mine), "nothing left");
    }

    /// The reaper collects its own children only: a child started with std's Command
    /// while a run is in flight is still there for Command's own wait.
    #[test]
    fn the_reaper_never_takes_a_child_it_did_not_start() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawner = Spawner::new().unwrap();
        let pid = spawner
            .spawn(spec(&["sleep", "2"], dir.path()), move |_, exit| {
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

    fn run_to_end(argv: &[&str], dir: &Path) -> io::Result<(u32, ExitInfo)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let pid = Spawner::new()?.spawn(spec(argv, dir), move |_, exit| {
            let _ = tx.send(exit);
        })?;
        let exit = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the runner's exit is reported");
        Ok((pid, exit))
    }

    /// The spawner blocks every signal around its clone: the runner must not inherit that
    /// mask, nor the SIGPIPE Rust ignores, and it leads a process group of its own.
    #[test]
    fn a_runner_starts_with_no_signal_blocked_sigpipe_default_in_its_own_group() {
        let dir = tempfile::tempdir().unwrap();
        let (pid, exit) =
            run_to_end(&["cat", "/proc/self/status", "/proc/self/stat"], dir.path()).unwrap();
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

    /// A FIFO where the runner's output goes must not block the spawn (the daemon's loop
    /// would wait until some reader opened it): it is the spawn's error.
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
            let _ = tx.send(run_to_end(&["true"], &d).map(|(_, exit)| exit));
        });
        let result = rx.recv_timeout(std::time::Duration::from_secs(10));
        if result.is_err() {
            // Release the spawn blocked in its open (it then runs `true`), leaving nothing.
            let _reader = std::fs::File::open(dir.path().join("out"));
            let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
            panic!("the spawn hung on a FIFO");
        }
        let err = result.unwrap().expect_err("a FIFO is refused");
        assert!(err.to_string().contains("out"), "{err}");
        // A regular file still works, with no O_NONBLOCK left on the runner's stdout.
        std::fs::remove_file(dir.path().join("out")).unwrap();
        let (_, exit) =
            run_to_end(&["sh", "-c", "grep flags /proc/self/fdinfo/1"], dir.path()).unwrap();
        assert!(exit.success(), "{exit:?}");
        let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
        let flags = u32::from_str_radix(out.split_whitespace().nth(1).unwrap(), 8).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK as u32, 0, "{out}");
    }

    /// A runner that cannot be executed (its interpreter is missing) is reported as such by
    /// its spawn, not as an ordinary failure.
    #[test]
    fn an_exec_error_is_reported_by_the_spawn() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("runner");
        std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = run_to_end(&[script.to_str().unwrap()], dir.path())
            .expect_err("the exec error is reported");
        assert!(e.to_string().contains("No such file"), "{e}");
    }
}
