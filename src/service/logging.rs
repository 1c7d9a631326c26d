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
        if self.size + buf.len() as u64 > self.max_bytes && self.size > 0 {
            self.rotate();
        }
        if self
            .file
            .as_ref()
            .is_some_and(|f| !crate::service::sys::same_file(f, &self.path))
        {
            // Deleted or moved away under us (the state dir removed by hand): write where an
            // admin looks, not into an unlinked file.
            self.file = None;
        }
        if self.file.is_none() {
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
