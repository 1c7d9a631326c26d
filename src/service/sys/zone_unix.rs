//! The host's time zone as Unix keeps it: `/etc/localtime` (a link into the tz database, or a
//! copy of one of its files) and Debian's `/etc/timezone`. `service::zone` puts it in words;
//! this file is where those files are read. `TZ` applies here (the C library and chrono read
//! it).

use std::path::Path;

/// Where the C library and chrono read the host's zone.
const LOCALTIME: &str = "/etc/localtime";

/// The files the host's time zone is read from when `TZ` is not set (chrono reads
/// `/etc/localtime`, the zone's name may come from `/etc/timezone`): the daemon watches them
/// and plans its cron jobs again when they change.
pub(crate) const ZONE_FILES: &[&str] = &[LOCALTIME, "/etc/timezone"];

/// `TZ` sets the zone local time is evaluated in.
pub(crate) const TZ_APPLIES: bool = true;

/// The host zone's name: what `/etc/localtime` links to below a `zoneinfo` folder, else
/// `/etc/timezone`, else `unnamed` (or `UTC` when there is no `/etc/localtime`).
pub(crate) fn host_name() -> String {
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

/// Where the host's zone came from, to follow its name: `, from /etc/localtime`.
pub(crate) fn host_source() -> &'static str {
    if std::fs::symlink_metadata(LOCALTIME).is_ok() {
        ", from /etc/localtime"
    } else {
        ", no /etc/localtime"
    }
}

/// Whether `/etc/localtime` holds the same bytes as the tz database's file of zone `name`.
fn is_zone_file_of(name: &str) -> bool {
    // Zone files are a few KiB; anything larger is no zone file to compare.
    const CAP: u64 = 1 << 20;
    let read = |p: &Path| {
        let f = std::fs::File::open(p).ok()?;
        if f.metadata().ok()?.len() > CAP {
            return None;
        }
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, CAP), &mut b).ok()?;
        Some(b)
    };
    let here = read(Path::new(LOCALTIME));
    let db = read(&Path::new("/usr/share/zoneinfo").join(name));
    here.is_some() && here == db
}

/// `Europe/Berlin` from `/usr/share/zoneinfo/Europe/Berlin` (or `../usr/share/zoneinfo/…`).
fn zone_of_path(p: &Path) -> Option<String> {
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
}
