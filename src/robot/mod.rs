//! Robot Framework awareness: test statistics from `output.xml`, and what robot's exit codes
//! mean. output.xml can be hundreds of MB, so it is read with a streaming parser and only the
//! root suite's status and the total statistics are kept.

use crate::state::record::{RunRecord, TestStats};
use quick_xml::events::Event;
use quick_xml::Reader;
use std::path::Path;

/// Adds test statistics and an explanation of robot's exit code to a finished record, when
/// the run folder holds an output.xml. A broken file adds a note; it never fails the record.
pub fn annotate(rec: &mut RunRecord) {
    let xml = rec.run_dir.join("output.xml");
    if !xml.is_file() {
        return;
    }
    match read_stats(&xml) {
        Ok(stats) => rec.tests = Some(stats),
        Err(e) => add_note(
            rec,
            format!("output.xml unreadable ({e}); test counts unknown"),
        ),
    }
    if let Some(code) = rec.exit_code {
        if let Some(meaning) = exit_meaning(code) {
            add_note(rec, format!("robot exit code {code}: {meaning}"));
        }
    }
}

fn add_note(rec: &mut RunRecord, note: String) {
    rec.note = Some(match rec.note.take() {
        Some(n) => format!("{n}; {note}"),
        None => note,
    });
}

/// Robot Framework's exit codes above "n tests failed".
pub fn exit_meaning(code: i32) -> Option<&'static str> {
    match code {
        250 => Some("250 or more tests failed"),
        251 => Some("help or version printed"),
        252 => Some("invalid test data or command line options"),
        253 => Some("execution stopped by the user"),
        255 => Some("unexpected internal error"),
        _ => None,
    }
}

/// Reads the total statistics and root suite of an output.xml.
pub fn read_stats(path: &Path) -> Result<TestStats, String> {
    let mut reader = Reader::from_file(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(4096);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut stats = TestStats::default();
    let mut have_total = false;
    let mut in_total_stat = false;
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.name().0.as_bytes().to_vec();
                let empty = matches!(ev, Event::Empty(_));
                let path: Vec<&[u8]> = stack.iter().map(|v| v.as_slice()).collect();
                if name == b"suite" && path == [b"robot".as_slice()] {
                    stats.suite = attr(e, b"name");
                } else if name == b"status" && path == [b"robot".as_slice(), b"suite"] {
                    stats.suite_status = attr(e, b"status");
                } else if name == b"stat"
                    && !have_total
                    && path == [b"robot".as_slice(), b"statistics", b"total"]
                {
                    let n = |k: &[u8]| attr(e, k).and_then(|v| v.parse().ok()).unwrap_or(0);
                    stats.passed = n(b"pass");
                    stats.failed = n(b"fail");
                    stats.skipped = n(b"skip");
                    have_total = true;
                    in_total_stat = !empty;
                }
                if !empty {
                    stack.push(name);
                }
            }
            Event::End(_) => {
                stack.pop();
                if in_total_stat {
                    in_total_stat = false;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err("file ends early (truncated: was robot killed?)".into());
    }
    if !have_total {
        return Err("no <statistics><total> in it".into());
    }
    Ok(stats)
}

fn attr(e: &quick_xml::events::BytesStart, key: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.0.as_bytes() == key)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Robot 7.1" generated="2026-11-27T10:00:00" rpa="false" schemaversion="5">
<suite id="s1" name="Web &amp; Login" source="/s">
<test id="s1-t1" name="A"><status status="PASS" start="x" elapsed="0.1"/></test>
<test id="s1-t2" name="B"><status status="FAIL" start="x" elapsed="0.1">boom</status></test>
<status status="FAIL" start="x" elapsed="0.2"/>
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
    fn reads_totals_and_root_suite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("output.xml");
        std::fs::write(&p, XML).unwrap();
        let s = read_stats(&p).unwrap();
        assert_eq!((s.passed, s.failed, s.skipped), (1, 1, 2));
        assert_eq!(s.suite.as_deref(), Some("Web & Login"));
        assert_eq!(s.suite_status.as_deref(), Some("FAIL"));
    }

    #[test]
    fn truncated_and_garbage_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("output.xml");
        for cut in [0, 10, 100, 300, XML.len() - 20] {
            std::fs::write(&p, &XML[..cut]).unwrap();
            assert!(read_stats(&p).is_err(), "cut at {cut}");
        }
        std::fs::write(&p, b"\x00\xff<<<>>>garbage").unwrap();
        assert!(read_stats(&p).is_err());
    }
}
