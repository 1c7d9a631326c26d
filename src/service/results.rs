//! A result file read by its path, as a person's `parse-result` and the retry wrapper (which
//! reads its own attempts as the job's user) read one: the one safe open (no link, no FIFO: a
//! runner's leftovers must not hang anyone), then `logic::robot`'s readers, with no caps but
//! the file's own.

use crate::logic::robot::budget::Clock;
use crate::logic::robot::read_file;
use crate::model::limits::Limits;
use crate::model::record::TestStats;
use std::path::Path;

/// Reads a result file: JSON when it is named `*.json` or starts with `{`, else XML. For a
/// person's `parse-result` and the retry wrapper (which reads its own attempts as the job's
/// user): no caps but the file's own.
pub(crate) fn read_result(path: &Path) -> Result<TestStats, String> {
    let f = crate::service::sys::file::open_read(path).map_err(|e| e.to_string())?;
    read_file(f, path, &Clock::new(Limits::NONE, None)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_result_says_it_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("output.xml");
        std::fs::write(&p, b"").unwrap();
        let e = read_result(&p).unwrap_err();
        // Issue 22: no guess at why (a command may exit 1 after writing nothing).
        assert_eq!(e, "the file is empty");
        let j = dir.path().join("r.json");
        std::fs::write(&j, br#" {"suite":{"name":"S","tests":[]}}"#).unwrap();
        assert_eq!(read_result(&j).unwrap().suite.as_deref(), Some("S"));
    }
}
