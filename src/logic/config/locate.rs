//! Finding the daemon from a config file that may be broken elsewhere: the `[daemon]` table
//! alone, cut out of the text (ctrl's fast path, and ctrl keeping the heartbeat while an admin
//! fixes a typo in a job).

use super::base::{check_name, lexical};
use std::path::{Path, PathBuf};

/// The `[daemon]` table of a file the daemon validated, up to the next table header: there
/// it is defined once and has no sub-tables (`deny_unknown_fields`, no table-valued field),
/// so the jobs after it need not be scanned (ctrl's fast path, on every agent call).
pub(crate) fn daemon_block(text: &str) -> &str {
    let mut start = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let header = if line.trim_start().starts_with('[') {
            table_header(line)
        } else {
            None
        };
        match (start, header) {
            (None, Some(h)) if h == "daemon" => start = Some(pos),
            (Some(s), Some(_)) => return &text[s..pos],
            _ => {}
        }
        pos += line.len();
    }
    start.map_or("", |s| &text[s..])
}

/// The `[daemon]` table of `text` as far as it parses: the whole file, else the table's own
/// lines, else each of its lines that parses alone.
pub(crate) fn daemon_table(text: &str) -> toml::Table {
    toml::from_str(text)
        .ok()
        .or_else(|| toml::from_str(&daemon_section(text)).ok())
        .unwrap_or_else(|| daemon_lines(text))
}

/// The instance named in `table` (checked) and its state dir when the table names one
/// (relative to `base`, the config's folder; `None` for the default one). `None` when either
/// is named but not usable (not a string, an invalid name, an empty path): the config then
/// does not say where its daemon is, and the defaults are not an answer — an admin's typo in
/// `instance` or `state_dir` would point ctrl at a state dir with no daemon, and the running
/// one, left without heartbeats, would end (`service::one_daemon::locate` asks the config's
/// lock instead).
pub(crate) fn location(table: &toml::Table, base: &Path) -> Option<(String, Option<PathBuf>)> {
    let daemon = table.get("daemon").and_then(|d| d.as_table());
    let instance = match daemon.and_then(|d| d.get("instance")) {
        None => "system".to_string(),
        Some(v) => v.as_str()?.to_string(),
    };
    check_name(&instance).ok()?;
    let state_dir = match daemon.and_then(|d| d.get("state_dir")) {
        None => None,
        Some(v) => match v.as_str()? {
            "" => return None,
            s => Some(lexical(&base.join(s))),
        },
    };
    Some((instance, state_dir))
}

/// `[daemon] other_instances` in `table`, relative entries from `base` (the config's folder);
/// entries that are not strings, and empty ones, left out (ctrl's quick read: the daemon's
/// parse refuses them).
pub(crate) fn other_instances(table: &toml::Table, base: &Path) -> Vec<PathBuf> {
    table
        .get("daemon")
        .and_then(|d| d.get("other_instances"))
        .and_then(|l| l.as_array())
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(|s| lexical(&base.join(s)))
                .collect()
        })
        .unwrap_or_default()
}

/// The `[daemon]` keys whose own line parses, when even the table does not: a typo on one
/// line must not hide `state_dir` on the next. A line of [`LOCATION_KEYS`] that does not
/// parse keeps its key, with a value [`location`] refuses: the location is then unknown, not
/// the default.
fn daemon_lines(text: &str) -> toml::Table {
    let mut daemon = toml::Table::new();
    for line in daemon_section(text).lines().skip(1) {
        match toml::from_str::<toml::Table>(line) {
            Ok(t) => daemon.extend(t),
            Err(_) => {
                if let Some(key) = LOCATION_KEYS.iter().find(|k| line_key(line) == Some(**k)) {
                    daemon.insert((*key).into(), toml::Value::Boolean(false));
                }
            }
        }
    }
    let mut root = toml::Table::new();
    root.insert("daemon".into(), toml::Value::Table(daemon));
    root
}

/// The `[daemon]` keys that say where the daemon is.
const LOCATION_KEYS: [&str; 2] = ["instance", "state_dir"];

/// The key a `key = value` line sets, bare or quoted, whatever follows the `=`.
fn line_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key);
    Some(key.trim())
}

/// The table a header line opens (`[daemon]`, `[ daemon ]  # x`, `[[job]]` → `job`), if the
/// line is one: the name between the brackets, spaces and a trailing comment ignored.
fn table_header(line: &str) -> Option<String> {
    let t = line.trim_start();
    let rest = t.strip_prefix('[')?;
    let (array, rest) = match rest.strip_prefix('[') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let close = if array { "]]" } else { "]" };
    let end = rest.find(close)?;
    let after = rest[end + close.len()..].trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let name = rest[..end].trim();
    Some(name.trim_matches('"').to_string())
}

/// The lines of the `[daemon]` table alone (from its header to the next table header).
fn daemon_section(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(header) = table_header(line) {
            inside = header == "daemon";
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_table_is_found_however_its_header_is_written() {
        for header in [
            "[daemon]",
            "[daemon]  # settings",
            "[ daemon ]",
            "  [\"daemon\"]",
        ] {
            let text = format!(
                "{header}\ninstance = \"u2\"\nstate_dir = \"/st\"\n\n[[job]]\nname = \"a\"\nevery = \"5x\n"
            );
            let section = daemon_section(&text);
            assert!(section.contains("u2"), "{header}: {section:?}");
            assert!(!section.contains("[[job]]"), "{header}: {section:?}");
        }
        assert_eq!(table_header("[[job]] # x").as_deref(), Some("job"));
        assert_eq!(table_header("x = [1]"), None);
    }

    /// A typo in the lines that say where the daemon is leaves it unknown, never the
    /// default instance or state dir; a typo elsewhere does not hide them.
    #[test]
    fn a_location_line_nothing_can_use_leaves_the_location_unknown() {
        let base = Path::new("/etc");
        let at = |daemon: &str| {
            let text = format!("[daemon]\n{daemon}\nstop_grace = 5x\n\n[[job]]\nname = \"a\"\n");
            location(&daemon_table(&text), base)
        };
        assert_eq!(
            at("instance = \"shop\"\nstate_dir = \"st\""),
            Some(("shop".into(), Some(PathBuf::from("/etc/st"))))
        );
        assert_eq!(
            at("state_dir = \"/st\""),
            Some(("system".into(), Some("/st".into())))
        );
        assert_eq!(at("instance = \"shop\""), Some(("shop".into(), None)));
        for garbled in [
            "instance = \"shop floor\"",
            "instance = \"\"",
            "instance = 5",
            "instance = \"shop",
            "\"instance\" = shop",
            "instance = \"shop\"\nstate_dir = \"/st",
            "instance = \"shop\"\nstate_dir = \"\"",
            "instance = \"shop\"\nstate_dir = 7",
        ] {
            assert_eq!(at(garbled), None, "{garbled}");
        }
    }
}
