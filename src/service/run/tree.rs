//! What belongs to a run on Unix, telling it to end (each process once), and ending it.
//!
//! A run's processes are found five ways, because each alone misses some:
//! - its **process group** (the runner's PID): what a plain runner starts;
//! - its **tag** (`ROBOTMK_RUN_DIR=<run folder>` in the environment, inherited): what left the
//!   group but kept its environment;
//! - its **cgroup**, where it has one (see `cgroup`): everything, whatever it did — a process
//!   cannot leave its cgroup;
//! - the runner's **descendants** in /proc while the runner lives: without a cgroup the runner
//!   is the subreaper of its descendants, so an orphan among them stays below it instead of
//!   leaving the tree (Chromium's helpers double-fork, call `setsid` and overwrite their
//!   environment: neither group nor tag holds them);
//! - the **orphans** it left: children this process inherited (it is a subreaper too) when the
//!   runner ended. Without a cgroup, every one of them is an orphan of an ended run, since a
//!   live runner holds its own; with one, those in the cgroup of a live run belong to that run.
//!   Each orphan is *claimed* by the end of a run that finds it (the first to look: several runs
//!   ending at the same instant cannot be told apart, and their orphans are ended together).
//!
//! Who was told SIGTERM is one spawner's ([`Tree`]); the claims are its reaper's, which
//! collects the orphans. This file sits above `reaper` and `cgroup` and takes them as [`Parts`].
//!
//! Descendants of our own children are named through pidfds, each checked to still be the child
//! of its parent after its pidfd was taken, so a recycled PID is never signalled. A SIGTERM
//! reaches each process once, however many looks at the tree there are (robot quits at once,
//! without writing its result, at a second one); SIGKILL as often as needed.

use super::cgroup::{self, Cgroups};
use super::os::{children_of, group_alive, lock, pidfd_open};
use super::reaper::Reaper;
use crate::service::run::TAG;
use crate::service::sys::children::waitid_exited;
use crate::service::sys::process_group as pgid_of;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many descendants are walked per root (a fork bomb must not stall the loop; the
/// next look finds the rest).
const WALK_CAP: usize = 20_000;
/// Rounds of SIGKILL to a live runner's descendants: each round reaches those forked during
/// the one before (a killed process forks no more).
const KILL_ROUNDS: usize = 8;

/// Who one spawner told SIGTERM already (the orphans each run claimed are the reaper's), and
/// the runners it took over from a previous daemon.
#[derive(Default)]
pub(super) struct Tree {
    told: Mutex<Told>,
    /// Adopted runners: their PID (their run's group id) and start time, as their record has
    /// them and as checked when they were taken over.
    adopted: Mutex<HashMap<u32, u64>>,
    /// The run (its tag) of the latest runner started with each PID: a run that ended and
    /// lingers is told from a later run whose runner got the same PID.
    owners: Mutex<HashMap<u32, Box<str>>>,
}

/// The parts of one spawner a look at a run's tree needs.
pub(super) struct Parts<'a> {
    pub(crate) reaper: &'a Reaper,
    pub(crate) cgroups: &'a Cgroups,
    pub(crate) tree: &'a Tree,
}

/// Who was told SIGTERM: processes (with their start time) and process groups.
#[derive(Default)]
struct Told {
    procs: HashMap<u32, u64>,
    groups: HashSet<u32>,
}

impl Tree {
    /// A new runner leads a new group whose id may be an old one's: it has not been told.
    pub(super) fn new_group(&self, pgid: u32, run: Option<&str>) {
        lock(&self.told).groups.remove(&pgid);
        lock(&self.adopted).remove(&pgid);
        let mut owners = lock(&self.owners);
        match run {
            Some(r) => owners.insert(pgid, r.into()),
            None => owners.remove(&pgid),
        };
    }

    /// Whether the group `pgid` is the run `run`'s: no later run's runner got that PID.
    pub(super) fn runs_group(&self, pgid: u32, run: &str) -> bool {
        lock(&self.owners).get(&pgid).is_none_or(|r| &**r == run)
    }

    /// A runner a previous daemon started, taken over with its start time.
    pub(super) fn adopt(&self, pgid: u32, start: u64) {
        lock(&self.adopted).insert(pgid, start);
    }

    /// The run `run` of group `pgid` is over: its id is nothing of ours any more (unless a
    /// later run's runner has it).
    pub(super) fn forget(&self, pgid: u32, run: &str) {
        if self.runs_group(pgid, run) {
            lock(&self.adopted).remove(&pgid);
            lock(&self.owners).remove(&pgid);
        }
    }
}

/// A process named by a pidfd where the kernel has them (else by PID alone).
struct Proc {
    pid: u32,
    fd: Option<OwnedFd>,
}

impl Proc {
    /// A handle on `pid`, if `still(pid)` holds once the handle is taken: then the handle
    /// names the process that check was about, not a later one with its PID.
    fn open(pid: u32, still: impl FnOnce(u32) -> bool) -> Option<Proc> {
        let fd = pidfd_open(pid);
        still(pid).then_some(Proc { pid, fd })
    }

    fn signal(&self, sig: i32) -> bool {
        match &self.fd {
            // SAFETY: pidfd_send_signal with a valid descriptor, no info, no flags.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                ) == 0
            },
            // SAFETY: kill(2) on a PID the caller just checked (kernels without pidfds).
            None => unsafe { libc::kill(self.pid as libc::pid_t, sig) == 0 },
        }
    }

    fn alive(&self) -> bool {
        self.signal(0) || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    /// SIGKILL, or SIGTERM if it was never told before (a zombie or a gone process is not
    /// told: nothing to tell).
    fn tell(&self, sig: i32, told: &Mutex<Told>) -> bool {
        if sig != libc::SIGTERM {
            return self.signal(sig);
        }
        let Some(start) = crate::service::sys::process_start_time(self.pid) else {
            return false;
        };
        {
            let mut t = lock(told);
            if t.procs.get(&self.pid) == Some(&start) {
                return false;
            }
            if t.procs.len() >= 4096 {
                t.procs
                    .retain(|p, s| crate::service::sys::process_start_time(*p) == Some(*s));
            }
            t.procs.insert(self.pid, start);
        }
        self.signal(sig)
    }
}

/// `root` and every descendant of it, parents before their children.
fn tree_of(root: u32) -> Vec<Proc> {
    let Some(root) = Proc::open(root, |_| true) else {
        return Vec::new();
    };
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() && out.len() < WALK_CAP {
        let parent = out[i].pid;
        let kids = children_of(&parent.to_string());
        // Read while the parent lived: its list names its own children, not a successor's.
        if out[i].alive() {
            for c in kids.into_iter().take(WALK_CAP - out.len()) {
                if let Some(p) = Proc::open(c, |c| {
                    crate::service::sys::parent_process(c) == Some(parent)
                }) {
                    out.push(p);
                }
            }
        }
        i += 1;
    }
    out
}

/// Claims for the run of group `pgid` every orphan nobody claimed yet that no live run holds
/// (see the module doc). Zombies are left to the reaper. Only in a process that inherits
/// orphans: elsewhere a child that is no runner is someone's own.
fn claim(s: &Parts, pgid: u32) {
    if !s.reaper.inherits() {
        return;
    }
    // No runner can be registered meanwhile: one spawned an instant ago is never an orphan.
    let _gate = s.reaper.deciding();
    // Nor is a helper of the daemon's own (a user's folder being removed with that user's
    // rights): see `sys::children`.
    let own = crate::service::sys::children::hold();
    let mut claims = s.reaper.claims();
    let runners = s.reaper.runners();
    let new: Vec<u32> = children_of("self")
        .into_iter()
        .filter(|p| {
            !runners.contains(p)
                && !own.is_own(*p)
                && !claims.contains_key(p)
                && crate::service::sys::process_start_time(*p).is_some()
        })
        .collect();
    drop(own);
    if new.is_empty() {
        return;
    }
    let live = s.cgroups.of_runs(&runners);
    for pid in new {
        let held = !live.is_empty()
            && s.cgroups
                .of_process(pid)
                .is_some_and(|cg| live.contains(&cg));
        if !held {
            claims.insert(pid, pgid);
        }
    }
}

/// How long, after its stop grace, an exiting subreaper waits for the orphans it SIGKILLed to
/// be collected (a killed process may take a moment in the kernel: a file system's wait).
const KILLED_WAIT: Duration = Duration::from_secs(5);

/// The children of this process that are orphans of runs no live run holds, zombies
/// included: neither runners nor the daemon's own helpers, nor (with cgroups) in the cgroup
/// of a live run. The caller holds the gate and the helpers' record, as [`claim`] does.
fn orphans(s: &Parts, own: &crate::service::sys::children::Held) -> Vec<u32> {
    let runners = s.reaper.runners();
    let left: Vec<u32> = children_of("self")
        .into_iter()
        .filter(|p| !runners.contains(p) && !own.is_own(*p))
        .collect();
    let live = s.cgroups.of_runs(&runners);
    if live.is_empty() {
        return left;
    }
    left.into_iter()
        .filter(|p| {
            !s.cgroups
                .of_process(*p)
                .is_some_and(|cg| live.contains(&cg))
        })
        .collect()
}

/// At the exit of a process that inherits orphans (the daemon, `run-once`): ends every orphan
/// of a run it holds (SIGTERM to each and its descendants once, SIGKILL from `grace` on) and
/// collects each, waiting until none is left or `grace` plus [`KILLED_WAIT`] has passed.
/// Whatever it left would be PID 1's, or an outer subreaper's, which may never collect a
/// zombie. Returns the PIDs still left when it gave up.
pub(super) fn end_orphans(s: &Parts, grace: Duration) -> Vec<u32> {
    if !s.reaper.inherits() {
        return Vec::new();
    }
    let start = Instant::now();
    loop {
        let waited = start.elapsed();
        let sig = if waited >= grace {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        let left = {
            // Each look under the gate, the helpers' record and the claims (the reaper's
            // order): no orphan is collected by the reaper meanwhile, so none of these PIDs
            // is another process's while it is signalled, and none is a new child's.
            let _gate = s.reaper.deciding();
            let own = crate::service::sys::children::hold();
            let mut claims = s.reaper.claims();
            let mut left = orphans(s, &own);
            left.retain(|&pid| {
                if waitid_exited(Some(pid), libc::WNOHANG).is_some() {
                    claims.remove(&pid);
                    return false;
                }
                for p in tree_of(pid) {
                    p.tell(sig, &s.tree.told);
                }
                true
            });
            left
        };
        if left.is_empty() || waited >= grace + KILLED_WAIT {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A run as its caller knows it.
pub(super) struct Run<'a> {
    pub(crate) pgid: u32,
    pub(crate) run_dir: &'a str,
    pub(crate) cgroup: Option<PathBuf>,
    /// The runner is our child and has not exited.
    pub(crate) runner_alive: bool,
}

/// Whether a signal to the process group named by the runner's PID reaches only the run's
/// processes. While the runner lives (or waits uncollected) no other process can have its PID,
/// so no other group that id. Once it is collected, the number is free as soon as the group's
/// last process has left it (`setsid`), and a new process — another user's, root's, the
/// daemon's next runner — may get it and lead a group of that id: signalling "the run's group"
/// then would kill a stranger. So, after the runner: with a cgroup never (the cgroup holds every
/// process of the run, in the group or not); without one only while no process has that PID
/// but the run's own — a runner a previous daemon started and this one adopted, which carries
/// the run's tag (any other is not ours, and any group of that id is new). An adopted runner
/// that still lives, known by its PID and start time, leads the run's group as our own runner
/// does. Left: without a cgroup, a new group of that id whose leader has exited already
/// (docs/SECURITY.md).
fn group_is_the_runs(s: &Parts, run: &Run) -> bool {
    if run.runner_alive {
        return true;
    }
    // A later run's runner got this run's runner's PID: the group of that id is the later
    // run's, whatever this run left.
    if !s.tree.runs_group(run.pgid, run.run_dir) {
        return false;
    }
    let now = crate::service::sys::process_start_time(run.pgid);
    if now.is_some() && lock(&s.tree.adopted).get(&run.pgid) == now.as_ref() {
        return true;
    }
    if run.cgroup.is_some() {
        return false;
    }
    now.is_none() || crate::service::sys::has_env(run.pgid, &tag_of(run.run_dir))
}

/// The environment entry every process of the run of `run_dir` inherits.
fn tag_of(run_dir: &str) -> Vec<u8> {
    format!("{}={}", TAG, run_dir).into_bytes()
}

/// Whether anything of the run is left (claiming its orphans first).
pub(super) fn alive(s: &Parts, run: &Run) -> bool {
    // A run with a cgroup has everything it left in it (a process cannot leave its cgroup):
    // once its runner has ended and the cgroup is empty, it left no orphan to claim, and the
    // look at this process's children (a /proc read per thread) is skipped. It was a sixth
    // of the daemon's system calls per run (23 of ~143) at hundreds of runs a second.
    let emptied = !run.runner_alive
        && run
            .cgroup
            .as_deref()
            .is_some_and(|dir| !cgroup::populated(dir));
    if !emptied {
        claim(s, run.pgid);
    }
    if run.runner_alive || (group_is_the_runs(s, run) && group_alive(run.pgid)) {
        return true;
    }
    if !emptied && run.cgroup.as_deref().is_some_and(cgroup::populated) {
        return true;
    }
    s.reaper
        .claims()
        .iter()
        .any(|(pid, g)| *g == run.pgid && crate::service::sys::process_start_time(*pid).is_some())
}

/// Sends `sig` (SIGTERM or SIGKILL) to everything of the run; true if anything was there.
pub(super) fn signal(s: &Parts, run: &Run, sig: i32) -> bool {
    claim(s, run.pgid);
    let told = &s.tree.told;
    let pgid = run.pgid;
    // Processes in the group are told through it, when it is the run's; else one by one.
    let by_group = group_is_the_runs(s, run);
    let outside = |pid: u32| !by_group || pgid_of(pid) != Some(pgid);
    let mut any = false;
    // A live runner's descendants: for SIGKILL in rounds, the group (the runner with it) last,
    // so that an orphan made by a kill stays below the runner for the next round.
    if run.runner_alive {
        let rounds = if sig == libc::SIGKILL { KILL_ROUNDS } else { 1 };
        for _ in 0..rounds {
            // Zombies are done: a round with only those left is the last.
            let procs: Vec<Proc> = tree_of(pgid)
                .into_iter()
                .skip(1)
                .filter(|p| {
                    outside(p.pid) && crate::service::sys::process_start_time(p.pid).is_some()
                })
                .collect();
            if procs.is_empty() {
                break;
            }
            for p in &procs {
                any |= p.tell(sig, told);
            }
        }
    }
    if by_group {
        any |= signal_group(pgid, sig, told);
    }
    // Those that left the group but kept the tag. A run with a cgroup has them all in it
    // (a runner cannot move itself out; see below): no scan of every process's environment,
    // whose cost any local user sets (9,000 idle processes of one user made each run end
    // take 1.1-1.7 s of the loop instead of 0.07 s).
    let needle = tag_of(run.run_dir);
    let tagged = match run.cgroup {
        Some(_) => Vec::new(),
        None => crate::service::sys::processes_with_env(TAG, run.run_dir),
    };
    for pid in tagged {
        if let Some(p) = Proc::open(pid, |p| {
            outside(p) && crate::service::sys::has_env(p, &needle)
        }) {
            any |= p.tell(sig, told);
        }
    }
    // The cgroup holds even those that cleared their environment.
    if let Some(dir) = &run.cgroup {
        if sig == libc::SIGKILL {
            any |= cgroup::kill(dir);
        } else {
            for pid in cgroup::members(dir) {
                let member =
                    |p: u32| outside(p) && s.cgroups.of_process(p).is_some_and(|cg| cg == *dir);
                if let Some(p) = Proc::open(pid, member) {
                    any |= p.tell(sig, told);
                }
            }
        }
    }
    // The orphans it left, and theirs. Under the claims' lock: a claimed child of ours is not
    // collected (its PID not freed) while it is signalled.
    let claims = s.reaper.claims();
    for (&pid, _) in claims.iter().filter(|(_, g)| **g == pgid) {
        for p in tree_of(pid).iter().filter(|p| outside(p.pid)) {
            any |= p.tell(sig, told);
        }
    }
    any
}

/// SIGKILL to the group, or SIGTERM once per group.
fn signal_group(pgid: u32, sig: i32, told: &Mutex<Told>) -> bool {
    if sig == libc::SIGTERM {
        let mut t = lock(told);
        if !t.groups.insert(pgid) {
            return group_alive(pgid);
        }
        if t.groups.len() >= 4096 {
            t.groups.retain(|g| *g == pgid || group_alive(*g));
        }
    }
    super::os::signal_group(pgid, sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that ended and lingers (what it left is still there) while a later run's runner
    /// got its runner's PID: the group of that id is the later run's, never the ended one's
    /// (a job's user who cycles PIDs could otherwise have root's next run killed by the end
    /// of its own run: `kill(-P, SIGKILL)` after `stop_grace`).
    #[test]
    fn a_pid_taken_by_a_later_runner_is_that_runs_group_only() {
        let t = Tree::default();
        t.new_group(413, Some("/s/jobs/u/runs/1"));
        assert!(t.runs_group(413, "/s/jobs/u/runs/1"));
        t.new_group(413, Some("/s/jobs/root/runs/7"));
        assert!(!t.runs_group(413, "/s/jobs/u/runs/1"));
        assert!(t.runs_group(413, "/s/jobs/root/runs/7"));
        // The ended run's end forgets nothing of the later run's.
        t.forget(413, "/s/jobs/u/runs/1");
        assert!(t.runs_group(413, "/s/jobs/root/runs/7"));
        assert!(!t.runs_group(413, "/s/jobs/u/runs/1"));
        t.forget(413, "/s/jobs/root/runs/7");
        assert!(
            t.runs_group(413, "/s/jobs/u/runs/1"),
            "no run holds 413 now"
        );
    }
}
