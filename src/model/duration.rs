//! Durations as users write them in the config (`90s`, `5m`, `1h30m`, `0`).
//!
//! A hand-written parser because the format is tiny and the error message must say exactly
//! which part of the text is wrong; bare integers are accepted as seconds since TOML users
//! will write `timeout = 60` and mean it.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Upper bound for any configured duration: far beyond any sensible interval, yet small
/// enough that adding it to a timestamp can never overflow.
const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A parsed config duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Dur(pub Duration);

/// A duration that cannot be read: the text, where it goes wrong, and how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; write e.g. \"90s\", \"5m\" or \"1h30m\"")]
    Empty,
    #[error("invalid duration {text:?}: expected a number at {at:?}; write e.g. \"90s\", \"5m\" or \"1h30m\"")]
    Number { text: String, at: String },
    #[error("invalid duration {0:?}: number too large")]
    TooLarge(String),
    #[error("invalid duration {text:?}: missing unit after {n}; use ms, s, m, h or d")]
    NoUnit { text: String, n: u64 },
    #[error("invalid duration {text:?}: unknown unit {unit:?}; use ms, s, m, h or d")]
    Unit { text: String, unit: String },
    #[error("invalid duration {0:?}: longer than 10 years")]
    TooLong(String),
}

/// Parses `90s`, `5m`, `1h30m`, `250ms`, `2d` or `0`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Number {
                text: text.to_string(),
                at: rest.to_string(),
            });
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLarge(text.to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            "" => {
                return Err(DurationError::NoUnit {
                    text: text.to_string(),
                    n,
                })
            }
            other => {
                return Err(DurationError::Unit {
                    text: text.to_string(),
                    unit: other.to_string(),
                })
            }
        };
        total = total.saturating_add(part);
        if total > MAX {
            return Err(DurationError::TooLong(text.to_string()));
        }
    }
    Ok(total)
}

/// Formats a duration the way it would be written in the config (`1h30m`, `90s` → `1m30s`).
pub(crate) fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0".into();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let sub = d.subsec_millis();
    if sub != 0 {
        out.push_str(&format!("{sub}ms"));
    }
    out
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"90s\", \"5m\" or \"1h30m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse(v).map(Dur).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                if v < 0 {
                    return Err(E::custom(format!("invalid duration {v}: negative")));
                }
                parse(&format!("{v}s")).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A short human age: `42s`, `5m`, `3h`, `2d`.
pub(crate) fn human_age(secs: f64) -> String {
    let mut out = String::new();
    push_human_age(&mut out, secs);
    out
}

/// [`human_age`] appended to `out`: no string of its own (ctrl writes one for every job on
/// every agent call).
pub(crate) fn push_human_age(out: &mut String, secs: f64) {
    use std::fmt::Write as _;
    let s = secs.max(0.0) as u64;
    let (n, unit) = match s {
        0..=119 => (s, 's'),
        120..=7199 => (s / 60, 'm'),
        7200..=172_799 => (s / 3600, 'h'),
        _ => (s / 86400, 'd'),
    };
    // Writing to a String cannot fail.
    let _ = write!(out, "{n}");
    out.push(unit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172800)));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            "",
            "5",
            "5x",
            "m5",
            "1h 30m",
            "-5s",
            "5.5s",
            "99999999999999999999s",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.to_string().contains("duration"), "{bad:?}: {err}");
        }
        assert!(parse("100000d")
            .unwrap_err()
            .to_string()
            .contains("10 years"));
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format(Duration::ZERO), "0");
    }
}
