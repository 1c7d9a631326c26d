//! The message of a test that a job with `attempts` re-ran: `rebot --merge` replaces it by
//! its own HTML account (`Test has been re-executed and results merged. New status: FAIL New
//! message: … Old status: … Old message: …`), which starts with the same boilerplate for
//! every test. What an admin needs first is the test's own final message: this module finds
//! it in the account (as text, its tags already dropped by `collect::Head`). Pure logic.

/// What rebot's merge account starts with (`Test` or, in RPA, `Task`).
const MERGED: [&str; 2] = [
    "Test has been re-executed and results merged.",
    "Task has been re-executed and results merged.",
];

/// The text of an HTML message with robot's escapes (`html_escape`) undone.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The test's own message, first, when `text` is rebot's merge account; `None` otherwise.
pub(crate) fn own_message(text: &str) -> Option<String> {
    let rest = MERGED.iter().find_map(|m| text.strip_prefix(m))?.trim();
    let upto = |s: &str, end: &str| s.split(end).next().unwrap_or_default().trim().to_string();
    if let Some(skip) = rest.strip_prefix("Latter result had SKIP status and was ignored.") {
        // The earlier result stands; its message is the "Original message".
        let original = skip
            .split_once("Original message:")
            .map(|(_, m)| m.trim().to_string())
            .filter(|m| !m.is_empty());
        return Some(match original {
            Some(m) => format!("{m} (re-run skipped and ignored)"),
            None => "re-run skipped and ignored".to_string(),
        });
    }
    let new = rest.strip_prefix("New status:").map(str::trim)?;
    let status = upto(new, " ");
    let message = new
        .split_once("New message:")
        .map(|(_, m)| upto(m, "Old status:"))
        .filter(|m| !m.is_empty());
    let old = rest
        .split_once("Old status:")
        .map(|(_, s)| upto(s.trim(), " "))
        .filter(|s| !s.is_empty());
    let before = old.map(|o| format!(", was {o}")).unwrap_or_default();
    Some(match message {
        Some(m) => format!("{m} (re-run, results merged{before})"),
        None => format!("{status} on a re-run (results merged{before})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_own_message_comes_first() {
        let t = "Test has been re-executed and results merged. New status: FAIL New message: \
                 Expected 3 but got 4 Old status: FAIL Old message: Expected 3 but got 5";
        assert_eq!(
            own_message(t).as_deref(),
            Some("Expected 3 but got 4 (re-run, results merged, was FAIL)")
        );
        let t = "Test has been re-executed and results merged. New status: PASS Old status: FAIL \
                 Old message: boom";
        assert_eq!(
            own_message(t).as_deref(),
            Some("PASS on a re-run (results merged, was FAIL)")
        );
        let t = "Test has been re-executed and results merged. Latter result had SKIP status and \
                 was ignored. Message: skipped Original message: it broke";
        assert_eq!(
            own_message(t).as_deref(),
            Some("it broke (re-run skipped and ignored)")
        );
        assert_eq!(own_message("plain failure"), None);
        assert_eq!(unescape("a &lt;b&gt; &amp;lt; &quot;"), "a <b> &lt; \"");
    }
}
