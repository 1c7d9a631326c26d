//! output.xml, streamed with bounded memory.
//!
//! quick-xml reads one event at a time, but an event is as large as its text: a 40 MB log
//! message becomes a 40 MB buffer. So the file first passes through [`Bounded`], a byte
//! filter that keeps the XML well-formed while cutting every text run and attribute value
//! to [`KEEP`] bytes and refusing tags longer than [`MAX_TAG`]. What is cut is never needed:
//! a message is reduced to its first line anyway. End names are not checked by quick-xml
//! (that would keep a stack of names as deep as the file); nesting is tracked here as one
//! byte per level up to [`MAX_DEPTH`].
//!
//! Robot 7 (schema 5: `start`/`elapsed`) and Robot 6 (schema 4: `starttime`/`endtime`,
//! `<tags>`) files are both read.

use super::collect::{Collector, MAX_DEPTH};
use super::syntax::ParseError;
use crate::model::record::TestStats;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::io::{self, BufReader, Read};

/// Bytes of each text run and attribute value that reach the parser.
const KEEP: usize = 8 * 1024;
/// Longest tag (outside its attribute values) accepted.
const MAX_TAG: usize = 64 * 1024;
/// An entity reference longer than this is not one; it is passed on for the parser to reject.
const MAX_REF: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Text,
    Tag,
    Quoted(u8),
}

/// A reader that cuts long text runs and attribute values (see the module doc).
pub(crate) struct Bounded<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    lex: Lex,
    /// Bytes of the current text run, attribute value or tag passed on.
    run: usize,
    /// Length of the entity reference being passed on (0 = none), so a cut never splits one.
    in_ref: usize,
    /// The current run is being cut.
    dropping: bool,
}

impl<R: Read> Bounded<R> {
    /// `capacity`: the most read from `inner` at once (see [`super::collect::buffer_for`]).
    pub(crate) fn new(inner: R, capacity: usize) -> Self {
        Bounded {
            inner,
            buf: vec![0; capacity.max(1)],
            pos: 0,
            len: 0,
            lex: Lex::Text,
            run: 0,
            in_ref: 0,
            dropping: false,
        }
    }

    /// Whether byte `b` of a text run or attribute value is passed on.
    fn keep_content(&mut self, b: u8) -> bool {
        if self.in_ref > 0 {
            self.in_ref += 1;
            if b == b';' || self.in_ref > MAX_REF {
                self.in_ref = 0;
            }
            return true;
        }
        if self.run >= KEEP {
            // The parser checks UTF-8: finish the character the cut falls into.
            if !self.dropping && b & 0xC0 == 0x80 {
                return true;
            }
            self.dropping = true;
            return false;
        }
        self.run += 1;
        if b == b'&' {
            self.in_ref = 1;
        }
        true
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.pos == self.len {
                if n > 0 {
                    break;
                }
                self.len = self.inner.read(&mut self.buf)?;
                self.pos = 0;
                if self.len == 0 {
                    break;
                }
            }
            let b = self.buf[self.pos];
            self.pos += 1;
            let keep = match self.lex {
                Lex::Text if b == b'<' => {
                    self.lex = Lex::Tag;
                    self.run = 0;
                    self.dropping = false;
                    self.in_ref = 0;
                    true
                }
                Lex::Text => self.keep_content(b),
                Lex::Tag => {
                    match b {
                        b'"' | b'\'' => {
                            self.lex = Lex::Quoted(b);
                            self.in_ref = 0;
                        }
                        b'>' => self.lex = Lex::Text,
                        _ => {}
                    }
                    let was = self.run;
                    self.run = if self.lex == Lex::Tag { was + 1 } else { 0 };
                    self.dropping = false;
                    if was > MAX_TAG {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("a tag longer than {MAX_TAG} bytes"),
                        ));
                    }
                    true
                }
                Lex::Quoted(q) if b == q => {
                    self.lex = Lex::Tag;
                    self.run = 0;
                    self.dropping = false;
                    self.in_ref = 0;
                    true
                }
                Lex::Quoted(_) => self.keep_content(b),
            };
            if keep {
                out[n] = b;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Element kinds the reader cares about; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum El {
    Robot,
    Suite,
    Test,
    Status,
    Tags,
    Tag,
    Statistics,
    Total,
    Stat,
    /// A suite's own teardown (`<kw type="TEARDOWN">` in a `<suite>`).
    Teardown,
    Other,
}

fn kind(name: &[u8]) -> El {
    match name {
        b"robot" => El::Robot,
        b"suite" => El::Suite,
        b"test" | b"task" => El::Test,
        b"status" => El::Status,
        b"tags" => El::Tags,
        b"tag" => El::Tag,
        b"statistics" => El::Statistics,
        b"total" => El::Total,
        b"stat" => El::Stat,
        _ => El::Other,
    }
}

/// What text inside the current element is collected for.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Capture {
    #[default]
    None,
    Message,
    Tag,
    TeardownMessage,
}

/// Where the reader is in the file: the open elements and what their text is collected for.
#[derive(Default)]
struct Walk {
    stack: Vec<El>,
    c: Collector,
    capture: Capture,
    tag_text: super::collect::Head,
}

impl Walk {
    /// A start tag (`empty`: one that also ends, `<x/>`).
    fn start(&mut self, e: &BytesStart, empty: bool) -> Result<(), ParseError> {
        let c = &mut self.c;
        let mut k = kind(e.name().0.as_bytes());
        let parent = self.stack.last().copied();
        if e.name().0.as_bytes() == b"kw"
            && parent == Some(El::Suite)
            && attr(e, b"type").as_deref() == Some("TEARDOWN")
        {
            k = El::Teardown;
        }
        let grand = self.stack.len().checked_sub(2).map(|i| self.stack[i]);
        match (k, parent) {
            (El::Robot, None) => {
                c.set_generator(&attr(e, b"generator").unwrap_or_default());
            }
            (El::Status, Some(El::Teardown)) => {
                c.suite_teardown(attr(e, b"status"));
                self.capture = Capture::TeardownMessage;
            }
            (El::Suite, Some(El::Robot | El::Suite)) => {
                c.enter_suite(&attr(e, b"name").unwrap_or_default());
                if empty {
                    c.leave_suite();
                }
            }
            (El::Test, Some(El::Suite)) => {
                c.start_test(&attr(e, b"name").unwrap_or_default());
                if empty {
                    c.end_test();
                }
            }
            (El::Status, Some(El::Test)) => {
                if let Some(t) = &mut c.test {
                    t.status = attr(e, b"status");
                    t.elapsed_s = elapsed(e);
                }
                self.capture = Capture::Message;
            }
            (El::Status, Some(El::Suite)) => {
                c.suite_status(attr(e, b"status"), elapsed(e));
            }
            (El::Tag, Some(El::Test)) | (El::Tag, Some(El::Tags))
                if parent == Some(El::Test) || grand == Some(El::Test) =>
            {
                self.capture = Capture::Tag;
            }
            (El::Stat, Some(El::Total)) if grand == Some(El::Statistics) => {
                let n = |key: &[u8]| {
                    attr(e, key)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                c.set_total(n(b"pass"), n(b"fail"), n(b"skip"));
            }
            _ => {}
        }
        if !empty {
            if self.stack.len() >= MAX_DEPTH {
                return Err(ParseError::TooDeep);
            }
            self.stack.push(k);
        } else if self.capture != Capture::None {
            self.capture = Capture::None;
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), ParseError> {
        match self.stack.pop() {
            Some(El::Suite) => self.c.leave_suite(),
            Some(El::Test) if self.stack.last() == Some(&El::Suite) => self.c.end_test(),
            Some(El::Tag) if self.capture == Capture::Tag => {
                let t = self.tag_text.take();
                self.c.add_tag(&t);
            }
            None => return Err(ParseError::EndWithoutStart),
            _ => {}
        }
        self.capture = Capture::None;
        Ok(())
    }

    fn text(&mut self, s: &str) {
        if self.capture != Capture::None {
            push_text(&mut self.c, self.capture, &mut self.tag_text, s);
        }
    }
}

/// Reads a whole output.xml from `r`.
pub fn read(r: impl Read) -> Result<Option<TestStats>, ParseError> {
    read_sized(r, u64::MAX)
}

/// [`read`], for a file of `size` bytes: its buffers no larger than the file needs.
pub fn read_sized(r: impl Read, size: u64) -> Result<Option<TestStats>, ParseError> {
    let cap = super::collect::buffer_for(size);
    let mut reader = Reader::from_reader(BufReader::with_capacity(cap, Bounded::new(r, cap)));
    let cfg = reader.config_mut();
    cfg.check_end_names = false;
    cfg.expand_empty_elements = false;
    let mut buf = Vec::with_capacity(cap.min(16 * 1024));
    let mut w = Walk::default();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|source| ParseError::Xml {
                at: reader.buffer_position(),
                source,
            })?;
        match ev {
            Event::Start(ref e) => w.start(e, false)?,
            Event::Empty(ref e) => w.start(e, true)?,
            Event::End(_) => w.end()?,
            Event::Text(ref t) => w.text(t.as_ref()),
            Event::CData(ref t) => w.text(t.as_ref()),
            Event::GeneralRef(ref r) if w.capture != Capture::None => {
                let ch = match r.as_ref() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => r.resolve_char_ref().ok().flatten(),
                };
                if let Some(ch) = ch {
                    w.text(ch.encode_utf8(&mut [0; 4]));
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
        if buf.capacity() > 256 * 1024 {
            // One odd event must not keep its buffer for the rest of the file.
            buf = Vec::with_capacity(16 * 1024);
        }
    }
    if !w.stack.is_empty() {
        return Err(ParseError::XmlTruncated);
    }
    Ok(w.c.finish())
}

fn push_text(c: &mut Collector, capture: Capture, tag: &mut super::collect::Head, s: &str) {
    match capture {
        Capture::Message => {
            if let Some(t) = &mut c.test {
                t.message.push_str(s);
            }
        }
        Capture::Tag => tag.push_str(s),
        Capture::TeardownMessage => c.teardown_text(s),
        Capture::None => {}
    }
}

fn attr(e: &BytesStart, key: &[u8]) -> Option<String> {
    let a = e
        .attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.0.as_bytes() == key)?;
    Some(
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| v.into_owned())
            .unwrap_or_else(|_| a.value.clone().into_owned()),
    )
}

/// A status's elapsed seconds: `elapsed` (Robot 7), else `endtime` − `starttime` (Robot 6).
fn elapsed(e: &BytesStart) -> Option<f64> {
    if let Some(v) = attr(e, b"elapsed").and_then(|v| v.parse::<f64>().ok()) {
        return Some(v);
    }
    let t = |k: &[u8]| {
        attr(e, k)
            .and_then(|v| chrono::NaiveDateTime::parse_from_str(&v, "%Y%m%d %H:%M:%S%.f").ok())
    };
    let (s, e) = (t(b"starttime")?, t(b"endtime")?);
    Some((e - s).num_milliseconds() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::robot::syntax::Trickle;

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Robot 7.1" generated="2026-11-27T10:00:00" rpa="false" schemaversion="5">
<suite id="s1" name="Web &amp; Login" source="/s">
<suite id="s1-s1" name="Sub">
<test id="s1-s1-t1" name="A"><kw name="Log"><msg>x</msg><status status="FAIL" start="x" elapsed="9"/></kw>
<tag>smoke</tag><tag>a&amp;b</tag><status status="PASS" start="x" elapsed="0.125"/></test>
<test id="s1-s1-t2" name="B"><status status="FAIL" start="x" elapsed="0.5">boom &lt;1&gt;
second line</status></test>
<status status="FAIL" start="x" elapsed="0.7"/>
</suite>
<status status="FAIL" start="x" elapsed="0.75"/>
</suite>
<statistics>
<total>
<stat pass="1" fail="1" skip="2">All Tests</stat>
</total>
<tag></tag>
<suite><stat pass="9" fail="9" skip="9" id="s1" name="W">W</stat></suite>
</statistics>
<errors></errors>
</robot>
"#;

    #[test]
    fn reads_totals_root_suite_and_tests() {
        let s = read(XML.as_bytes()).unwrap().unwrap();
        assert_eq!((s.passed, s.failed, s.skipped), (1, 1, 2));
        assert_eq!(s.suite.as_deref(), Some("Web & Login"));
        assert_eq!(s.suite_status.as_deref(), Some("FAIL"));
        assert_eq!(s.elapsed_s, Some(0.75));
        assert_eq!(s.results.len(), 2);
        let a = &s.results[0];
        assert_eq!(
            (a.suite.as_str(), a.name.as_str(), a.status.as_str()),
            ("Web & Login.Sub", "A", "PASS")
        );
        assert_eq!(a.elapsed_s, Some(0.125));
        assert_eq!(a.tags, ["smoke", "a&b"]);
        assert_eq!(s.results[1].message.as_deref(), Some("boom <1>"));
    }

    #[test]
    fn a_trickling_reader_reads_the_same() {
        let xml = XML.replace("Sub", "Süb €𝄞");
        let whole = read(xml.as_bytes()).unwrap().unwrap();
        assert_eq!(read(Trickle(xml.as_bytes())).unwrap().unwrap(), whole);
        assert_eq!(whole.results[0].suite, "Web & Login.Süb €𝄞");
    }

    #[test]
    fn robot6_times_and_tags() {
        let xml = r#"<robot><suite name="S"><test name="T"><tags><tag>t1</tag></tags>
<status status="PASS" starttime="20231127 10:00:00.100" endtime="20231127 10:00:01.350"></status></test>
<status status="PASS" starttime="20231127 10:00:00.000" endtime="20231127 10:00:02.000"/></suite>
<statistics><total><stat pass="1" fail="0" skip="0">All Tests</stat></total></statistics></robot>"#;
        let s = read(xml.as_bytes()).unwrap().unwrap();
        assert_eq!(s.results[0].elapsed_s, Some(1.25));
        assert_eq!(s.results[0].tags, ["t1"]);
        assert_eq!(s.elapsed_s, Some(2.0));
    }

    /// `elapsed` is the runner's to write: `inf`, `NaN` and negative values parse as numbers
    /// but are no time, and neither is a Robot 6 `endtime` before its `starttime`.
    #[test]
    fn an_elapsed_time_that_is_no_time_is_unknown() {
        let xml = r#"<robot><suite name="S">
<test name="I"><status status="PASS" elapsed="inf"/></test>
<test name="N"><status status="FAIL" elapsed="NaN"/></test>
<test name="M"><status status="PASS" elapsed="-5"/></test>
<test name="B"><status status="PASS" starttime="20231127 10:00:02.000" endtime="20231127 10:00:01.000"/></test>
<test name="Z"><status status="PASS" elapsed="0"/></test>
<status status="FAIL" elapsed="inf"/></suite></robot>"#;
        let s = read(xml.as_bytes()).unwrap().unwrap();
        let got: Vec<Option<f64>> = s.results.iter().map(|r| r.elapsed_s).collect();
        assert_eq!(got, [None, None, None, None, Some(0.0)]);
        assert_eq!(s.elapsed_s, None);
    }

    #[test]
    fn truncated_and_garbage_files_are_errors_not_panics() {
        for cut in [10, 100, 300, XML.len() - 20] {
            assert!(read(&XML.as_bytes()[..cut]).is_err(), "cut at {cut}");
        }
        assert!(read(&b"\x00\xff<<<>>>garbage"[..]).is_err());
        assert!(matches!(read(&b""[..]), Ok(None)));
    }

    #[test]
    fn long_text_and_values_are_cut_without_breaking_the_xml() {
        let big = "a&amp;".repeat(100_000);
        let xml = format!(
            "<robot><suite name=\"{big}\"><test name=\"T\"><status status=\"FAIL\">{big}</status></test></suite></robot>"
        );
        let s = read(xml.as_bytes()).unwrap().unwrap();
        assert_eq!(s.failed, 1);
        assert!(s.results[0].message.as_ref().unwrap().starts_with("a&a&"));
        assert!(s.suite.unwrap().chars().count() <= super::super::collect::MAX_TEXT + 1);
        // The cut falls inside a two-byte character: it is finished, the parser sees UTF-8.
        for filler in ["aé", "aaé", "a€", "𝄞"] {
            let xml = format!(
                "<robot><suite name=\"S\"><test name=\"{0}\"><status status=\"FAIL\">{0}</status></test></suite></robot>",
                filler.repeat(KEEP)
            );
            let s = read(xml.as_bytes())
                .unwrap_or_else(|e| panic!("{filler}: {e}"))
                .unwrap();
            assert_eq!(s.failed, 1);
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let n = MAX_DEPTH + 10;
        let xml = format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        let e = read(xml.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested deeper"), "{e}");
    }
}
