//! A job's schedule as the config states it, and how it is written back (`every 5m`,
//! `cron "…"`). When it is due is `logic::schedule`'s.

use crate::model::cron_set::CronSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A job's schedule.
#[derive(Clone)]
pub(crate) enum Schedule {
    /// Due at every `interval` since the epoch, shifted by `offset`.
    Every {
        interval: Duration,
        offset: Duration,
    },
    /// Due whenever the crontab expression matches, in local time. The expression as the
    /// admin wrote it (shown) and the values it matches (evaluated; behind a pointer so that
    /// a `Job` with an `every` schedule pays nothing for it): croner's parsed form is not kept
    /// (5.5 KiB a job, see [`crate::model::cron_set`]). Both are shared by every job of the
    /// config on the same expression (`logic::config::parse`).
    Cron { text: Arc<str>, cron: Arc<CronSet> },
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
