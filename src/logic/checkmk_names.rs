//! Service names as Checkmk's `local` section takes them, and the names of the per-test
//! services of a Robot Framework result: pure logic, no I/O.
//!
//! Checkmk's local parser drops a line whose service name holds `"` or `'` (quoted or not),
//! a literal `\n` (backslash, `n`) in a line splits its summary from its details, and a
//! line break or NUL anywhere breaks the section. Robot allows all of these in a test name
//! (quotes in its own test data, a line break with `${\n}`), and two tests of one suite may
//! share a name. So every name is first made acceptable ([`clean`]), then made unique
//! ([`test_names`]): by the suite path where tests share a name, then by their position.
//! The same result always gives the same names, and a test keeps its name from run to run
//! as long as the tests it shares a name with stay.

/// `s` as a service name can carry it: quotes become typographic ones, a backslash the
/// reverse solidus operator (`⧵`), and every control character (line breaks, NUL, U+2028/9)
/// a space; runs of spaces are one, and none lead or trail.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = match c {
            '"' => '”',
            '\'' => '’',
            '\\' => '⧵',
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => ' ',
            c if c.is_whitespace() => ' ',
            c => c,
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if out.is_empty() {
        out.push('?');
    }
    out
}

/// The name of each test, in order, unique among them: the test's name, or
/// `<suite path>.<name>` where two tests (cleaned) share a name, and ` #2`, ` #3`, … after
/// the second, third, … test (in the result's order) whose name is still not unique (the
/// same suite path, or names equal up to the length cap).
pub(crate) fn test_names<'a>(
    tests: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let plain: Vec<String> = tests.clone().map(|(_, name)| clean(name)).collect();
    let mut count: HashMap<&str, u32> = HashMap::new();
    for n in &plain {
        *count.entry(n.as_str()).or_default() += 1;
    }
    let qualified: Vec<String> = tests
        .zip(&plain)
        .map(|((suite, _), n)| {
            if count[n.as_str()] > 1 {
                clean(&format!("{suite}.{n}"))
            } else {
                n.clone()
            }
        })
        .collect();
    let mut taken: HashSet<String> = HashSet::with_capacity(qualified.len());
    // A name wins its plain form in order of appearance; the later ones are numbered,
    // skipping numbers another test's name already has.
    let firsts: HashSet<&str> = qualified.iter().map(String::as_str).collect();
    let mut out = Vec::with_capacity(qualified.len());
    for q in &qualified {
        if taken.insert(q.clone()) {
            out.push(q.clone());
            continue;
        }
        let mut k = 2u32;
        loop {
            let candidate = format!("{q} #{k}");
            if !firsts.contains(candidate.as_str()) && taken.insert(candidate.clone()) {
                out.push(candidate);
                break;
            }
            k += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tests: &[(&str, &str)]) -> Vec<String> {
        test_names(tests.iter().map(|(s, n)| (*s, *n)))
    }

    #[test]
    fn forbidden_characters_are_replaced() {
        assert_eq!(clean("UTF-8 Name Äöå §½€\""), "UTF-8 Name Äöå §½€”");
        assert_eq!(clean("keywords aren't run"), "keywords aren’t run");
        assert_eq!(clean("a\\nb"), "a⧵nb");
        assert_eq!(clean("a\nb\0c\u{2028}d  e "), "a b c d e");
        assert_eq!(clean("\n"), "?");
    }

    #[test]
    fn duplicates_get_their_suite_then_their_position() {
        let n = names(&[
            ("Top.A", "Twin"),
            ("Top.A", "Twin"),
            ("Top.B", "Twin"),
            ("Top.A", "Solo"),
            ("Top.A", "Quote\"d"),
            ("Top.A", "Quote'd"),
        ]);
        assert_eq!(
            n,
            [
                "Top.A.Twin",
                "Top.A.Twin #2",
                "Top.B.Twin",
                "Solo",
                "Quote”d",
                "Quote’d"
            ]
        );
        // A test really named like a numbered one keeps its name; the number moves on.
        let n = names(&[("S", "X"), ("S", "X"), ("T", "S.X #2")]);
        assert_eq!(n, ["S.X", "S.X #3", "S.X #2"]);
        // Stable: the same tests give the same names.
        let tests = [("S", "a"), ("S", "a"), ("S", "b")];
        assert_eq!(names(&tests), names(&tests));
    }
}
