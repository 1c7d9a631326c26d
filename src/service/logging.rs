//! The daemon's log: one file in the state dir, written only by the daemon, rotated by size
//! (`daemon.log` → `daemon.log.1` → … → `daemon.log.3`). No other process writes it, so the
//! rotation needs no cross-process coordination.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tracing_subscriber::fmt::MakeWriter;

/// Rotated log files kept besides the current one.
const KEEP: usize = 3;

/// A size-rotated log file, optionally mirrored to stderr (`start --foreground`).
pub(crate) struct RotatingLog {
    inner: Mutex<Inner>,
}

struct Inner {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
    mirror_stderr: bool,
}

impl RotatingLog {
    pub(crate) fn open(
        path: &Path,
        max_bytes: u64,
        mirror_stderr: bool,
    ) -> io::Result<RotatingLog> {
        let file = crate::service::state::open_append(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open log {}: {e}", path.display()))
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingLog {
            inner: Mutex::new(Inner {
                path: path.to_path_buf(),
                max_bytes,
                file: Some(file),
                size,
                mirror_stderr,
            }),
        })
    }
}

impl Inner {
    /// Whether the log's folder is still one only root can change (see `security`).
    fn folder_trusted(&self) -> bool {
        self.path
            .parent()
            .is_some_and(|d| crate::service::security::check_state_dir(d).is_ok())
    }

    fn rotate(&mut self) {
        self.file = None;
        for i in (1..KEEP).rev() {
            let _ = fs::rename(numbered(&self.path, i), numbered(&self.path, i + 1));
        }
        let _ = fs::rename(&self.path, numbered(&self.path, 1));
        self.file = crate::service::state::open_append(&self.path).ok();
        self.size = 0;
    }

    fn write_line(&mut self, buf: &[u8]) {
        if self.mirror_stderr {
            let _ = io::stderr().write_all(buf);
        }
        // Every step below that makes a file by name checks the folder first (rare: a
        // rotation, a log moved away), see the next comment.
        if self.size + buf.len() as u64 > self.max_bytes && self.size > 0 && self.folder_trusted() {
            self.rotate();
        }
        if self
            .file
            .as_ref()
            .is_some_and(|f| !crate::service::sys::same_file(f, &self.path))
            && self.folder_trusted()
        {
            // Deleted or moved away under us (the state dir removed by hand): write where an
            // admin looks, not into an unlinked file. Not when the folder there now is one
            // another user can change (the state dir moved away and one of theirs put in its
            // place): root makes no file in it; the lines go on into the old file until the
            // daemon's own trust check ends it (a test of tests/security.rs met this).
            self.file = None;
        }
        if self.file.is_none() && self.folder_trusted() {
            // A reopen after rotation failed (a full disk, say): try again with every line,
            // or the log would stay silent for good.
            self.file = crate::service::state::open_append(&self.path).ok();
            self.size = self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len());
        }
        if let Some(f) = self.file.as_mut() {
            // A full disk must not take the daemon down; the state error is reported through
            // status.json by the code that failed to write its records.
            if f.write_all(buf).is_ok() {
                self.size += buf.len() as u64;
            }
        }
    }
}

fn numbered(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// One formatted event; written to the file in one piece when dropped.
pub(crate) struct LogLine<'a> {
    log: &'a RotatingLog,
    buf: Vec<u8>,
}

impl Write for LogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let mut inner = self.log.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.write_line(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for RotatingLog {
    type Writer = LogLine<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        LogLine {
            log: self,
            buf: Vec::with_capacity(256),
        }
    }
}

/// Installs the global logger writing to `log`. Level from `ROBOTMK_DAEMON_LOG`
/// (`error`, `warn`, `info` (default), `debug`, `trace`).
pub(crate) fn init(log: RotatingLog) {
    let level = std::env::var("ROBOTMK_DAEMON_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_writer(log)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .try_init();
}

/// Appends one line to a log file without rotating it: for a daemon that lost the race for
/// the instance lock and must not touch the winner's rotation.
pub(crate) fn append_once(path: &Path, line: &str) {
    if let Ok(mut f) = crate::service::state::open_append(path) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let _ = writeln!(f, "{now}  INFO {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reopen_after_rotation_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.log");
        let log = RotatingLog::open(&p, 1000, false).unwrap();
        // As after a rotation whose reopen failed (a full disk): no file.
        log.inner.lock().unwrap().file = None;
        writeln!(log.make_writer(), "after the failure").unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("after the failure"), "{text:?}");
    }

    /// The state dir moved away and a folder others may write put in its place: the log makes
    /// no file there (root would create it in a folder another user controls) and goes on in
    /// the file it has, rotation included, until the daemon's own trust check ends it.
    #[cfg(unix)]
    #[test]
    fn no_log_file_is_made_in_a_folder_others_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        let p = state.join("daemon.log");
        let log = RotatingLog::open(&p, 200, false).unwrap();
        writeln!(log.make_writer(), "before").unwrap();
        fs::rename(&state, dir.path().join("old")).unwrap();
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
        for i in 0..20 {
            writeln!(log.make_writer(), "after the move {i:02}").unwrap();
        }
        assert!(!p.exists(), "a log file was made in the untrusted folder");
        assert!(!numbered(&p, 1).exists());
        let old = fs::read_to_string(dir.path().join("old/daemon.log")).unwrap();
        assert!(old.contains("after the move 19"), "{old:?}");
        // Trusted again (the admin fixed it): the log goes where the admin looks.
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        writeln!(log.make_writer(), "fixed").unwrap();
        assert!(fs::read_to_string(&p).unwrap().contains("fixed"));
    }

    #[test]
    fn rotates_by_size_and_keeps_three() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.log");
        let log = RotatingLog::open(&p, 100, false).unwrap();
        for i in 0..50 {
            let mut w = log.make_writer();
            writeln!(w, "line number {i:04} padding").unwrap();
        }
        assert!(fs::metadata(&p).unwrap().len() <= 100);
        assert!(numbered(&p, 3).exists());
        assert!(!numbered(&p, 4).exists());
        let last = fs::read_to_string(&p).unwrap();
        assert!(last.contains("line number 0049"));
    }
}
