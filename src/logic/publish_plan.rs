//! What publishing a run's log means, decided without touching a file: the folder names under
//! `publish_dir` (`<instance>/<job>/<run_id>/`), which files of a run are published, the URLs
//! the check text carries, which old runs retention removes, and the `latest` page. The
//! copying itself is [`crate::service::publish`]'s.
//!
//! Names are checked here once more although the config checked instance and job: a name that
//! is a path (`..`, a separator) or hidden (`.x`, where the publisher keeps its temporary
//! folders) would let one job's files land in another's folder or outside `publish_dir`.
//!
//! URLs end where Checkmk's link detection ends them: its GUI turns `http[s]://` followed by
//! anything but whitespace, quotes, `>` and `,` into a link icon (`format_plugin_output` in
//! `cmk/gui/view_utils.py`). So a URL carries none of those, and the check text puts a space
//! or the end of the line after it (a `;` or a literal `\n` would become part of the link).

use std::path::{Path, PathBuf};

/// Longest folder name accepted.
const MAX_COMPONENT: usize = 128;

/// The prefix of the publisher's temporary folders (never a valid name, see [`check_component`]).
pub(crate) const TEMP_PREFIX: &str = ".tmp-";
/// The page that sends a browser to the job's newest log.
pub(crate) const LATEST_PAGE: &str = "latest.html";
/// The link to the job's newest run folder (Unix).
pub(crate) const LATEST_LINK: &str = "latest";

/// A folder name under `publish_dir`: an instance, a job, or a run id.
pub(crate) fn check_component(name: &str) -> Result<(), NameError> {
    let bad = |why| {
        Err(NameError {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() || name.len() > MAX_COMPONENT {
        return bad(BadName::Length);
    }
    if name.starts_with('.') {
        return bad(BadName::Dot);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return bad(BadName::Char(c));
    }
    if name == LATEST_PAGE || name == LATEST_LINK {
        return bad(BadName::Latest);
    }
    Ok(())
}

/// A name that cannot be a folder below `publish_dir`.
#[derive(Debug, thiserror::Error)]
#[error("{name:?} {why}")]
pub(crate) struct NameError {
    name: String,
    why: BadName,
}

/// What is wrong with a [`NameError`]'s name.
#[derive(Debug, thiserror::Error)]
enum BadName {
    #[error("is not a usable folder name (1 to {MAX_COMPONENT} characters)")]
    Length,
    #[error("starts with a dot")]
    Dot,
    #[error("contains {0:?}")]
    Char(char),
    #[error("is the name of the job's latest entry")]
    Latest,
}

/// A run that cannot be published: which of its names is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{what} name {source}; not published")]
pub(crate) struct TargetError {
    what: &'static str,
    #[source]
    source: NameError,
}

/// A `publish_url` Checkmk could not link to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UrlError {
    #[error("{0:?} must start with http:// or https://")]
    Scheme(String),
    #[error("{0:?} names no host")]
    NoHost(String),
    #[error("{0:?} contains {1:?}, which Checkmk would not take as part of a link (or which cannot precede a file name)")]
    Char(String, char),
    #[error("is longer than 512 characters")]
    TooLong,
}

/// Where one run is published: `publish_dir/<instance>/<job>/<run_id>` and its URL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    /// `publish_dir/<instance>/<job>`.
    pub(crate) job_dir: PathBuf,
    pub(crate) run_id: String,
    /// `publish_url/<instance>/<job>/<run_id>/` (with the trailing slash).
    pub(crate) url: String,
}

impl Target {
    /// The target of a run, if every name is usable.
    pub(crate) fn new(
        publish_dir: &Path,
        publish_url: &str,
        instance: &str,
        job: &str,
        run_id: &str,
    ) -> Result<Target, TargetError> {
        for (what, name) in [("instance", instance), ("job", job), ("run id", run_id)] {
            check_component(name).map_err(|source| TargetError { what, source })?;
        }
        // The names are unreserved URL characters: no encoding needed.
        Ok(Target {
            job_dir: publish_dir.join(instance).join(job),
            run_id: run_id.to_string(),
            url: format!(
                "{}/{instance}/{job}/{run_id}/",
                publish_url.trim_end_matches('/')
            ),
        })
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.job_dir.join(&self.run_id)
    }

    /// The URL of a published file (a relative path with `/` separators).
    pub(crate) fn file_url(&self, rel: &str) -> String {
        format!("{}{rel}", self.url)
    }
}

/// A test's place in robot's log: `log.html#s1-s2-t3` (robot's log opens that test).
pub(crate) fn test_url(log_url: &str, test_id: &str) -> Option<String> {
    let valid = test_id.starts_with('s')
        && test_id.len() <= 200
        && test_id
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, 's' | 't' | '-'));
    valid.then(|| format!("{log_url}#{test_id}"))
}

/// `publish_url` as the config gives it, checked: `http://` or `https://`, and nothing that
/// would end Checkmk's link early or break the check line. Returned without a trailing `/`.
pub(crate) fn check_publish_url(url: &str) -> Result<String, UrlError> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| UrlError::Scheme(url.to_string()))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(UrlError::NoHost(url.to_string()));
    }
    if let Some(c) = url.chars().find(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '"' | '\'' | '>' | '<' | ',' | '\\' | '|' | '#' | '?' | ';'
            )
    }) {
        return Err(UrlError::Char(url.to_string(), c));
    }
    if url.len() > 512 {
        return Err(UrlError::TooLong);
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// What a file of a run is, for publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// log.html, report.html.
    Page,
    /// A screenshot or other image a library left for the log to show.
    Image,
}

/// Image extensions published (SVG is left out: it may carry script).
const IMAGES: &[&str] = &["png", "jpg", "jpeg", "gif", "webp"];

/// Whether a file at `rel` (relative to the folder robot wrote its log in, `/`-separated) is
/// published: log.html and report.html, images beside them (SeleniumLibrary's
/// `selenium-screenshot-N.png`, `Capture Page Screenshot`'s own names), and images in
/// Browser library's `browser/screenshot/`.
pub(crate) fn wanted(rel: &str) -> Option<FileKind> {
    let parts: Vec<&str> = rel.split('/').collect();
    let name = *parts.last()?;
    if check_component(name).is_err() {
        return None;
    }
    let image = name
        .rsplit_once('.')
        .is_some_and(|(_, ext)| IMAGES.contains(&ext.to_ascii_lowercase().as_str()));
    match parts.as_slice() {
        ["log.html"] | ["report.html"] => Some(FileKind::Page),
        [_] if image => Some(FileKind::Image),
        ["browser", "screenshot", _] if image => Some(FileKind::Image),
        _ => None,
    }
}

/// The subfolders of a log's folder whose images are published (see [`wanted`]).
pub(crate) const IMAGE_DIRS: &[&str] = &["browser/screenshot"];

/// Bounds on one run's published files.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Caps {
    /// One page (log.html, report.html) at most, by its size.
    pub(crate) page: u64,
    /// One image at most, by its size.
    pub(crate) image: u64,
    /// All files of a run together, by the bytes written: a hole is none, and a file with
    /// several names counts once.
    pub(crate) total: u64,
    /// Files of a run.
    pub(crate) files: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            page: 100 * 1024 * 1024,
            image: 20 * 1024 * 1024,
            total: 500 * 1024 * 1024,
            files: 1000,
        }
    }
}

impl Caps {
    pub(crate) fn of(&self, kind: FileKind) -> u64 {
        match kind {
            FileKind::Page => self.page,
            FileKind::Image => self.image,
        }
    }
}

/// Sort key of a run id: (due part, sequence number), as `state::record` orders runs.
fn run_key(id: &str) -> (&str, u64) {
    match id.rsplit_once('-') {
        Some((due, n)) => (due, n.parse().unwrap_or(0)),
        None => (id, 0),
    }
}

/// Of the published run folders `names` (other entries ignored), those retention removes:
/// all but the newest `keep`.
pub(crate) fn to_remove(names: &[String], keep: usize) -> Vec<String> {
    let mut runs: Vec<&String> = names
        .iter()
        .filter(|n| check_component(n).is_ok())
        .collect();
    runs.sort_by(|a, b| run_key(b).cmp(&run_key(a)));
    runs.into_iter().skip(keep).cloned().collect()
}

/// The newest of the published run folders `names` (the tests' check of retention).
#[cfg(test)]
pub(crate) fn newest(names: &[String]) -> Option<&String> {
    names
        .iter()
        .filter(|n| check_component(n).is_ok())
        .max_by(|a, b| run_key(a).cmp(&run_key(b)))
}

/// The `latest.html` page: sends a browser on to the newest run's log.
pub(crate) fn latest_page(run_id: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0; url={run_id}/log.html\"><title>latest run</title></head>\n<body><a href=\"{run_id}/log.html\">{run_id}</a></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_paths_or_hidden_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            ".tmp-x",
            "a/b",
            "a\\b",
            "a b",
            "x\0",
            "latest",
            "latest.html",
            "ä",
        ] {
            assert!(check_component(bad).is_err(), "{bad:?}");
        }
        for good in ["web-login", "a.b_c", "20261127T101500Z-1", "system"] {
            assert!(check_component(good).is_ok(), "{good:?}");
        }
        assert!(Target::new(Path::new("/p"), "http://h", "i", "..", "r-1").is_err());
        let t = Target::new(
            Path::new("/p"),
            "https://h/x/",
            "sys",
            "web",
            "20260101T000000Z-1",
        )
        .unwrap();
        assert_eq!(t.run_dir(), Path::new("/p/sys/web/20260101T000000Z-1"));
        assert_eq!(
            t.file_url("log.html"),
            "https://h/x/sys/web/20260101T000000Z-1/log.html"
        );
    }

    #[test]
    fn urls_carry_nothing_that_ends_a_checkmk_link() {
        assert_eq!(
            check_publish_url("https://mon.example.com/robot/").unwrap(),
            "https://mon.example.com/robot"
        );
        assert_eq!(
            check_publish_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "ftp://x",
            "/robot",
            "https://",
            "https:///x",
            "https://a b",
            "https://a,b",
            "https://a/'x",
            "https://a/\"x",
            "https://a/x?y",
            "https://a/#x",
            "https://a/x;y",
            "https://a/x\\n",
        ] {
            assert!(check_publish_url(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            test_url("http://h/log.html", "s1-s2-t3").unwrap(),
            "http://h/log.html#s1-s2-t3"
        );
        assert!(test_url("http://h/log.html", "s1 x").is_none());
        assert!(test_url("http://h/log.html", "t1").is_none());
    }

    #[test]
    fn pages_and_screenshots_are_wanted_nothing_else() {
        assert_eq!(wanted("log.html"), Some(FileKind::Page));
        assert_eq!(wanted("report.html"), Some(FileKind::Page));
        assert_eq!(wanted("selenium-screenshot-1.png"), Some(FileKind::Image));
        assert_eq!(wanted("shot.JPG"), Some(FileKind::Image));
        assert_eq!(
            wanted("browser/screenshot/fail-1.png"),
            Some(FileKind::Image)
        );
        for no in [
            "output.xml",
            "stdout.log",
            "robotmk-variables.args",
            "x.svg",
            ".hidden.png",
            "sub/x.png",
            "browser/other/x.png",
            "../x.png",
            "tmp/log.html",
        ] {
            assert_eq!(wanted(no), None, "{no}");
        }
    }

    #[test]
    fn retention_keeps_the_newest_runs() {
        let names: Vec<String> = [
            "20260101T000000Z-2",
            "20260101T000000Z-10",
            "20251231T235900Z-1",
            "latest",
            ".tmp-x",
            "20260102T000000Z-1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            to_remove(&names, 2),
            vec!["20260101T000000Z-2", "20251231T235900Z-1"]
        );
        assert_eq!(newest(&names).unwrap(), "20260102T000000Z-1");
        assert!(to_remove(&names, 10).is_empty());
    }
}
