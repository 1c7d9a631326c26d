//! What a `kind = "plugin"` job may and may not have: its plugin settings, and no result
//! file, per-test services or retries. Pure.

use super::checkmk::check_service;
use super::raw::{At, Kind, RawJob};
use crate::model::config::{ConfigError, PluginSpec};

/// What a plugin job cannot have: a result file, per-test services, retries.
pub(super) fn plugin_excludes(at: &At, raw: &RawJob) -> Result<(), ConfigError> {
    let start = raw.command.as_ref().map_or(at.start, |c| c.span().start);
    for (f, present) in [
        ("result", raw.result.is_some()),
        ("services", raw.services.is_some()),
        ("attempts", raw.attempts.is_some()),
    ] {
        if present {
            let m = format!("`{f}` does not apply to `kind = \"plugin\"` jobs");
            return Err(at.err(start, f, m));
        }
    }
    Ok(())
}

/// The plugin settings of a `kind = "plugin"` job (`service`, `timeout_state`); both keys
/// are an error on other jobs.
pub(super) fn plugin_spec(
    at: &At,
    raw: &RawJob,
    kind: Kind,
) -> Result<Option<Box<PluginSpec>>, ConfigError> {
    if kind != Kind::Plugin {
        for (f, v) in [
            ("service", &raw.service),
            ("timeout_state", &raw.timeout_state),
        ] {
            if let Some(v) = v {
                let m = format!("`{f}` only applies to `kind = \"plugin\"` jobs");
                return Err(at.err(v.span().start, f, m));
            }
        }
        return Ok(None);
    }
    let service = match &raw.service {
        None => None,
        Some(s) => {
            check_service(s.get_ref()).map_err(|m| at.err(s.span().start, "service", m))?;
            Some(s.get_ref().clone())
        }
    };
    let timeout_state = match &raw.timeout_state {
        None => 2,
        Some(t) => match t.get_ref().to_ascii_lowercase().as_str() {
            "ok" => 0,
            "warn" | "warning" => 1,
            "crit" | "critical" => 2,
            "unknown" => 3,
            _ => {
                let m = format!(
                    "{:?} is not a state; use \"ok\", \"warn\", \"crit\" or \"unknown\"",
                    t.get_ref()
                );
                return Err(at.err(t.span().start, "timeout_state", m));
            }
        },
    };
    Ok(Some(Box::new(PluginSpec {
        service,
        timeout_state,
    })))
}
