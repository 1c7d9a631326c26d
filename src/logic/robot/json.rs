//! Robot 7's JSON result (`--output output.json`), streamed with bounded memory.
//!
//! A small pull tokenizer instead of serde: serde_json buffers every string it hands out
//! whole (a 40 MB message is 40 MB) and recurses once per nesting level. Here strings are
//! decoded only up to a cap and the rest is skipped, nesting is a byte per level up to
//! [`MAX_DEPTH`], and the walker that turns tokens into suites and tests keeps a stack of
//! what each open container is, skipping whole subtrees it has no use for with a counter.

use super::collect::{Collector, MAX_DEPTH};
use super::syntax::{JsonSyntax, ParseError};
use crate::model::record::TestStats;
use std::io::{self, BufRead, BufReader, Read};

/// Characters of a string value decoded; the rest is read and dropped.
const KEEP: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    ObjStart,
    ObjEnd,
    ArrStart,
    ArrEnd,
    Key(String),
    Str(String),
    Num(f64),
    /// true, false, null.
    Lit,
}

/// Where the tokenizer is in the grammar.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// A value (top level, after a colon, or after a comma in an array).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrEnd,
    /// A key or `}` (just after `{`).
    KeyOrEnd,
    /// A key (after a comma in an object).
    Key,
    /// `,` or the container's end.
    CommaOrEnd,
    /// Nothing more (the top-level value is complete).
    Done,
}

struct Tokenizer<R> {
    r: R,
    /// `{` or `[` per open container.
    open: Vec<u8>,
    expect: Expect,
    offset: u64,
}

fn err(at: u64, what: JsonSyntax) -> ParseError {
    ParseError::Json { at, what }
}

impl<R: BufRead> Tokenizer<R> {
    fn peek(&mut self) -> Result<Option<u8>, ParseError> {
        loop {
            let buf = match self.r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ParseError::Read {
                        at: self.offset,
                        source,
                    })
                }
            };
            return Ok(buf.first().copied());
        }
    }

    fn bump(&mut self) -> Result<Option<u8>, ParseError> {
        let b = self.peek()?;
        if b.is_some() {
            self.r.consume(1);
            self.offset += 1;
        }
        Ok(b)
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, ParseError> {
        while let Some(b) = self.peek()? {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.bump()?;
            } else {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// After a complete value: what may come next.
    fn after_value(&mut self) {
        self.expect = if self.open.is_empty() {
            Expect::Done
        } else {
            Expect::CommaOrEnd
        };
    }

    fn next(&mut self) -> Result<Option<Tok>, ParseError> {
        loop {
            let Some(b) = self.skip_ws()? else {
                return if self.expect == Expect::Done {
                    Ok(None)
                } else {
                    Err(err(self.offset, JsonSyntax::Truncated))
                };
            };
            let at = self.offset;
            match self.expect {
                Expect::Done => return Err(err(at, JsonSyntax::AfterEnd)),
                Expect::CommaOrEnd => {
                    self.bump()?;
                    let top = self.open.last().copied();
                    match (b, top) {
                        (b',', Some(b'{')) => self.expect = Expect::Key,
                        (b',', Some(b'[')) => self.expect = Expect::Value,
                        (b'}', Some(b'{')) => return self.close(Tok::ObjEnd),
                        (b']', Some(b'[')) => return self.close(Tok::ArrEnd),
                        _ => return Err(err(at, JsonSyntax::Unexpected(b as char))),
                    }
                }
                Expect::Key | Expect::KeyOrEnd => {
                    if b == b'}' && self.expect == Expect::KeyOrEnd {
                        self.bump()?;
                        return self.close(Tok::ObjEnd);
                    }
                    if b != b'"' {
                        return Err(err(at, JsonSyntax::ExpectedKey));
                    }
                    self.bump()?;
                    let k = self.string()?;
                    if self.skip_ws()? != Some(b':') {
                        return Err(err(self.offset, JsonSyntax::ExpectedColon));
                    }
                    self.bump()?;
                    self.expect = Expect::Value;
                    return Ok(Some(Tok::Key(k)));
                }
                Expect::Value | Expect::ValueOrEnd => {
                    if b == b']' && self.expect == Expect::ValueOrEnd {
                        self.bump()?;
                        return self.close(Tok::ArrEnd);
                    }
                    return self.value(b).map(Some);
                }
            }
        }
    }

    fn close(&mut self, t: Tok) -> Result<Option<Tok>, ParseError> {
        self.open.pop();
        self.after_value();
        Ok(Some(t))
    }

    fn value(&mut self, b: u8) -> Result<Tok, ParseError> {
        let at = self.offset;
        match b {
            b'{' | b'[' => {
                self.bump()?;
                if self.open.len() >= MAX_DEPTH {
                    return Err(err(at, JsonSyntax::TooDeep));
                }
                self.open.push(b);
                if b == b'{' {
                    self.expect = Expect::KeyOrEnd;
                    Ok(Tok::ObjStart)
                } else {
                    self.expect = Expect::ValueOrEnd;
                    Ok(Tok::ArrStart)
                }
            }
            b'"' => {
                self.bump()?;
                let s = self.string()?;
                self.after_value();
                Ok(Tok::Str(s))
            }
            b't' | b'f' | b'n' => {
                let word: &[u8] = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                for &w in word {
                    if self.bump()? != Some(w) {
                        return Err(err(at, JsonSyntax::InvalidLiteral));
                    }
                }
                self.after_value();
                Ok(Tok::Lit)
            }
            b'-' | b'0'..=b'9' => {
                let mut s = String::new();
                while let Some(c) = self.peek()? {
                    if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                        if s.len() > 64 {
                            return Err(err(at, JsonSyntax::LongNumber));
                        }
                        s.push(c as char);
                        self.bump()?;
                    } else {
                        break;
                    }
                }
                let n = s
                    .parse::<f64>()
                    .map_err(|_| err(at, JsonSyntax::InvalidNumber(s.clone())))?;
                self.after_value();
                Ok(Tok::Num(n))
            }
            _ => Err(err(at, JsonSyntax::Unexpected(b as char))),
        }
    }

    /// A string after its opening quote, decoded up to [`KEEP`] characters.
    fn string(&mut self) -> Result<String, ParseError> {
        let mut k = Head::default();
        // A `\uD83C` waiting for the `\uDF89` that makes one character of the two: robot
        // writes every character past U+FFFF (an emoji in a test's name) as such a pair.
        let mut high: Option<u32> = None;
        loop {
            // A first half not followed by an escape has no second half: U+FFFD.
            if high.is_some() && self.peek()? != Some(b'\\') {
                high = None;
                k.push(Some(REPLACEMENT));
            }
            // The plain bytes up to the next quote, backslash or control byte, in bulk: a
            // message of many megabytes is scanned, not decoded, past what is kept.
            let scanned = self.scan_plain(&mut k)?;
            self.r.consume(scanned);
            self.offset += scanned as u64;
            if !k.raw.is_empty() {
                k.flush();
            }
            let Some(b) = self.bump()? else {
                return Err(err(self.offset, JsonSyntax::TruncatedString));
            };
            match b {
                b'"' => {
                    k.push(None);
                    return Ok(k.out);
                }
                _ if b < 0x20 => return Err(err(self.offset, JsonSyntax::ControlCharacter)),
                b'\\' => {
                    k.push(None);
                    let unit = self.escape()?;
                    match (high.take(), unit) {
                        (Some(h), 0xDC00..=0xDFFF) => {
                            let c = 0x10000 + ((h - 0xD800) << 10) + (unit - 0xDC00);
                            k.push(Some(char::from_u32(c).unwrap_or(REPLACEMENT)));
                        }
                        (h, 0xD800..=0xDBFF) => {
                            if h.is_some() {
                                k.push(Some(REPLACEMENT));
                            }
                            high = Some(unit);
                        }
                        (h, _) => {
                            if h.is_some() {
                                k.push(Some(REPLACEMENT));
                            }
                            // A second half alone is no character either.
                            k.push(Some(char::from_u32(unit).unwrap_or(REPLACEMENT)));
                        }
                    }
                }
                // The first byte of a buffer refill: plain, the bulk scan goes on.
                _ => {
                    if k.kept < KEEP {
                        k.raw.push(b);
                    }
                }
            }
        }
    }

    /// How many plain bytes the buffer holds before the next quote, backslash or control
    /// byte; those still to be kept are added to `k`'s raw bytes (not consumed yet).
    fn scan_plain(&mut self, k: &mut Head) -> Result<usize, ParseError> {
        loop {
            match self.r.fill_buf() {
                Ok(buf) => {
                    let n = buf
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                        .unwrap_or(buf.len());
                    if k.kept < KEEP {
                        k.raw.extend_from_slice(&buf[..n.min(4 * KEEP)]);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ParseError::Read {
                        at: self.offset,
                        source,
                    })
                }
            }
        }
    }

    /// The UTF-16 code unit an escape after its backslash stands for (a character, or one
    /// half of a surrogate pair, which [`Self::string`] pairs).
    fn escape(&mut self) -> Result<u32, ParseError> {
        let e = self
            .bump()?
            .ok_or_else(|| err(self.offset, JsonSyntax::TruncatedEscape))?;
        Ok(match e {
            b'n' => u32::from('\n'),
            b't' => u32::from('\t'),
            b'r' => u32::from('\r'),
            b'b' => 8,
            b'f' => 0xc,
            b'u' => {
                let mut v = 0u32;
                for _ in 0..4 {
                    let h = self.bump()?.and_then(|h| (h as char).to_digit(16));
                    v = v * 16 + h.ok_or_else(|| err(self.offset, JsonSyntax::BadEscape))?;
                }
                v
            }
            other => u32::from(other),
        })
    }
}

/// What stands for a character the text does not hold whole (a surrogate half alone).
const REPLACEMENT: char = '\u{fffd}';

/// The head of a string being decoded: up to [`KEEP`] characters, and the raw bytes not yet
/// decoded (a character may be split by a buffer boundary).
#[derive(Default)]
struct Head {
    out: String,
    raw: Vec<u8>,
    kept: usize,
}

impl Head {
    /// Decodes the raw bytes gathered so far, then `c`, up to KEEP characters in all.
    fn push(&mut self, c: Option<char>) {
        if !self.raw.is_empty() {
            for ch in String::from_utf8_lossy(&self.raw).chars() {
                if self.kept < KEEP {
                    self.out.push(ch);
                    self.kept += 1;
                }
            }
            self.raw.clear();
        }
        if let Some(c) = c {
            if self.kept < KEEP {
                self.out.push(c);
                self.kept += 1;
            }
        }
    }

    /// Decodes the complete characters of the raw bytes, keeping a character split by a
    /// buffer boundary for the next call.
    fn flush(&mut self) {
        let valid = match std::str::from_utf8(&self.raw) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.raw.len(),
        };
        let tail = self.raw.split_off(valid);
        self.push(None);
        self.raw = tail;
    }
}

/// What an open container is, for the walker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ctx {
    Root,
    Suite,
    Suites,
    Tests,
    Test,
    Tags,
    Statistics,
    Total,
    /// A suite's own teardown.
    Teardown,
    /// A container the walker skips (with everything inside it).
    Skip,
}

/// Where the reader is in the document, and what the open suite has told so far.
#[derive(Default)]
struct Walk {
    c: Collector,
    ctx: Vec<Ctx>,
    key: String,
    suite_status: Option<String>,
    suite_elapsed: Option<f64>,
    total: [u64; 3],
}

impl Walk {
    /// An object (`obj`) or array opens: what it is, or [`Ctx::Skip`].
    fn open(&mut self, obj: bool) -> Ctx {
        let c = &mut self.c;
        let next = match (self.ctx.last().copied(), self.key.as_str(), obj) {
            (None, _, true) => Ctx::Root,
            (Some(Ctx::Root), "suite", true) | (Some(Ctx::Suites), _, true) => {
                c.enter_suite("");
                self.suite_status = None;
                self.suite_elapsed = None;
                Ctx::Suite
            }
            (Some(Ctx::Suite), "suites", false) => Ctx::Suites,
            (Some(Ctx::Suite), "tests", false) => Ctx::Tests,
            (Some(Ctx::Tests), _, true) => {
                c.start_test("");
                Ctx::Test
            }
            (Some(Ctx::Test), "tags", false) => Ctx::Tags,
            (Some(Ctx::Suite), "teardown", true) => Ctx::Teardown,
            (Some(Ctx::Root), "statistics", true) => Ctx::Statistics,
            (Some(Ctx::Statistics), "total", true) => Ctx::Total,
            _ => Ctx::Skip,
        };
        if next != Ctx::Skip {
            self.ctx.push(next);
        }
        next
    }

    fn close(&mut self) {
        match self.ctx.pop() {
            Some(Ctx::Suite) => {
                self.c
                    .suite_status(self.suite_status.take(), self.suite_elapsed.take());
                self.c.leave_suite();
            }
            Some(Ctx::Test) => self.c.end_test(),
            Some(Ctx::Total) => self
                .c
                .set_total(self.total[0], self.total[1], self.total[2]),
            _ => {}
        }
    }

    fn string(&mut self, s: String) {
        let c = &mut self.c;
        match (self.ctx.last().copied(), self.key.as_str()) {
            (Some(Ctx::Root), "generator") => c.set_generator(&s),
            (Some(Ctx::Teardown), "status") => c.suite_teardown(Some(s)),
            (Some(Ctx::Teardown), "message") => c.teardown_text(&s),
            (Some(Ctx::Suite), "name") => c.name_suite(&s),
            (Some(Ctx::Suite), "status") => self.suite_status = Some(s),
            (Some(Ctx::Test), "name") => {
                if let Some(t) = &mut c.test {
                    // A line break in a name (`${\n}`): the whole name, on one line.
                    t.name.push_str(&s.replace(['\n', '\r'], " "));
                }
            }
            (Some(Ctx::Test), "status") => {
                if let Some(t) = &mut c.test {
                    t.status = Some(s);
                }
            }
            (Some(Ctx::Test), "message") => {
                if let Some(t) = &mut c.test {
                    t.message.push_str(&s);
                }
            }
            (Some(Ctx::Tags), _) => c.add_tag(&s),
            _ => {}
        }
    }

    fn number(&mut self, n: f64) {
        match (self.ctx.last().copied(), self.key.as_str()) {
            // Robot 7.0 wrote `elapsed`, later versions `elapsed_time`.
            (Some(Ctx::Suite), "elapsed" | "elapsed_time") => self.suite_elapsed = Some(n),
            (Some(Ctx::Test), "elapsed" | "elapsed_time") => {
                if let Some(t) = &mut self.c.test {
                    t.elapsed_s = Some(n);
                }
            }
            (Some(Ctx::Total), k) => {
                let i = match k {
                    "pass" => 0,
                    "fail" => 1,
                    "skip" => 2,
                    _ => 3,
                };
                if i < 3 && n >= 0.0 {
                    self.total[i] = n as u64;
                }
            }
            _ => {}
        }
    }
}

/// Reads a whole output.json from `r`.
pub fn read(r: impl Read) -> Result<Option<TestStats>, ParseError> {
    read_sized(r, u64::MAX)
}

/// [`read`], for a file of `size` bytes: its buffer no larger than the file needs.
pub fn read_sized(r: impl Read, size: u64) -> Result<Option<TestStats>, ParseError> {
    let mut t = Tokenizer {
        r: BufReader::with_capacity(super::collect::buffer_for(size), r),
        open: Vec::new(),
        expect: Expect::Value,
        offset: 0,
    };
    let mut w = Walk::default();
    // Containers open inside a skipped one: counted, not stacked.
    let mut skipping = 0usize;
    let mut saw_any = false;
    while let Some(tok) = t.next()? {
        saw_any = true;
        if skipping > 0 {
            match tok {
                Tok::ObjStart | Tok::ArrStart => skipping += 1,
                Tok::ObjEnd | Tok::ArrEnd => skipping -= 1,
                _ => {}
            }
            continue;
        }
        match tok {
            Tok::Key(k) => w.key = k,
            Tok::ObjStart | Tok::ArrStart => {
                if w.open(tok == Tok::ObjStart) == Ctx::Skip {
                    skipping = 1;
                }
            }
            Tok::ObjEnd | Tok::ArrEnd => w.close(),
            Tok::Str(s) => w.string(s),
            Tok::Num(n) => w.number(n),
            Tok::Lit => {}
        }
    }
    if !saw_any {
        return Ok(None);
    }
    Ok(w.c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::robot::syntax::Trickle;

    const JSON: &str = r#"{"generator":"Robot 7.1","generated":"2026-11-27T10:00:00","rpa":false,
"suite":{"id":"s1","source":"/s","setup":{"name":"Log","body":[{"type":"MESSAGE","message":"x"}]},
 "suites":[{"tests":[
   {"name":"A","tags":["smoke","a\"b"],"body":[{"name":"Log","args":["x"],"status":"FAIL","elapsed":9}],"status":"PASS","message":"","start":"x","elapsed":0.125},
   {"name":"B","status":"FAIL","message":"boom \u00e9\nsecond","elapsed":0.5}],
  "name":"Sub","status":"FAIL","elapsed":0.7}],
 "name":"Top","status":"FAIL","start_time":"x","elapsed_time":0.75},
"statistics":{"total":{"pass":1,"fail":1,"skip":2,"label":"All Tests"},"tags":[],"suites":[]},
"errors":[]}"#;

    #[test]
    fn reads_totals_root_suite_and_tests() {
        let s = read(JSON.as_bytes()).unwrap().unwrap();
        assert_eq!((s.passed, s.failed, s.skipped), (1, 1, 2));
        assert_eq!(s.suite.as_deref(), Some("Top"));
        assert_eq!(s.suite_status.as_deref(), Some("FAIL"));
        assert_eq!(s.elapsed_s, Some(0.75));
        assert_eq!(s.results.len(), 2);
        assert_eq!(s.results[0].suite, "Top.Sub");
        assert_eq!(s.results[0].tags, ["smoke", "a\"b"]);
        assert_eq!(s.results[0].elapsed_s, Some(0.125));
        assert_eq!(s.results[1].message.as_deref(), Some("boom é"));
    }

    /// JSON has no infinity, but `1e999` reads as one; a negative time is no time either.
    #[test]
    fn an_elapsed_time_that_is_no_time_is_unknown() {
        let j = r#"{"suite":{"name":"S","tests":[
{"name":"I","status":"PASS","elapsed_time":1e999},
{"name":"M","status":"PASS","elapsed_time":-5},
{"name":"Z","status":"PASS","elapsed_time":0.25}],
"status":"PASS","elapsed_time":-1e999}}"#;
        let s = read(j.as_bytes()).unwrap().unwrap();
        let got: Vec<Option<f64>> = s.results.iter().map(|r| r.elapsed_s).collect();
        assert_eq!(got, [None, None, Some(0.25)]);
        assert_eq!(s.elapsed_s, None);
    }

    #[test]
    fn characters_split_by_buffer_refills_stay_whole() {
        let whole = read(JSON.as_bytes()).unwrap().unwrap();
        let trickled = read(Trickle(JSON.as_bytes())).unwrap().unwrap();
        assert_eq!(whole, trickled);
        assert_eq!(trickled.results[1].message.as_deref(), Some("boom é"));
        let j = r#"{"suite":{"name":"Ünï €𝄞","tests":[]}}"#;
        let s = read(Trickle(j.as_bytes())).unwrap().unwrap();
        assert_eq!(s.suite.as_deref(), Some("Ünï €𝄞"));
    }

    /// T7's finding 2: robot writes a character past U+FFFF as a surrogate pair
    /// (`\ud83c\udf89`); each half became U+FFFD, so `Party 🎉 Test` read `Party �� Test`
    /// (its per-test service renamed by the switch from XML to JSON, two tests differing in
    /// their emoji made one name). A half without its other half is U+FFFD, whatever follows.
    #[test]
    fn a_surrogate_pair_is_one_character_a_lone_half_is_a_replacement() {
        let j = r#"{"suite":{"name":"S \ud83d\ude80","tests":[
{"name":"Party \ud83c\udf89 Test","status":"FAIL","message":"cake \uD83C\uDF70 is a lie"},
{"name":"lone \ud83c x","status":"PASS"},
{"name":"low \udf89 x","status":"PASS"},
{"name":"two highs \ud83c\ud83c\udf89","status":"PASS"},
{"name":"high then escape \ud83c\/ x","status":"PASS"},
{"name":"high at end \ud83c","status":"PASS"},
{"name":"high then bmp \ud83c\u00e9","status":"PASS"}],
"status":"FAIL"}}"#;
        for s in [
            read(j.as_bytes()).unwrap().unwrap(),
            read(Trickle(j.as_bytes())).unwrap().unwrap(),
        ] {
            assert_eq!(s.suite.as_deref(), Some("S 🚀"));
            let names: Vec<&str> = s.results.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "Party 🎉 Test",
                    "lone \u{fffd} x",
                    "low \u{fffd} x",
                    "two highs \u{fffd}🎉",
                    "high then escape \u{fffd}/ x",
                    "high at end \u{fffd}",
                    "high then bmp \u{fffd}é",
                ]
            );
            assert_eq!(s.results[0].message.as_deref(), Some("cake 🍰 is a lie"));
        }
    }

    #[test]
    fn without_statistics_the_tests_are_counted() {
        let j = r#"{"suite":{"name":"S","tests":[{"name":"a","status":"PASS"},{"name":"b","status":"SKIP"}],"status":"PASS"}}"#;
        let s = read(j.as_bytes()).unwrap().unwrap();
        assert_eq!((s.passed, s.failed, s.skipped), (1, 0, 1));
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        for cut in [1, 10, 100, 300, JSON.len() - 1] {
            assert!(read(&JSON.as_bytes()[..cut]).is_err(), "cut at {cut}");
        }
        for bad in ["{\"a\" 1}", "[1,]", "{\"a\":1}}", "nul", "\"\x01\"", "{,}"] {
            assert!(read(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(read(&b"  "[..]).is_err());
    }

    #[test]
    fn long_strings_and_deep_nesting_stay_bounded() {
        let big = "x".repeat(1_000_000);
        let j = format!(
            r#"{{"suite":{{"name":"S","tests":[{{"name":"T","status":"FAIL","message":"{big}"}}]}}}}"#
        );
        let s = read(j.as_bytes()).unwrap().unwrap();
        assert!(s.results[0].message.as_ref().unwrap().chars().count() <= 201);
        let n = MAX_DEPTH + 5;
        let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(read(deep.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("nested deeper"));
    }
}
