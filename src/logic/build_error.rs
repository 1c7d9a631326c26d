//! Why an environment build failed, as an admin reads it in one check line: the build tool's
//! own error lines (pip's `ERROR: …`, uv's `error: …` and `×`/`╰─▶` lines) first, without
//! colour codes, progress bars or carriage-return redraws, then the rest of the log's end.
//! Pure text shaping, no I/O (the caller reads the end of `build.log`).

/// Most bytes of the summary.
pub(crate) const MAX_SUMMARY: usize = 900;

/// `text` without ANSI escape sequences (CSI `ESC [ … letter`, OSC `ESC ] … BEL|ST`, and
/// two-byte escapes), and each line as it last looked after carriage-return redraws.
pub(crate) fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters and intermediates, up to the final byte (@ to ~).
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(d) = chars.next() {
                    if d == '\u{7}' {
                        break;
                    }
                    if d == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out.split('\n')
        .map(|l| {
            // A redrawn line shows what came after its last carriage return.
            let l = l.trim_end_matches('\r');
            l.rsplit('\r').next().unwrap_or(l).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line that only draws progress: bars, spinners, percentages, transfer figures.
fn is_progress(line: &str) -> bool {
    let t = line.trim();
    if t.is_empty() {
        return true;
    }
    let bar = t
        .chars()
        .filter(|c| {
            matches!(
                c,
                '━' | '█'
                    | '▏'
                    | '▎'
                    | '▍'
                    | '▌'
                    | '▋'
                    | '▊'
                    | '▉'
                    | '░'
                    | '▒'
                    | '▓'
                    | '╸'
                    | '╺'
                    | '#'
                    | '='
            )
        })
        .count();
    bar >= 5 || t.starts_with("Progress ") || t.ends_with(" eta 0:00:00")
}

/// An error line of pip or uv.
fn is_error(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("ERROR:")
        || t.starts_with("error:")
        || t.starts_with("× ")
        || t.starts_with("╰─▶")
        || t.starts_with("Because ")
}

/// The summary of a failed build's log end `log`: its error lines first, then the other
/// lines of its end, joined by `; `, at most [`MAX_SUMMARY`] bytes.
pub(crate) fn summarize(log: &str) -> String {
    let text = plain(log);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| is_error(l) || !is_progress(l))
        .collect();
    let mut errors: Vec<&str> = Vec::new();
    for l in lines.iter().filter(|l| is_error(l)) {
        // pip repeats its reason; each once, in order.
        if !errors.contains(l) {
            errors.push(l);
        }
    }
    // The last error line is pip's conclusion (`No matching distribution found for …`).
    errors.reverse();
    let mut others: Vec<&str> = lines
        .iter()
        .rev()
        .filter(|l| !is_error(l))
        .take(8)
        .copied()
        .collect();
    others.reverse();
    let mut out = String::new();
    for l in errors.iter().chain(&others) {
        if out.len() + l.len() + 2 > MAX_SUMMARY {
            break;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_errors_come_first_without_progress_or_colour() {
        let log = "Collecting robotframework\r\n  Downloading robotframework-7.1-py3-none-any.whl (730 kB)\n\
                   \u{1b}[2K   \u{1b}[90m━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━\u{1b}[0m \u{1b}[32m730.5/730.5 kB\u{1b}[0m \u{1b}[31m12.1 MB/s\u{1b}[0m eta \u{1b}[36m0:00:00\u{1b}[0m\n\
                   Installing collected packages: robotframework\r 50%\r100%\n\
                   \u{1b}[31mERROR: Could not find a version that satisfies the requirement nosuchpkg==9.9 (from versions: none)\u{1b}[0m\n\
                   \u{1b}[31mERROR: No matching distribution found for nosuchpkg==9.9\u{1b}[0m\n";
        let s = summarize(log);
        assert!(
            s.starts_with("ERROR: No matching distribution found for nosuchpkg==9.9; ERROR: Could not find a version"),
            "{s}"
        );
        assert!(
            !s.contains('\u{1b}') && !s.contains('━') && !s.contains('\r'),
            "{s}"
        );
        assert!(s.contains("100%"), "the redrawn line as it ended: {s}");
        let uv = "Using CPython 3.11\n  × No solution found when resolving dependencies:\n  ╰─▶ Because nosuchpkg was not found in the package registry and you require nosuchpkg, we can conclude that your requirements are unsatisfiable.\n";
        let s = summarize(uv);
        assert!(s.starts_with("╰─▶ Because nosuchpkg was not found"), "{s}");
        assert!(s.contains("× No solution found"), "{s}");
    }
}
