//! What the XML and JSON readers have in common: the result they build while streaming
//! (suites, tests, statistics), the caps that keep it small whatever the file holds, and
//! how much of the file they buffer.
//!
//! The readers report what they meet (a suite starts, a test has this status, …) and this
//! collector keeps only bounded pieces: strings are cut to [`MAX_TEXT`] characters (a
//! message to its first line), at most [`MAX_TESTS`] tests and [`MAX_RESULTS_BYTES`] of them
//! are kept (failed ones win a place over passed ones), and nesting deeper than
//! [`MAX_DEPTH`] is an error. Apart from that detail, every test's per-test service (its
//! name, unique over all of them, and its status) is listed, in the order robot ran them, up
//! to [`MAX_SERVICES`] tests and [`MAX_SERVICES_BYTES`]: failures do not decide which.

use crate::model::record::{TestResult, TestService, TestStats, TestStatus};

/// The most a result reader buffers at once.
const MAX_BUFFER: usize = 64 * 1024;

/// How much a reader of a result of `size` bytes buffers: the whole file when it is smaller
/// than [`MAX_BUFFER`] (most results are a few KiB). Buffers of 64 KiB for every result came
/// from the finisher threads' heap and were freed again at each read, leaving it fragmented:
/// the soak's private memory rose by steps (issue 25).
pub(crate) fn buffer_for(size: u64) -> usize {
    usize::try_from(size.saturating_add(1)).map_or(MAX_BUFFER, |n| n.clamp(512, MAX_BUFFER))
}

/// Longest name, status, tag or message head kept, in characters.
pub(crate) const MAX_TEXT: usize = 200;
/// Tests kept per result; the rest are counted in `results_omitted`.
pub(crate) const MAX_TESTS: usize = 1000;
/// Serialized bytes of per-test detail kept per result: the record and `latest.json` must
/// stay far below the 1 MiB a state file may have, and status.json holds one per job.
pub(crate) const MAX_RESULTS_BYTES: usize = 512 * 1024;
/// Tags kept per test.
pub(crate) const MAX_TAGS: usize = 10;
/// Tests listed with their per-test service (name and status): far more than the detail,
/// as a line each is all Checkmk gets of them. A suite of 20,000 tests runs for hours; at
/// some 50 bytes a test (a name of 40 characters) the list is about 1 MiB of the record,
/// `latest.json` and the job's entry in `status.json` (read with a 32 MiB cap).
pub(crate) const MAX_SERVICES: usize = 20_000;
/// Serialized bytes of that list at most (long names, non-ASCII ones): the first tests
/// whose entries fit are listed.
pub(crate) const MAX_SERVICES_BYTES: usize = 1024 * 1024;
/// Bytes of the names (the tests' and their suites') held for the list while a result is
/// read, before its names are made: the reader's memory, whatever the file holds. The list
/// ends at the test that would pass it.
const MAX_LISTING_BYTES: usize = 4 * MAX_SERVICES_BYTES;
/// The bytes an entry's status is counted with, at least: robot's four statuses count
/// alike (as `"NOT RUN"`), so where the list ends does not depend on which tests failed.
const STATUS_BYTES: usize = 9;
/// The longest status kept in the list, in characters (robot's are up to 7: any other is
/// not robot's and only shown as written).
const MAX_LISTED_STATUS: usize = 20;
/// Deepest nesting accepted. Robot itself stops far earlier (its keyword recursion limit); a
/// file nested deeper is not robot's and is reported, not followed.
pub(crate) const MAX_DEPTH: usize = 10_000;

/// A string that grows only up to its first line and [`MAX_TEXT`] characters. Robot's HTML
/// messages (`*HTML* …`, e.g. what `rebot --merge` writes) are kept as their text: the marker
/// and the tags are dropped, a tag becomes a space.
#[derive(Debug, Default, Clone)]
pub(crate) struct Head {
    text: String,
    chars: usize,
    done: bool,
    /// None until it is known whether the text starts with `*HTML*`.
    html: Option<bool>,
    in_tag: bool,
}

const HTML_MARK: &str = "*HTML*";

impl Head {
    pub(crate) fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            if self.done {
                return;
            }
            self.push(c);
        }
    }

    pub(crate) fn push(&mut self, c: char) {
        if self.done {
            return;
        }
        if (c == '\n' || c == '\r') && self.html == Some(true) {
            // In HTML a line break is a space (rebot's merge account breaks its lines).
            return self.push(' ');
        }
        if c == '\n' || c == '\r' {
            // Leading blank lines say nothing; the first line with text is the head.
            if !self.text.trim().is_empty() {
                self.done = true;
            }
            return;
        }
        if self.html == Some(true) {
            if self.in_tag {
                self.in_tag = c != '>';
                return;
            }
            if c == '<' {
                self.in_tag = true;
                if !self.text.ends_with(' ') {
                    self.text.push(' ');
                    self.chars += 1;
                }
                return;
            }
        }
        // An HTML message keeps more: rebot's merge account puts its boilerplate before the
        // test's own message, which `take` brings to the front.
        let cap = if self.html == Some(true) {
            3 * MAX_TEXT
        } else {
            MAX_TEXT
        };
        if self.chars >= cap {
            self.text.push('…');
            self.done = true;
            return;
        }
        if c == ' ' && self.text.ends_with(' ') && self.html == Some(true) {
            return;
        }
        self.text.push(c);
        self.chars += 1;
        if self.html.is_none() {
            let t = self.text.trim_start();
            if t == HTML_MARK {
                self.html = Some(true);
                self.text.clear();
                self.chars = 0;
            } else if !HTML_MARK.starts_with(t) {
                self.html = Some(false);
            }
        }
    }

    pub(crate) fn take(&mut self) -> String {
        let t = std::mem::take(&mut self.text);
        let html = self.html == Some(true);
        *self = Head::default();
        if !html {
            return t.trim().to_string();
        }
        let text = super::merged::unescape(t.trim());
        let text = super::merged::own_message(&text).unwrap_or(text);
        // Not HTML any more: the text is capped as any other.
        let mut h = Head {
            html: Some(false),
            ..Head::default()
        };
        h.push_str(&text);
        let t = std::mem::take(&mut h.text);
        t.trim().to_string()
    }
}

/// A test being read.
#[derive(Debug, Default)]
pub(crate) struct TestBuilder {
    pub(crate) name: Head,
    pub(crate) status: Option<String>,
    pub(crate) elapsed_s: Option<f64>,
    pub(crate) message: Head,
    pub(crate) tags: Vec<String>,
    /// Robot's id of the test (`s1-s2-t3`), counted as robot counts it.
    pub(crate) id: String,
}

/// A suite around the current point.
#[derive(Debug, Default)]
struct Frame {
    name: String,
    /// Index of the first kept test read inside this suite.
    first: usize,
    /// Robot's id of the suite (`s1-s2`): its place among its parent's suites, as robot
    /// numbers them for the anchors of its log (`log.html#s1-s2-t3`).
    id: String,
    /// Child suites and tests seen so far.
    suites: u32,
    tests: u32,
    /// The status of the suite's own teardown (`FAIL`, `SKIP`, …), once read.
    teardown: Option<String>,
    teardown_message: Head,
    /// Index of the first listed test read inside this suite.
    first_listed: usize,
    /// The suite's entry in [`Listing::suites`], once a test inside it is listed.
    listed: Option<u32>,
}

/// A test listed for its per-test service, as read: its name is made unique in
/// [`Collector::finish`], when every suite's name is known.
#[derive(Debug)]
struct Listed {
    /// Its suite's entry in [`Listing::suites`] (`None`: outside any suite).
    suite: Option<u32>,
    name: String,
    status: TestStatus,
}

/// The run's tests in the order robot ran them, up to the bounds (see [`MAX_SERVICES`]).
#[derive(Debug, Default)]
struct Listing {
    tests: Vec<Listed>,
    /// The suites of listed tests: (its parent's entry, its name), a parent before its
    /// children.
    suites: Vec<(Option<u32>, String)>,
    /// Bytes of the names held ([`MAX_LISTING_BYTES`]).
    bytes: usize,
    /// Set once a test was not listed: the list is the run's first tests, never a gap.
    closed: bool,
    omitted: u64,
}

/// The result being built.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    /// The suites around the current point, outermost first.
    suites: Vec<Frame>,
    root: Option<String>,
    root_status: Option<String>,
    root_elapsed: Option<f64>,
    counted: [u64; 3],
    total: Option<[u64; 3]>,
    tests: Vec<TestResult>,
    /// Estimated serialized size of `tests`.
    bytes: usize,
    omitted: u64,
    pub(crate) test: Option<TestBuilder>,
    /// Set when the file says robot wrote it (not rebot): robot marks a suite's tests by
    /// its failed or skipped teardown only when the result is read back, as here.
    teardowns_pending: bool,
    /// Tests read so far (the next one's [`TestResult::index`]).
    seen: u64,
    listing: Listing,
}

/// What a kept test adds to a record: its JSON (the suite path, filled in as its suites
/// close, is added to the count then).
fn size_of(t: &TestResult) -> usize {
    serde_json::to_vec(t).map_or(0, |v| v.len())
}

/// Bytes `v` takes as JSON.
fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(0, |v| v.len())
}

/// Cuts `s` to [`MAX_TEXT`] characters.
pub(crate) fn cap(s: &str) -> String {
    let mut h = Head::default();
    h.push_str(s);
    h.take()
}

impl Collector {
    /// The `generator` of the file (`Robot 7.5 (…)`, `Rebot 7.5 (…)`): robot's own output
    /// still has to have its suites' teardown failures applied to their tests, as
    /// `robot.api.ExecutionResult` does; rebot's already has them.
    pub(crate) fn set_generator(&mut self, generator: &str) {
        self.teardowns_pending = generator
            .split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("robot"));
    }

    /// The status of the innermost suite's teardown (its message goes to
    /// [`Collector::teardown_text`]).
    pub(crate) fn suite_teardown(&mut self, status: Option<String>) {
        if let Some(s) = self.suites.last_mut() {
            s.teardown = status;
        }
    }

    /// Text of the message of the innermost suite's teardown.
    pub(crate) fn teardown_text(&mut self, text: &str) {
        if let Some(s) = self.suites.last_mut() {
            s.teardown_message.push_str(text);
        }
    }

    pub(crate) fn enter_suite(&mut self, name: &str) {
        let id = match self.suites.last_mut() {
            Some(parent) => {
                parent.suites += 1;
                format!("{}-s{}", parent.id, parent.suites)
            }
            None => "s1".to_string(),
        };
        self.suites.push(Frame {
            name: cap(&name.replace(['\n', '\r'], " ")),
            first: self.tests.len(),
            id,
            suites: 0,
            tests: 0,
            teardown: None,
            teardown_message: Head::default(),
            first_listed: self.listing.tests.len(),
            listed: None,
        });
    }

    /// Names the innermost suite (Robot's JSON gives the name after the suite's tests).
    pub(crate) fn name_suite(&mut self, name: &str) {
        if let Some(s) = self.suites.last_mut() {
            s.name = cap(&name.replace(['\n', '\r'], " "));
        }
    }

    /// Ends the innermost suite. Its name is certain only now, so the suite path of every
    /// test kept inside it is completed from the inside out, a name per closing suite.
    pub(crate) fn leave_suite(&mut self) {
        let Some(mut f) = self.suites.pop() else {
            return;
        };
        let teardown_message = f.teardown_message.take();
        if self.teardowns_pending {
            match f.teardown.as_deref() {
                Some("FAIL") => {
                    self.parent_teardown(f.first, false, &teardown_message);
                    self.listing.parent_teardown(f.first_listed, false);
                }
                Some("SKIP") => {
                    self.parent_teardown(f.first, true, &teardown_message);
                    self.listing.parent_teardown(f.first_listed, true);
                }
                _ => {}
            }
        }
        if let Some(i) = f.listed {
            // Its name is certain only now (Robot's JSON gives it after the tests).
            if let Some((_, n)) = self.listing.suites.get_mut(i as usize) {
                self.listing.bytes = (self.listing.bytes + f.name.len()).saturating_sub(n.len());
                n.clone_from(&f.name);
            }
        }
        for t in self.tests.iter_mut().skip(f.first) {
            let path = if t.suite.is_empty() {
                f.name.clone()
            } else {
                format!("{}.{}", f.name, t.suite)
            };
            let before = t.suite.len();
            t.suite = path.chars().take(MAX_TEXT).collect();
            self.bytes += t.suite.len().saturating_sub(before);
        }
        if self.suites.is_empty() && self.root.is_none() {
            self.root = Some(f.name);
        }
    }

    /// What robot's `SuiteTeardownFailed` does to every test of a suite whose teardown
    /// failed (`skipped`: was skipped), applied to the tests kept from `first` on: a failed
    /// teardown fails every test that was not skipped, a skipped one skips every test, and
    /// the message says so (here on one line: the reason follows).
    fn parent_teardown(&mut self, first: usize, skipped: bool, reason: &str) {
        let with = |head: &str| {
            if reason.is_empty() {
                head.to_string()
            } else {
                format!("{head} {reason}")
            }
        };
        for t in self.tests.iter_mut().skip(first) {
            let before = t.status.clone();
            let message = t.message.take();
            if skipped {
                t.status = TestStatus::Skip;
                t.message = Some(cap(&match message {
                    Some(m) => format!(
                        "{} (earlier message: {m})",
                        with("Skipped in parent suite teardown:")
                    ),
                    None => with("Skipped in parent suite teardown:"),
                }));
            } else {
                if t.status != TestStatus::Skip {
                    t.status = TestStatus::Fail;
                }
                t.message = Some(cap(&match message {
                    Some(m) => format!("{m}; also {}", with("parent suite teardown failed:")),
                    None => with("Parent suite teardown failed:"),
                }));
            }
            if self.total.is_none() && before != t.status {
                let slot = |s: &TestStatus| match s {
                    TestStatus::Pass => Some(0),
                    TestStatus::Fail => Some(1),
                    TestStatus::Skip => Some(2),
                    _ => None,
                };
                if let Some(i) = slot(&before) {
                    self.counted[i] = self.counted[i].saturating_sub(1);
                }
                if let Some(i) = slot(&t.status) {
                    self.counted[i] += 1;
                }
            }
        }
    }

    /// The status of the innermost suite; kept for the root suite only.
    pub(crate) fn suite_status(&mut self, status: Option<String>, elapsed: Option<f64>) {
        if self.suites.len() == 1 {
            if status.is_some() {
                self.root_status = status;
            }
            if let Some(e) = elapsed {
                self.root_elapsed = crate::model::record::known_seconds(e);
            }
        }
    }

    pub(crate) fn start_test(&mut self, name: &str) {
        let mut t = TestBuilder::default();
        // Robot allows a line break in a name (`${\n}`): the whole name, on one line.
        t.name.push_str(&name.replace(['\n', '\r'], " "));
        if let Some(parent) = self.suites.last_mut() {
            parent.tests += 1;
            t.id = format!("{}-t{}", parent.id, parent.tests);
        }
        self.test = Some(t);
    }

    pub(crate) fn end_test(&mut self) {
        let Some(mut t) = self.test.take() else {
            return;
        };
        let status = t.status.take().map_or(TestStatus::NotRun, TestStatus::from);
        match status {
            TestStatus::Pass => self.counted[0] += 1,
            TestStatus::Fail => self.counted[1] += 1,
            TestStatus::Skip => self.counted[2] += 1,
            _ => {}
        }
        let index = u32::try_from(self.seen).ok();
        self.seen += 1;
        let r = TestResult {
            suite: String::new(),
            name: t.name.take(),
            message: Some(t.message.take()).filter(|m| !m.is_empty()),
            status,
            elapsed_s: t.elapsed_s.and_then(crate::model::record::known_seconds),
            tags: t.tags,
            id: Some(t.id).filter(|i| !i.is_empty() && i.len() <= MAX_TEXT),
            url: None,
            index,
        };
        self.list(&r);
        let size = size_of(&r);
        if self.tests.len() < MAX_TESTS && self.bytes + size <= MAX_RESULTS_BYTES {
            self.bytes += size;
            self.tests.push(r);
            return;
        }
        self.omitted += 1;
        // A failure says more than a pass: it takes the place of the last passed test kept.
        if r.status == TestStatus::Fail {
            let passed = self
                .tests
                .iter()
                .rposition(|k| k.status != TestStatus::Fail);
            if let Some(i) =
                passed.filter(|&i| self.bytes - size_of(&self.tests[i]) + size <= MAX_RESULTS_BYTES)
            {
                self.bytes = self.bytes - size_of(&self.tests[i]) + size;
                self.tests.remove(i);
                self.tests.push(r);
                for f in &mut self.suites {
                    if f.first > i {
                        f.first -= 1;
                    }
                }
            }
        }
    }

    /// Lists `r` for its per-test service, if the list has room (else it ends here).
    fn list(&mut self, r: &TestResult) {
        let l = &mut self.listing;
        if l.closed || l.tests.len() >= MAX_SERVICES {
            l.closed = true;
            l.omitted += 1;
            return;
        }
        // The suites around it not listed yet, innermost first.
        let new: Vec<usize> = (0..self.suites.len())
            .rev()
            .take_while(|&i| self.suites[i].listed.is_none())
            .collect();
        let bytes = r.name.len()
            + new
                .iter()
                .map(|&i| self.suites[i].name.len())
                .sum::<usize>();
        if l.bytes + bytes > MAX_LISTING_BYTES || l.suites.len() + new.len() > MAX_SERVICES {
            l.closed = true;
            l.omitted += 1;
            return;
        }
        l.bytes += bytes;
        // Outermost first: a parent's entry comes before its children's.
        for &i in new.iter().rev() {
            let parent = i.checked_sub(1).and_then(|p| self.suites[p].listed);
            self.suites[i].listed = Some(l.suites.len() as u32);
            l.suites.push((parent, self.suites[i].name.clone()));
        }
        let status = match &r.status {
            TestStatus::Other(s) => TestStatus::Other(s.chars().take(MAX_LISTED_STATUS).collect()),
            s => s.clone(),
        };
        l.tests.push(Listed {
            suite: self.suites.last().and_then(|f| f.listed),
            name: r.name.clone(),
            status,
        });
    }

    pub(crate) fn add_tag(&mut self, tag: &str) {
        if let Some(t) = &mut self.test {
            if t.tags.len() < MAX_TAGS {
                t.tags.push(cap(tag));
            }
        }
    }

    pub(crate) fn set_total(&mut self, pass: u64, fail: u64, skip: u64) {
        if self.total.is_none() {
            self.total = Some([pass, fail, skip]);
        }
    }

    /// The result; `None` when the file held no suite at all.
    pub(crate) fn finish(mut self) -> Option<TestStats> {
        // Suite paths grew the kept tests after they were admitted: passed tests, then the
        // latest ones, make room until the detail fits its budget again.
        while self.bytes > MAX_RESULTS_BYTES && !self.tests.is_empty() {
            let i = self
                .tests
                .iter()
                .rposition(|t| t.status != TestStatus::Fail)
                .unwrap_or(self.tests.len() - 1);
            let t = self.tests.remove(i);
            self.bytes = self.bytes.saturating_sub(size_of(&t));
            self.omitted += 1;
        }
        let root = self.root?;
        let [passed, failed, skipped] = self.total.unwrap_or(self.counted);
        let (services, services_omitted) = self.listing.finish();
        Some(TestStats {
            passed,
            failed,
            skipped,
            suite: Some(root),
            suite_status: self.root_status,
            elapsed_s: self.root_elapsed,
            results: self.tests,
            results_omitted: self.omitted,
            services: Some(services),
            services_omitted,
        })
    }
}

impl Listing {
    /// [`Collector::parent_teardown`] for the listed tests from `first` on: the same
    /// statuses (the detail's and the list's agree).
    fn parent_teardown(&mut self, first: usize, skipped: bool) {
        for t in self.tests.iter_mut().skip(first) {
            if skipped {
                t.status = TestStatus::Skip;
            } else if t.status != TestStatus::Skip {
                t.status = TestStatus::Fail;
            }
        }
    }

    /// The list and how many tests it leaves out. Names are made unique over all listed
    /// tests as the detail's were (`checkmk_names::test_names`: a suite of fewer tests than
    /// the detail's cap keeps the names it had), then the list ends where its bytes would
    /// pass [`MAX_SERVICES_BYTES`], counted from the names alone (see [`STATUS_BYTES`]).
    fn finish(self) -> (Vec<TestService>, u64) {
        // Suite paths as the detail has them: `Top.Sub`, cut to MAX_TEXT characters.
        let mut paths: Vec<String> = Vec::with_capacity(self.suites.len());
        for (parent, name) in &self.suites {
            let path = match parent.and_then(|p| paths.get(p as usize)) {
                Some(p) => format!("{p}.{name}").chars().take(MAX_TEXT).collect(),
                None => name.clone(),
            };
            paths.push(path);
        }
        let suite = |t: &Listed| {
            t.suite
                .and_then(|s| paths.get(s as usize))
                .map_or("", String::as_str)
        };
        let names = crate::logic::checkmk_names::test_names(
            self.tests.iter().map(|t| (suite(t), t.name.as_str())),
        );
        let listed = self.tests.len();
        let mut bytes = 2;
        let mut out = Vec::with_capacity(self.tests.len());
        for (t, name) in self.tests.into_iter().zip(names) {
            // `["name","status"],`
            let size = json_len(&name) + json_len(&t.status).max(STATUS_BYTES) + 4;
            if bytes + size > MAX_SERVICES_BYTES {
                break;
            }
            bytes += size;
            out.push(TestService(name, t.status));
        }
        let omitted = self.omitted + (listed - out.len()) as u64;
        (out, omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_keeps_the_first_line_cut_to_the_cap() {
        let mut h = Head::default();
        h.push_str("\n  first line\nsecond");
        assert_eq!(h.take(), "first line");
        h.push_str(&"x".repeat(500));
        let t = h.take();
        assert_eq!(t.chars().count(), MAX_TEXT + 1);
        assert!(t.ends_with('…'));
    }

    #[test]
    fn html_messages_keep_their_text() {
        let mut h = Head::default();
        h.push_str("*HTML* <span class=\"merge\">Test has been re-executed and results merged.</span><hr><span>New status:</span> <span class=\"pass\">PASS</span>");
        // Issue 22: the account's boilerplate no longer comes first.
        assert_eq!(h.take(), "PASS on a re-run (results merged)");
        h.push_str("*HTM is not a marker");
        assert_eq!(h.take(), "*HTM is not a marker");
    }

    #[test]
    fn failures_displace_passes_beyond_the_cap() {
        let mut c = Collector::default();
        c.enter_suite("S");
        for i in 0..MAX_TESTS + 5 {
            c.start_test(&format!("t{i}"));
            if let Some(t) = &mut c.test {
                t.status = Some(if i == MAX_TESTS + 2 { "FAIL" } else { "PASS" }.into());
            }
            c.end_test();
        }
        c.leave_suite();
        let s = c.finish().unwrap();
        assert_eq!((s.passed, s.failed), (MAX_TESTS as u64 + 4, 1));
        assert_eq!(s.results.len(), MAX_TESTS);
        assert_eq!(s.results_omitted, 5);
        assert!(s.results.iter().any(|t| t.status == TestStatus::Fail));
    }

    /// A result of `tests` tests in suites `S.A` and `S.B` (half each; a `Twin` last in
    /// each), those whose index is in `fails` failed.
    fn result(tests: usize, fails: &[usize]) -> TestStats {
        let mut c = Collector::default();
        c.enter_suite("S");
        let mut i = 0;
        for (suite, n) in [("A", tests / 2), ("B", tests - tests / 2)] {
            c.enter_suite(suite);
            for k in 0..n {
                let name = if k + 1 == n {
                    "Twin".to_string()
                } else {
                    format!("{suite} {k}")
                };
                c.start_test(&name);
                if let Some(t) = &mut c.test {
                    let failed = fails.contains(&i);
                    t.status = Some(if failed { "FAIL" } else { "PASS" }.into());
                }
                c.end_test();
                i += 1;
            }
            c.leave_suite();
        }
        c.leave_suite();
        c.finish().unwrap()
    }

    /// Per-test services do not depend on which tests failed: every test is listed in
    /// robot's order, names unique over the whole list, each detail kept pointing at its
    /// entry; a result within the detail's cap gets the names its detail gave before.
    #[test]
    fn every_test_is_listed_in_order_whatever_failed() {
        let n = MAX_TESTS + 200;
        let late = result(n, &[n - 1, n - 3]);
        let early = result(n, &[0, 1]);
        let names = |s: &TestStats| -> Vec<String> {
            s.services
                .as_ref()
                .unwrap()
                .iter()
                .map(|t| t.0.clone())
                .collect()
        };
        assert_eq!(names(&late), names(&early));
        assert_eq!(names(&late).len(), n);
        assert_eq!(late.services_omitted, 0);
        assert_eq!(names(&late)[n / 2 - 1], "S.A.Twin");
        assert_eq!(names(&late)[n - 1], "S.B.Twin");
        for s in [&late, &early] {
            assert_eq!(s.results.len(), MAX_TESTS);
            let list = s.services.as_ref().unwrap();
            for r in &s.results {
                let e = &list[r.index.unwrap() as usize];
                assert_eq!(e.1, r.status, "{r:?}");
                assert!(e.0 == r.name || e.0 == format!("{}.{}", r.suite, r.name));
            }
        }
        let list = late.services.as_ref().unwrap();
        assert_eq!(list[n - 1].1, TestStatus::Fail);
        assert_eq!(list[n - 2].1, TestStatus::Pass);
        // Within the cap, the names the detail gave (`checkmk_names::test_names`).
        let small = result(10, &[3]);
        let from_detail = crate::logic::checkmk_names::test_names(
            small
                .results
                .iter()
                .map(|r| (r.suite.as_str(), r.name.as_str())),
        );
        assert_eq!(names(&small), from_detail);
    }

    /// The list ends at its bounds, the same for the same tests: the first tests robot
    /// ran, whatever failed; the rest are counted.
    #[test]
    fn the_list_ends_at_its_bounds_whatever_failed() {
        let over = result(MAX_SERVICES + 5, &[MAX_SERVICES + 2]);
        let list = over.services.as_ref().unwrap();
        assert_eq!(list.len(), MAX_SERVICES);
        assert_eq!(over.services_omitted, 5);
        assert_eq!(list[0].0, "A 0");
        // Long names: the bytes end it, at the same place whichever tests failed.
        let long = |fails: &[usize]| {
            let mut c = Collector::default();
            c.enter_suite("S");
            for i in 0..8000 {
                c.start_test(&format!("{i} {}", "ü".repeat(150)));
                if let Some(t) = &mut c.test {
                    t.status = Some(
                        if fails.contains(&i) {
                            "FAIL"
                        } else {
                            "NOT RUN"
                        }
                        .into(),
                    );
                }
                c.end_test();
            }
            c.leave_suite();
            c.finish().unwrap()
        };
        let (a, b) = (long(&[]), long(&(0..8000).collect::<Vec<_>>()));
        let (la, lb) = (a.services.unwrap(), b.services.unwrap());
        assert!(la.len() < 8000 && la.len() == lb.len(), "{}", la.len());
        assert_eq!(a.services_omitted, 8000 - la.len() as u64);
        assert!(serde_json::to_vec(&la).unwrap().len() <= MAX_SERVICES_BYTES);
        assert!(serde_json::to_vec(&lb).unwrap().len() <= MAX_SERVICES_BYTES);
    }

    /// A failed suite teardown fails the suite's tests in the list as in the detail.
    #[test]
    fn a_failed_teardown_fails_the_listed_tests_too() {
        let mut c = Collector::default();
        c.set_generator("Robot 7.1");
        c.enter_suite("S");
        for i in 0..MAX_TESTS + 3 {
            c.start_test(&format!("t{i}"));
            if let Some(t) = &mut c.test {
                t.status = Some("PASS".into());
            }
            c.end_test();
        }
        c.suite_teardown(Some("FAIL".into()));
        c.leave_suite();
        let s = c.finish().unwrap();
        let list = s.services.unwrap();
        assert_eq!(list.len(), MAX_TESTS + 3);
        assert!(list.iter().all(|t| t.1 == TestStatus::Fail));
        assert!(s.results.iter().all(|t| t.status == TestStatus::Fail));
    }

    #[test]
    fn per_test_detail_stays_within_its_byte_budget() {
        let mut c = Collector::default();
        let long = "ü".repeat(400);
        c.enter_suite(&long);
        for _ in 0..MAX_TESTS {
            c.start_test(&long);
            if let Some(t) = &mut c.test {
                t.status = Some("FAIL".into());
                t.message.push_str(&long);
            }
            for _ in 0..50 {
                c.add_tag(&long);
            }
            c.end_test();
        }
        c.leave_suite();
        let mut s = c.finish().unwrap();
        // The list of every test has a bound of its own.
        let list = s.services.take().unwrap();
        assert!(serde_json::to_vec(&list).unwrap().len() <= MAX_SERVICES_BYTES);
        let bytes = serde_json::to_vec(&s).unwrap().len();
        assert!(bytes <= MAX_RESULTS_BYTES + 1024, "{bytes}");
        assert!(s.results_omitted > 0 && s.results[0].tags.len() == MAX_TAGS);
    }
}
