//! `logs [-f] [-n N]`: the daemon's log for people, as `journalctl -u` or `tail -F` shows it,
//! and the last warnings and errors that `status` prints under its table (as `systemctl
//! status` does).
//!
//! The daemon rotates `daemon.log` by renaming it to `daemon.log.1` (see [`crate::service::logging`]),
//! so a follower holding the old file would fall silent at the first rotation. `-f` polls the
//! path's identity a few times a second; when another file has taken the name, it reads the
//! old one to its end (the daemon's last lines before the rename) and continues at the start
//! of the new one. A CLI that polls is fine: nothing depends on its latency, and it needs no
//! inotify (or Windows equivalent) and works on every file system.
//!
//! Files are opened through [`crate::service::sys::file`] (no symlinks, no FIFOs), tails are read from
//! the end only, and every line has its control characters escaped before it reaches the
//! terminal: the log quotes runners and config files.

use crate::app::history::{locate, tail_lines};
use crate::app::term::sanitize;
use crate::service::state::StateDir;
use crate::service::sys::file;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `-f` looks for new lines and for a rotation.
const POLL: Duration = Duration::from_millis(200);
/// Rotated files the daemon keeps (`daemon.log.1` … `.3`), oldest last.
const ROTATED: usize = 3;
/// Longest log line printed whole.
const MAX_LINE: usize = 4000;

fn numbered(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The last `n` lines of the log, reaching back into rotated files when the current one holds
/// fewer (right after a rotation it is nearly empty).
pub(crate) fn last_lines(log: &Path, n: usize) -> io::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for i in 0..=ROTATED {
        if out.len() >= n {
            break;
        }
        let p = if i == 0 {
            log.to_path_buf()
        } else {
            numbered(log, i)
        };
        match tail_lines(&p, n - out.len()) {
            Ok(t) => {
                let mut lines = t.lines;
                lines.append(&mut out);
                out = lines;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The level of a log line (`2026-11-29T10:15:00.123456Z  WARN message`), if it has one.
fn level(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

/// The last `n` warnings and errors among the log's recent lines.
pub(crate) fn recent_problems(st: &StateDir, n: usize) -> Vec<String> {
    // A window of recent lines: older problems are history, not status.
    let lines = last_lines(&st.log_file(), 2000).unwrap_or_default();
    let mut hits: Vec<String> = lines
        .into_iter()
        .filter(|l| matches!(level(l), Some("WARN" | "ERROR")))
        // `status` prints the config's warnings itself, from the config as it is now.
        .filter(|l| !l.contains(crate::service::preflight::LOG_MARK))
        .collect();
    let skip = hits.len().saturating_sub(n);
    hits.drain(..skip);
    hits
}

/// The block `status` prints under its table: nothing when the log shows no problem.
pub(crate) fn problems_block(state_dir: &Path) -> String {
    let st = StateDir::new(state_dir);
    let hits = recent_problems(&st, 5);
    if hits.is_empty() {
        return String::new();
    }
    let mut o = format!(
        "\nrecent warnings and errors ({}; all: robotmk-daemon logs):\n",
        st.log_file().display()
    );
    for h in hits {
        let mut h = sanitize(&h);
        crate::model::clip::clip(&mut h, 300);
        o.push_str(&format!("  {h}\n"));
    }
    o
}

/// `logs [-f] [-n N]`.
pub(crate) fn logs(path: &Path, follow: bool, n: usize) -> i32 {
    let t = match locate(path) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let log = t.state.log_file();
    let mut out = io::stdout().lock();
    match last_lines(&log, n) {
        Ok(lines) => {
            for l in lines {
                if print_line(&mut out, &l).is_err() {
                    return 0;
                }
            }
        }
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            return 1;
        }
    }
    if !follow {
        if !log.exists() {
            eprintln!("robotmk-daemon: no log yet at {}", log.display());
        }
        return 0;
    }
    let _ = out.flush();
    match follow_log(&log, &mut out) {
        // A closed pipe (`logs -f | head`) is the reader's way of saying enough.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            1
        }
        Ok(()) => 0,
    }
}

fn print_line(out: &mut impl Write, line: &str) -> io::Result<()> {
    let mut l = sanitize(line.trim_end_matches('\r'));
    crate::model::clip::clip(&mut l, MAX_LINE);
    writeln!(out, "{l}")
}

/// True when the file open as `f` no longer has the name `path` (renamed away by a rotation,
/// or deleted). Unix compares inodes; Windows, which std gives no file identity, compares the
/// creation times of the handle and the path.
fn replaced(f: &File, path: &Path) -> bool {
    if !crate::service::sys::same_file(f, path) {
        return true;
    }
    match (
        f.metadata().and_then(|m| m.created()),
        file::plain_metadata(path),
    ) {
        (Ok(a), Some(m)) => m.created().is_ok_and(|b| a != b),
        _ => false,
    }
}

/// The file being followed, and the unfinished last line read from it.
struct Followed {
    file: File,
    pending: Vec<u8>,
}

impl Followed {
    /// Prints every complete line added since the last call.
    fn pump(&mut self, out: &mut impl Write) -> io::Result<()> {
        let mut buf = Vec::new();
        // At most 4 MiB per round: a log that grows faster is still read, a little later.
        (&mut self.file).take(4 << 20).read_to_end(&mut buf)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.pending.extend_from_slice(&buf);
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            print_line(out, &String::from_utf8_lossy(&line[..i]))?;
        }
        if self.pending.len() > MAX_LINE * 4 {
            // A line without end would grow the buffer without bound: print what there is.
            let line = std::mem::take(&mut self.pending);
            print_line(out, &String::from_utf8_lossy(&line))?;
        }
        out.flush()
    }

    fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.pump(out)?;
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            print_line(out, &String::from_utf8_lossy(&line))?;
        }
        out.flush()
    }
}

/// Follows the log until the reader goes away (or the process is ended).
fn follow_log(log: &Path, out: &mut impl Write) -> io::Result<()> {
    // Start at the end of the current file: what came before was printed as the tail.
    let mut cur: Option<Followed> = match file::open_read(log) {
        Ok(mut f) => {
            f.seek(SeekFrom::End(0))?;
            Some(Followed {
                file: f,
                pending: Vec::new(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    loop {
        if let Some(c) = cur.as_mut() {
            c.pump(out)?;
            // Truncated in place (by hand): start again from its beginning.
            let pos = c.file.stream_position()?;
            if c.file.metadata().map(|m| m.len()).unwrap_or(pos) < pos {
                c.file.seek(SeekFrom::Start(0))?;
                c.pending.clear();
            }
            if replaced(&c.file, log) {
                // Rotated: the daemon wrote its last lines to the old file before the rename.
                c.finish(out)?;
                let first_rotated = numbered(log, 1);
                if !crate::service::sys::same_file(&c.file, &first_rotated)
                    && first_rotated.exists()
                {
                    // Two rotations between two looks: say so rather than skip lines unseen.
                    eprintln!(
                        "robotmk-daemon: the log was rotated more than once meanwhile; see {}",
                        first_rotated.display()
                    );
                }
                cur = None;
            }
        }
        if cur.is_none() {
            match file::open_read(log) {
                Ok(f) => {
                    cur = Some(Followed {
                        file: f,
                        pending: Vec::new(),
                    });
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_reach_into_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("daemon.log");
        std::fs::write(numbered(&log, 2), "a\nb\n").unwrap();
        std::fs::write(numbered(&log, 1), "c\nd\n").unwrap();
        std::fs::write(&log, "e\n").unwrap();
        assert_eq!(last_lines(&log, 4).unwrap(), ["b", "c", "d", "e"]);
        assert_eq!(last_lines(&log, 1).unwrap(), ["e"]);
        assert!(last_lines(&dir.path().join("none"), 3).unwrap().is_empty());
    }

    #[test]
    fn problems_are_warnings_and_errors_only() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        std::fs::write(
            st.log_file(),
            "t1  INFO fine\nt2  WARN careful\nt3 ERROR broken\nt4 DEBUG x\n",
        )
        .unwrap();
        assert_eq!(
            recent_problems(&st, 5),
            ["t2  WARN careful", "t3 ERROR broken"]
        );
        assert_eq!(recent_problems(&st, 1), ["t3 ERROR broken"]);
    }
}
