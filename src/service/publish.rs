//! Publishing a finished run's log for people in front of Checkmk: its `log.html`,
//! `report.html` and the screenshots beside them are copied into
//! `publish_dir/<instance>/<job>/<run_id>/`, which the admin's own web server serves, and the
//! record gets the URL of the log (and of each failed test's place in it), which the check
//! text carries and Checkmk shows as a link. What is published, and the names and URLs, are
//! decided in [`crate::logic::publish_plan`]; this module does the I/O.
//!
//! The run's folder is untrusted (a `user` job's folder is that user's): every file is opened
//! through the run's [`RunFolder`] (relative to the folder, no link followed at any step, a
//! regular file, the folder owner's), folders are listed the same way (reached from the
//! folder's handle, read from the handle reached: a link swapped in is never entered), and
//! sizes are capped per file and per run ([`Caps`]). The copies are new files, `0644` in
//! `0755` folders, made in a hidden temporary folder and renamed into place whole, so a web
//! server never serves half a run. They cost the daemon's disk no more than the run's files
//! cost their owner: a sparse file stays sparse, and the names of one file are hard links to
//! one copy. `publish_dir` is checked like the state dir (root's or the daemon's, not
//! writable by others); only the daemon writes below it.
//!
//! A failure here never costs the run: the caller notes it on the record.

use crate::logic::publish_plan::{
    self, Caps, Target, IMAGE_DIRS, LATEST_LINK, LATEST_PAGE, TEMP_PREFIX,
};
use crate::logic::robot::RunFolder;
use crate::model::record::RunRecord;
use crate::service::sys::copy::{self, FirstCopies};
use crate::service::sys::public;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where and how runs are published (`[daemon] publish_dir`, `publish_url`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) dir: PathBuf,
    /// Without a trailing `/` (see [`publish_plan::check_publish_url`]).
    pub(crate) url: String,
    pub(crate) instance: String,
    /// Published runs kept per job (the daemon's `keep_runs`).
    pub(crate) keep: usize,
    pub(crate) caps: Caps,
}

/// Why a run was not (completely) published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("cannot publish to {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Name(#[from] publish_plan::TargetError),
    #[error("{0}")]
    Untrusted(#[from] crate::service::sys::trust::TrustError),
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What publishing a run did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    /// Files left out, and why (too large, refused).
    pub(crate) skipped: Vec<String>,
}

/// Publishes the run of `rec` (its log must be named in the record), sets `rec.log_url` and
/// the URL of each failed test, and applies retention to the job's published runs.
pub(crate) fn publish(
    s: &Settings,
    rec: &mut RunRecord,
    folder: &dyn RunFolder,
) -> Result<Outcome, PublishError> {
    let Some(log) = rec.log.clone() else {
        return Ok(Outcome::default());
    };
    let target = Target::new(&s.dir, &s.url, &s.instance, &rec.job, &rec.run_id)?;
    crate::service::sys::check_path_trust(&s.dir, "publish_dir", true)?;
    ensure_dir(&s.dir, true)?;
    ensure_dir(&s.dir.join(&s.instance), false)?;
    ensure_dir(&target.job_dir, false)?;
    let log_dir = log
        .parent()
        .ok_or_else(|| PublishError::Refused(format!("{} has no folder", log.display())))?;
    let files = list(folder, log_dir, s.caps.files)?;
    let tmp = target.job_dir.join(format!("{TEMP_PREFIX}{}", rec.run_id));
    remove(&tmp);
    public::create_dir(&tmp).map_err(at(&tmp))?;
    let copied = copy_all(s, folder, log_dir, &files, &tmp);
    let out = match copied {
        Ok(out) => out,
        Err(e) => {
            remove(&tmp);
            return Err(e);
        }
    };
    let dest = target.run_dir();
    if let Err(e) = std::fs::rename(&tmp, &dest) {
        remove(&tmp);
        return Err(at(&dest)(e));
    }
    if !dest.join("log.html").exists() {
        return Err(PublishError::Refused(format!(
            "{} was not published ({})",
            log.display(),
            out.skipped.join("; ")
        )));
    }
    let log_url = target.file_url("log.html");
    if let Some(t) = &mut rec.tests {
        for r in t
            .results
            .iter_mut()
            .filter(|r| r.status == crate::model::record::TestStatus::Fail)
        {
            r.url =
                r.id.as_deref()
                    .and_then(|id| publish_plan::test_url(&log_url, id));
        }
    }
    rec.log_url = Some(log_url);
    latest(&target)?;
    retain(&target.job_dir, s.keep);
    Ok(out)
}

/// Makes `dir` if it is missing; refuses a link or a non-folder in its place (only the daemon
/// writes below `publish_dir`, so a link there is someone else's doing). `top`: the admin's
/// `publish_dir` itself, created with its parents.
fn ensure_dir(dir: &Path, top: bool) -> Result<(), PublishError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(PublishError::Refused(format!(
            "{} is not a folder (a link or a file); not published there",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if top {
                if let Some(p) = dir.parent() {
                    std::fs::create_dir_all(p).map_err(at(p))?;
                }
            }
            match public::create_dir(dir) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => ensure_dir(dir, false),
                r => r.map_err(at(dir)),
            }
        }
        Err(e) => Err(at(dir)(e)),
    }
}

/// The files to publish in `log_dir`, relative, `/`-separated: those [`publish_plan::wanted`]
/// names, at most `max`. Each folder is reached through `folder` (relative to the run
/// folder's handle, no link followed at any step) and listed from the handle that reached
/// it: a folder the job's user swaps for a link meanwhile is not entered.
fn list(folder: &dyn RunFolder, log_dir: &Path, max: usize) -> Result<Vec<String>, PublishError> {
    let mut out = Vec::new();
    let mut dirs: Vec<String> = vec![String::new()];
    dirs.extend(IMAGE_DIRS.iter().map(|d| d.to_string()));
    for rel in dirs {
        let entries = match folder.list(log_dir, Path::new(&rel)) {
            Ok(e) => e,
            Err(e) if rel.is_empty() => return Err(at(log_dir)(e)),
            Err(_) => continue,
        };
        let mut names: Vec<String> = entries
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .map(|n| {
                if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                }
            })
            .filter(|n| publish_plan::wanted(n).is_some())
            .collect();
        names.sort();
        out.extend(names);
    }
    // The pages first: a run with too many screenshots still gets its log.
    out.sort_by_key(|n| publish_plan::wanted(n) != Some(publish_plan::FileKind::Page));
    out.truncate(max);
    Ok(out)
}

/// Copies `files` from `log_dir` (through `folder`) into `tmp`, within the caps. What lands
/// there is the daemon's disk (root's, charged to no quota), so it costs no more than the
/// run's files cost their owner: holes stay holes, and the names of one file are links to
/// one copy (see [`crate::service::sys::copy`]). The per-file caps hold for each name's size
/// (what a browser fetches); the run's cap for the bytes written, once per file.
fn copy_all(
    s: &Settings,
    folder: &dyn RunFolder,
    log_dir: &Path,
    files: &[String],
    tmp: &Path,
) -> Result<Outcome, PublishError> {
    let mut out = Outcome::default();
    let mut copies = FirstCopies::default();
    for rel in files {
        let Some(kind) = publish_plan::wanted(rel) else {
            continue;
        };
        let cap = s.caps.of(kind);
        let src_path = rel.split('/').fold(log_dir.to_path_buf(), |p, n| p.join(n));
        let src = match folder.open(&src_path) {
            Ok(f) => f,
            Err(e) => {
                out.skipped.push(format!("{rel}: {e}"));
                continue;
            }
        };
        let len = src.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if len > cap {
            out.skipped
                .push(format!("{rel}: {len} bytes, over the cap of {cap}"));
            continue;
        }
        // From the handle that was opened and checked: the file, not a name swapped since.
        // Not known (fstat failed): copied as a file of its own, counted in full.
        let inode = copy::shared_inode(&src).unwrap_or(None);
        let mut dest = tmp.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for dir in &parts[..parts.len() - 1] {
            dest.push(dir);
            if !dest.is_dir() {
                public::create_dir(&dest).map_err(at(&dest))?;
            }
        }
        dest.push(parts[parts.len() - 1]);
        // Another name of a file copied for this run: the same inode, so the same content,
        // and its copy is the daemon's `0644` file in this hidden folder. Where no more names
        // are taken, a copy of its own (which later names link to).
        if let Some(first) = copies.get(inode) {
            if std::fs::hard_link(first, &dest).is_ok() {
                out.files += 1;
                continue;
            }
        }
        let left = s.caps.total.saturating_sub(out.bytes);
        let mut file = public::create_file(&dest).map_err(at(&dest))?;
        // Cut at the size checked above if it grows meanwhile: the per-file cap holds.
        let copied = copy::copy_with_holes(&src, &mut file, len, left).map_err(at(&dest))?;
        drop(file);
        let Some(copied) = copied else {
            let _ = std::fs::remove_file(&dest);
            out.skipped.push(format!(
                "{rel}: over the run's cap of {} bytes",
                s.caps.total
            ));
            continue;
        };
        copies.insert(inode, dest);
        out.files += 1;
        out.bytes += copied;
    }
    Ok(out)
}

/// Points the job's `latest.html` (and on Unix its `latest` link) at the run just published.
fn latest(target: &Target) -> Result<(), PublishError> {
    let page = target.job_dir.join(LATEST_PAGE);
    let tmp = target.job_dir.join(format!("{TEMP_PREFIX}{LATEST_PAGE}"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = public::create_file(&tmp).map_err(at(&tmp))?;
    f.write_all(publish_plan::latest_page(&target.run_id).as_bytes())
        .map_err(at(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &page).map_err(at(&page))?;
    let link = target.job_dir.join(LATEST_LINK);
    let tmp = target.job_dir.join(format!("{TEMP_PREFIX}{LATEST_LINK}"));
    public::replace_link(&target.run_id, &link, &tmp).map_err(at(&link))
}

/// Removes the job's published runs beyond the newest `keep`; a failure is logged (the next
/// run tries again).
fn retain(job_dir: &Path, keep: usize) {
    let names: Vec<String> = match std::fs::read_dir(job_dir) {
        Ok(e) => e
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list {}: {e}", job_dir.display());
            return;
        }
    };
    for old in publish_plan::to_remove(&names, keep) {
        remove(&job_dir.join(old));
    }
}

/// Removes a tree the daemon made below `publish_dir` (no link followed, no recursion).
fn remove(path: &Path) {
    use crate::service::sys::tree::{remove_tree_fully, Rights};
    if let Err(e) = remove_tree_fully(path, Rights::Daemon, Duration::from_secs(10)) {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::{symlink, PermissionsExt};

    struct Plain(PathBuf);
    impl RunFolder for Plain {
        fn path(&self) -> &Path {
            &self.0
        }
        fn open(&self, path: &Path) -> io::Result<File> {
            let rel = path
                .strip_prefix(&self.0)
                .map_err(|_| io::Error::other("outside"))?;
            crate::service::sys::open_beneath(&self.0, rel)
        }
        fn open_log(&self, path: &Path) -> io::Result<File> {
            File::open(path)
        }
        fn list(&self, dir: &Path, rel: &Path) -> io::Result<Vec<std::ffi::OsString>> {
            let top = dir
                .strip_prefix(&self.0)
                .map_err(|_| io::Error::other("outside"))?;
            let entries = crate::service::sys::Beneath::open(&self.0)?.entries(&top.join(rel))?;
            Ok(entries.into_iter().map(|e| e.name).collect())
        }
    }

    fn settings(dir: &Path) -> Settings {
        Settings {
            dir: dir.join("pub"),
            url: "http://h/robot".into(),
            instance: "sys".into(),
            keep: 2,
            caps: Caps {
                page: 1000,
                image: 100,
                total: 1150,
                files: 10,
            },
        }
    }

    fn record(run: &Path, id: &str) -> RunRecord {
        let mut r = RunRecord::journal(
            "web",
            id.into(),
            run.to_path_buf(),
            chrono::Utc::now(),
            crate::model::record::Trigger::Schedule,
            60.0,
        );
        r.log = Some(run.join("log.html"));
        r
    }

    #[test]
    fn pages_and_screenshots_are_copied_links_and_oversized_files_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir_all(run.join("browser/screenshot")).unwrap();
        std::fs::write(run.join("log.html"), "<html>log</html>").unwrap();
        std::fs::write(run.join("report.html"), "report").unwrap();
        std::fs::write(run.join("output.xml"), "<robot/>").unwrap();
        std::fs::write(run.join("selenium-screenshot-1.png"), "png").unwrap();
        std::fs::write(run.join("big.png"), vec![0u8; 200]).unwrap();
        std::fs::write(run.join("browser/screenshot/b.png"), "png2").unwrap();
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        symlink(tmp.path().join("secret"), run.join("evil.png")).unwrap();
        let s = settings(tmp.path());
        let mut rec = record(&run, "20260101T000000Z-1");
        let out = publish(&s, &mut rec, &Plain(run.clone())).unwrap();
        let dest = s.dir.join("sys/web/20260101T000000Z-1");
        assert_eq!(
            std::fs::read_to_string(dest.join("log.html")).unwrap(),
            "<html>log</html>"
        );
        assert!(dest.join("report.html").is_file());
        assert!(dest.join("selenium-screenshot-1.png").is_file());
        assert!(dest.join("browser/screenshot/b.png").is_file());
        assert!(!dest.join("output.xml").exists());
        assert!(!dest.join("big.png").exists());
        assert!(!dest.join("evil.png").exists());
        assert_eq!(out.files, 4, "{out:?}");
        assert_eq!(out.skipped.len(), 2, "{out:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dest.join("log.html")), 0o644);
        assert_eq!(mode(&dest), 0o755);
        assert_eq!(
            rec.log_url.as_deref(),
            Some("http://h/robot/sys/web/20260101T000000Z-1/log.html")
        );
        let latest = s.dir.join("sys/web/latest");
        assert_eq!(
            std::fs::read_link(&latest).unwrap(),
            Path::new("20260101T000000Z-1")
        );
        assert!(std::fs::read_to_string(s.dir.join("sys/web/latest.html"))
            .unwrap()
            .contains("20260101T000000Z-1/log.html"));
        // Retention: two kept.
        for id in ["20260101T000000Z-2", "20260101T000000Z-3"] {
            let mut rec = record(&run, id);
            publish(&s, &mut rec, &Plain(run.clone())).unwrap();
        }
        let mut left: Vec<String> = std::fs::read_dir(s.dir.join("sys/web"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "20260101T000000Z-2",
                "20260101T000000Z-3",
                "latest",
                "latest.html"
            ]
        );
    }

    /// The run's cap counts what is written, once per inode: two names of one 600-byte page
    /// are 600 bytes, a sparse 90-byte image none; a dense 100-byte image, which would pass
    /// the cap of 650, is left out (not written in part).
    #[test]
    fn the_runs_cap_counts_bytes_written_once_per_inode() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("log.html"), vec![b'l'; 600]).unwrap();
        std::fs::hard_link(run.join("log.html"), run.join("report.html")).unwrap();
        File::create(run.join("a.png"))
            .unwrap()
            .set_len(90)
            .unwrap();
        std::fs::write(run.join("b.png"), vec![b'b'; 100]).unwrap();
        let mut s = settings(tmp.path());
        s.caps.total = 650;
        let mut rec = record(&run, "20260101T000000Z-1");
        let out = publish(&s, &mut rec, &Plain(run.clone())).unwrap();
        let dest = s.dir.join("sys/web/20260101T000000Z-1");
        let m = |n: &str| std::fs::metadata(dest.join(n)).unwrap();
        assert_eq!(m("log.html").ino(), m("report.html").ino());
        assert_eq!(m("log.html").nlink(), 2);
        assert_eq!(m("report.html").mode() & 0o777, 0o644);
        assert_eq!(m("a.png").len(), 90);
        assert!(!dest.join("b.png").exists(), "{out:?}");
        assert_eq!((out.files, out.bytes), (3, 600), "{out:?}");
        assert_eq!(out.skipped.len(), 1, "{out:?}");
        assert!(
            out.skipped[0].starts_with("b.png: over the run's cap"),
            "{out:?}"
        );
    }

    #[test]
    fn a_link_in_the_published_tree_or_a_bad_name_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("log.html"), "log").unwrap();
        let s = settings(tmp.path());
        std::fs::create_dir_all(&s.dir).unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        symlink(&elsewhere, s.dir.join("sys")).unwrap();
        let mut rec = record(&run, "20260101T000000Z-1");
        let e = publish(&s, &mut rec, &Plain(run.clone())).unwrap_err();
        assert!(e.to_string().contains("not a folder"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(rec.log_url.is_none());
        let mut rec = record(&run, "../x");
        assert!(publish(&s, &mut rec, &Plain(run)).is_err());
    }

    /// A job's user swaps `browser/screenshot` with a link to a folder they cannot read
    /// (renameat2 RENAME_EXCHANGE in a loop, as a leftover process of theirs can) while
    /// the run is listed: no name from that folder is ever listed.
    #[test]
    fn a_folder_swapped_for_a_link_while_listed_is_not_listed() {
        use rustix::fs::{renameat_with, RenameFlags};
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir_all(run.join("browser/screenshot")).unwrap();
        std::fs::write(run.join("log.html"), "log").unwrap();
        std::fs::write(run.join("browser/screenshot/mine.png"), "png").unwrap();
        let secret = tmp.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("root-only-secret.png"), "s").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
        symlink(&secret, run.join("browser/x")).unwrap();
        let browser = File::open(run.join("browser")).unwrap();
        let stop = AtomicBool::new(false);
        let (mut listed, mut mine) = (0u32, 0u32);
        std::thread::scope(|t| {
            t.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _ =
                        renameat_with(&browser, "screenshot", &browser, "x", RenameFlags::EXCHANGE);
                }
            });
            let end = std::time::Instant::now() + Duration::from_secs(2);
            let folder = Plain(run.clone());
            while std::time::Instant::now() < end || listed < 1000 {
                let names = list(&folder, &run, 100).unwrap();
                listed += 1;
                mine += u32::from(names.iter().any(|n| n == "browser/screenshot/mine.png"));
                if names.iter().any(|n| n.contains("secret")) {
                    stop.store(true, Ordering::Relaxed);
                    panic!("listed {names:?} after {listed} listings: a link was followed");
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        // The swap did race the listings: some saw the real folder.
        assert!(mine > 0, "{listed} listings, none with the real folder");
    }
}
