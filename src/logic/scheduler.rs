//! The daemon's scheduler: when each job fires, which due time a run stands for, catch-up
//! after a gap, overlap, what a config reload does to a job's plan, and when the loop must
//! next wake for the schedule. Values in, decisions out: no files, no processes, no clock
//! reads (`now` is always a parameter), so every rule is tested here with a fake clock —
//! plain instants stepping forward. The daemon's shell (`app/daemon`) does what the
//! decisions say: it records, queues, prepares folders and spawns.
//!
//! The rules:
//! - a job's next due time is its schedule's first slot after the later of `now` and the last
//!   due time taken, so a wall clock set back never repeats a due time;
//! - after a gap (the daemon was down) a job with `catch_up = "once"` runs once, soon and
//!   jittered, for the latest slot it missed; with `catch_up = "skip"` (and a job that never
//!   ran) it waits for its next regular slot;
//! - a daemon woken late (suspend, overload) runs once for the latest slot that passed, not
//!   once per slot;
//! - a due run of a job whose previous run is still in flight (or queued) is skipped under
//!   `overlap = "skip"` and queued under `overlap = "allow"`;
//! - a reload keeps the plan of a job whose definition did not change, plans a changed job
//!   afresh from now (its last due time still holds), and plans a new job's first regular
//!   slot (no catch-up for a job that was not configured while its slots passed).

use crate::model::config::{CatchUp, Job, Overlap};
use crate::model::record::Trigger;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The next time a job fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Next {
    /// The due time the run stands for (recorded, and part of the run id).
    pub(crate) due: DateTime<Utc>,
    /// When to start it: `due`, or later for a jittered catch-up.
    pub(crate) fire_at: DateTime<Utc>,
    pub(crate) trigger: Trigger,
}

/// One job's place in its schedule: the next firing and the latest due time taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Slots {
    /// `None`: nothing planned (a one-shot instance, or a schedule with no next slot).
    pub(crate) next: Option<Next>,
    /// The latest due time that was started, skipped or recorded: never fired again.
    pub(crate) last_due: Option<DateTime<Utc>>,
}

/// A firing whose time has come, taken from a job's [`Slots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Firing {
    /// The due time the run stands for: the planned one, or the latest slot that passed when
    /// the daemon woke late.
    pub(crate) due: DateTime<Utc>,
    /// What had been planned (a folder prepared ahead was prepared for this).
    pub(crate) planned: Next,
}

impl Firing {
    pub(crate) fn trigger(&self) -> Trigger {
        self.planned.trigger
    }

    /// True when the daemon woke late and the run stands for a later slot than planned: the
    /// slots in between are not run separately (the shell says so in its log).
    pub(crate) fn woke_late(&self) -> bool {
        self.due > self.planned.due
    }

    /// The first slot a late wake-up passed over (`None` when it did not wake late): the
    /// shell records it as skipped, so the gap shows in the job's history and the daemon's
    /// backlog instead of passing silently.
    pub(crate) fn missed(&self) -> Option<DateTime<Utc>> {
        self.woke_late().then_some(self.planned.due)
    }

    /// Whether a run folder prepared ahead for (`due`, `trigger`) is this firing's.
    pub(crate) fn fits(&self, due: DateTime<Utc>, trigger: Trigger) -> bool {
        due == self.due && trigger == self.planned.trigger
    }
}

/// What becomes of a run that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Queued for a free slot (`max_parallel`).
    Queue,
    /// Recorded as skipped: the previous run is still in flight (`overlap = "skip"`).
    Skip,
}

/// What a config reload did to a job's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reload {
    /// The definition is the same: the plan (and a folder prepared for it) stays.
    Kept,
    /// The definition changed: planned afresh; a folder prepared for the old plan is stale.
    Replanned,
}

impl Slots {
    pub(crate) fn new(last_due: Option<DateTime<Utc>>) -> Self {
        Slots {
            next: None,
            last_due,
        }
    }

    /// The first firing after the daemon starts.
    ///
    /// A due time that passed since the last recorded one is run once soon (`catch_up =
    /// "once"`), jittered so that many jobs do not fork in the same millisecond; a job that
    /// never ran waits for its first regular slot.
    pub(crate) fn plan_initial(&mut self, job: &Job, now: DateTime<Utc>) {
        let sched = &job.schedule;
        if let (Some(last_due), Some(slot), CatchUp::Once) =
            (self.last_due, sched.last_at_or_before(now), job.catch_up)
        {
            if slot > last_due {
                let jitter = catch_up_jitter(&job.name, sched.nominal_interval(now));
                self.next = Some(Next {
                    due: slot,
                    fire_at: now + chrono::Duration::from_std(jitter).unwrap_or_default(),
                    trigger: Trigger::CatchUp,
                });
                return;
            }
        }
        self.plan_after(job, now);
    }

    /// The next regular slot after `t` (and after the last due time, so a wall clock set back
    /// never repeats a due time).
    pub(crate) fn plan_after(&mut self, job: &Job, t: DateTime<Utc>) {
        let base = match self.last_due {
            Some(ld) if ld > t => ld,
            _ => t,
        };
        self.next = job.schedule.next_after(base).map(|due| Next {
            due,
            fire_at: due,
            trigger: Trigger::Schedule,
        });
    }

    /// A job added by a reload: its first regular slot after `now`, never a due time taken
    /// before (`last_due` is what its run folders on disk say).
    pub(crate) fn added(job: &Job, last_due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        let mut s = Slots::new(last_due);
        s.plan_after(job, now);
        s
    }

    /// A reload replaced the job's definition `old` by `new`.
    pub(crate) fn reconfigure(&mut self, old: &Job, new: &Job, now: DateTime<Utc>) -> Reload {
        if old.same_as(new) {
            return Reload::Kept;
        }
        self.plan_after(new, now);
        Reload::Replanned
    }

    /// The host's time zone changed: a cron job's planned slot was computed in the old zone's
    /// wall clock, so it is planned again from `now` (never before a due time taken). A
    /// catch-up run and a slot already due are kept (they fire at once anyway), and an `every`
    /// schedule does not depend on the zone. Returns whether the plan changed.
    pub(crate) fn rezone(&mut self, job: &Job, now: DateTime<Utc>) -> bool {
        if !matches!(job.schedule, crate::model::schedule::Schedule::Cron { .. }) {
            return false;
        }
        match self.next {
            Some(n) if n.trigger != Trigger::Schedule || n.fire_at <= now => return false,
            _ => {}
        }
        let before = self.next;
        self.plan_after(job, now);
        self.next != before
    }

    /// Takes the firing whose time has come and plans the one after it; `None` if nothing is
    /// due at `now`. A scheduled firing taken late stands for the latest slot that passed.
    pub(crate) fn take_due(&mut self, job: &Job, now: DateTime<Utc>) -> Option<Firing> {
        let planned = self.next.filter(|n| n.fire_at <= now)?;
        let mut due = planned.due;
        if planned.trigger == Trigger::Schedule {
            if let Some(latest) = job.schedule.last_at_or_before(now) {
                due = due.max(latest);
            }
        }
        self.last_due = Some(due);
        self.plan_after(job, due.max(now));
        Some(Firing { due, planned })
    }
}

/// Why a due run was skipped under `overlap = "skip"`: a run of the job in flight, or only
/// an earlier due run still queued (`waits_for_env`: for the job's Python environment; else
/// for a free slot or `start_delay`). A queued run is not in flight, and its job is not busy
/// running: saying so sent an admin looking for a run that never started.
pub(crate) fn skip_note(in_flight: bool, waits_for_env: bool) -> &'static str {
    match (in_flight, waits_for_env) {
        (true, _) => "the previous run is still in flight (overlap = \"skip\")",
        (false, true) => {
            "the previous due run has not started yet: it waits for the job's Python \
             environment (overlap = \"skip\")"
        }
        (false, false) => {
            "the previous due run has not started yet: it is queued (max_parallel, \
             start_delay) (overlap = \"skip\")"
        }
    }
}

/// Whether a due run is queued or skipped: `busy` is true while a run of the job is in
/// flight or queued. A `run-once` request is never asked: an admin asked for it.
pub(crate) fn admit(overlap: Overlap, busy: bool) -> Admit {
    match overlap {
        Overlap::Skip if busy => Admit::Skip,
        _ => Admit::Queue,
    }
}

/// The jobs whose firing has come at `now`, the earliest firing first (ties by name), so
/// that when many are due together the longest-waiting goes first.
pub(crate) fn due_now<'a, I>(jobs: I, now: DateTime<Utc>) -> Vec<&'a str>
where
    I: IntoIterator<Item = (&'a str, &'a Slots)>,
{
    let mut due: Vec<(DateTime<Utc>, &str)> = jobs
        .into_iter()
        .filter_map(|(name, s)| {
            s.next
                .filter(|n| n.fire_at <= now)
                .map(|n| (n.fire_at, name))
        })
        .collect();
    due.sort();
    due.into_iter().map(|(_, name)| name).collect()
}

/// The jobs whose run folder is to be made now, earliest firing first: those firing within
/// `ahead` (and not yet) that `want` one (`want`: no folder made or failed for that due
/// time yet).
pub(crate) fn to_prepare<'a, I>(jobs: I, now: DateTime<Utc>, ahead: Duration) -> Vec<&'a str>
where
    I: IntoIterator<Item = (&'a str, &'a Slots, bool)>,
{
    let horizon = now + chrono::Duration::from_std(ahead).unwrap_or_default();
    let mut todo: Vec<(DateTime<Utc>, &str)> = jobs
        .into_iter()
        .filter_map(|(name, s, want)| {
            let n = s.next?;
            (want && n.fire_at <= horizon && n.fire_at > now).then_some((n.fire_at, name))
        })
        .collect();
    todo.sort();
    todo.into_iter().map(|(_, name)| name).collect()
}

/// The earliest firing of all jobs.
pub(crate) fn earliest<'a, I>(jobs: I) -> Option<DateTime<Utc>>
where
    I: IntoIterator<Item = &'a Slots>,
{
    jobs.into_iter()
        .filter_map(|s| s.next.map(|n| n.fire_at))
        .min()
}

/// How far the wall clock stands behind the latest due time any job has taken, if it does:
/// the clock was set back, and since a due time never runs twice (see the rules above), no
/// job starts before the clock is past it again. The daemon says so ([`clock_set_back_words`])
/// rather than fall silent for as long as the jump.
pub(crate) fn clock_set_back<'a, I>(jobs: I, now: DateTime<Utc>) -> Option<DateTime<Utc>>
where
    I: IntoIterator<Item = &'a Slots>,
{
    // A second of slack: a due time taken this very second is no sign of a jump.
    jobs.into_iter()
        .filter_map(|s| s.last_due)
        .max()
        .filter(|latest| *latest > now + chrono::Duration::seconds(1))
}

/// The daemon line's words while the clock stands behind `latest` (see [`clock_set_back`]).
pub(crate) fn clock_set_back_words(latest: DateTime<Utc>) -> String {
    format!(
        "the wall clock was set back behind the latest due time taken ({}): no run starts until the clock passes it, as no due time runs twice",
        crate::model::record::ts(latest)
    )
}

/// When the loop must wake for the schedule: the earliest firing, or `ahead` before it where
/// the job `want`s its folder made first. `None`: nothing is planned.
pub(crate) fn next_wake<'a, I>(jobs: I, ahead: Duration) -> Option<DateTime<Utc>>
where
    I: IntoIterator<Item = (&'a Slots, bool)>,
{
    let ahead = chrono::Duration::from_std(ahead).unwrap_or_default();
    jobs.into_iter()
        .filter_map(|(s, want)| {
            let n = s.next?;
            Some(if want { n.fire_at - ahead } else { n.fire_at })
        })
        .min()
}

/// A deterministic per-job delay in [0, min(interval/4, 10s)): spreads catch-up starts of many
/// jobs, and the same job always gets the same delay (predictable for the admin).
pub(crate) fn catch_up_jitter(name: &str, interval: Duration) -> Duration {
    let span = (interval / 4).min(Duration::from_secs(10)).as_millis() as u64;
    if span == 0 {
        return Duration::ZERO;
    }
    // FNV-1a: tiny, stable across builds and platforms.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    Duration::from_millis(h % span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schedule::Schedule;
    use chrono::TimeZone;

    fn job_every(name: &str, secs: u64, catch_up: CatchUp, overlap: Overlap) -> Job {
        Job {
            name: name.into(),
            command: vec!["true".into()].into(),
            robot: false,
            schedule: Schedule::Every {
                interval: Duration::from_secs(secs),
                offset: Duration::ZERO,
            },
            timeout: Duration::from_secs(30),
            overlap,
            catch_up,
            setup: None,
            result: None,
            attempts: 1,
            services: crate::model::config::Services::Job,
            checkmk: None,
            pyenv: None,
            user: None,
            user_deferred: false,
            plugin: None,
        }
    }

    fn job(catch_up: CatchUp) -> Job {
        job_every("j", 60, catch_up, Overlap::Skip)
    }

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, s).unwrap()
    }

    /// A fake clock: the daemon's loop in miniature, stepping `now` forward by `step` and
    /// taking every firing whose time has come; returns the due times run.
    fn drive(
        j: &Job,
        s: &mut Slots,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: i64,
    ) -> Vec<DateTime<Utc>> {
        let mut now = from;
        let mut ran = Vec::new();
        while now <= to {
            while let Some(f) = s.take_due(j, now) {
                ran.push(f.due);
            }
            now += chrono::Duration::seconds(step);
        }
        ran
    }

    #[test]
    fn a_new_job_waits_for_its_first_slot() {
        let j = job(CatchUp::Once);
        let mut s = Slots::new(None);
        s.plan_initial(&j, t(10, 0, 30));
        assert_eq!(s.next.unwrap().due, t(10, 1, 0));
        assert_eq!(s.next.unwrap().trigger, Trigger::Schedule);
    }

    #[test]
    fn missed_slots_run_once_for_the_latest() {
        let mut s = Slots::new(Some(t(9, 0, 0)));
        s.plan_initial(&job(CatchUp::Once), t(10, 0, 30));
        let n = s.next.unwrap();
        assert_eq!(n.due, t(10, 0, 0));
        assert_eq!(n.trigger, Trigger::CatchUp);
        assert!(n.fire_at >= t(10, 0, 30) && n.fire_at < t(10, 0, 45));

        let mut s = Slots::new(Some(t(9, 0, 0)));
        s.plan_initial(&job(CatchUp::Skip), t(10, 0, 30));
        assert_eq!(s.next.unwrap().due, t(10, 1, 0));
    }

    #[test]
    fn nothing_missed_means_no_catch_up_and_no_repeat() {
        let j = job(CatchUp::Once);
        let mut s = Slots::new(Some(t(10, 0, 0)));
        s.plan_initial(&j, t(10, 0, 30));
        assert_eq!(s.next.unwrap().due, t(10, 1, 0));
        // Clock set back an hour: the next due time is still after the last one run.
        s.plan_after(&j, t(9, 0, 30));
        assert_eq!(s.next.unwrap().due, t(10, 1, 0));
    }

    #[test]
    fn due_times_follow_the_slots_as_the_clock_steps() {
        let j = job(CatchUp::Once);
        let mut s = Slots::new(None);
        s.plan_initial(&j, t(10, 0, 1));
        let ran = drive(&j, &mut s, t(10, 0, 1), t(10, 5, 0), 1);
        assert_eq!(
            ran,
            vec![
                t(10, 1, 0),
                t(10, 2, 0),
                t(10, 3, 0),
                t(10, 4, 0),
                t(10, 5, 0)
            ]
        );
        assert_eq!(s.last_due, Some(t(10, 5, 0)));
        assert_eq!(s.next.unwrap().due, t(10, 6, 0));
        // Nothing fires before its time.
        assert!(due_now([("j", &s)], t(10, 5, 59)).is_empty());
        assert_eq!(due_now([("j", &s)], t(10, 6, 0)), vec!["j"]);
    }

    #[test]
    fn catch_up_after_a_gap_runs_once_then_goes_back_to_the_slots() {
        let j = job(CatchUp::Once);
        // The daemon was down from 9:00 to 10:00:30: sixty slots missed.
        let mut s = Slots::new(Some(t(9, 0, 0)));
        s.plan_initial(&j, t(10, 0, 30));
        let ran = drive(&j, &mut s, t(10, 0, 30), t(10, 2, 0), 1);
        assert_eq!(
            ran,
            vec![t(10, 0, 0), t(10, 1, 0), t(10, 2, 0)],
            "one catch-up run, not sixty"
        );
    }

    #[test]
    fn catch_up_skip_runs_nothing_for_the_gap() {
        let j = job(CatchUp::Skip);
        let mut s = Slots::new(Some(t(9, 0, 0)));
        s.plan_initial(&j, t(10, 0, 30));
        let ran = drive(&j, &mut s, t(10, 0, 30), t(10, 2, 0), 1);
        assert_eq!(ran, vec![t(10, 1, 0), t(10, 2, 0)]);
    }

    #[test]
    fn a_catch_up_fires_with_its_jitter_and_keeps_its_due_time() {
        let j = job(CatchUp::Once);
        let mut s = Slots::new(Some(t(9, 0, 0)));
        s.plan_initial(&j, t(10, 0, 30));
        let n = s.next.unwrap();
        assert!(s
            .take_due(&j, n.fire_at - chrono::Duration::milliseconds(1))
            .is_none());
        let f = s.take_due(&j, n.fire_at).unwrap();
        assert_eq!(f.due, t(10, 0, 0));
        assert_eq!(f.trigger(), Trigger::CatchUp);
        assert!(!f.woke_late(), "a catch-up is not a late wake-up");
        assert_eq!(f.missed(), None, "nor does it miss a slot");
        assert_eq!(s.next.unwrap().due, t(10, 1, 0));
    }

    #[test]
    fn a_late_wake_runs_once_for_the_latest_slot() {
        let j = job(CatchUp::Once);
        let mut s = Slots::new(None);
        s.plan_initial(&j, t(10, 0, 30));
        // Suspended from 10:00:30 to 10:07:10: slots 10:01 … 10:07 passed.
        let f = s.take_due(&j, t(10, 7, 10)).unwrap();
        assert_eq!(f.due, t(10, 7, 0));
        assert_eq!(f.planned.due, t(10, 1, 0));
        assert!(f.woke_late());
        assert_eq!(
            f.missed(),
            Some(t(10, 1, 0)),
            "the first missed slot is recorded"
        );
        assert!(f.fits(t(10, 7, 0), Trigger::Schedule));
        assert!(
            !f.fits(t(10, 1, 0), Trigger::Schedule),
            "a folder prepared for 10:01 is stale"
        );
        assert!(
            s.take_due(&j, t(10, 7, 10)).is_none(),
            "once, not seven times"
        );
        assert_eq!(s.next.unwrap().due, t(10, 8, 0));
    }

    #[test]
    fn a_clock_set_back_never_repeats_a_due_time() {
        let j = job(CatchUp::Once);
        let mut s = Slots::new(None);
        s.plan_initial(&j, t(10, 0, 30));
        let mut ran = drive(&j, &mut s, t(10, 0, 30), t(10, 3, 0), 1);
        // The wall clock jumps back an hour; the loop goes on from there.
        ran.extend(drive(&j, &mut s, t(9, 3, 0), t(9, 5, 0), 1));
        assert_eq!(ran, vec![t(10, 1, 0), t(10, 2, 0), t(10, 3, 0)]);
        assert_eq!(s.next.unwrap().due, t(10, 4, 0));
        // A job changed by a reload while the clock is behind: planned afresh, still after
        // the last due time run.
        let edited = job_every("j", 60, CatchUp::Skip, Overlap::Allow);
        assert_eq!(s.reconfigure(&j, &edited, t(9, 5, 0)), Reload::Replanned);
        assert_eq!(s.next.unwrap().due, t(10, 4, 0));
        // And once the clock is past the last due time again, the slots go on.
        assert_eq!(
            drive(&j, &mut s, t(10, 3, 30), t(10, 4, 0), 1),
            vec![t(10, 4, 0)]
        );
    }

    /// While the clock is behind the last due time run, nothing runs: the daemon must be
    /// able to tell, and tell when it is over.
    #[test]
    fn a_clock_set_back_is_seen_until_it_passes_the_last_due_time() {
        let j = job(CatchUp::Once);
        let mut s = Slots::new(None);
        s.plan_initial(&j, t(10, 0, 30));
        drive(&j, &mut s, t(10, 0, 30), t(10, 3, 0), 1);
        assert_eq!(clock_set_back([&s], t(10, 3, 0)), None);
        assert_eq!(clock_set_back([&s], t(10, 3, 1)), None);
        assert_eq!(clock_set_back([&s], t(9, 3, 0)), Some(t(10, 3, 0)));
        assert_eq!(clock_set_back([&s], t(10, 2, 58)), Some(t(10, 3, 0)));
        assert_eq!(clock_set_back([&s], t(10, 2, 59)), None);
        assert!(clock_set_back_words(t(10, 3, 0)).contains("set back"));
    }

    #[test]
    fn a_clock_set_forward_runs_once_for_the_latest_slot() {
        let j = job(CatchUp::Once);
        let mut s = Slots::new(None);
        s.plan_initial(&j, t(10, 0, 30));
        assert_eq!(
            drive(&j, &mut s, t(10, 0, 30), t(10, 1, 0), 1),
            vec![t(10, 1, 0)]
        );
        assert_eq!(
            drive(&j, &mut s, t(12, 0, 30), t(12, 1, 0), 1),
            vec![t(12, 0, 0), t(12, 1, 0)]
        );
    }

    /// F7/3: a run that waits in the queue is not called in flight.
    #[test]
    fn a_skip_says_whether_the_previous_run_is_in_flight_or_waits() {
        assert!(skip_note(true, true).contains("in flight"));
        assert!(skip_note(true, false).contains("in flight"));
        for env in [true, false] {
            let n = skip_note(false, env);
            assert!(!n.contains("in flight") && n.contains("not started"), "{n}");
            assert_eq!(n.contains("Python environment"), env, "{n}");
        }
    }

    #[test]
    fn overlap_skip_skips_a_busy_job_and_allow_queues_it() {
        assert_eq!(admit(Overlap::Skip, true), Admit::Skip);
        assert_eq!(admit(Overlap::Skip, false), Admit::Queue);
        assert_eq!(admit(Overlap::Allow, true), Admit::Queue);
        assert_eq!(admit(Overlap::Allow, false), Admit::Queue);
    }

    #[test]
    fn overlap_over_a_run_longer_than_the_interval() {
        // A 60 s job whose runs take 150 s: the fake clock steps, runs start and end.
        for (overlap, want) in [
            (
                Overlap::Skip,
                vec![
                    (t(10, 1, 0), Admit::Queue),
                    (t(10, 2, 0), Admit::Skip),
                    (t(10, 3, 0), Admit::Skip),
                    (t(10, 4, 0), Admit::Queue),
                ],
            ),
            (
                Overlap::Allow,
                vec![
                    (t(10, 1, 0), Admit::Queue),
                    (t(10, 2, 0), Admit::Queue),
                    (t(10, 3, 0), Admit::Queue),
                    (t(10, 4, 0), Admit::Queue),
                ],
            ),
        ] {
            let j = job_every("j", 60, CatchUp::Once, overlap);
            let mut s = Slots::new(None);
            s.plan_initial(&j, t(10, 0, 30));
            let mut running: Vec<DateTime<Utc>> = Vec::new(); // ends of runs in flight
            let mut got = Vec::new();
            let mut now = t(10, 0, 30);
            while now <= t(10, 4, 0) {
                running.retain(|end| *end > now);
                if let Some(f) = s.take_due(&j, now) {
                    let a = admit(j.overlap, !running.is_empty());
                    if a == Admit::Queue {
                        running.push(now + chrono::Duration::seconds(150));
                    }
                    got.push((f.due, a));
                }
                now += chrono::Duration::seconds(1);
            }
            assert_eq!(got, want, "{overlap:?}");
        }
    }

    #[test]
    fn a_reload_keeps_an_unchanged_job_and_replans_a_changed_one() {
        let j = job_every("j", 60, CatchUp::Once, Overlap::Skip);
        let mut s = Slots::new(None);
        s.plan_initial(&j, t(10, 0, 30));
        drive(&j, &mut s, t(10, 0, 30), t(10, 1, 0), 1);
        let before = s;
        // The same definition: the plan stays, to the firing.
        assert_eq!(s.reconfigure(&j, &j.clone(), t(10, 1, 20)), Reload::Kept);
        assert_eq!(s, before);
        // A catch-up plan stays too, jitter and all, when the job did not change.
        let mut c = Slots::new(Some(t(9, 0, 0)));
        c.plan_initial(&j, t(10, 0, 30));
        let planned = c;
        assert_eq!(c.reconfigure(&j, &j.clone(), t(10, 0, 31)), Reload::Kept);
        assert_eq!(c, planned);
        // Every 5 minutes now: planned afresh from the reload, its last due time kept.
        let five = job_every("j", 300, CatchUp::Once, Overlap::Skip);
        assert_eq!(s.reconfigure(&j, &five, t(10, 1, 20)), Reload::Replanned);
        assert_eq!(s.last_due, Some(t(10, 1, 0)));
        assert_eq!(s.next.unwrap().due, t(10, 5, 0));
        assert_eq!(s.next.unwrap().trigger, Trigger::Schedule);
        // A changed catch-up job loses its catch-up: it goes on with its regular slots.
        assert_eq!(c.reconfigure(&j, &five, t(10, 0, 31)), Reload::Replanned);
        assert_eq!(c.next.unwrap().due, t(10, 5, 0));
    }

    #[test]
    fn a_job_added_by_a_reload_waits_for_its_slot_and_never_repeats_one() {
        let j = job(CatchUp::Once);
        let s = Slots::added(&j, Some(t(9, 0, 0)), t(10, 0, 30));
        assert_eq!(s.next.unwrap().due, t(10, 1, 0));
        assert_eq!(s.next.unwrap().trigger, Trigger::Schedule);
        // Its run folders say 11:00 was taken (a clock set back since): after that.
        let s = Slots::added(&j, Some(t(11, 0, 0)), t(10, 0, 30));
        assert_eq!(s.next.unwrap().due, t(11, 1, 0));
    }

    #[test]
    fn due_jobs_come_earliest_first() {
        let (a, b, c) = (
            job_every("a", 60, CatchUp::Once, Overlap::Skip),
            job_every("b", 30, CatchUp::Once, Overlap::Skip),
            job_every("c", 3600, CatchUp::Once, Overlap::Skip),
        );
        let mut sa = Slots::new(None);
        let mut sb = Slots::new(None);
        let mut sc = Slots::new(None);
        sa.plan_initial(&a, t(10, 0, 10));
        sb.plan_initial(&b, t(10, 0, 10));
        sc.plan_initial(&c, t(10, 0, 10));
        fn all<'a>(a: &'a Slots, b: &'a Slots, c: &'a Slots) -> [(&'a str, &'a Slots); 3] {
            [("a", a), ("b", b), ("c", c)]
        }
        assert!(due_now(all(&sa, &sb, &sc), t(10, 0, 29)).is_empty());
        assert_eq!(due_now(all(&sa, &sb, &sc), t(10, 0, 30)), vec!["b"]);
        assert_eq!(due_now(all(&sa, &sb, &sc), t(10, 2, 0)), vec!["b", "a"]);
        // Ties by name.
        sb.take_due(&b, t(10, 0, 30));
        assert_eq!(due_now(all(&sa, &sb, &sc), t(10, 1, 0)), vec!["a", "b"]);
    }

    #[test]
    fn next_wake_is_the_earliest_of_many_jobs() {
        let ahead = Duration::from_secs(2);
        let jobs: Vec<Job> = (1..=500)
            .map(|n| job_every(&format!("j{n}"), 60 * n, CatchUp::Once, Overlap::Skip))
            .collect();
        let mut slots: Vec<Slots> = jobs.iter().map(|_| Slots::new(None)).collect();
        for (j, s) in jobs.iter().zip(&mut slots) {
            s.plan_initial(j, t(10, 0, 30));
        }
        // j1 fires at 10:01; its folder still wanted: wake 2 s ahead.
        assert_eq!(
            next_wake(slots.iter().map(|s| (s, true)), ahead),
            Some(t(10, 0, 58))
        );
        assert_eq!(
            next_wake(slots.iter().map(|s| (s, false)), ahead),
            Some(t(10, 1, 0))
        );
        assert_eq!(earliest(&slots), Some(t(10, 1, 0)));
        // Stepping the fake clock through a day: the wake is always the earliest firing,
        // never in the past of a firing not yet taken, and every job fires on its slots.
        let mut now = t(10, 0, 30);
        let mut fired = 0u64;
        loop {
            let wake = next_wake(slots.iter().map(|s| (s, false)), ahead).unwrap();
            assert!(wake > now);
            if wake > t(12, 0, 30) {
                break;
            }
            now = wake;
            for (j, s) in jobs.iter().zip(&mut slots) {
                if let Some(f) = s.take_due(j, now) {
                    assert!(!f.woke_late(), "{} fired late", j.name);
                    fired += 1;
                }
            }
        }
        // Job j_n's slots are the multiples of n minutes since the epoch: those in
        // (10:00:30, 12:00:30] are those in minutes (M, M + 120], M = 10:00 in minutes.
        let m = (t(10, 0, 0).timestamp() / 60) as u64;
        let want: u64 = (1..=500u64).map(|n| (m + 120) / n - m / n).sum();
        assert_eq!(fired, want);
        // Nothing planned, no wake.
        assert_eq!(next_wake(std::iter::empty(), ahead), None);
    }

    #[test]
    fn folders_are_prepared_ahead_earliest_first() {
        let ahead = Duration::from_secs(2);
        let (a, b) = (
            job_every("a", 60, CatchUp::Once, Overlap::Skip),
            job_every("b", 20, CatchUp::Once, Overlap::Skip),
        );
        let (mut sa, mut sb) = (Slots::new(None), Slots::new(None));
        sa.plan_initial(&a, t(10, 0, 50));
        sb.plan_initial(&b, t(10, 0, 50));
        // Both fire at 10:01:00.
        assert!(to_prepare([("a", &sa, true), ("b", &sb, true)], t(10, 0, 57), ahead).is_empty());
        assert_eq!(
            to_prepare([("b", &sb, true), ("a", &sa, true)], t(10, 0, 58), ahead),
            vec!["a", "b"]
        );
        // Not wanted (made already, or failed for this due time), or its time has come.
        assert_eq!(
            to_prepare([("a", &sa, false), ("b", &sb, true)], t(10, 0, 59), ahead),
            vec!["b"]
        );
        assert!(to_prepare([("a", &sa, true)], t(10, 1, 0), ahead).is_empty());
    }

    #[test]
    fn jitter_is_bounded_and_stable() {
        let i = Duration::from_secs(3600);
        assert_eq!(catch_up_jitter("a", i), catch_up_jitter("a", i));
        for n in 0..100 {
            assert!(catch_up_jitter(&format!("job{n}"), i) < Duration::from_secs(10));
        }
        assert!(catch_up_jitter("a", Duration::from_secs(1)) < Duration::from_millis(250));
    }
}
