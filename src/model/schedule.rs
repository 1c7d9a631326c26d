//! A job's schedule as the config states it, and how it is written back (`every 5m`,
//! `cron "…"`). When it is due is `logic::schedule`'s.

use croner::Cron;
use std::fmt;
use std::time::Duration;

/// A job's schedule.
#[derive(Clone)]
pub(crate) enum Schedule {
    /// Due at every `interval` since the epoch, shifted by `offset`.
    Every {
        interval: Duration,
        offset: Duration,
    },
    /// Due whenever the crontab expression matches, in local time.
    Cron { text: String, cron: Box<Cron> },
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every { interval, offset } if offset.is_zero() => {
                write!(f, "every {}", crate::model::duration::format(*interval))
            }
            Schedule::Every { interval, offset } => write!(
                f,
                "every {} offset {}",
                crate::model::duration::format(*interval),
                crate::model::duration::format(*offset)
            ),
            Schedule::Cron { text, .. } => write!(f, "cron \"{text}\""),
        }
    }
}
