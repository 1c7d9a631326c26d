//! The Checkmk side of a job: the service and piggyback host names that go verbatim into the
//! agent's output (checked so that no value can break a line or a section), and its runtime
//! levels. Pure.

use super::raw::{At, RawJob};
use crate::logic::config::base::{ValueError, MAX_HOST_LEN, MAX_SERVICE_LEN};
use crate::model::config::ConfigError;
use crate::model::duration::Dur;
use std::time::Duration;
use toml::Spanned;

/// A service name goes between the quotes of a local check line: Checkmk's parser takes no
/// `"` or `'` there, and nothing may break the line.
pub(crate) fn check_service(s: &str) -> Result<(), ValueError> {
    if s.trim().is_empty() {
        return Err(ValueError::ServiceEmpty);
    }
    if s.trim() != s {
        return Err(ValueError::ServiceSpace(s.to_string()));
    }
    if s.chars().count() > MAX_SERVICE_LEN {
        return Err(ValueError::ServiceTooLong);
    }
    if let Some(c) = s.chars().find(|c| {
        matches!(c, '"' | '\'' | '\\') || c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
    }) {
        return Err(ValueError::ServiceChar(s.to_string(), c));
    }
    // As the core keeps it: `Robotmk;` is `Robotmk` there. A name of the daemon's own could
    // hide its daemon line, another job's check, a test's (which no config names) or another
    // instance's, and Checkmk keeps the later of two lines with one name.
    let key = crate::logic::checkmk_names::core_key(s);
    if key.starts_with("Robotmk ") {
        return Err(ValueError::ServiceReserved(s.to_string()));
    }
    // `;` or `? !` would be a service without a name, which Checkmk cannot keep.
    if key.is_empty() {
        return Err(ValueError::ServiceNothingLeft(s.to_string()));
    }
    Ok(())
}

/// The Checkmk side of a job: its piggyback host and runtime levels.
#[allow(clippy::type_complexity)]
pub(super) fn checkmk_settings(
    at: &At,
    raw: &RawJob,
) -> Result<(Option<String>, Option<Duration>, Option<Duration>), ConfigError> {
    let host = match &raw.host {
        Some(h) => {
            let v = h.get_ref();
            check_host(v).map_err(|m| at.err(h.span().start, "host", m))?;
            Some(v.clone())
        }
        None => None,
    };
    let level = |l: &Option<Spanned<Dur>>, f: &str| match l {
        Some(d) if d.get_ref().0.is_zero() => {
            Err(at.err(d.span().start, f, "must be longer than 0"))
        }
        Some(d) => Ok(Some(d.get_ref().0)),
        None => Ok(None),
    };
    let warn = level(&raw.runtime_warn, "runtime_warn")?;
    let crit = level(&raw.runtime_crit, "runtime_crit")?;
    if let (Some(w), Some(c), Some(a)) = (warn, crit, &raw.runtime_crit) {
        if w > c {
            let m = "must not be shorter than `runtime_warn`";
            return Err(at.err(a.span().start, "runtime_crit", m));
        }
    }
    Ok((host, warn, crit))
}

/// A piggyback host name goes verbatim into `<<<<NAME>>>>`: Checkmk's host name characters
/// only, so that no value can end the marker early or inject a section.
pub(crate) fn check_host(h: &str) -> Result<(), ValueError> {
    if h.is_empty() {
        return Err(ValueError::HostEmpty);
    }
    if h.len() > MAX_HOST_LEN {
        return Err(ValueError::HostTooLong);
    }
    if let Some(c) = h
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(ValueError::HostChar(h.to_string(), c));
    }
    if h.starts_with(['.', '-']) {
        return Err(ValueError::HostStart(h.to_string()));
    }
    Ok(())
}
