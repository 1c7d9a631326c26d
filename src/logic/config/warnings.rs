//! Warnings about a valid config that will not do what its admin likely meant: nothing here
//! stops a daemon, each says what will happen and what to change. Pure: what needs the host
//! (file modes, folders) is in `service::preflight`, which adds these to its own.

use crate::model::config::Config;
use crate::model::duration::format;
use chrono::{DateTime, Utc};

/// The warnings `cfg` earns on its own, in the order of the file.
pub(crate) fn warnings(cfg: &Config, now: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.jobs.is_empty() {
        out.push(format!(
            "{} has no [[job]]: the daemon will start and sit idle; add a [[job]] table for each job",
            cfg.path.display()
        ));
    }
    for j in &cfg.jobs {
        let interval = j.schedule.nominal_interval(now);
        if j.timeout > interval {
            out.push(format!(
                "job {:?}: timeout {} is longer than its interval {}: a run still going when the next is due makes that one skipped (and each skipped run takes a place of keep_runs); set timeout to at most {}",
                j.name,
                format(j.timeout),
                format(interval),
                format(interval)
            ));
        }
    }
    out
}
