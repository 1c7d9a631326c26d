//! Why robot's result file could not be parsed: what the XML and JSON readers ([`super::xml`],
//! [`super::json`]) say of a file that is not robot's format, or was cut short, with the byte
//! offset where they can tell it.

use super::collect::MAX_DEPTH;
use std::io;

/// A result file the readers could not parse.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Reading the bytes failed (a bound of the budget, or the file itself).
    #[error("at byte {at}: {source}")]
    Read {
        at: u64,
        #[source]
        source: io::Error,
    },
    /// quick-xml refused the document.
    #[error("at byte {at}: {source}")]
    Xml {
        at: u64,
        #[source]
        source: quick_xml::Error,
    },
    /// The bytes at `at` break the grammar.
    #[error("at byte {at}: {what}")]
    Json { at: u64, what: JsonSyntax },
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("an end tag without a start")]
    EndWithoutStart,
    #[error("the file ends early (truncated: robot was killed while writing it?)")]
    XmlTruncated,
}

/// What is wrong with a JSON document at one place.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonSyntax {
    Truncated,
    TruncatedString,
    TruncatedEscape,
    AfterEnd,
    Unexpected(char),
    ExpectedKey,
    ExpectedColon,
    TooDeep,
    InvalidLiteral,
    LongNumber,
    InvalidNumber(String),
    ControlCharacter,
    BadEscape,
}

impl std::fmt::Display for JsonSyntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonSyntax::Truncated => f.write_str("the file ends early (truncated?)"),
            JsonSyntax::TruncatedString => {
                f.write_str("the file ends inside a string (truncated?)")
            }
            JsonSyntax::TruncatedEscape => f.write_str("the file ends inside a string"),
            JsonSyntax::AfterEnd => f.write_str("data after the end of the document"),
            JsonSyntax::Unexpected(c) => write!(f, "unexpected {c:?}"),
            JsonSyntax::ExpectedKey => f.write_str("expected a key"),
            JsonSyntax::ExpectedColon => f.write_str("expected ':'"),
            JsonSyntax::TooDeep => write!(f, "nested deeper than {MAX_DEPTH} levels"),
            JsonSyntax::InvalidLiteral => f.write_str("invalid literal"),
            JsonSyntax::LongNumber => f.write_str("a number longer than 64 characters"),
            JsonSyntax::InvalidNumber(s) => write!(f, "invalid number {s:?}"),
            JsonSyntax::ControlCharacter => f.write_str("a control character in a string"),
            JsonSyntax::BadEscape => f.write_str("bad \\u escape"),
        }
    }
}

/// A reader that hands out one byte per read: every character is split by a refill (the
/// readers' tests).
#[cfg(test)]
pub(crate) struct Trickle<'a>(pub(crate) &'a [u8]);

#[cfg(test)]
impl std::io::Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), out.first_mut()) {
            (Some((b, rest)), Some(o)) => {
                *o = *b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}
