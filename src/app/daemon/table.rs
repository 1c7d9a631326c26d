//! The run table: the runs the daemon's loop holds — queued for a free slot, in flight with
//! their deadlines, handed to the finisher and not written yet, and finished runs whose
//! leftovers are still being ended. It decides which deadline has passed and when the next
//! one comes; it signals nothing itself: the shell (`runs.rs`) ends the trees it names, so
//! the table is tested with plain instants, without processes.

use crate::model::config::Job;
use crate::model::record::{Outcome, RunRecord, Trigger};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A run the daemon watches.
#[derive(Debug)]
pub(crate) struct ActiveRun {
    pub(crate) record: RunRecord,
    /// Process group id (= the runner's PID).
    pub(crate) pgid: u32,
    pub(crate) deadline: Instant,
    /// When SIGKILL follows the SIGTERM already sent.
    pub(crate) kill_at: Option<Instant>,
    /// Why the daemon ended it, if it did.
    pub(crate) ended_by: Option<Outcome>,
    /// When the run is given up if its runner has not ended since its SIGKILL (see
    /// [`GIVE_UP_AFTER`]).
    pub(crate) give_up_at: Option<Instant>,
    /// Found running by a new daemon after a crash: not its child, so its end is seen by
    /// polling its PID and start time, and its exit code is unknown.
    pub(crate) adopted: bool,
}

impl ActiveRun {
    /// The run folder, as the tree functions name a run.
    pub(crate) fn dir(&self) -> String {
        self.record.run_dir.display().to_string()
    }
}

/// How long a runner has to end after its SIGKILL before its run is given up (see
/// [`RunTable::take_unkillable`]): a killed process ends within milliseconds unless the
/// kernel holds it.
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// A due run waiting for a free slot (`max_parallel`).
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) job: Arc<Job>,
    pub(crate) due: DateTime<Utc>,
    pub(crate) trigger: Trigger,
    /// The run folder and journal, if prepared ahead of the due time.
    pub(crate) prepared: Option<RunRecord>,
    /// The `run-once` request it answers, if any.
    pub(crate) request: Option<String>,
}

/// What a passed deadline asks of a run's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Its timeout passed: SIGTERM (the polite end), SIGKILL follows after the grace.
    Timeout,
    /// The grace after the SIGTERM passed: SIGKILL.
    Kill,
}

/// A finished run whose tree left processes behind, ended by `kill_at` at the latest.
#[derive(Debug)]
struct Lingering {
    pgid: u32,
    dir: String,
    kill_at: Instant,
}

/// The runs the loop holds (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct RunTable {
    active: HashMap<u32, ActiveRun>,
    lingering: Vec<Lingering>,
    /// Due runs waiting for a free slot, oldest first. Changed only through the daemon's
    /// named changes (`changes/`), which keep each job's count.
    pub(super) queue: VecDeque<Pending>,
    /// PIDs spawned in this pass of the loop, journalled once the batch is out.
    just_started: Vec<u32>,
    /// Records handed to the finisher and not written yet: the loop exits only at 0.
    pub(super) finishing: usize,
}

impl RunTable {
    /// A run just spawned: in flight, and journalled after this pass's spawns.
    pub(crate) fn start(&mut self, pid: u32, run: ActiveRun) {
        self.active.insert(pid, run);
        self.just_started.push(pid);
    }

    /// A run a previous daemon left in flight.
    pub(crate) fn adopt(&mut self, pid: u32, run: ActiveRun) {
        self.active.insert(pid, run);
    }

    /// The runs spawned since the last call, still in flight.
    pub(crate) fn take_started(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.just_started)
    }

    pub(crate) fn get(&self, pid: u32) -> Option<&ActiveRun> {
        self.active.get(&pid)
    }

    pub(crate) fn get_mut(&mut self, pid: u32) -> Option<&mut ActiveRun> {
        self.active.get_mut(&pid)
    }

    /// Takes a run out of flight (it exited, or was found gone).
    pub(crate) fn end(&mut self, pid: u32) -> Option<ActiveRun> {
        self.active.remove(&pid)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.active.len()
    }

    pub(crate) fn runs(&self) -> impl Iterator<Item = &ActiveRun> {
        self.active.values()
    }

    /// How many more runs may start now under `max_parallel` (0: no bound).
    pub(crate) fn room(&self, max_parallel: usize) -> usize {
        match max_parallel {
            0 => usize::MAX,
            n => n.saturating_sub(self.active.len()),
        }
    }

    /// The runs of `job` in flight.
    pub(crate) fn pids_of(&self, job: &str) -> Vec<u32> {
        self.active
            .values()
            .filter(|r| r.record.job == job)
            .map(|r| r.pgid)
            .collect()
    }

    pub(crate) fn any_adopted(&self) -> bool {
        self.active.values().any(|r| r.adopted)
    }

    /// Takes the adopted runs that `alive` says are gone.
    pub(crate) fn take_gone_adopted(
        &mut self,
        alive: impl Fn(&ActiveRun) -> bool,
    ) -> Vec<ActiveRun> {
        let gone: Vec<u32> = self
            .active
            .iter()
            .filter(|(_, r)| r.adopted && !alive(r))
            .map(|(pid, _)| *pid)
            .collect();
        gone.into_iter()
            .filter_map(|p| self.active.remove(&p))
            .collect()
    }

    /// Marks the runs whose deadline passed at `now` and names each with what its tree is to
    /// get (`act`): past its timeout it ends as `timeout`, SIGKILL planned `grace` later.
    pub(crate) fn deadlines(
        &mut self,
        now: Instant,
        grace: Duration,
        mut act: impl FnMut(Signal, &ActiveRun),
    ) {
        for run in self.active.values_mut() {
            if run.ended_by.is_none() && now >= run.deadline {
                run.ended_by = Some(Outcome::Timeout);
                run.kill_at = Some(now + grace);
                act(Signal::Timeout, run);
            } else if run.kill_at.is_some_and(|k| now >= k) {
                run.kill_at = None;
                run.give_up_at = Some(now + GIVE_UP_AFTER);
                act(Signal::Kill, run);
            }
        }
    }

    /// Takes the runs whose runner has not ended [`GIVE_UP_AFTER`] its SIGKILL: a process
    /// the kernel holds in an uninterruptible sleep (a file system that does not answer, such
    /// as a FUSE mount the job's user made) ends only when the kernel lets it, which may be
    /// never. Waiting for it held the run's slot and every later run of its job, and a stop
    /// for good (W1 F1).
    pub(crate) fn take_unkillable(&mut self, now: Instant) -> Vec<ActiveRun> {
        let stuck: Vec<u32> = self
            .active
            .iter()
            .filter(|(_, r)| r.give_up_at.is_some_and(|g| now >= g))
            .map(|(pid, _)| *pid)
            .collect();
        stuck
            .iter()
            .filter_map(|pid| self.active.remove(pid))
            .collect()
    }

    /// `stop --now`: every run not told to end yet ends as `killed`, SIGKILL planned `grace`
    /// later; `act` is called for each to send its SIGTERM. One polite signal per run: a run
    /// already told to end (its timeout) is in its grace period, and a second SIGTERM makes
    /// robot quit at once with a broken result. It stays `timeout`: that is why it ended.
    pub(crate) fn end_all(
        &mut self,
        now: Instant,
        grace: Duration,
        mut act: impl FnMut(&ActiveRun),
    ) {
        for run in self.active.values_mut() {
            if run.ended_by.is_none() {
                run.ended_by = Some(Outcome::Killed);
                run.kill_at = Some(now + grace);
                act(run);
            }
        }
    }

    /// A finished run's tree left processes behind: they get until `kill_at`.
    pub(crate) fn linger(&mut self, pgid: u32, dir: String, kill_at: Instant) {
        self.lingering.push(Lingering { pgid, dir, kill_at });
    }

    pub(crate) fn has_lingering(&self) -> bool {
        !self.lingering.is_empty()
    }

    /// Drops the leftovers that are gone (`alive` says) and hands those whose time is up to
    /// `kill`, dropping them too.
    pub(crate) fn sweep_lingering(
        &mut self,
        now: Instant,
        alive: impl Fn(u32, &str) -> bool,
        mut kill: impl FnMut(u32, &str),
    ) {
        self.lingering.retain(|l| {
            // Gone: nothing to wait for (`run-once` and `stop --now` end at once then).
            if !alive(l.pgid, &l.dir) {
                return false;
            }
            if now >= l.kill_at {
                kill(l.pgid, &l.dir);
                return false;
            }
            true
        });
    }

    /// The earliest deadline of a run or its leftovers: a timeout not acted on yet, or a
    /// planned SIGKILL.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let runs = self.active.values().flat_map(|r| {
            let timeout = r.ended_by.is_none().then_some(r.deadline);
            timeout.into_iter().chain(r.kill_at).chain(r.give_up_at)
        });
        runs.chain(self.lingering.iter().map(|l| l.kill_at)).min()
    }

    /// Nothing queued, in flight or lingering.
    pub(crate) fn is_idle(&self) -> bool {
        self.active.is_empty() && self.queue.is_empty() && self.lingering.is_empty()
    }

    /// Idle, and every record written: a stopping daemon may exit.
    pub(crate) fn is_done(&self) -> bool {
        self.is_idle() && self.finishing == 0
    }

    /// Whether [`RunTable::shrink_when_idle`] has capacity to hand back.
    pub(crate) fn holds_spare(&self) -> bool {
        self.active.capacity() != 0 || self.queue.capacity() != 0
    }

    /// Hands back the capacity a burst of runs left once the table is idle: a slot of `active`
    /// or `queue` holds a whole run record, and a large table is a mapping of its own (see
    /// `sys::memory::tune_allocator`) that goes back to the system. True if it did.
    pub(crate) fn shrink_when_idle(&mut self) -> bool {
        if !self.is_idle() || !self.holds_spare() {
            return false;
        }
        self.active.shrink_to_fit();
        self.queue.shrink_to_fit();
        self.lingering.shrink_to_fit();
        self.just_started.shrink_to_fit();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const GRACE: Duration = Duration::from_secs(10);

    fn run(pid: u32, t0: Instant, timeout_s: u64) -> ActiveRun {
        let rec = RunRecord::journal(
            "j",
            format!("run{pid}"),
            PathBuf::from(format!("/runs/{pid}")),
            Utc::now(),
            Trigger::Schedule,
            timeout_s as f64,
        );
        ActiveRun {
            record: rec,
            pgid: pid,
            deadline: t0 + Duration::from_secs(timeout_s),
            kill_at: None,
            give_up_at: None,
            ended_by: None,
            adopted: false,
        }
    }

    fn signals(t: &mut RunTable, now: Instant) -> Vec<(Signal, u32)> {
        let mut got = Vec::new();
        t.deadlines(now, GRACE, |s, r| got.push((s, r.pgid)));
        got.sort_by_key(|(_, p)| *p);
        got
    }

    #[test]
    fn a_timeout_terms_once_then_kills_after_the_grace() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = RunTable::default();
        t.start(1, run(1, t0, 30));
        t.start(2, run(2, t0, 60));
        assert_eq!(t.take_started(), vec![1, 2]);
        assert!(t.take_started().is_empty());
        assert_eq!(t.next_deadline(), Some(t0 + s(30)));
        assert!(signals(&mut t, t0 + s(29)).is_empty());
        assert_eq!(signals(&mut t, t0 + s(30)), vec![(Signal::Timeout, 1)]);
        assert_eq!(t.get(1).unwrap().ended_by, Some(Outcome::Timeout));
        // Told once: the next look before the grace is over sends nothing.
        assert!(signals(&mut t, t0 + s(35)).is_empty());
        assert_eq!(t.next_deadline(), Some(t0 + s(40)));
        assert_eq!(signals(&mut t, t0 + s(40)), vec![(Signal::Kill, 1)]);
        assert!(signals(&mut t, t0 + s(45)).is_empty(), "killed once");
        // Still there GIVE_UP_AFTER its SIGKILL: the kernel holds it, the run is given up.
        assert_eq!(t.next_deadline(), Some(t0 + s(40) + GIVE_UP_AFTER));
        assert!(t.take_unkillable(t0 + s(45)).is_empty());
        let given_up = t.take_unkillable(t0 + s(40) + GIVE_UP_AFTER);
        assert_eq!(given_up.iter().map(|r| r.pgid).collect::<Vec<_>>(), [1]);
        assert_eq!(t.next_deadline(), Some(t0 + s(60)));
        assert!(t.end(1).is_none(), "no longer in flight");
        assert_eq!(t.in_flight(), 1);
    }

    #[test]
    fn stop_now_leaves_a_timed_out_run_its_grace_and_its_outcome() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = RunTable::default();
        t.start(1, run(1, t0, 30));
        t.start(2, run(2, t0, 60));
        signals(&mut t, t0 + s(30));
        let mut termed = Vec::new();
        t.end_all(t0 + s(31), GRACE, |r| termed.push(r.pgid));
        assert_eq!(termed, vec![2]);
        assert_eq!(t.get(1).unwrap().ended_by, Some(Outcome::Timeout));
        assert_eq!(t.get(1).unwrap().kill_at, Some(t0 + s(40)));
        assert_eq!(t.get(2).unwrap().ended_by, Some(Outcome::Killed));
        assert_eq!(
            signals(&mut t, t0 + s(41)),
            vec![(Signal::Kill, 1), (Signal::Kill, 2)]
        );
    }

    #[test]
    fn leftovers_go_when_gone_or_at_their_kill_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = RunTable::default();
        t.linger(7, "/runs/7".into(), t0 + s(10));
        t.linger(8, "/runs/8".into(), t0 + s(20));
        assert!(!t.is_idle());
        assert_eq!(t.next_deadline(), Some(t0 + s(10)));
        let mut killed = Vec::new();
        t.sweep_lingering(t0 + s(5), |_, _| true, |p, _| killed.push(p));
        assert!(killed.is_empty());
        t.sweep_lingering(t0 + s(10), |_, _| true, |p, _| killed.push(p));
        assert_eq!(killed, vec![7]);
        t.sweep_lingering(t0 + s(11), |p, _| p != 8, |p, _| killed.push(p));
        assert_eq!(killed, vec![7], "gone by itself: nothing to kill");
        assert!(t.is_idle());
        t.finishing = 1;
        assert!(!t.is_done());
        t.finishing = 0;
        assert!(t.is_done());
    }

    #[test]
    fn room_adoption_and_gone_adopted_runs() {
        let t0 = Instant::now();
        let mut t = RunTable::default();
        assert_eq!((t.room(1), t.room(0)), (1, usize::MAX));
        t.start(1, run(1, t0, 30));
        assert_eq!((t.room(1), t.room(3), t.room(0)), (0, 2, usize::MAX));
        let mut a = run(2, t0, 30);
        a.adopted = true;
        t.adopt(2, a);
        assert_eq!(
            t.take_started(),
            vec![1],
            "an adopted run is not journalled again"
        );
        assert!(t.any_adopted());
        assert_eq!(t.pids_of("j").len(), 2);
        assert!(t.take_gone_adopted(|_| true).is_empty());
        let gone = t.take_gone_adopted(|_| false);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].pgid, 2);
        assert!(!t.any_adopted());
        assert_eq!(t.in_flight(), 1);
    }
}
