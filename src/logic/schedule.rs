//! When a job is due: pure functions of (schedule, time), no I/O and no clock reads, so that
//! every rule here is unit-tested with fixed instants.
//!
//! `every` schedules are aligned to multiples of the interval counted from the Unix epoch (plus
//! an optional offset), so a 5m job is due at :00, :05, … regardless of when the daemon
//! started. `cron` schedules are evaluated in local time by croner, which handles DST gaps
//! and overlaps. (The schedule itself is `model::schedule`'s; its methods are defined here.)

use crate::model::schedule::Schedule;
use chrono::{DateTime, Local, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use std::time::Duration;

/// A cron expression the daemon cannot run by.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error("invalid cron expression {text:?}: expected 5 fields (minute hour day-of-month month day-of-week), found {fields}")]
    Fields { text: String, fields: usize },
    #[error("invalid cron expression {text:?}: {source}")]
    Invalid {
        text: String,
        #[source]
        source: croner::errors::CronError,
    },
    #[error(
        "cron expression {0:?} never fires (no such date); check the day-of-month and month fields"
    )]
    Never(String),
}

/// Parses a classic 5-field crontab expression (also `@hourly` and friends).
pub fn parse_cron(text: &str) -> Result<Cron, CronError> {
    let fields = text.split_whitespace().count();
    if !text.trim_start().starts_with('@') && fields != 5 {
        return Err(CronError::Fields {
            text: text.to_string(),
            fields,
        });
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|source| CronError::Invalid {
            text: text.to_string(),
            source,
        })?;
    // A valid expression may still name a date that never comes (`31 2`: February 31st): the
    // job would silently never run.
    if never_fires(&cron) {
        return Err(CronError::Never(text.to_string()));
    }
    Ok(cron)
}

/// True if the day-of-month and month fields name no date that exists (February 30th, April
/// 31st), so the expression never fires. Read from the parsed fields, not by searching the
/// calendar, which walks years ahead (seconds under Wine) before it gives up.
fn never_fires(cron: &Cron) -> bool {
    // croner's component bits: 1 = the value itself; 64 = `L` (last), 128 = `W` (weekday).
    const VALUE: u8 = 1;
    const SPECIAL: [u8; 2] = [64, 128];
    const DAYS_IN_MONTH: [u16; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let p = &cron.pattern;
    if p.is_dom_wildcard() {
        return false;
    }
    if !p.is_dow_wildcard() {
        if !p.matches_dom_and_dow() {
            return false; // either field may match: the weekdays come every week
        }
        // Both must match (a `+` pattern): rare enough to ask the calendar.
        return cron.find_next_occurrence(&Local::now(), false).is_err();
    }
    let set = |d: u16, bit: u8| p.days.is_bit_set(d, bit).unwrap_or(false);
    // `L` is a component-wide feature; `15W` a bit on its day.
    if SPECIAL.iter().any(|b| p.days.is_feature_enabled(*b))
        || (1..=31).any(|d| SPECIAL.iter().any(|b| set(d, *b)))
    {
        return false; // always some day of every month
    }
    !(1..=12u16).any(|m| {
        p.month_match(u32::from(m)).unwrap_or(false)
            && (1..=DAYS_IN_MONTH[usize::from(m - 1)]).any(|d| set(d, VALUE))
    })
}

impl Schedule {
    /// The first due time strictly after `t`.
    pub(crate) fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after_in(t, &Local)
    }

    /// [`Schedule::next_after`] with cron evaluated in `tz` instead of local time, so that
    /// calendars can be tested in a fixed time zone.
    pub(crate) fn next_after_in<Tz: TimeZone>(
        &self,
        t: DateTime<Utc>,
        tz: &Tz,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every { interval, offset } => {
                let i = interval.as_millis() as i64;
                let o = offset.as_millis() as i64;
                if i <= 0 {
                    return None;
                }
                let ms = t.timestamp_millis() - o;
                let k = ms.div_euclid(i) + 1;
                Utc.timestamp_millis_opt(k * i + o).single()
            }
            Schedule::Cron { cron, .. } => cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
        }
    }

    /// The latest due time at or before `t`: the slot a catch-up run stands for.
    pub(crate) fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every { interval, offset } => {
                let i = interval.as_millis() as i64;
                let o = offset.as_millis() as i64;
                if i <= 0 {
                    return None;
                }
                let k = (t.timestamp_millis() - o).div_euclid(i);
                Utc.timestamp_millis_opt(k * i + o).single()
            }
            Schedule::Cron { cron, .. } => cron
                .find_previous_occurrence(&t.with_timezone(&Local), true)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
        }
    }

    /// The typical gap between two due times; used for staleness and default timeouts.
    /// For cron it is the gap between the next two due times after `now`.
    pub(crate) fn nominal_interval(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Schedule::Every { interval, .. } => *interval,
            Schedule::Cron { .. } => {
                let a = self.next_after(now);
                let b = a.and_then(|a| self.next_after(a));
                match (a, b) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(3600)),
                    _ => Duration::from_secs(3600),
                }
            }
        }
    }

    /// The next `n` due times after `t` (for `check-config`).
    pub(crate) fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut cur = t;
        while out.len() < n {
            match self.next_after(cur) {
                Some(next) => {
                    out.push(next);
                    cur = next;
                }
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cron_that_never_fires_is_an_error() {
        let t = std::time::Instant::now();
        for never in ["59 23 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
            let e = super::parse_cron(never).unwrap_err();
            assert!(e.to_string().contains("never fires"), "{never}: {e}");
        }
        for ok in [
            "0 0 29 2 *",
            "0 0 31 1-12 *",
            "0 0 31 2 1",
            "0 0 L 2 *",
            "0 0 * 2 *",
        ] {
            let r = super::parse_cron(ok);
            assert!(r.is_ok(), "{ok} fires: {:?}", r.err());
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn every(secs: u64, offset: u64) -> Schedule {
        Schedule::Every {
            interval: Duration::from_secs(secs),
            offset: Duration::from_secs(offset),
        }
    }

    #[test]
    fn every_is_aligned_to_the_wall_clock() {
        let s = every(300, 0);
        assert_eq!(
            s.next_after(at("2026-11-27T10:02:13Z")),
            Some(at("2026-11-27T10:05:00Z"))
        );
        // Exactly on a slot: the next one, never the same one again.
        assert_eq!(
            s.next_after(at("2026-11-27T10:05:00Z")),
            Some(at("2026-11-27T10:10:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(at("2026-11-27T10:05:00Z")),
            Some(at("2026-11-27T10:05:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(at("2026-11-27T10:09:59Z")),
            Some(at("2026-11-27T10:05:00Z"))
        );
    }

    #[test]
    fn offset_shifts_the_slots() {
        let s = every(300, 60);
        assert_eq!(
            s.next_after(at("2026-11-27T10:02:13Z")),
            Some(at("2026-11-27T10:06:00Z"))
        );
        assert_eq!(
            s.upcoming(at("2026-11-27T10:00:00Z"), 3),
            vec![
                at("2026-11-27T10:01:00Z"),
                at("2026-11-27T10:06:00Z"),
                at("2026-11-27T10:11:00Z")
            ]
        );
    }

    #[test]
    fn cron_next_and_previous() {
        let cron = parse_cron("*/15 * * * *").unwrap();
        let s = Schedule::Cron {
            text: "*/15 * * * *".into(),
            cron: Box::new(cron),
        };
        let n = s.next_after(at("2026-11-27T10:02:00Z")).unwrap();
        assert_eq!(n.timestamp() % 900, 0, "{n}");
        assert!(n > at("2026-11-27T10:02:00Z"));
        let p = s.last_at_or_before(n).unwrap();
        assert_eq!(p, n);
        assert_eq!(
            s.nominal_interval(at("2026-11-27T10:02:00Z")),
            Duration::from_secs(900)
        );
    }

    #[test]
    fn cron_rejects_wrong_field_counts() {
        assert!(parse_cron("* * * *")
            .unwrap_err()
            .to_string()
            .contains("5 fields"));
        assert!(parse_cron("0 * * * * *")
            .unwrap_err()
            .to_string()
            .contains("5 fields"));
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("@hourly").is_ok());
    }
}
