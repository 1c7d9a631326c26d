//! When a job's last result is overdue: a pure function of the schedule, the last result's
//! due time, the run's timeout and `now` — no I/O, no clock reads — so that every calendar
//! (nights, weekends, month ends, DST changes) is unit-tested with fixed instants.
//!
//! The rule (SPEC.md, "What Checkmk sees"): the run due next after the last result's due time
//! reports by its due time plus its timeout plus a margin. Past that instant (`expected_by`)
//! with no newer result the result is stale: WARN. Past the same instant of the due time after
//! that one (`crit_after`): CRIT. A gap in the calendar (a night, a weekend, a short month)
//! only moves the next due time, so a job that is not due is never overdue — unlike a rule on
//! the result's age, which cried wolf every night for office-hours crons.
//!
//! The margin is `stop_grace` (a run at its timeout gets SIGTERM, then up to `stop_grace`
//! before SIGKILL) plus `stale_margin` (default [`DEFAULT_STALE_MARGIN`]: the daemon's wake-up,
//! recording the result, a catch-up start's jitter of up to 10 s, a short wait for a
//! `max_parallel` slot). An admin whose runs queue longer raises `stale_margin`.
//!
//! The daemon publishes both instants per job in `status.json`, so ctrl's fast path judges a
//! result without parsing the schedule; without a daemon ctrl computes them from the config.
//!
//! A result from the future (its due time lies after `now`: the wall clock ran ahead and was
//! set back) is not fresh for as long as the clock was ahead. No run starts until the clock
//! passes the latest due time taken (a due time never runs twice, see `scheduler`), so its
//! deadlines, counted from its own due time, would keep it "fresh" for the length of the
//! error — a year for a `date -s` typo. Its deadlines count instead from when the daemon
//! noticed the clock behind (or started), as if a result had been due then ([`seen`]): the
//! job goes WARN, then CRIT, like any job whose due runs do not report. That instant cannot be
//! told from the records (they say that the clock stands behind, not since when), so the
//! status carries it: the next daemon takes it over while the clock is still behind, and ctrl
//! with no daemon running judges from the last one's. A small step back
//! (the next due run still comes before two due times after the step) keeps the ordinary
//! deadlines, so that an NTP correction of a second does not make every job stale.

use crate::model::config::{DaemonSettings, Job};
use crate::model::status::CheckmkView;
pub(crate) use crate::model::status::Deadlines;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The default `stale_margin`.
pub(crate) const DEFAULT_STALE_MARGIN: Duration = Duration::from_secs(30);

/// How a result stands at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Staleness {
    Fresh,
    /// One due run has not reported within its timeout and the margin (WARN).
    Overdue,
    /// Two due runs have not reported (CRIT).
    MissedTwice,
}

/// The deadlines of a result due at `last_due`, given the schedule's `next_after` and the
/// `allowance` (the run's timeout plus the margin). `None` when the schedule never fires again.
pub(crate) fn deadlines(
    next_after: impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>>,
    last_due: DateTime<Utc>,
    allowance: Duration,
) -> Option<Deadlines> {
    let allowance = chrono::Duration::from_std(allowance).ok()?;
    let first = next_after(last_due)?;
    let second = next_after(first)?;
    Some(Deadlines {
        expected_by: first.checked_add_signed(allowance)?,
        crit_after: second.checked_add_signed(allowance)?,
    })
}

/// The deadlines of a result due at `last_due` at `now` (see [`deadlines`]), where the wall
/// clock may stand behind it: then they count from `set_back_since` (when the daemon noticed
/// the clock behind, on its monotonic clock; `now` when nobody noticed), unless the ordinary
/// ones come first anyway (a small step: the run due next is not held back beyond the
/// second due time after the step).
pub(crate) fn seen(
    next_after: impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>>,
    last_due: DateTime<Utc>,
    allowance: Duration,
    now: DateTime<Utc>,
    set_back_since: Option<DateTime<Utc>>,
) -> Option<Deadlines> {
    let ordinary = deadlines(&next_after, last_due, allowance);
    if last_due <= now {
        return ordinary;
    }
    let since = set_back_since.unwrap_or(now).min(now);
    let held = deadlines(&next_after, since, allowance);
    match (ordinary, held) {
        (Some(o), Some(h)) if h.crit_after >= o.expected_by => Some(o),
        // A schedule that never fires again after the result's due time still fired (or
        // fires) after the step: the result from the future is not the last one to come.
        (_, Some(h)) => Some(h),
        (o, None) => o,
    }
}

/// When the clock was first seen behind, as a wall instant at `now`, from what a status written
/// at `updated` said (`since`). The wall clock may have been set back again after that write:
/// then `since` lies as far ahead as the clock went back, and taken as it is (cut to `now`) the
/// time already seen behind would be lost — a stale result turned fresh by a second step back.
/// Moved back with the clock instead, it keeps at least the time seen behind when written.
pub(crate) fn set_back_since_at(
    since: Option<DateTime<Utc>>,
    updated: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let since = since?;
    Some(if now < updated {
        since - (updated - now)
    } else {
        since
    })
}

/// The margin added to a run's timeout: `stop_grace` plus `stale_margin`.
pub(crate) fn margin(daemon: &DaemonSettings) -> Duration {
    daemon.stop_grace + daemon.stale_margin
}

/// The deadlines of `job`'s result due at `last_due`, with the schedule in local time.
#[cfg(test)]
pub(crate) fn for_job(
    job: &Job,
    daemon: &DaemonSettings,
    last_due: DateTime<Utc>,
) -> Option<Deadlines> {
    deadlines(
        |t| job.schedule.next_after(t),
        last_due,
        job.timeout + margin(daemon),
    )
}

/// How the result stands at `now` (an instant exactly on a deadline still counts as in time).
/// The instants are a [`Deadlines`]' (ctrl compares them as [`crate::model::moment::Moment`]s).
pub(crate) fn judge<T: PartialOrd>(expected_by: T, crit_after: T, now: T) -> Staleness {
    if now > crit_after {
        Staleness::MissedTwice
    } else if now > expected_by {
        Staleness::Overdue
    } else {
        Staleness::Fresh
    }
}

/// The Checkmk view of `job` whose latest result was due at `last_due`, at `now`, with the
/// wall clock noticed behind that due time since `set_back_since` (see [`seen`]).
pub(crate) fn checkmk_view(
    job: &Job,
    daemon: &DaemonSettings,
    last_due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    set_back_since: Option<DateTime<Utc>>,
) -> CheckmkView {
    let d = last_due.and_then(|due| {
        seen(
            |t| job.schedule.next_after(t),
            due,
            job.timeout + margin(daemon),
            now,
            set_back_since,
        )
    });
    CheckmkView {
        host: job.host().map(str::to_owned),
        runtime_warn_s: job.runtime_warn().map(|d| d.as_secs_f64()),
        runtime_crit_s: job.runtime_crit().map(|d| d.as_secs_f64()),
        expected_by: d.map(|d| d.expected_by),
        crit_after: d.map(|d| d.crit_after),
        service: job.plugin.as_ref().and_then(|p| p.service.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::schedule::parse_cron;

    #[test]
    fn the_time_seen_behind_survives_a_further_step_back() {
        let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        // Written at t(100), seen behind since t(40): 60 s so far.
        assert_eq!(set_back_since_at(Some(t(40)), t(100), t(130)), Some(t(40)));
        // The clock then set back an hour: the 60 s stay, counted back from now.
        assert_eq!(
            set_back_since_at(Some(t(40)), t(100), t(100 - 3600)),
            Some(t(40 - 3600))
        );
        // Nobody saw it behind: nothing to carry.
        assert_eq!(set_back_since_at(None, t(100), t(0)), None);
    }
    use crate::model::schedule::Schedule;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(text: &str) -> Schedule {
        Schedule::Cron {
            text: text.into(),
            cron: std::sync::Arc::new(parse_cron(text).unwrap()),
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(4 * 60);
    const MARGIN: Duration = Duration::from_secs(40);

    /// Deadlines with cron evaluated in UTC (the calendar tests must not depend on the
    /// machine's zone; DST is tested in a zone of its own below).
    fn utc(s: &Schedule, last_due: &str) -> Deadlines {
        deadlines(|t| s.next_after_in(t, &Utc), at(last_due), TIMEOUT + MARGIN).unwrap()
    }

    fn state(d: &Deadlines, now: &str) -> Staleness {
        judge(d.expected_by, d.crit_after, at(now))
    }

    use Staleness::*;

    #[test]
    fn office_hours_are_quiet_at_night() {
        // Issue 12: last result Friday 17:50; the old rule was WARN at 18:15, CRIT from 18:20.
        let s = cron("*/10 8-17 * * *");
        let d = utc(&s, "2026-11-27T17:50:00Z");
        assert_eq!(d.expected_by, at("2026-11-28T08:04:40Z"));
        for quiet in [
            "2026-11-27T18:15:00Z",
            "2026-11-27T18:20:00Z",
            "2026-11-28T03:00:00Z",
        ] {
            assert_eq!(state(&d, quiet), Fresh, "{quiet}");
        }
        assert_eq!(state(&d, "2026-11-28T08:04:40Z"), Fresh, "on the deadline");
        assert_eq!(state(&d, "2026-11-28T08:04:41Z"), Overdue);
        assert_eq!(state(&d, "2026-11-28T08:14:41Z"), MissedTwice);
    }

    #[test]
    fn weekends_are_quiet() {
        let s = cron("*/10 8-17 * * 1-5");
        let d = utc(&s, "2026-11-27T17:50:00Z");
        assert_eq!(state(&d, "2026-11-29T23:59:00Z"), Fresh, "Sunday night");
        assert_eq!(state(&d, "2026-11-30T08:04:41Z"), Overdue, "Monday");
        assert_eq!(state(&d, "2026-11-30T08:14:41Z"), MissedTwice);

        // `0 9 * * 1-5` was WARN all Sunday.
        let s = cron("0 9 * * 1-5");
        let d = utc(&s, "2026-11-27T09:00:00Z");
        assert_eq!(state(&d, "2026-11-29T12:00:00Z"), Fresh, "Sunday");
        assert_eq!(state(&d, "2026-11-30T09:04:40Z"), Fresh);
        assert_eq!(state(&d, "2026-11-30T09:04:41Z"), Overdue);
        assert_eq!(
            state(&d, "2026-12-01T09:04:40Z"),
            Overdue,
            "Tuesday's run in time"
        );
        assert_eq!(state(&d, "2026-12-01T09:04:41Z"), MissedTwice);
    }

    #[test]
    fn month_ends_and_short_months() {
        // Monthly on the 1st: February's run is due a month later, not "two intervals" of 28
        // or 31 days after some other date.
        let d = utc(&cron("0 0 1 * *"), "2026-01-01T00:00:00Z");
        assert_eq!(state(&d, "2026-01-31T23:00:00Z"), Fresh);
        assert_eq!(state(&d, "2026-02-01T00:04:41Z"), Overdue);
        assert_eq!(state(&d, "2026-03-01T00:04:41Z"), MissedTwice);
        // The 31st skips February and the 30-day months.
        let d = utc(&cron("0 6 31 * *"), "2026-01-31T06:00:00Z");
        assert_eq!(d.expected_by, at("2026-03-31T06:04:40Z"));
        assert_eq!(state(&d, "2026-02-28T12:00:00Z"), Fresh);
        assert_eq!(d.crit_after, at("2026-05-31T06:04:40Z"));
        // A leap day comes every four years.
        let d = utc(&cron("0 0 29 2 *"), "2024-02-29T00:00:00Z");
        assert_eq!(d.expected_by, at("2028-02-29T00:04:40Z"));
        assert_eq!(state(&d, "2027-06-01T00:00:00Z"), Fresh);
    }

    #[test]
    fn intervals_and_an_offset() {
        let s = Schedule::Every {
            interval: Duration::from_secs(300),
            offset: Duration::from_secs(60),
        };
        let d = utc(&s, "2026-11-27T10:01:00Z");
        assert_eq!(d.expected_by, at("2026-11-27T10:10:40Z"));
        assert_eq!(d.crit_after, at("2026-11-27T10:15:40Z"));
        assert_eq!(state(&d, "2026-11-27T10:09:00Z"), Fresh);
        assert_eq!(state(&d, "2026-11-27T10:12:00Z"), Overdue);
        assert_eq!(state(&d, "2026-11-27T11:00:00Z"), MissedTwice);
    }

    #[test]
    fn a_run_once_result_between_due_times_counts_from_its_own_time() {
        // `run-once` on a Saturday: the next due time after it is Monday's.
        let d = utc(&cron("0 9 * * 1-5"), "2026-11-28T10:00:00Z");
        assert_eq!(state(&d, "2026-11-29T20:00:00Z"), Fresh);
        assert_eq!(d.expected_by, at("2026-11-30T09:04:40Z"));
    }

    #[test]
    fn a_result_from_the_future_goes_stale_from_when_the_step_was_noticed() {
        // F5: the clock ran a year ahead, a run was due 2027-11-27T10:00, the clock was set
        // back to 2026 and the daemon noticed at 10:00:30. No run starts for a year (a due
        // time never runs twice), so the result must not stay fresh for a year.
        let s = Schedule::Every {
            interval: Duration::from_secs(300),
            offset: Duration::ZERO,
        };
        let next = |t| s.next_after_in(t, &Utc);
        let last = at("2027-11-27T10:00:00Z");
        let noticed = at("2026-11-27T10:00:30Z");
        let now = at("2026-11-27T10:01:00Z");
        let d = seen(next, last, TIMEOUT + MARGIN, now, Some(noticed)).unwrap();
        assert_eq!(d.expected_by, at("2026-11-27T10:09:40Z"));
        assert_eq!(d.crit_after, at("2026-11-27T10:14:40Z"));
        assert_eq!(state(&d, "2026-11-27T10:09:00Z"), Fresh);
        assert_eq!(state(&d, "2026-11-27T10:10:00Z"), Overdue);
        assert_eq!(state(&d, "2026-11-27T10:15:00Z"), MissedTwice);
        // Nobody noticed (ctrl without a daemon's word): counted from now, never a year.
        let d = seen(next, last, TIMEOUT + MARGIN, now, None).unwrap();
        assert_eq!(d.expected_by, at("2026-11-27T10:09:40Z"));
        // A notice "after now" (a clock stepped again meanwhile) counts from now.
        let d = seen(next, last, TIMEOUT + MARGIN, now, Some(last)).unwrap();
        assert_eq!(d.expected_by, at("2026-11-27T10:09:40Z"));
        // Once the clock is past the result's due time, the ordinary rule holds again.
        let later = at("2027-11-27T10:00:01Z");
        assert_eq!(
            seen(next, last, TIMEOUT + MARGIN, later, Some(noticed)),
            deadlines(next, last, TIMEOUT + MARGIN)
        );
    }

    #[test]
    fn a_small_step_back_keeps_the_ordinary_deadlines() {
        // NTP steps the clock back a few seconds, or half an interval: the next due run
        // still comes in time, so nothing turns stale early.
        let s = Schedule::Every {
            interval: Duration::from_secs(300),
            offset: Duration::ZERO,
        };
        let next = |t| s.next_after_in(t, &Utc);
        let last = at("2026-11-27T10:00:00Z");
        for back in ["2026-11-27T09:59:58Z", "2026-11-27T09:57:00Z"] {
            let d = seen(next, last, TIMEOUT + MARGIN, at(back), Some(at(back))).unwrap();
            assert_eq!(
                d,
                deadlines(next, last, TIMEOUT + MARGIN).unwrap(),
                "{back}"
            );
        }
        // Set back by more than an interval: the due time after the step is not run (it was
        // taken), and that shows as overdue.
        let back = at("2026-11-27T09:52:30Z");
        let d = seen(next, last, TIMEOUT + MARGIN, back, Some(back)).unwrap();
        assert_eq!(d.expected_by, at("2026-11-27T09:59:40Z"));
        assert_eq!(d.crit_after, at("2026-11-27T10:04:40Z"));
        // Office hours: a step back on a Friday evening counts from Monday morning.
        let c = cron("*/10 8-17 * * 1-5");
        let nc = |t| c.next_after_in(t, &Utc);
        let d = seen(
            nc,
            at("2027-11-26T17:50:00Z"),
            TIMEOUT + MARGIN,
            at("2026-11-27T18:00:00Z"),
            None,
        )
        .unwrap();
        assert_eq!(d.expected_by, at("2026-11-30T08:04:40Z"));
    }

    /// DST: the schedule is local time (croner), so the deadlines follow the wall clock
    /// across both changes. Run in a child process with a fixed `TZ` (central Europe's POSIX
    /// rule, no tz database needed), so the machine's zone and the other tests do not matter.
    #[cfg(unix)]
    #[test]
    fn dst_changes_in_central_europe() {
        const CHILD: &str = "ROBOTMK_TEST_TZ_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "logic::staleness::tests::dst_changes_in_central_europe",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        let local = |s: &Schedule, last_due: &str| {
            deadlines(|t| s.next_after(t), at(last_due), TIMEOUT + MARGIN).unwrap()
        };
        assert_eq!(
            chrono::TimeZone::with_ymd_and_hms(&chrono::Local, 2026, 7, 1, 12, 0, 0)
                .unwrap()
                .offset()
                .to_string(),
            "+02:00",
            "TZ is not in effect"
        );
        // Spring forward (Sunday 2026-03-29, 02:00 CET -> 03:00 CEST): Friday 09:00 CET is
        // 08:00Z, Monday 09:00 CEST is 07:00Z.
        let s = cron("0 9 * * 1-5");
        let d = local(&s, "2026-03-27T08:00:00Z");
        assert_eq!(d.expected_by, at("2026-03-30T07:04:40Z"));
        assert_eq!(state(&d, "2026-03-29T20:00:00Z"), Fresh);
        assert_eq!(state(&d, "2026-03-30T07:04:41Z"), Overdue);
        // Fall back (Sunday 2026-10-25, 03:00 CEST -> 02:00 CET): Monday 09:00 CET is 08:00Z.
        let d = local(&s, "2026-10-23T07:00:00Z");
        assert_eq!(d.expected_by, at("2026-10-26T08:04:40Z"));
        assert_eq!(
            state(&d, "2026-10-26T07:30:00Z"),
            Fresh,
            "an hour later than UTC says"
        );
        // Office hours across the change: Friday 17:50 CEST, quiet all weekend and the night.
        let d = local(&cron("*/10 8-17 * * 1-5"), "2026-10-23T15:50:00Z");
        assert_eq!(d.expected_by, at("2026-10-26T07:04:40Z"));
        // A nightly job at 02:30, which does not exist on the spring-forward night: whatever
        // the schedule runs next, the deadline follows that same due time, and the day before
        // is never overdue.
        let s = cron("30 2 * * *");
        let d = local(&s, "2026-03-28T01:30:00Z");
        let next = s.next_after(at("2026-03-28T01:30:00Z")).unwrap();
        assert!(
            next > at("2026-03-28T01:30:00Z") + chrono::Duration::hours(22),
            "{next}"
        );
        assert_eq!(d.expected_by, next + chrono::Duration::seconds(280));
        assert_eq!(state(&d, "2026-03-29T00:30:00Z"), Fresh);
        // ... and on the fall-back night, where 02:30 comes twice.
        let d = local(&s, "2026-10-24T00:30:00Z");
        let next = s.next_after(at("2026-10-24T00:30:00Z")).unwrap();
        assert_eq!(d.expected_by, next + chrono::Duration::seconds(280));
        assert_eq!(state(&d, "2026-10-24T23:00:00Z"), Fresh);
    }
}
