//! When a cron schedule is due: the next and previous due times of a
//! [`CronSet`](crate::model::cron_set::CronSet) (the bitmasks a `Schedule::Cron` keeps),
//! computed from them with croner's semantics in local time.
//!
//! Why not keep croner's parsed `Cron`: it holds one byte per possible value of every field in
//! a `Vec`, the year field included (years 1 to 5000), so each parsed expression costs about
//! 5.5 KiB of heap — 10,000 cron jobs held 62 MiB (issue 25), ten times an interval job. The
//! crate exposes no compact form and no way to evaluate one, and parsing again per use costs
//! about 0.2 ms. So croner still parses and validates every expression (the syntax, `L`, `W`,
//! `#`, `+`, nicknames are its), and this module keeps only what its matching reads: which
//! minutes, hours, days, months and weekdays match, croner's per-weekday bits (`#n`, `L`) and
//! per-day `W` bits, and its flags. The walk through the calendar is this module's; its rules
//! for the wall clock are croner's (`Cron::find_occurrence`), stated as a set of instants:
//!
//! - a matching wall-clock minute that exists once is due at that instant;
//! - one that comes twice (the clock goes back) is due at both instants, or only at the
//!   earlier one for a fixed-time expression (one value in each of minute and hour);
//! - one that never comes (the clock goes forward) is skipped, except that a fixed-time
//!   expression runs at the first instant after the gap, if that day still matches.
//!
//! `next_after` is the first such instant after `t`, `last_at_or_before` the last one at or
//! before `t`. "Earlier" is the first of the two instants chrono reports for a repeated
//! minute, as croner takes it (chrono's `Local` reports the smaller UTC offset first, which is
//! the later instant; croner's answers follow that order, and so do these). When `t` itself
//! lies on a repeated stretch of the wall clock (an hour a year), croner's two-walk search
//! depends on that order in ways not worth restating: those calls answer [`Eval::InFold`] and
//! the caller asks croner (`crate::logic::schedule`). The tests compare the schedule's answers
//! with croner over thousands of random expressions and start times, in UTC and in zones with
//! daylight saving time.

use crate::model::cron_set::{
    CronSet, ALL, F_CLOSEST, F_DOM_AND_DOW, F_FIXED, F_LAST, F_STAR_DOM, F_STAR_DOW, LAST,
};
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike,
};

/// Days walked before giving up (an expression that never fires is refused when parsed; the
/// rarest one that fires, a weekday on February 29th with `+`, comes every 28 years).
const DAY_LIMIT: u32 = 200_000;

/// An answer of [`CronSet`], or the admission that croner must give it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Eval<T> {
    Due(Option<T>),
    /// The start lies on a repeated stretch of the wall clock.
    InFold,
}

impl CronSet {
    /// croner's `CronPattern::day_match` (with the month), on the bitmasks.
    fn date_matches(&self, d: NaiveDate) -> bool {
        let (day, month) = (d.day(), d.month());
        if self.months & (1 << month) == 0 {
            return false;
        }
        let len = days_in_month(d.year(), month);
        let wd = d.weekday().num_days_from_sunday();
        let mut dom = self.days & (1 << day) != 0;
        if !dom && self.has(F_LAST) && self.has(F_CLOSEST) {
            let last = (wd + len - day) % 7; // weekday of the month's last day
            let last_weekday = match last {
                6 => len - 1,
                0 => len - 2,
                _ => len,
            };
            dom = day == last_weekday;
        } else if !dom && self.has(F_LAST) && !self.has(F_CLOSEST) {
            dom = day == len;
        }
        if !dom {
            dom = self.closest_weekday(len, day, wd);
        }
        let bits = self.weekdays[wd as usize];
        let nth = (day - 1) / 7;
        let mut dow = nth < 5 && bits & (2 << nth) != 0;
        if !dow && bits & LAST != 0 && day + 7 > len {
            dow = true;
        }
        dow = dow || bits & ALL != 0;
        if (dom && self.has(F_STAR_DOW)) || (dow && self.has(F_STAR_DOM)) {
            true
        } else if !self.has(F_STAR_DOM) && !self.has(F_STAR_DOW) {
            if self.has(F_DOM_AND_DOW) {
                dom && dow
            } else {
                dom || dow
            }
        } else {
            false
        }
    }

    /// croner's `closest_weekday`: a `W` day within two days that resolves to `day`.
    fn closest_weekday(&self, len: u32, day: u32, wd: u32) -> bool {
        if self.days_w == 0 {
            return false;
        }
        let first = day.saturating_sub(2).max(1);
        let last = (day + 2).min(len);
        (first..=last).any(|pd| {
            if self.days_w & (1 << pd) == 0 {
                return false;
            }
            let pwd = (wd as i64 + pd as i64 - day as i64).rem_euclid(7);
            let target = match pwd {
                6 if pd > 1 => pd - 1,
                6 => pd + 2,
                0 if pd < len => pd + 1,
                0 => pd - 2,
                _ => pd,
            };
            target == day
        })
    }

    /// The first matching minute of the day at or after minute `from` (0..1440).
    fn first_time_from(&self, from: u32) -> Option<u32> {
        let (h, m) = (from / 60, from % 60);
        if h < 24 && self.hours & (1 << h) != 0 {
            let mm = self.minutes >> m;
            if mm != 0 {
                return Some(h * 60 + m + mm.trailing_zeros());
            }
        }
        let hh = if h + 1 < 24 { self.hours >> (h + 1) } else { 0 };
        (hh != 0 && self.minutes != 0)
            .then(|| (h + 1 + hh.trailing_zeros()) * 60 + self.minutes.trailing_zeros())
    }

    /// The last matching minute of the day at or before minute `to` (0..1440).
    fn last_time_to(&self, to: u32) -> Option<u32> {
        let (h, m) = (to / 60, to % 60);
        if self.hours & (1 << h) != 0 {
            let mm = self.minutes & ((2u64 << m) - 1);
            if mm != 0 {
                return Some(h * 60 + 63 - mm.leading_zeros());
            }
        }
        let hh = self.hours & ((1u32 << h) - 1);
        (hh != 0 && self.minutes != 0)
            .then(|| (31 - hh.leading_zeros()) * 60 + 63 - self.minutes.leading_zeros())
    }

    /// The first matching wall-clock minute after `x` (at or after, if `inclusive`).
    fn civil_after(&self, x: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        let mut date = x.date();
        let whole = x.second() == 0 && x.nanosecond() == 0;
        let mut from = x.hour() * 60 + x.minute() + u32::from(!(inclusive && whole));
        for _ in 0..DAY_LIMIT {
            if self.months & (1 << date.month()) == 0 {
                // The first day of the next month.
                let (y, m) = (date.year(), date.month());
                date = if m == 12 {
                    NaiveDate::from_ymd_opt(y + 1, 1, 1)?
                } else {
                    NaiveDate::from_ymd_opt(y, m + 1, 1)?
                };
                from = 0;
                continue;
            }
            if from < 1440 && self.date_matches(date) {
                if let Some(t) = self.first_time_from(from) {
                    return date.and_hms_opt(t / 60, t % 60, 0);
                }
            }
            date = date.succ_opt()?;
            from = 0;
        }
        None
    }

    /// The last matching wall-clock minute before `x` (at or before, if `inclusive`).
    fn civil_before(&self, x: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        let mut date = x.date();
        let whole = x.second() == 0 && x.nanosecond() == 0;
        let mut to = (x.hour() * 60 + x.minute()) as i64 - i64::from(!inclusive && whole);
        for _ in 0..DAY_LIMIT {
            if self.months & (1 << date.month()) == 0 {
                // The last day of the previous month.
                date = NaiveDate::from_ymd_opt(date.year(), date.month(), 1)?.pred_opt()?;
                to = 1439;
                continue;
            }
            if to >= 0 && self.date_matches(date) {
                if let Some(t) = self.last_time_to(to as u32) {
                    return date.and_hms_opt(t / 60, t % 60, 0);
                }
            }
            date = date.pred_opt()?;
            to = 1439;
        }
        None
    }

    /// The instants a matching wall-clock minute `c` stands for (see the module doc), at most
    /// two, earliest first.
    fn instants<Tz: TimeZone>(&self, c: NaiveDateTime, tz: &Tz) -> [Option<DateTime<Tz>>; 2] {
        match tz.from_local_datetime(&c) {
            LocalResult::Single(i) => [Some(i), None],
            LocalResult::Ambiguous(e, _) if self.has(F_FIXED) => [Some(e), None],
            LocalResult::Ambiguous(e, l) => [Some(e), Some(l)],
            LocalResult::None if self.has(F_FIXED) => [
                after_gap(c, tz).filter(|u| self.date_matches(u.naive_local().date())),
                None,
            ],
            LocalResult::None => [None, None],
        }
    }

    /// The first due time strictly after `t`, the wall clock read in `t`'s zone.
    pub(crate) fn next_after<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Eval<DateTime<Tz>> {
        let tz = t.timezone();
        let lt = t.naive_local();
        if in_fold(lt, &tz) {
            return Eval::InFold;
        }
        // Off a repeated stretch, wall clock and instants run in the same order from `lt` on.
        let mut x = lt;
        loop {
            let Some(c) = self.civil_after(x, false) else {
                return Eval::Due(None);
            };
            if let Some(i) = self.instants(c, &tz).into_iter().flatten().find(|i| i > t) {
                return Eval::Due(Some(i));
            }
            x = c;
        }
    }

    /// The last due time at or before `t`, the wall clock read in `t`'s zone.
    pub(crate) fn last_at_or_before<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Eval<DateTime<Tz>> {
        let tz = t.timezone();
        let lt = t.naive_local();
        if in_fold(lt, &tz) {
            return Eval::InFold;
        }
        let (mut x, mut inclusive) = (lt, true);
        loop {
            let Some(c) = self.civil_before(x, inclusive) else {
                return Eval::Due(None);
            };
            let found = self
                .instants(c, &tz)
                .into_iter()
                .flatten()
                .rfind(|i| i <= t);
            if found.is_some() {
                return Eval::Due(found);
            }
            (x, inclusive) = (c, false);
        }
    }
}

/// True if the wall-clock second of `lt` comes twice in `tz`.
fn in_fold<Tz: TimeZone>(lt: NaiveDateTime, tz: &Tz) -> bool {
    let second = lt.with_nanosecond(0).unwrap_or(lt);
    matches!(tz.from_local_datetime(&second), LocalResult::Ambiguous(..))
}

/// The first instant after the gap the wall-clock time `c` falls into (croner: the first wall
/// clock second after `c` that exists).
fn after_gap<Tz: TimeZone>(c: NaiveDateTime, tz: &Tz) -> Option<DateTime<Tz>> {
    let exists = |s: NaiveDateTime| !matches!(tz.from_local_datetime(&s), LocalResult::None);
    // Gallop to a second that exists, then bisect to the first one.
    let (mut lo, mut step) = (c, Duration::seconds(1));
    while !exists(lo + step) {
        if step > Duration::hours(48) {
            return None;
        }
        lo += step;
        step = step * 2;
    }
    let mut hi = lo + step;
    while hi - lo > Duration::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        if exists(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    tz.from_local_datetime(&hi).earliest()
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    /// The bitmasks of an expression croner accepts. (`logic::schedule`'s tests hold the
    /// comparison with croner over random expressions, through `Schedule`, which also asks
    /// croner where this answers `InFold`.)
    fn set_of(text: &str) -> CronSet {
        use croner::parser::{CronParser, Seconds, Year};
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .unwrap();
        CronSet::of(&cron)
    }

    #[test]
    fn examples() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let set = set_of("0 0 29 2 +1");
        // February 29th on a Monday: 2044.
        assert_eq!(
            set.next_after(&at("2026-01-01T00:00:00Z")),
            Eval::Due(Some(at("2044-02-29T00:00:00Z")))
        );
        let set = set_of("*/15 * * * *");
        assert_eq!(
            set.last_at_or_before(&at("2026-11-27T10:15:00Z")),
            Eval::Due(Some(at("2026-11-27T10:15:00Z")))
        );
        assert_eq!(
            set.next_after(&at("2026-11-27T10:15:00Z")),
            Eval::Due(Some(at("2026-11-27T10:30:00Z")))
        );
    }
}
