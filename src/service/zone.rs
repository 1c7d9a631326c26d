//! The time zone cron schedules are evaluated in ("local time"), in words for `status` and
//! `check-config`.
//!
//! On Unix local time is `TZ` when it is set, else the host's zone (`/etc/localtime`). A
//! daemon that ctrl or `start` launches does not get the launcher's `TZ` (`launch/unix.rs`),
//! so it schedules in the host's zone whoever started it; `start --foreground` (a unit or a
//! container that sets `TZ` on purpose) keeps its `TZ`. On Windows local time is the system's
//! zone: `TZ` does not change it.
//!
//! Where the host keeps its zone, and reading it, is the OS's (`sys::zone`); this file says it
//! in words.

use crate::service::sys::zone::{host_name, host_source, TZ_APPLIES, ZONE_FILES};
use chrono::{Local, Offset};

/// The zone this process evaluates local time in, with its current UTC offset:
/// `Europe/Berlin (UTC+01:00), from /etc/localtime` or `America/New_York (UTC-05:00), from TZ`.
pub(crate) fn in_force() -> String {
    let offset = offset_now();
    match tz_env() {
        Some(tz) => format!("{tz} (UTC{offset}), from TZ"),
        None => format!("{} (UTC{offset}){}", host_name(), host_source()),
    }
}

/// The host's zone, as a daemon launched by ctrl or `start` takes it whatever `TZ` this
/// process has: `Europe/Berlin, from /etc/localtime` (with the UTC offset when this process
/// has no `TZ`, so that its clock is the host's).
pub(crate) fn host() -> String {
    match tz_env() {
        Some(_) => format!("{}{}", host_name(), host_source()),
        None => in_force(),
    }
}

/// What the host's zone files look like now ([`ZONE_FILES`]: where a
/// link points, size and mtime of what it leads to), to notice a change of the host's zone
/// (`timedatectl set-timezone` relinks `/etc/localtime`). `None` when `TZ` is set: then `TZ`
/// is the zone and a change of the host's does not apply.
pub(crate) fn host_stamp() -> Option<String> {
    if tz_env().is_some() {
        return None;
    }
    let meta = |m: std::io::Result<std::fs::Metadata>| {
        m.ok()
            .map(|m| (m.len(), m.modified().ok(), m.file_type().is_symlink()))
    };
    let parts: Vec<String> = ZONE_FILES
        .iter()
        .map(|f| {
            format!(
                "{f}: {:?} {:?} {:?}",
                std::fs::read_link(f).ok(),
                meta(std::fs::symlink_metadata(f)),
                meta(std::fs::metadata(f))
            )
        })
        .collect();
    Some(parts.join("; "))
}

/// `TZ` as this process has it, when set and not empty (an empty `TZ` is UTC to the C
/// library, but chrono then reads the host's zone: left to the host's words).
pub(crate) fn tz_env() -> Option<String> {
    if !TZ_APPLIES {
        return None;
    }
    // Shown to the agent: printable, short (a `TZ` is a name or a POSIX rule).
    std::env::var_os("TZ")
        .map(|v| {
            v.to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .take(64)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
}

/// `+01:00`: the current offset of local time from UTC.
fn offset_now() -> String {
    let secs = Local::now().offset().fix().local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let m = secs.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_in_force_says_its_offset_and_source() {
        let s = in_force();
        assert!(s.contains("(UTC+") || s.contains("(UTC-"), "{s}");
        assert!(
            s.contains(", from ") || s.contains("no /etc/localtime") || cfg!(windows),
            "{s}"
        );
    }
}
