//! The details (Checkmk's "long output") of a Robot Framework job's check: one line per
//! test — status, name, elapsed time, the first line of its message — so an admin sees
//! which test failed without per-test services. Pure text shaping, no I/O.
//!
//! In a local check the details follow the summary after a literal `\n` (backslash, `n`),
//! and so does each further line; nothing in a line may be a real line break, and no
//! literal `\n` may hide in a test's text (it would split the line).

use crate::model::record::{TestStats, TestStatus};

/// Tests listed at most; the rest are counted in a last line.
pub(crate) const MAX_LISTED: usize = 100;
/// Bytes of details at most per check (they are printed on every agent call).
pub(crate) const MAX_BYTES: usize = 16 * 1024;

/// `s` as a piece of a check's text: on one line, without a literal `\n`.
pub(crate) fn text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .replace("\\n", "⧵n")
}

/// The per-test lines of `t`, each after a literal `\n`: failed tests first, then the
/// others in the result's order.
pub(crate) fn tests(t: &TestStats) -> String {
    let mut order: Vec<&crate::model::record::TestResult> = t
        .results
        .iter()
        .filter(|r| r.status == TestStatus::Fail)
        .collect();
    order.extend(t.results.iter().filter(|r| r.status != TestStatus::Fail));
    let mut out = String::new();
    let mut listed = 0usize;
    for r in &order {
        let mut line = format!("{} {}", text(r.status.as_str()), text(&r.name));
        if let Some(e) = r.elapsed_s.and_then(crate::model::record::known_seconds) {
            line.push_str(&format!(" ({e:.2}s)"));
        }
        if let Some(m) = r.message.as_deref().filter(|m| !m.is_empty()) {
            line.push_str(": ");
            line.push_str(&text(m));
        }
        if listed == MAX_LISTED || out.len() + line.len() + 2 > MAX_BYTES {
            break;
        }
        out.push_str("\\n");
        out.push_str(&line);
        listed += 1;
    }
    let more = (t.results.len() - listed) as u64 + t.results_omitted;
    if more > 0 {
        out.push_str(&format!("\\n… and {more} more tests (see the log)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::TestResult;

    #[test]
    fn failures_come_first_each_on_its_own_detail_line() {
        let r = |name: &str, status: &str, msg: Option<&str>| TestResult {
            suite: "S".into(),
            name: name.into(),
            status: status.into(),
            elapsed_s: Some(1.5),
            message: msg.map(Into::into),
            ..Default::default()
        };
        let t = TestStats {
            passed: 1,
            failed: 1,
            results: vec![
                r("Login", "PASS", None),
                r("Pay", "FAIL", Some("C:\\new folder \"x\"")),
            ],
            ..Default::default()
        };
        assert_eq!(
            tests(&t),
            "\\nFAIL Pay (1.50s): C:⧵new folder \"x\"\\nPASS Login (1.50s)"
        );
    }
}
