//! The time zone cron schedules are evaluated in ("local time"), in words for `status` and
//! `check-config`.
//!
//! On Unix local time is `TZ` when it is set, else the host's zone (`/etc/localtime`). A
//! daemon that ctrl or `start` launches does not get the launcher's `TZ` (`launch/unix.rs`),
//! so it schedules in the host's zone whoever started it; `start --foreground` (a unit or a
//! container that sets `TZ` on purpose) keeps its `TZ`. On Windows local time is the system's
//! zone: `TZ` does not change it.

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

/// What the host's zone files look like now ([`crate::service::sys::ZONE_FILES`]: where a
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
    let parts: Vec<String> = crate::service::sys::ZONE_FILES
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
    if cfg!(windows) {
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

#[cfg(unix)]
const LOCALTIME: &str = "/etc/localtime";

/// The host zone's name: what `/etc/localtime` links to below a `zoneinfo` folder, else
/// `/etc/timezone`, else `unnamed` (or `UTC` when there is no `/etc/localtime`).
#[cfg(unix)]
fn host_name() -> String {
    let link = std::fs::read_link(LOCALTIME).ok();
    if let Some(name) = link.as_deref().and_then(zone_of_path) {
        return name;
    }
    if std::fs::symlink_metadata(LOCALTIME).is_err() {
        return "UTC".into();
    }
    // Debian and others name the zone here too; only the first line, only a sane name, and
    // only if `/etc/localtime` is that zone's file: a zone file copied over `/etc/localtime`
    // without `/etc/timezone` edited showed "Etc/UTC (UTC-05:00)".
    let named = std::fs::read_to_string("/etc/timezone")
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
        .filter(|n| is_zone_name(n));
    match named {
        Some(n) if is_zone_file_of(&n) => n,
        Some(n) => format!("unnamed zone (not the {n} that /etc/timezone names)"),
        None => "unnamed zone".into(),
    }
}

/// Whether `/etc/localtime` holds the same bytes as the tz database's file of zone `name`.
#[cfg(unix)]
fn is_zone_file_of(name: &str) -> bool {
    // Zone files are a few KiB; anything larger is no zone file to compare.
    const CAP: u64 = 1 << 20;
    let read = |p: &std::path::Path| {
        let f = std::fs::File::open(p).ok()?;
        if f.metadata().ok()?.len() > CAP {
            return None;
        }
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, CAP), &mut b).ok()?;
        Some(b)
    };
    let here = read(std::path::Path::new(LOCALTIME));
    let db = read(&std::path::Path::new("/usr/share/zoneinfo").join(name));
    here.is_some() && here == db
}

#[cfg(unix)]
fn host_source() -> &'static str {
    if std::fs::symlink_metadata(LOCALTIME).is_ok() {
        ", from /etc/localtime"
    } else {
        ", no /etc/localtime"
    }
}

#[cfg(windows)]
fn host_name() -> String {
    "the system's time zone".into()
}

#[cfg(windows)]
fn host_source() -> &'static str {
    ""
}

/// `Europe/Berlin` from `/usr/share/zoneinfo/Europe/Berlin` (or `../usr/share/zoneinfo/…`).
#[cfg_attr(windows, allow(dead_code))]
fn zone_of_path(p: &std::path::Path) -> Option<String> {
    let s = p.to_str()?;
    let (_, name) = s.rsplit_once("zoneinfo/")?;
    // `posix/Europe/Berlin` and `right/…` are the same zone under another tree.
    let name = name
        .strip_prefix("posix/")
        .or_else(|| name.strip_prefix("right/"))
        .unwrap_or(name);
    is_zone_name(name).then(|| name.to_string())
}

/// A name as the tz database writes them: letters, digits, `/`, `_`, `-`, `+`, short.
fn is_zone_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_zone_is_named_from_its_zoneinfo_path() {
        for (path, want) in [
            ("/usr/share/zoneinfo/Europe/Berlin", Some("Europe/Berlin")),
            ("../usr/share/zoneinfo/Etc/UTC", Some("Etc/UTC")),
            ("/usr/share/zoneinfo/posix/Asia/Tokyo", Some("Asia/Tokyo")),
            ("/usr/share/zoneinfo/UTC", Some("UTC")),
            ("/etc/my-zone", None),
            ("/usr/share/zoneinfo/bad\nname", None),
        ] {
            assert_eq!(zone_of_path(Path::new(path)).as_deref(), want, "{path:?}");
        }
    }

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
