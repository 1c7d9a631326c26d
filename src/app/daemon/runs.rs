//! Starting, bounding and recording runs: the journal written around each spawn, the timeout
//! (TERM to the tree, KILL after `stop_grace`), and the final record.

use super::event::Event;
use super::folder::{
    mark_ended, not_started, open_spec, prepare_folder, record_cause, run_as, write_final,
};
use super::shell::Daemon;
use super::table::{ActiveRun, Pending, Signal};
use crate::model::record::{Outcome, RunRecord, Trigger};
use crate::service::run::ExitInfo;
use crate::service::state::record::{self};
use crate::service::sys::descriptors;
use chrono::Utc;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Runs spawned at once, at most, when many are due together. Each spawn waits for its child's
/// exec, and a child's first step — joining its run's cgroup, the first process there — often
/// gives up the CPU on its way back (a `sched_switch` trace shows it rescheduled on its return
/// from the `cgroup.procs` write; `clone3` into the cgroup costs the same): one spawner waits
/// through each, two overlap them. Measured on this
/// project's 2-core VM (a C model of the daemon's clone, `/bin/true`, a fresh cgroup per
/// child): one thread 1,777–2,301 spawns a second, two threads 3,314–3,913; without cgroups
/// 3,280 and 3,700.
const SPAWNERS: usize = 2;
/// Fewer due together are spawned one by one: they start within milliseconds anyway, and a
/// helper thread, once it ran, leaves its stack cached in the daemon (16–64 KiB more private
/// memory measured idle), which a small configuration would carry for nothing.
const PARALLEL_FROM: usize = 16;

/// A run ready to spawn (see [`Daemon::ready_run`]); its spec travels beside it, consumed by
/// the spawn on whichever thread takes it.
struct Ready {
    job: Arc<crate::model::config::Job>,
    rec: RunRecord,
    env_key: Option<String>,
}

/// How one spawn went.
struct Spawned {
    pid: std::io::Result<u32>,
    /// Taken before the fork: on a busy machine the daemon may be descheduled right after it
    /// while the runner already runs, and a start time taken then would shorten the recorded
    /// duration below what the runner really took.
    started: chrono::DateTime<Utc>,
    /// When the spawn returned: the run's timeout counts from here, not from when the rest of
    /// its batch was spawned.
    spawned: Instant,
    /// The program, for the error's words.
    argv0: String,
}

impl Ready {
    /// Spawns the run from `spec` (as its job's user, if it has one); each exit is posted
    /// through `tx`.
    fn spawn(
        &self,
        spec: crate::service::run::RunSpec,
        spawner: &crate::service::run::Spawner,
        tx: &Sender<Event>,
    ) -> Spawned {
        let started = Utc::now();
        let argv0 = spec.argv.first().cloned().unwrap_or_default();
        let tx = tx.clone();
        let on_exit = move |pid, exit| {
            let _ = tx.send(Event::Exited { pid, exit });
        };
        let pid = match self.job.user.as_deref() {
            Some(u) => spawner.spawn_as(spec, run_as(u), on_exit),
            None => spawner.spawn(spec, on_exit),
        };
        Spawned {
            pid,
            started,
            spawned: Instant::now(),
            argv0,
        }
    }
}

impl Spawned {
    /// Spawns every run of `ready` on [`SPAWNERS`] threads (this one and helpers), earliest
    /// first; the results in `ready`'s order. If no helper can be started, this thread spawns
    /// them all.
    fn all(
        ready: &[Ready],
        specs: Vec<crate::service::run::RunSpec>,
        spawner: &crate::service::run::Spawner,
        tx: &Sender<Event>,
    ) -> Vec<Spawned> {
        // Each thread takes the next spec under the lock, and spawns it outside.
        let next = Mutex::new(specs.into_iter().enumerate());
        let work = || {
            let mut done = Vec::new();
            loop {
                let taken = next.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some((i, spec)) = taken else { break done };
                done.push((i, ready[i].spawn(spec, spawner, tx)));
            }
        };
        let done: Vec<(usize, Spawned)> = std::thread::scope(|s| {
            let helpers: Vec<_> = (1..SPAWNERS)
                .filter_map(|_| {
                    std::thread::Builder::new()
                        .name("spawner".into())
                        .stack_size(SPAWNER_STACK)
                        // At the loop's priority, which each runner inherits from the
                        // thread that spawns it (not `background_thread`'s).
                        .spawn_scoped(s, work)
                        .ok()
                })
                .collect();
            let mut done = work();
            for h in helpers {
                done.extend(h.join().unwrap_or_default());
            }
            done
        });
        let mut by_run: Vec<Option<Spawned>> = ready.iter().map(|_| None).collect();
        for (i, s) in done {
            by_run[i] = Some(s);
        }
        by_run
            .into_iter()
            .map(|s| {
                // Only a helper that panicked (a bug; the release build aborts instead) leaves
                // a run without its spawn's result: recorded as not started.
                s.unwrap_or_else(|| Spawned {
                    pid: Err(std::io::Error::other("its spawning thread failed (a bug)")),
                    started: Utc::now(),
                    spawned: Instant::now(),
                    argv0: String::new(),
                })
            })
            .collect()
    }
}

/// A helper spawner's stack: a spawn's own frames (the child runs on its own stack).
const SPAWNER_STACK: usize = 256 * 1024;

impl Daemon {
    /// Removes a run folder prepared for a due time that has not come (the job changed, or the
    /// daemon stops): nothing was due, so nothing is lost.
    pub(super) fn discard_prepared(&mut self, rec: Option<RunRecord>) {
        if let Some(rec) = rec {
            // Moved into the job's `removing` folder; the finisher removes it from there.
            match record::discard(&self.state, &rec.job, &rec.run_dir) {
                Ok(()) => super::workdir::removal_due(&rec.job),
                Err(e) => {
                    warn!(job = %rec.job, "cannot remove the prepared run folder {}: {e}", rec.run_dir.display())
                }
            }
        }
    }

    /// Starts one run now. The post-spawn journal entry and log line are left to
    /// [`Daemon::after_spawns`], so that a batch of due runs is spawned back to back.
    pub(super) fn start_run(&mut self, p: Pending) {
        if let Some((ready, spec)) = self.ready_run(p) {
            let spawned = ready.spawn(spec, &self.spawner, &self.tx);
            self.run_spawned(ready, spawned);
        }
    }

    /// Starts the runs of `batch` now, spawning up to [`SPAWNERS`] at once (see
    /// [`Spawned::all`]); as [`Daemon::start_run`] for each otherwise.
    pub(super) fn start_runs(&mut self, batch: Vec<Pending>) {
        if batch.len() < PARALLEL_FROM {
            return batch.into_iter().for_each(|p| self.start_run(p));
        }
        let (ready, specs): (Vec<Ready>, Vec<_>) =
            batch.into_iter().filter_map(|p| self.ready_run(p)).unzip();
        let spawned = Spawned::all(&ready, specs, &self.spawner, &self.tx);
        for (ready, spawned) in ready.into_iter().zip(spawned) {
            self.run_spawned(ready, spawned);
        }
    }

    /// Everything a start does before the spawn: the pause hook, the run folder (unless
    /// prepared), the spec and the job's environment. `None` when the run will not be
    /// spawned (it was discarded or finished with its cause here).
    fn ready_run(&mut self, p: Pending) -> Option<(Ready, crate::service::run::RunSpec)> {
        // Pause hook (service/pause.rs): a paused job starts no run at this due time.
        if let Some(why) = crate::service::pause::holds(&self.state, &p.job.name, p.trigger) {
            info!(job = %p.job.name, due = %crate::model::record::ts(p.due), "not started: {why}");
            self.discard_prepared(p.prepared);
            return None;
        }
        let job = p.job;
        let rec = match p.prepared {
            Some(rec) => rec,
            None => match prepare_folder(&self.state, &job, p.due, p.trigger) {
                Ok(rec) => rec,
                Err(msg) if msg.out_of_descriptors() => {
                    // Passing: the run is recorded as not started, with the cause, when its
                    // record can be written (retried until then), never dropped.
                    let why = format!("not started: {}", descriptors::words());
                    warn!(job = %job.name, "{msg}");
                    let rec = not_started(&self.state, &job, p.due, p.trigger, why);
                    self.finish(rec, Outcome::Error, None);
                    return None;
                }
                Err(msg) => {
                    // Without a run folder there is nowhere to put output or a record: report
                    // it where the admin looks (log, status, ctrl) and let the schedule go on.
                    self.state_failure(format!("prepare:{}", job.name), msg.to_string());
                    return None;
                }
            },
        };
        let mut rec = rec;
        rec.request = p.request.clone();
        let held = self.cfg.users_held.get(&job.name).map(|w| &**w);
        let mut spec = match open_spec(&job, &rec, held) {
            Ok(spec) => spec,
            Err(note) => {
                rec.note = Some(note.to_string());
                self.finish(rec, Outcome::Error, None);
                return None;
            }
        };
        let env_key = match self.apply_env(&job, &mut spec) {
            Ok(k) => k,
            Err(note) => {
                rec.note = Some(match descriptors::mark_text(&note) {
                    true => format!("{note}: {}", descriptors::words()),
                    false => note,
                });
                self.finish(rec, Outcome::Error, None);
                return None;
            }
        };
        Some((Ready { job, rec, env_key }, spec))
    }

    /// Everything a start does after the spawn: the run in the table, or its failure recorded.
    fn run_spawned(&mut self, ready: Ready, spawned: Spawned) {
        let Ready {
            job,
            mut rec,
            env_key,
        } = ready;
        rec.started = Some(spawned.started);
        match spawned.pid {
            Ok(pid) => {
                rec.pid = Some(pid);
                let run = ActiveRun {
                    record: rec,
                    pgid: pid,
                    deadline: spawned.spawned + job.timeout,
                    kill_at: None,
                    give_up_at: None,
                    ended_by: None,
                    adopted: false,
                };
                self.record_started(pid, run);
                self.env_run_started(pid, env_key);
            }
            Err(e) => {
                let argv0 = &spawned.argv0;
                rec.note = Some(match descriptors::mark(&e) {
                    true => format!("cannot start {argv0:?}: {} ({e})", descriptors::words()),
                    false => format!("cannot start {argv0:?}: {e}"),
                });
                warn!(job = %job.name, "run {} could not start: {e}", rec.run_id);
                self.finish(rec, Outcome::Error, None);
            }
        }
    }

    /// Journals the PIDs of the runs just spawned (so a new daemon can find them after a
    /// crash) and logs them. The writes go to the finisher, whose thread yields to this one
    /// and to the runners: at a due instant the CPU is theirs first.
    pub(super) fn after_spawns(&mut self) {
        for pid in self.table.take_started() {
            let Some(run) = self.table.get_mut(pid) else {
                continue;
            };
            let rec = &mut run.record;
            rec.pid_start = crate::service::sys::process_start_time(pid);
            let late = rec
                .started
                .and_then(|s| (s - rec.due).num_microseconds())
                .map_or(0.0, |us| us as f64 / 1000.0);
            info!(job = %rec.job, run_id = %rec.run_id, pid, late_ms = late, "run started");
            if rec.trigger == Trigger::Schedule && late > 1000.0 {
                let schedule = self.jobs.get(&rec.job).map(|js| js.job.schedule.clone());
                self.backlog
                    .started(Duration::from_secs_f64(late / 1000.0), || {
                        schedule.map_or(Duration::MAX, |s| s.nominal_interval(Utc::now()))
                    });
            }
            let journal = Box::new(rec.clone());
            match &self.finisher {
                Some(f) => {
                    if let Err(super::finish::Work::Journal(rec)) =
                        f.send(super::finish::Work::Journal(journal))
                    {
                        super::finish::journal(&rec);
                    }
                }
                None => super::finish::journal(&journal),
            }
        }
    }

    /// A runner exited (reported by its waiter thread).
    pub(super) fn on_exit(&mut self, pid: u32, exit: ExitInfo) {
        let Some(run) = self.table.end(pid) else {
            return;
        };
        let outcome = run.ended_by.unwrap_or(if exit.success() {
            Outcome::Success
        } else {
            Outcome::Failure
        });
        self.end_active(run, outcome, Some(exit));
    }

    /// Records the end of an active run and cleans up what its tree left behind.
    pub(super) fn end_active(&mut self, run: ActiveRun, outcome: Outcome, exit: Option<ExitInfo>) {
        self.record_ended(&run);
        self.env_run_ended(run.pgid);
        // Processes the runner left behind (a browser, a driver, a daemonized helper that
        // left the group) must not outlive it.
        let dir = run.dir();
        if self.spawner.tree_alive(run.pgid, &dir) {
            // Told once per process: those told at a timeout or a stop keep the SIGKILL
            // planned then; what is new (an orphan found now) is told now.
            self.spawner.terminate_tree(run.pgid, &dir);
            let kill_at = match (run.ended_by, run.kill_at) {
                (Some(_), Some(k)) => k,
                _ => Instant::now() + self.cfg.daemon.stop_grace,
            };
            self.table.linger(run.pgid, dir, kill_at);
        }
        let mut rec = run.record;
        if run.adopted && rec.note.is_none() {
            rec.note = Some(
                "the daemon restarted while this run was in flight; it was watched to its end, but its exit code is unknown"
                    .into(),
            );
        }
        if outcome == Outcome::Timeout {
            let note = format!(
                "ended after its timeout of {}",
                crate::model::duration::format(rec.timeout())
            );
            rec.note = Some(match rec.note.take() {
                Some(n) => format!("{n}; {note}"),
                None => note,
            });
        }
        self.finish(rec, outcome, exit);
    }

    /// Hands an ended run to the finisher: it completes the record (robot's result), writes
    /// it and the job's latest result, and prunes old runs, off this thread.
    pub(super) fn finish(&mut self, mut rec: RunRecord, outcome: Outcome, exit: Option<ExitInfo>) {
        mark_ended(&mut rec, outcome, exit);
        // Through the job's own list of runs in flight, not a scan of every active run: each
        // of 1000 runs ending together would otherwise scan the other 999. A job gone from
        // the config (runs still in flight) has no list: scanned then.
        let mut protect: Vec<String> = match self.jobs.get(&rec.job) {
            Some(js) => js
                .running()
                .iter()
                .filter_map(|pid| self.table.get(*pid))
                .map(|r| r.record.run_id.clone())
                .chain(js.prepared.as_ref().map(|r| r.run_id.clone()))
                .collect(),
            None => self
                .table
                .runs()
                .filter(|r| r.record.job == rec.job)
                .map(|r| r.record.run_id.clone())
                .collect(),
        };
        // Queued runs have their folders too (the queue is empty unless `max_parallel` holds
        // runs back).
        protect.extend(
            self.table
                .queue
                .iter()
                .filter(|p| *p.job.name == *rec.job)
                .filter_map(|p| p.prepared.as_ref().map(|r| r.run_id.clone())),
        );
        let read = super::finish::ReadSpec {
            attempts: self.jobs.get(&rec.job).map_or(1, |js| js.job.attempts),
            limits: self.cfg.daemon.result_limits,
            extras: super::extras::Extras::of(&self.cfg, &rec.job),
        };
        self.hand_over(super::finish::Work::Finish {
            rec: Box::new(rec),
            keep: self.cfg.daemon.keep_runs,
            protect,
            read,
        });
    }

    /// Writes a record that is complete already (a skipped run), off this thread.
    pub(super) fn save_final(&mut self, rec: &RunRecord) {
        self.hand_over(super::finish::Work::Save(Box::new(rec.clone())));
    }

    fn hand_over(&mut self, work: super::finish::Work) {
        self.table.finishing += 1;
        let work = match &self.finisher {
            Some(f) => match f.send(work) {
                Ok(()) => return,
                Err(back) => back,
            },
            None => work,
        };
        let stopping = self.finisher.as_ref().map(|f| f.stopping());
        let (rec, error) = super::finish::do_work(&self.state, work, stopping);
        self.record_finished(*rec, error);
    }

    /// Retries the final records that could not be written.
    pub(super) fn retry_unsaved(&mut self) {
        if self.unsaved.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.unsaved);
        let before = pending.len();
        for mut rec in pending {
            if write_final(&self.state, &mut rec).is_err() {
                self.unsaved.push(rec);
            } else {
                self.state_ok(&record_cause(&rec));
                self.record_written_late(&rec);
            }
        }
        if self.unsaved.len() < before {
            info!(
                written = before - self.unsaved.len(),
                left = self.unsaved.len(),
                "wrote records that had failed"
            );
        }
    }

    /// At exit, the final records a full disk kept unwritten (see `retry_unsaved`): tried
    /// once more, then each written over its run's journal in place where it fits in the
    /// blocks that file has (no new space needed), so the next daemon reads the run's real
    /// outcome instead of taking it for a run its predecessor died in, "interrupted" (W2
    /// F3). What fits nowhere is named in the log.
    pub(super) fn save_unsaved_at_exit(&mut self) {
        self.retry_unsaved();
        let mut lost = Vec::new();
        for rec in std::mem::take(&mut self.unsaved) {
            match crate::service::state::overwrite_json_in_place(&rec.record_path(), &rec) {
                Ok(()) => {
                    info!(job = %rec.job, run_id = %rec.run_id, "wrote the final record over its journal at exit (the disk is full)")
                }
                Err(e) => lost.push(format!("{}/{} ({e})", rec.job, rec.run_id)),
            }
        }
        if !lost.is_empty() {
            tracing::error!(
                records = %lost.join(", "),
                "the disk is full: these final records are lost at exit; the next daemon records the runs as interrupted"
            );
        }
    }

    /// Sends TERM at the timeout and KILL after the grace period; ends leftovers.
    pub(super) fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        let grace = self.cfg.daemon.stop_grace;
        let spawner = &self.spawner;
        self.table.deadlines(now, grace, |signal, run| match signal {
            Signal::Timeout => {
                warn!(job = %run.record.job, run_id = %run.record.run_id, "run timed out; ending its process tree");
                spawner.terminate_tree(run.pgid, &run.dir());
            }
            Signal::Kill => {
                warn!(job = %run.record.job, run_id = %run.record.run_id, "run still alive {}s after SIGTERM; killing its process tree", grace.as_secs());
                spawner.kill_tree(run.pgid, &run.dir());
            }
        });
        let alive = |pgid, dir: &str| spawner.tree_alive(pgid, dir);
        self.table.sweep_lingering(now, alive, |pgid, dir| {
            if spawner.kill_tree(pgid, dir) {
                warn!(pgid, "killed processes a finished run left behind");
            }
        });
        for mut run in self.table.take_unkillable(now) {
            let after = super::table::GIVE_UP_AFTER.as_secs();
            tracing::error!(job = %run.record.job, run_id = %run.record.run_id, pid = run.pgid,
                "the runner has not ended {after}s after SIGKILL (the kernel holds it: a file system that does not answer?); giving the run up");
            let note = format!(
                "its runner (pid {}) did not end within {after}s of SIGKILL: the kernel holds it in an uninterruptible sleep (a file system that does not answer, such as a FUSE mount); the run was given up and the process left behind",
                run.pgid
            );
            run.record.note = Some(match run.record.note.take() {
                Some(n) => format!("{n}; {note}"),
                None => note,
            });
            let outcome = run.ended_by.unwrap_or(Outcome::Killed);
            self.end_active(run, outcome, None);
        }
    }

    /// `stop --now`: end every run in flight.
    pub(super) fn end_all_runs(&mut self) {
        let grace = self.cfg.daemon.stop_grace;
        let spawner = &self.spawner;
        self.table.end_all(Instant::now(), grace, |run| {
            spawner.terminate_tree(run.pgid, &run.dir());
        });
    }

    /// Adopted runs are not our children: look whether they are still there.
    pub(super) fn poll_adopted(&mut self) {
        let gone = self.table.take_gone_adopted(|r| {
            crate::service::sys::ProcessId {
                pid: r.pgid,
                start: r.record.pid_start,
            }
            .is_alive()
        });
        for run in gone {
            let outcome = run.ended_by.unwrap_or(Outcome::Interrupted);
            self.end_active(run, outcome, None);
        }
    }
}
