//! The one gate every byte bound for the Checkmk agent passes: ctrl's output is made printable
//! here, whatever produced it (a test name from a robot result, a note quoting a runner's
//! output, a config error quoting the file), on the full path ([`crate::logic::agent::render`]) and
//! on the fast path ([`crate::logic::ctrl_view`]) alike.
//!
//! Checkmk splits the agent's output with Python's `splitlines()`, which breaks a line not only
//! at `\n` but at VT, FF, FS, GS, RS, NEL (U+0085) and U+2028/U+2029, and a `sep(0)` section
//! splits each line at NUL. One such character from a result would cut a local check in two
//! or shift the fields of a line. So every control character (Unicode category Cc: C0 but the
//! `\n` that ends each line, DEL, C1) and both Unicode separators are replaced:
//!
//! - in a JSON line (one that starts with `{` or `[`: the sections' JSON documents, where
//!   such a character can only stand inside a string) by its `\uXXXX` escape, so the JSON
//!   keeps the text exactly — serde_json escapes C0 itself but leaves DEL, C1 and U+2028/9
//!   raw;
//! - in any other line (a local check, a header) by a space where the character separates
//!   (TAB, VT, FF, CR, FS–US, NEL, U+2028/9), else by U+FFFD.
//!
//! The filter streams: clean runs pass through as they are, so the fast path still copies the
//! daemon's pre-rendered bytes without holding them twice. The largest of them, the jobs' JSON
//! of ctrl's view, passed this filter when the daemon wrote the view; ctrl passes it on with
//! [`Printable::write_filtered`] instead of filtering half a MiB again on every agent call.

use std::io::{self, Write};

/// A writer that passes on only printable text (see the module doc).
pub(crate) struct Printable<W: Write> {
    inner: W,
    /// The next byte starts a line.
    line_start: bool,
    /// The current line is JSON.
    json: bool,
    /// The start of a multi-byte character that the previous write cut (C2 or E2 lead bytes
    /// only: those of the characters replaced).
    held: [u8; 3],
    held_len: usize,
}

/// Whether code point `c` is replaced.
fn replaced(c: u32) -> bool {
    c < 0x20 && c != u32::from(b'\n') || (0x7F..=0x9F).contains(&c) || c == 0x2028 || c == 0x2029
}

/// Whether a line splitter would take `c` for a break or a gap: it becomes a space in text.
fn spacing(c: u32) -> bool {
    matches!(
        c,
        0x09 | 0x0B | 0x0C | 0x0D | 0x1C..=0x1F | 0x85 | 0x2028 | 0x2029
    )
}

impl<W: Write> Printable<W> {
    pub(crate) fn new(inner: W) -> Self {
        Printable {
            inner,
            line_start: true,
            json: false,
            held: [0; 3],
            held_len: 0,
        }
    }

    /// Writes what a cut multi-byte character left (only a truncated stream has any) and
    /// returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if self.held_len > 0 {
            self.inner.write_all(&self.held[..self.held_len])?;
        }
        Ok(self.inner)
    }

    /// Passes on bytes that went through a `Printable` already, inside the current line (they
    /// hold no line end), as they are.
    pub(crate) fn write_filtered(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug_assert!(!bytes.contains(&b'\n'), "filtered bytes end no line");
        if self.held_len > 0 {
            let held = self.held;
            let n = self.held_len;
            self.held_len = 0;
            self.inner.write_all(&held[..n])?;
        }
        self.inner.write_all(bytes)
    }

    fn replacement(&mut self, c: u32) -> io::Result<()> {
        if self.json {
            write!(self.inner, "\\u{c:04x}")
        } else if spacing(c) {
            self.inner.write_all(b" ")
        } else {
            self.inner.write_all("\u{FFFD}".as_bytes())
        }
    }

    /// A complete character of `seq` (2 or 3 bytes, lead C2 or E2): replaced or passed on.
    fn sequence(&mut self, seq: &[u8]) -> io::Result<()> {
        match decode(seq) {
            Some(c) if replaced(c) => self.replacement(c),
            _ => self.inner.write_all(seq),
        }
    }

    fn filter(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut i = 0;
        if self.held_len > 0 {
            let need = lead_len(self.held[0]) - self.held_len;
            let take = need.min(buf.len());
            self.held[self.held_len..self.held_len + take].copy_from_slice(&buf[..take]);
            self.held_len += take;
            if take < need {
                return Ok(());
            }
            let held = self.held;
            let n = self.held_len;
            self.held_len = 0;
            self.sequence(&held[..n])?;
            i = take;
        }
        let mut clean = i;
        if self.line_start && i < buf.len() {
            self.line_start = false;
            self.json = is_json_start(buf[i]);
        }
        // Clean runs are skipped in one tight scan; only the bytes that may need a look stop
        // it (the line ends, controls, and the lead bytes of C1 and U+2028/9).
        while let Some(off) = find_look(&buf[i..]) {
            i += off;
            let b = buf[i];
            match b {
                b'\n' => {
                    i += 1;
                    match buf.get(i) {
                        Some(&next) => self.json = is_json_start(next),
                        None => self.line_start = true,
                    }
                }
                0xC2 | 0xE2 => {
                    let len = lead_len(b);
                    if i + len > buf.len() {
                        self.inner.write_all(&buf[clean..i])?;
                        let rest = &buf[i..];
                        self.held[..rest.len()].copy_from_slice(rest);
                        self.held_len = rest.len();
                        return Ok(());
                    }
                    if decode(&buf[i..i + len]).is_some_and(replaced) {
                        self.inner.write_all(&buf[clean..i])?;
                        self.sequence(&buf[i..i + len])?;
                        clean = i + len;
                    }
                    i += len;
                }
                _ => {
                    self.inner.write_all(&buf[clean..i])?;
                    self.replacement(u32::from(b))?;
                    i += 1;
                    clean = i;
                }
            }
        }
        self.inner.write_all(&buf[clean..])
    }
}

/// The bytes that stop the scan: C0 (the line ends among them), DEL, and the lead bytes of
/// C1 (C2) and of U+2028/9 (E2). A table: one load per byte, the scan's whole cost.
static LOOK: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[0x7F] = true;
    t[0xC2] = true;
    t[0xE2] = true;
    t
};

/// The first byte of `buf` that [`LOOK`] marks. Eight bytes at a time: a word with no byte
/// below 0x20 and none at or above 0x7F (plain ASCII text, nearly all of what is printed)
/// is skipped whole; ctrl passes its whole output (0.5 MB at 1,000 jobs) through here, and the
/// byte-wise table scan was a tenth of its CPU.
fn find_look(buf: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut chunks = buf.chunks_exact(8);
    let mut at = 0;
    for c in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let x = u64::from_ne_bytes(word);
        // A high bit is set for some byte below 0x20 (x - 0x20 borrows) or at or above 0x7F
        // (x + 1 or x itself has it); a false alarm only sends this word to the table.
        let below = x.wrapping_sub(ONES * 0x20) & !x;
        let above = x.wrapping_add(ONES) | x;
        if (below | above) & HIGH != 0 {
            if let Some(off) = c.iter().position(|&b| LOOK[usize::from(b)]) {
                return Some(at + off);
            }
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| LOOK[usize::from(b)])
        .map(|off| at + off)
}

/// A JSON line starts with its document.
fn is_json_start(b: u8) -> bool {
    b == b'{' || b == b'['
}

/// Bytes of a character led by C2 (2) or E2 (3).
fn lead_len(b: u8) -> usize {
    if b == 0xC2 {
        2
    } else {
        3
    }
}

/// The code point of a 2- or 3-byte sequence led by C2 or E2 if it is one that is replaced
/// (C1: C2 80–9F; U+2028/9: E2 80 A8/A9), without decoding any other.
fn decode(seq: &[u8]) -> Option<u32> {
    match *seq {
        [0xC2, b @ 0x80..=0x9F] => Some(u32::from(b)),
        [0xE2, 0x80, b @ (0xA8 | 0xA9)] => Some(0x2000 | u32::from(b - 0x80)),
        _ => None,
    }
}

impl<W: Write> Write for Printable<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.filter(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `text` made printable (see the module doc).
pub(crate) fn string(text: String) -> String {
    let bytes = text.as_bytes();
    let dirty = bytes
        .iter()
        .any(|&b| (b < 0x20 && b != b'\n') || b == 0x7F || b == 0xC2 || b == 0xE2);
    if !dirty {
        return text;
    }
    let mut p = Printable::new(Vec::with_capacity(bytes.len() + 64));
    // Writing to a Vec cannot fail.
    let out = p
        .write_all(bytes)
        .and_then(|_| p.finish())
        .unwrap_or_default();
    // Only whole characters are replaced, by whole characters: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn find_look_finds_what_the_table_marks_at_every_offset() {
        // Every byte value at every position of buffers around the word size, beside text.
        for len in 1..=20 {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut buf = vec![b'a'; len];
                    buf[pos] = b;
                    let want = buf.iter().position(|&b| super::LOOK[usize::from(b)]);
                    assert_eq!(
                        super::find_look(&buf),
                        want,
                        "byte {b:#x} at {pos} of {len}"
                    );
                }
            }
        }
        assert_eq!(super::find_look(b""), None);
        assert_eq!(super::find_look(b"~~~~~~~~~\xe2"), Some(9));
    }

    use super::*;

    const ALL: &str =
        "a\0b\x07c\x0bd\x0ce\x1cf\x1dg\x1eh\x1fi\x1bj\x7fk\u{85}l\u{9f}m\u{2028}n\u{2029}o\tp\rq";

    fn bad(c: char) -> bool {
        (c.is_control() && c != '\n') || c == '\u{2028}' || c == '\u{2029}'
    }

    #[test]
    fn text_lines_get_spaces_and_replacement_characters() {
        let out = string(format!("0 \"Robotmk {ALL}\" - OK - {ALL}\n"));
        assert!(!out.chars().any(bad), "{out:?}");
        assert_eq!(
            out,
            "0 \"Robotmk a\u{FFFD}b\u{FFFD}c d e f g h i\u{FFFD}j\u{FFFD}k l\u{FFFD}m n o p q\" - OK - a\u{FFFD}b\u{FFFD}c d e f g h i\u{FFFD}j\u{FFFD}k l\u{FFFD}m n o p q\n"
        );
        // Text without them is returned as it is, other non-ASCII included.
        let clean = "0 \"Robotmk Grüße → ✓\" - OK - ünïcödé €\n".to_string();
        assert_eq!(string(clean.clone()), clean);
    }

    #[test]
    fn json_lines_keep_the_text_escaped() {
        let doc = serde_json::json!({ "name": ALL });
        let line = format!("{doc}\n");
        let out = string(line);
        assert!(!out.chars().any(bad), "{out:?}");
        let back: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(back["name"], ALL);
        // The next line is text again.
        let out = string(format!("{doc}\n0 x\u{2028}y\n"));
        assert!(out.ends_with("\n0 x y\n"), "{out:?}");
    }

    #[test]
    fn characters_cut_between_writes_are_still_seen() {
        let text = format!("0 {ALL} € ✓ {ALL}\n{}\n", serde_json::json!([ALL]));
        let whole = string(text.clone());
        // Every way to cut the stream in two or three pieces gives the same bytes.
        let b = text.as_bytes();
        for i in 0..b.len() {
            for j in i..b.len() {
                let mut p = Printable::new(Vec::new());
                p.write_all(&b[..i]).unwrap();
                p.write_all(&b[i..j]).unwrap();
                p.write_all(&b[j..]).unwrap();
                let out = p.finish().unwrap();
                assert_eq!(String::from_utf8(out).unwrap(), whole, "cut at {i}, {j}");
            }
        }
    }
}
