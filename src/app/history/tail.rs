//! The last lines of a file of unknown size (a run's output, the daemon's log), read from its
//! end within a byte bound, each line cut to a sane length. Reads the one file (by handle, no
//! link followed); used by `show` and by `logs`.

use crate::service::sys::file;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The last lines of a file.
pub(crate) struct Tail {
    pub(crate) lines: Vec<String>,
    /// Whether the file has more before these.
    pub(crate) more_before: bool,
}

/// Longest line kept in a tail; the rest is cut (a runner may print megabytes in one line).
const MAX_LINE: usize = 2000;
/// Most bytes read from the end of a file for a tail, however few newlines it has.
const MAX_TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// The last `n` lines of the file at `path`, opened as a state file (no symlink, no FIFO),
/// reading only from the end: a run's output may be gigabytes.
pub(crate) fn tail_lines(path: &Path, n: usize) -> io::Result<Tail> {
    let mut f = file::open_read(path)?;
    let len = f.metadata()?.len();
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        (&mut f).take(len - start).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let body = text.strip_suffix('\n').unwrap_or(&text);
        let mut all: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('\n').collect()
        };
        // The first piece may be the end of a line that began before the window.
        let complete = start == 0 || all.len() > n;
        if complete || window >= MAX_TAIL_BYTES || window >= len {
            // Unless it is all there is: the end of one line longer than the window (a
            // runner that wrote megabytes without a line break) is shown, cut, not hidden.
            if start > 0 && all.len() > 1 {
                all.remove(0);
            }
            let more_before = start > 0 || all.len() > n;
            let skip = all.len().saturating_sub(n);
            let lines = all[skip..]
                .iter()
                .map(|l| {
                    let mut l = l.trim_end_matches('\r').to_string();
                    crate::model::clip::clip(&mut l, MAX_LINE);
                    l
                })
                .collect();
            return Ok(Tail { lines, more_before });
        }
        window *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_the_last_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.log");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        let t = tail_lines(&p, 3).unwrap();
        assert_eq!(t.lines, ["line 99997", "line 99998", "line 99999"]);
        assert!(t.more_before);
        std::fs::write(&p, "a\nb").unwrap();
        let t = tail_lines(&p, 10).unwrap();
        assert_eq!(t.lines, ["a", "b"]);
        assert!(!t.more_before);
        std::fs::write(&p, "").unwrap();
        assert!(tail_lines(&p, 10).unwrap().lines.is_empty());
    }

    /// Megabytes without a line break (a runner's one long line) show its end, cut to a
    /// line's length, not "(empty)".
    #[test]
    fn a_last_line_longer_than_the_window_is_shown_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.log");
        let text = format!("ERROR: the real cause\n{}tail end", "x".repeat(5 << 20));
        std::fs::write(&p, text).unwrap();
        let t = tail_lines(&p, 10).unwrap();
        assert_eq!(t.lines.len(), 1, "{:?}", t.lines.len());
        assert!(t.more_before);
        assert!(t.lines[0].chars().count() <= MAX_LINE + 1, "cut");
    }
}
