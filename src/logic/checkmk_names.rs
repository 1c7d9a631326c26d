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

use std::collections::{HashMap, HashSet};

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

/// What the monitoring core keeps of service name `s`, for telling names apart: Checkmk
/// strips the name (`get_final_service_description`) and drops the characters its core takes
/// no name with: `;` and TAB for its own core (CMC), these and `` `~!$%^&*|'"<>?,= `` for
/// Nagios (the Raw edition's core), then trailing backslashes. Nagios's object config reader
/// strips the spaces around every value, so the spaces a dropped character leaves at either
/// end go too: `Shop ;` is `Shop` there. Two names with the same key would be one service, and
/// the later line silently hides the earlier one: `Semi;colon` and `Semicolon`, or a job's
/// `service = "Robotmk i daemon"` and the daemon's own check. An empty key is a name the
/// core keeps nothing of.
pub(crate) fn core_key(s: &str) -> String {
    const DROPPED: &str = "`;~!$%^&*|'\"<>?,=\t";
    s.trim()
        .chars()
        .filter(|c| !DROPPED.contains(*c))
        .collect::<String>()
        .trim_end_matches('\\')
        .trim()
        .to_string()
}

/// What two of ctrl's service names must differ in: their [`core_key`], with the characters
/// Checkmk turns into `_` when it names a service's metric files (`pnp_cleanup`, in
/// `cmk/utils/misc.py` and the core's `PnpUtils.cc`: space, `/`, `\\`, `:`) folded the same
/// way. `Shop HTTP` and `Shop_HTTP` are two services to the core, but one RRD file: each
/// graph would show the other's values (W3 F1).
pub(crate) fn unique_key(s: &str) -> String {
    core_key(s)
        .chars()
        .map(|c| match c {
            ' ' | '/' | '\\' | ':' => '_',
            c => c,
        })
        .collect()
}

/// `names` in order, each unique by its [`unique_key`]: a name keeps its own form in order of
/// appearance, a later one with a key already taken gets ` #2`, ` #3`, …, skipping numbers
/// whose key another of `names` has (a name really written like a numbered one keeps it)
/// and keys in `reserved` (names of other lines, which no name here may take).
pub(crate) fn numbered(names: &[String], reserved: &HashSet<String>) -> Vec<String> {
    let firsts: HashSet<String> = names.iter().map(|q| unique_key(q)).collect();
    let mut taken: HashSet<String> = reserved.clone();
    // The number each name goes on from: the numbers below it are taken for good (`taken`
    // only grows), so 20,000 tests of one name cost 20,000 tries, not 200 million.
    let mut next: HashMap<&str, u32> = HashMap::new();
    let mut out = Vec::with_capacity(names.len());
    for q in names {
        if taken.insert(unique_key(q)) {
            out.push(q.clone());
            continue;
        }
        let k = next.entry(q.as_str()).or_insert(2);
        loop {
            let candidate = format!("{q} #{k}");
            let key = unique_key(&candidate);
            *k += 1;
            if !firsts.contains(&key) && taken.insert(key) {
                out.push(candidate);
                break;
            }
        }
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
    let plain: Vec<String> = tests.clone().map(|(_, name)| clean(name)).collect();
    // Names are told apart as the core and its metric files keep them (`unique_key`).
    // A name the core keeps nothing of (`?`, `;`) would be the job's own check,
    // `Robotmk <instance> <job>`: it is never left alone.
    let mut count: HashMap<String, u32> = HashMap::from([(String::new(), 1)]);
    for n in &plain {
        *count.entry(unique_key(n)).or_default() += 1;
    }
    let qualified: Vec<String> = tests
        .zip(&plain)
        .map(|((suite, _), n)| {
            if count[&unique_key(n)] > 1 {
                clean(&format!("{suite}.{n}"))
            } else {
                n.clone()
            }
        })
        .collect();
    numbered(&qualified, &HashSet::from([String::new()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tests: &[(&str, &str)]) -> Vec<String> {
        test_names(tests.iter().map(|(s, n)| (*s, *n)))
    }

    /// Names the core would make one (it drops `;`, `,`, `=`, … and surrounding spaces)
    /// are told apart, and each still reads as the test's name.
    #[test]
    fn names_one_for_the_core_are_made_distinct() {
        let got = names(&[
            ("S", "Semi;colon"),
            ("S", "Semicolon"),
            ("S", "Comma, Name"),
            ("S", "Comma Name"),
            ("S", "Plain"),
        ]);
        let keys: std::collections::HashSet<String> = got.iter().map(|n| core_key(n)).collect();
        assert_eq!(keys.len(), got.len(), "{got:?}");
        assert_eq!(got[0], "S.Semi;colon");
        assert!(got[1].starts_with("S.Semicolon"), "{got:?}");
        assert_eq!(got[4], "Plain");
        assert_eq!(
            core_key(" Load, avg (1m) = ok! 100% & more? "),
            "Load avg (1m)  ok 100  more"
        );
    }

    /// Names that are two services to the core but one metric file to Checkmk (it writes
    /// space, `/`, `\\` and `:` as `_` in the file's name) are told apart too (W3 F1).
    #[test]
    fn names_that_would_share_a_metric_file_are_made_distinct() {
        assert_eq!(unique_key("Login Works: a/b\\c"), "Login_Works__a_b_c");
        let got = names(&[("S", "Login Works"), ("S", "Login_Works"), ("S", "Other")]);
        let keys: HashSet<String> = got.iter().map(|n| unique_key(n)).collect();
        assert_eq!(keys.len(), got.len(), "{got:?}");
        assert_eq!(got, ["S.Login Works", "S.Login_Works #2", "Other"]);
        let got = numbered(&["a b".into(), "a_b".into()], &HashSet::new());
        assert_eq!(got, ["a b", "a_b #2"]);
    }

    /// Nagios strips the spaces around a name, so the space a dropped character leaves at an
    /// end is gone: `x ;` is `x` to the core. A test name the core keeps nothing of (`?`)
    /// would be the job's own check and is never left alone.
    #[test]
    fn spaces_a_dropped_character_leaves_at_an_end_do_not_count() {
        assert_eq!(core_key("Shop ;"), "Shop");
        assert_eq!(core_key("; Shop"), "Shop");
        assert_eq!(core_key("Shop \\"), "Shop");
        assert_eq!(core_key("? !"), "");
        let got = names(&[("S", "x ;"), ("S", "x"), ("S", "y")]);
        let keys: HashSet<String> = got.iter().map(|n| core_key(n)).collect();
        assert_eq!(keys.len(), 3, "{got:?}");
        assert_eq!(got[2], "y");
        for lone in ["?", "!!", ";"] {
            let got = names(&[("S", lone)]);
            assert!(!core_key(&got[0]).is_empty(), "{lone}: {got:?}");
        }
        let got = names(&[("S", "?"), ("S", ";"), ("S", "ok")]);
        let keys: HashSet<String> = got.iter().map(|n| core_key(n)).collect();
        assert_eq!(keys.len(), 3, "{got:?}");
        assert!(!keys.contains(""), "{got:?}");
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

    /// 20,000 tests of one name (the list of a result's tests holds that many) are numbered
    /// in one pass: each name goes on from the number it had reached, never from 2 again.
    #[test]
    fn many_tests_of_one_name_are_numbered_in_one_pass() {
        let many = vec![("S", "Same"); 20_000];
        let t = std::time::Instant::now();
        let got = names(&many);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(got[0], "S.Same");
        assert_eq!(got[1], "S.Same #2");
        assert_eq!(got[19_999], "S.Same #20000");
        let keys: HashSet<String> = got.iter().map(|n| core_key(n)).collect();
        assert_eq!(keys.len(), got.len());
    }
}
