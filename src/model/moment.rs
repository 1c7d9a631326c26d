//! An instant as Unix nanoseconds: the times ctrl decodes from the daemon's view (three per
//! job on every agent call) and compares with its `now`. A `DateTime<Utc>` works out a
//! calendar date for each only to subtract them again: 7 % of ctrl's CPU at 1,000 jobs
//! (`perf record`, issue 25); the date is shown only in the agent's cached mode.

use chrono::{DateTime, Utc};

/// Nanoseconds since 1970-01-01 UTC (i128: any `DateTime<Utc>` fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Moment(i128);

const NANOS: i128 = 1_000_000_000;

impl Moment {
    /// From whole seconds and the nanoseconds past them (`0..1_000_000_000`).
    pub(crate) fn from_parts(secs: i64, nanos: u32) -> Moment {
        Moment(i128::from(secs) * NANOS + i128::from(nanos))
    }

    pub(crate) fn of(t: DateTime<Utc>) -> Moment {
        Moment::from_parts(t.timestamp(), t.timestamp_subsec_nanos())
    }

    /// The calendar time; `None` beyond what `DateTime` holds.
    pub(crate) fn to_datetime(self) -> Option<DateTime<Utc>> {
        let secs = i64::try_from(self.0.div_euclid(NANOS)).ok()?;
        DateTime::from_timestamp(secs, self.0.rem_euclid(NANOS) as u32)
    }

    /// Whole milliseconds from `earlier` to `self`, cut toward zero (as chrono's
    /// `(self - earlier).num_milliseconds()`).
    pub(crate) fn millis_since(self, earlier: Moment) -> i64 {
        ((self.0 - earlier.0) / 1_000_000) as i64
    }

    /// Whole seconds from `earlier` to `self`, cut toward zero (as chrono's `num_seconds`).
    pub(crate) fn secs_since(self, earlier: Moment) -> i64 {
        ((self.0 - earlier.0) / NANOS) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, nanos).unwrap()
    }

    #[test]
    fn differences_are_cut_as_chronos_are() {
        let cases = [
            (at(100, 0), at(99, 999_999_999)),
            (at(99, 999_999_999), at(100, 0)),
            (at(100, 500_000_000), at(98, 700_000_000)),
            (at(98, 700_000_000), at(100, 500_000_000)),
            (at(-5, 1), at(3, 999_999_999)),
            (at(1_800_000_000, 123_456_789), at(0, 0)),
        ];
        for (a, b) in cases {
            let (ma, mb) = (Moment::of(a), Moment::of(b));
            assert_eq!(ma.millis_since(mb), (a - b).num_milliseconds(), "{a} - {b}");
            assert_eq!(ma.secs_since(mb), (a - b).num_seconds(), "{a} - {b}");
            assert_eq!(ma > mb, a > b);
            assert_eq!(ma.to_datetime(), Some(a));
        }
    }
}
