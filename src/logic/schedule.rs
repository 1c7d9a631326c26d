//! When a job is due: pure functions of (schedule, time), no I/O and no clock reads, so that
//! every rule here is unit-tested with fixed instants.
//!
//! `every` schedules are aligned to multiples of the interval counted from the Unix epoch (plus
//! an optional offset), so a 5m job is due at :00, :05, … regardless of when the daemon
//! started. `cron` schedules are parsed by croner and evaluated in local time on their
//! compact form ([`crate::model::cron_set`], evaluated by [`crate::logic::cron_set`]), with
//! croner's rules for DST gaps and overlaps. (The schedule itself is `model::schedule`'s; its
//! methods are defined here.)

use crate::logic::cron_set::Eval;
use crate::model::cron_set::CronSet;
use crate::model::schedule::Schedule;
use chrono::{DateTime, Local, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use std::time::Duration;

/// croner's parsed form of an expression `parse_cron` accepted: asked only where the wall
/// clock repeats itself (see [`crate::logic::cron_set`]), so never kept.
fn croner(text: &str) -> Option<Cron> {
    parser().parse(text).ok()
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

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
pub fn parse_cron(text: &str) -> Result<CronSet, CronError> {
    let fields = text.split_whitespace().count();
    if !text.trim_start().starts_with('@') && fields != 5 {
        return Err(CronError::Fields {
            text: text.to_string(),
            fields,
        });
    }
    let cron = parser().parse(text).map_err(|source| CronError::Invalid {
        text: text.to_string(),
        source,
    })?;
    // A valid expression may still name a date that never comes (`31 2`: February 31st): the
    // job would silently never run.
    if never_fires(&cron) {
        return Err(CronError::Never(text.to_string()));
    }
    Ok(CronSet::of(&cron))
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
        self.due_beside(t, tz, true)
    }

    /// The latest due time at or before `t`: the slot a catch-up run stands for.
    pub(crate) fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.last_at_or_before_in(t, &Local)
    }

    /// [`Schedule::last_at_or_before`] with cron evaluated in `tz` instead of local time.
    pub(crate) fn last_at_or_before_in<Tz: TimeZone>(
        &self,
        t: DateTime<Utc>,
        tz: &Tz,
    ) -> Option<DateTime<Utc>> {
        self.due_beside(t, tz, false)
    }

    /// The first due time strictly after `t` (`later`), or the latest at or before it.
    fn due_beside<Tz: TimeZone>(
        &self,
        t: DateTime<Utc>,
        tz: &Tz,
        later: bool,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every { interval, offset } => {
                let i = interval.as_millis() as i64;
                let o = offset.as_millis() as i64;
                if i <= 0 {
                    return None;
                }
                let k = (t.timestamp_millis() - o).div_euclid(i) + i64::from(later);
                Utc.timestamp_millis_opt(k * i + o).single()
            }
            Schedule::Cron { text, cron } => {
                let t = t.with_timezone(tz);
                let due = if later {
                    cron.next_after(&t)
                } else {
                    cron.last_at_or_before(&t)
                };
                match due {
                    Eval::Due(d) => d,
                    Eval::InFold if later => croner(text)?.find_next_occurrence(&t, false).ok(),
                    Eval::InFold => croner(text)?.find_previous_occurrence(&t, true).ok(),
                }
                .map(|d| d.with_timezone(&Utc))
            }
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
            cron: std::sync::Arc::new(cron),
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

/// A cron schedule's answers (the bitmasks of `model::cron_set`, evaluated by
/// `logic::cron_set`, croner where the wall clock repeats) against croner's own.
#[cfg(test)]
mod agrees_with_croner {
    use crate::model::schedule::Schedule;
    use chrono::{TimeZone, Utc};

    /// A small deterministic generator: the same expressions on every run (a failure names
    /// the expression and the start time, and stays reproducible).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn range(&mut self, lo: u64, hi: u64) -> u64 {
            lo + self.below(hi - lo + 1)
        }
    }

    fn field(r: &mut Rng, lo: u64, hi: u64) -> String {
        let a = r.range(lo, hi);
        let b = r.range(a, hi);
        match r.below(8) {
            0 | 1 => "*".into(),
            2 => format!("*/{}", r.range(1, (hi - lo).max(1))),
            3 => a.to_string(),
            4 => format!("{a}-{b}"),
            5 => format!("{a}-{b}/{}", r.range(1, 7)),
            6 => format!("{a},{b},{}", r.range(lo, hi)),
            _ => format!("{a}/{}", r.range(1, 9)),
        }
    }

    fn expression(r: &mut Rng) -> String {
        if r.below(40) == 0 {
            let nick = ["@hourly", "@daily", "@weekly", "@monthly", "@yearly"];
            return nick[r.below(5) as usize].into();
        }
        let minute = field(r, 0, 59);
        let hour = field(r, 0, 23);
        let dom = match r.below(12) {
            0 => "L".into(),
            1 => "LW".into(),
            2 => format!("{}W", r.range(1, 31)),
            3 => "?".into(),
            _ => field(r, 1, 31),
        };
        let month = match r.below(8) {
            0 => "JAN,MAR,OCT".into(),
            1 => "FEB".into(),
            _ => field(r, 1, 12),
        };
        let mut dow = match r.below(12) {
            0 => "MON-FRI".into(),
            1 => format!("{}#{}", r.range(0, 7), r.range(1, 5)),
            2 => format!("{}L", r.range(0, 7)),
            3 => "7".into(),
            4 => "?".into(),
            _ => field(r, 0, 6),
        };
        if r.below(10) == 0 {
            dow = format!("+{dow}");
        }
        format!("{minute} {hour} {dom} {month} {dow}")
    }

    /// `n` random expressions that croner accepts, each against `starts` start times (near
    /// `hot` instants half of the time), in `tz`: the same next and previous due times.
    fn agree_with_croner<Tz: TimeZone>(tz: &Tz, seed: u64, n: usize, starts: usize, hot: &[i64])
    where
        Tz::Offset: Copy,
    {
        let mut r = Rng(seed);
        let (from, to) = (1_767_225_600i64, 1_893_456_000i64); // 2026..2030
        let mut checked = 0;
        while checked < n {
            // Near changes of the clock, a quarter are fixed times in the small hours, where
            // the changes fall (a gap or a repeat of a fixed time has rules of its own).
            let text = if !hot.is_empty() && r.below(4) == 0 {
                let dom = ["*", "L", "*/2", "25-31"][r.below(4) as usize];
                format!("{} {} {dom} * *", r.range(0, 59), r.range(0, 3))
            } else {
                expression(&mut r)
            };
            let Ok(set) = super::parse_cron(&text) else {
                continue;
            };
            let sched = Schedule::Cron {
                text: text.as_str().into(),
                cron: std::sync::Arc::new(set),
            };
            let cron = croner_of(&text);
            checked += 1;
            for _ in 0..starts {
                let secs = if !hot.is_empty() && r.below(2) == 0 {
                    hot[r.below(hot.len() as u64) as usize] + r.range(0, 6 * 3600) as i64 - 3 * 3600
                } else {
                    r.range(from as u64, to as u64) as i64
                };
                let secs = if r.below(3) == 0 {
                    secs - secs % 60
                } else {
                    secs
                };
                let millis = if r.below(2) == 0 {
                    r.below(1000) as i64
                } else {
                    0
                };
                let t = Utc
                    .timestamp_millis_opt(secs * 1000 + millis)
                    .unwrap()
                    .with_timezone(tz);
                let u = t.with_timezone(&Utc);
                let want = cron
                    .find_next_occurrence(&t, false)
                    .ok()
                    .map(|d| d.with_timezone(&Utc));
                assert_eq!(
                    sched.next_after_in(u, tz),
                    want,
                    "next after {t:?} of {text:?}: {set:?}"
                );
                let want = cron
                    .find_previous_occurrence(&t, true)
                    .ok()
                    .map(|d| d.with_timezone(&Utc));
                assert_eq!(
                    sched.last_at_or_before_in(u, tz),
                    want,
                    "last at or before {t:?} of {text:?}: {set:?}"
                );
            }
        }
    }

    fn croner_of(text: &str) -> croner::Cron {
        use croner::parser::{CronParser, Seconds, Year};
        CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .unwrap()
    }

    #[test]
    fn matches_croner_in_utc() {
        agree_with_croner(&Utc, 0x9e37_79b9_7f4a_7c15, 1500, 8, &[]);
    }

    /// Local time in central Europe (POSIX rule, no tz database needed), in a child process
    /// with its own `TZ`: many start times within three hours of the changes of 2026-2029.
    #[cfg(unix)]
    #[test]
    fn matches_croner_across_daylight_saving_changes() {
        const CHILD: &str = "ROBOTMK_TEST_TZ_CHILD";
        if std::env::var_os(CHILD).is_none() {
            for tz in [
                "CET-1CEST,M3.5.0,M10.5.0/3",
                "EST5EDT,M3.2.0,M11.1.0",
                "AEST-10AEDT,M10.1.0,M4.1.0/3",
            ] {
                let out = std::process::Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "logic::schedule::agrees_with_croner::matches_croner_across_daylight_saving_changes",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env("TZ", tz)
                    .env(CHILD, "1")
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success() && text.contains("1 passed"),
                    "{tz}: {text}"
                );
            }
            return;
        }
        use chrono::Local;
        // The instants the wall clock changes at, found by looking (no zone rules here).
        let mut hot = Vec::new();
        let mut t = 1_767_225_600i64;
        let off = |t: i64| {
            Local
                .timestamp_opt(t, 0)
                .unwrap()
                .offset()
                .local_minus_utc()
        };
        while t < 1_893_456_000 {
            if off(t) != off(t + 3600) {
                hot.push(t);
            }
            t += 3600;
        }
        assert!(hot.len() >= 8, "TZ not in effect: {hot:?}");
        agree_with_croner(&Local, 0x2545_f491_4f6c_dd1d, 700, 8, &hot);
    }
}
