//! What the admin's terminal can show: UTF-8 symbols or plain ASCII, colour or none, and a
//! progress line for steps a user waits on.
//!
//! The rules follow the tools admins already use: symbols and colour only when the stream is
//! a terminal (a pipe, a file or `watch` gets plain ASCII that greps and diffs well), UTF-8
//! only when the locale says so (`LC_ALL`, else `LC_CTYPE`, else `LANG` contains `UTF-8`),
//! and no colour when `NO_COLOR` is set to anything non-empty (<https://no-color.org>).
//!
//! `ROBOTMK_DAEMON_TTY=1` makes a stream count as a terminal whatever it is (`=0`: never), so
//! tests, which always run with pipes, can check the terminal path too; the locale and
//! `NO_COLOR` still apply.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How to render for one output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    /// Unicode symbols (✔ ✘ ▁▂▃) instead of ASCII (`.` `F` `_-=`).
    pub(crate) utf8: bool,
    /// ANSI colours.
    pub(crate) color: bool,
    /// The stream is (or counts as) a terminal: progress lines may redraw themselves.
    pub(crate) tty: bool,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn forced_tty() -> Option<bool> {
    match env_nonempty("ROBOTMK_DAEMON_TTY").as_deref() {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    }
}

/// True when the locale's character type is UTF-8. `LC_ALL` overrides `LC_CTYPE`, which
/// overrides `LANG`, as in POSIX; the first one set decides.
pub(crate) fn locale_is_utf8() -> bool {
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|v| env_nonempty(v))
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("utf-8") || v.contains("utf8")
        })
}

impl Style {
    fn for_stream(is_terminal: bool) -> Style {
        let tty = forced_tty().unwrap_or(is_terminal);
        // A terminal gets the symbols where it renders UTF-8: by its locale, or always
        // (Windows consoles, which have no locale variables).
        let utf8 = tty && (locale_is_utf8() || crate::service::sys::CONSOLE_ALWAYS_UTF8);
        let color = tty && env_nonempty("NO_COLOR").is_none();
        Style { utf8, color, tty }
    }

    /// The style for stdout.
    pub(crate) fn stdout() -> Style {
        Style::for_stream(std::io::stdout().is_terminal())
    }

    /// The style for stderr (progress lines).
    pub(crate) fn stderr() -> Style {
        Style::for_stream(std::io::stderr().is_terminal())
    }

    /// Plain ASCII, no colour: for tests of the renderers.
    #[cfg(test)]
    pub(crate) const PLAIN: Style = Style {
        utf8: false,
        color: false,
        tty: false,
    };

    /// `text` in colour `code` (an SGR number: 31 red, 32 green, 33 yellow, 2 dim), or as it is.
    pub(crate) fn paint(&self, code: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Makes text from files (a runner's output, the daemon's log) safe to print on a terminal:
/// control characters, escape sequences among them, are shown as `\x1b` instead of being
/// executed — a runner must not be able to rewrite the admin's screen or title bar.
pub(crate) fn sanitize(line: &str) -> String {
    let mut o = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            o.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            o.push(c);
        }
    }
    o
}

/// `json` (serde_json's output) with the characters it leaves raw in strings — DEL, the C1
/// controls, U+2028/U+2029 — as `\uXXXX` escapes: the same JSON document, nothing a terminal
/// acts on. (C0 controls serde_json escapes itself; these appear only inside strings.)
pub(crate) fn json_escaped(json: &str) -> String {
    let mut o = String::with_capacity(json.len());
    for c in json.chars() {
        let u = c as u32;
        if (0x7F..=0x9F).contains(&u) || u == 0x2028 || u == 0x2029 {
            o.push_str(&format!("\\u{u:04x}"));
        } else {
            o.push(c);
        }
    }
    o
}

/// A progress line on stderr that redraws itself in place, shown only on a terminal (a pipe or
/// a log file gets nothing, so scripts that read the output see it unchanged).
pub(crate) struct Progress {
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A progress line for stderr, enabled when stderr is (or counts as) a terminal.
    pub(crate) fn stderr() -> Progress {
        Progress {
            enabled: Style::stderr().tty,
            started: Instant::now(),
            last_draw: None,
            drawn: false,
        }
    }

    /// Whether a redraw is due (at most four per second); `msg` is only built then.
    pub(crate) fn due(&self) -> bool {
        self.enabled
            && self
                .last_draw
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(250))
    }

    /// Redraws the line with `msg` and the elapsed time.
    pub(crate) fn draw(&mut self, msg: &str) {
        if !self.enabled {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        let mut e = std::io::stderr().lock();
        // \r and "erase to end of line" so a shorter message leaves no tail of a longer one.
        let _ = write!(e, "\r{msg} ({secs:.1}s)\x1b[K");
        let _ = e.flush();
        self.last_draw = Some(Instant::now());
        self.drawn = true;
    }

    /// Clears the line, so what follows starts on a clean line.
    pub(crate) fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json leaves raw is escaped; the document reads back the same.
    #[test]
    fn json_keeps_its_text_and_loses_what_a_terminal_acts_on() {
        let v = serde_json::json!({"error": "pip \u{9b}2J\u{9d}0;x\u{7}\u{2028} ok"});
        let text = json_escaped(&serde_json::to_string_pretty(&v).unwrap());
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn control_characters_are_shown_not_executed() {
        assert_eq!(sanitize("a\x1b[2Jb\tc\r"), "a\\x1b[2Jb\tc\\x0d");
        assert_eq!(sanitize("✔ ok"), "✔ ok");
    }

    #[test]
    fn paint_only_with_colour() {
        assert_eq!(Style::PLAIN.paint("31", "x"), "x");
        let c = Style {
            color: true,
            ..Style::PLAIN
        };
        assert_eq!(c.paint("31", "x"), "\x1b[31mx\x1b[0m");
    }
}
