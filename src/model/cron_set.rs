//! A cron schedule as the set of values each field allows (bitmasks, 32 bytes): the form a
//! `Schedule::Cron` keeps. Built from croner's parsed `Cron`; when it is due is
//! [`crate::logic::cron_set`]'s.
//!
//! Why not keep croner's parsed `Cron`: it holds one byte per possible value of every field in
//! a `Vec`, the year field included (years 1 to 5000), so each parsed expression costs about
//! 5.5 KiB of heap — 10,000 cron jobs held 62 MiB (issue 25), ten times an interval job. The
//! crate exposes no compact form and no way to evaluate one, and parsing again per use costs
//! about 0.2 ms. So croner still parses and validates every expression (the syntax, `L`, `W`,
//! `#`, `+`, nicknames are its), and this type keeps only what its matching reads: which
//! minutes, hours, days, months and weekdays match, croner's per-weekday bits (`#n`, `L`) and
//! per-day `W` bits, and its flags.

use croner::{Cron, JobType};

// croner's bits per value (croner::component): 1 = the value itself, 2..=32 = the n-th weekday
// of the month (`#n`), 64 = `L`, 128 = `W`.
pub(crate) const ALL: u8 = 1;
pub(crate) const LAST: u8 = 64;
pub(crate) const CLOSEST_WEEKDAY: u8 = 128;

// Flags.
pub(crate) const F_LAST: u8 = 1; // `L` in the day of month (component-wide in croner)
pub(crate) const F_CLOSEST: u8 = 2; // `W` in the day of month (with `L`: `LW`, the last weekday)
pub(crate) const F_STAR_DOM: u8 = 4;
pub(crate) const F_STAR_DOW: u8 = 8;
pub(crate) const F_DOM_AND_DOW: u8 = 16;
pub(crate) const F_FIXED: u8 = 32;

/// The matching values of a cron expression's fields (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CronSet {
    pub(crate) minutes: u64,
    pub(crate) hours: u32,
    pub(crate) days: u32,
    pub(crate) days_w: u32,
    pub(crate) months: u16,
    /// croner's bits for each weekday, Sunday = 0.
    pub(crate) weekdays: [u8; 7],
    pub(crate) flags: u8,
}

impl std::fmt::Debug for CronSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CronSet {{ minutes: {:#x}, hours: {:#x}, days: {:#x}, days_w: {:#x}, months: {:#x}, weekdays: {:?}, flags: {:#b} }}",
            self.minutes, self.hours, self.days, self.days_w, self.months, self.weekdays, self.flags
        )
    }
}

impl CronSet {
    /// What `cron` (parsed without seconds and years) matches.
    pub(crate) fn of(cron: &Cron) -> CronSet {
        let p = &cron.pattern;
        let bits = |c: &croner::CronComponent, lo: u16, hi: u16, bit: u8| -> u64 {
            (lo..=hi)
                .filter(|v| c.is_bit_set(*v, bit).unwrap_or(false))
                .fold(0u64, |m, v| m | 1 << v)
        };
        let mut weekdays = [0u8; 7];
        for (w, slot) in weekdays.iter_mut().enumerate() {
            for b in 0..8 {
                if p.days_of_week.is_bit_set(w as u16, 1 << b).unwrap_or(false) {
                    *slot |= 1 << b;
                }
            }
        }
        let mut flags = 0;
        for (on, f) in [
            (p.days.is_feature_enabled(LAST), F_LAST),
            (p.days.is_feature_enabled(CLOSEST_WEEKDAY), F_CLOSEST),
            (p.is_dom_wildcard(), F_STAR_DOM),
            (p.is_dow_wildcard(), F_STAR_DOW),
            (p.matches_dom_and_dow(), F_DOM_AND_DOW),
            (cron.determine_job_type() == JobType::FixedTime, F_FIXED),
        ] {
            if on {
                flags |= f;
            }
        }
        CronSet {
            minutes: bits(&p.minutes, 0, 59, ALL),
            hours: bits(&p.hours, 0, 23, ALL) as u32,
            days: bits(&p.days, 1, 31, ALL) as u32,
            days_w: bits(&p.days, 1, 31, CLOSEST_WEEKDAY) as u32,
            months: bits(&p.months, 1, 12, ALL) as u16,
            weekdays,
            flags,
        }
    }

    /// Whether flag `f` (`F_…`) is set.
    pub(crate) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_small() {
        assert!(std::mem::size_of::<CronSet>() <= 32);
    }
}
