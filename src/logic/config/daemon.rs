//! The `[daemon]` table: its raw form and the daemon-wide settings it resolves to, defaults
//! applied and every rule checked.

use super::base::{lexical, Locator, Need, Place, ValueError};
use crate::logic::staleness::DEFAULT_STALE_MARGIN;
use crate::model::config::{
    ConfigError, DaemonSettings, Publish, DEFAULT_RESULT_MAX_BYTES, DEFAULT_RESULT_PARSE_TIMEOUT,
};
use crate::model::duration::Dur;
use crate::model::env::DEFAULT_BUILD_USER;
use crate::model::limits::Limits;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The shortest `hang_timeout`: ctrl calls a daemon unresponsive only after 5 s without an
/// answer, and confirms for 2 s more before it ends one.
const MIN_HANG_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    instance: Option<Spanned<String>>,
    state_dir: Option<PathBuf>,
    heartbeat_timeout: Option<Dur>,
    hang_timeout: Option<Spanned<Dur>>,
    max_parallel: Option<usize>,
    keep_runs: Option<Spanned<usize>>,
    stop_grace: Option<Dur>,
    log_max_size: Option<Spanned<String>>,
    stale_margin: Option<Dur>,
    agent_cache_age: Option<Spanned<Dur>>,
    env_build_timeout: Option<Spanned<Dur>>,
    start_delay: Option<Dur>,
    uv: Option<Spanned<String>>,
    build_user: Option<Spanned<String>>,
    result_max_size: Option<Spanned<String>>,
    result_parse_timeout: Option<Spanned<Dur>>,
    publish_dir: Option<Spanned<PathBuf>>,
    publish_url: Option<Spanned<String>>,
    other_instances: Option<Spanned<Vec<PathBuf>>>,
}

/// Resolves and validates the `[daemon]` table; the default state dir and uv's path are left
/// to the preparation step (`needs`).
pub(super) fn resolve_daemon(
    loc: &Locator,
    raw: Option<Spanned<RawDaemon>>,
    base: &Path,
    needs: &mut Vec<Need>,
) -> Result<DaemonSettings, ConfigError> {
    let (span, raw) = match raw {
        Some(r) => (r.span(), r.into_inner()),
        None => (0..0, RawDaemon::default()),
    };
    let instance = instance(loc, &raw)?;
    let state_dir = state_dir(loc, &raw, span.start, base, needs)?;
    let keep_runs = keep_runs(loc, &raw)?;
    let hang_timeout = hang_timeout(loc, &raw)?;
    let log_max_bytes = size(loc, &raw.log_max_size, "log_max_size", 10 * 1024 * 1024)?;
    let agent_cache_age = agent_cache_age(loc, &raw)?;
    let env_build_timeout = positive(loc, &raw.env_build_timeout, "env_build_timeout")?
        .unwrap_or(Duration::from_secs(600));
    let result_limits = Limits {
        max_bytes: size(
            loc,
            &raw.result_max_size,
            "result_max_size",
            DEFAULT_RESULT_MAX_BYTES,
        )?,
        max_time: positive(loc, &raw.result_parse_timeout, "result_parse_timeout")?
            .unwrap_or(DEFAULT_RESULT_PARSE_TIMEOUT),
    };
    uv_need(&raw, base, loc, needs);
    let publish = publish(loc, &raw, base)?;
    let build_user = build_user(loc, &raw)?;
    let other_instances = other_instances(loc, raw.other_instances, base)?;
    Ok(DaemonSettings {
        other_instances,
        publish,
        build_user,
        env_build_timeout,
        result_limits,
        start_delay: raw.start_delay.map_or(Duration::ZERO, |d| d.0),
        // Found by the preparation step (see `Need::Uv`).
        uv: None,
        instance,
        state_dir,
        heartbeat_timeout: raw
            .heartbeat_timeout
            .map_or(Some(Duration::from_secs(300)), |d| {
                (!d.0.is_zero()).then_some(d.0)
            }),
        hang_timeout,
        max_parallel: raw.max_parallel.unwrap_or(4),
        keep_runs,
        stop_grace: raw.stop_grace.map_or(Duration::from_secs(10), |d| d.0),
        log_max_bytes,
        stale_margin: raw.stale_margin.map_or(DEFAULT_STALE_MARGIN, |d| d.0),
        agent_cache_age,
    })
}

/// `instance`: a name (the default instance is `system`).
fn instance(loc: &Locator, raw: &RawDaemon) -> Result<String, ConfigError> {
    Ok(match &raw.instance {
        Some(i) => {
            super::base::check_name(i.get_ref())
                .map_err(|m| loc.at(i.span().start, Some("daemon.instance".into()), m))?;
            i.get_ref().clone()
        }
        None => "system".to_string(),
    })
}

/// `state_dir`, from the config's folder; none: the preparation step picks the default.
fn state_dir(
    loc: &Locator,
    raw: &RawDaemon,
    at: usize,
    base: &Path,
    needs: &mut Vec<Need>,
) -> Result<PathBuf, ConfigError> {
    Ok(match &raw.state_dir {
        Some(p) if p.as_os_str().is_empty() => {
            let field = Some("daemon.state_dir".into());
            return Err(loc.at(at, field, "must not be empty"));
        }
        Some(p) => lexical(&base.join(p)),
        None => {
            needs.push(Need::DefaultStateDir);
            PathBuf::new()
        }
    })
}

/// `keep_runs`: at least 1 (default 20).
fn keep_runs(loc: &Locator, raw: &RawDaemon) -> Result<usize, ConfigError> {
    Ok(match &raw.keep_runs {
        Some(k) if *k.get_ref() == 0 => {
            return Err(loc.at(
                k.span().start,
                Some("daemon.keep_runs".into()),
                "must be at least 1: a run's own folder must stay until it is recorded",
            ))
        }
        Some(k) => *k.get_ref(),
        None => 20,
    })
}

/// `other_instances`: each entry a path (relative ones from the config's folder), none empty.
fn other_instances(
    loc: &Locator,
    raw: Option<Spanned<Vec<PathBuf>>>,
    base: &Path,
) -> Result<Vec<PathBuf>, ConfigError> {
    let Some(list) = raw else {
        return Ok(Vec::new());
    };
    let at = list.span().start;
    let mut out = Vec::new();
    for p in list.into_inner() {
        if p.as_os_str().is_empty() {
            return Err(loc.at(
                at,
                Some("daemon.other_instances".into()),
                "an entry is empty; name an instance's state dir or its config file",
            ));
        }
        out.push(lexical(&base.join(p)));
    }
    Ok(out)
}

/// `hang_timeout`: "0" turns it off; else at least [`MIN_HANG_TIMEOUT`]; 5 minutes by default.
fn hang_timeout(loc: &Locator, raw: &RawDaemon) -> Result<Option<Duration>, ConfigError> {
    match &raw.hang_timeout {
        Some(h) if h.get_ref().0.is_zero() => Ok(None),
        Some(h) if h.get_ref().0 < MIN_HANG_TIMEOUT => Err(loc.at(
            h.span().start,
            Some("daemon.hang_timeout".into()),
            format!(
                "must be at least {}s: the daemon answers the heartbeat within a second or two, and a shorter limit would end a daemon that is only busy (\"0\" = never end it)",
                MIN_HANG_TIMEOUT.as_secs()
            ),
        )),
        Some(h) => Ok(Some(h.get_ref().0)),
        None => Ok(Some(Duration::from_secs(300))),
    }
}

/// `agent_cache_age`: at least a second when set.
fn agent_cache_age(loc: &Locator, raw: &RawDaemon) -> Result<Option<Duration>, ConfigError> {
    match &raw.agent_cache_age {
        Some(a) if a.get_ref().0 < Duration::from_secs(1) => Err(loc.at(
            a.span().start,
            Some("daemon.agent_cache_age".into()),
            "must be at least 1s (leave it out when the agent runs ctrl on every call)",
        )),
        Some(a) => Ok(Some(a.get_ref().0)),
        None => Ok(None),
    }
}

/// A duration that must be longer than 0 when set.
fn positive(
    loc: &Locator,
    value: &Option<Spanned<Dur>>,
    key: &str,
) -> Result<Option<Duration>, ConfigError> {
    match value {
        Some(t) if t.get_ref().0.is_zero() => Err(loc.at(
            t.span().start,
            Some(format!("daemon.{key}")),
            "must be longer than 0",
        )),
        Some(t) => Ok(Some(t.get_ref().0)),
        None => Ok(None),
    }
}

/// A size (`10MB`), or `default`.
fn size(
    loc: &Locator,
    value: &Option<Spanned<String>>,
    key: &str,
    default: u64,
) -> Result<u64, ConfigError> {
    match value {
        Some(s) => parse_size(s.get_ref())
            .map_err(|m| loc.at(s.span().start, Some(format!("daemon.{key}")), m)),
        None => Ok(default),
    }
}

/// Where the preparation step looks for uv: the program `uv` names (a path is relative to the
/// config file), or on PATH; nothing for `uv = "off"` (always `python -m venv` + pip).
fn uv_need(raw: &RawDaemon, base: &Path, loc: &Locator, needs: &mut Vec<Need>) {
    match &raw.uv {
        Some(u) if u.get_ref() == "off" => {}
        Some(u) => {
            let p = Path::new(u.get_ref());
            let p = if p.components().count() > 1 {
                lexical(&base.join(p))
            } else {
                p.to_path_buf()
            };
            let place = Place(loc.at(u.span().start, Some("daemon.uv".into()), ""));
            needs.push(Need::Uv {
                named: Some((p, place)),
            });
        }
        // Much faster than pip when the host has it.
        None => needs.push(Need::Uv { named: None }),
    }
}

/// `publish_dir` and `publish_url`: both or neither.
fn publish(loc: &Locator, raw: &RawDaemon, base: &Path) -> Result<Option<Publish>, ConfigError> {
    match (&raw.publish_dir, &raw.publish_url) {
        (None, None) => Ok(None),
        (Some(d), None) => Err(loc.at(
            d.span().start,
            Some("daemon.publish_url".into()),
            "`publish_dir` needs `publish_url` (the URL the web server serves the folder at, e.g. \"https://monitor.example.com/robot\")",
        )),
        (None, Some(u)) => Err(loc.at(
            u.span().start,
            Some("daemon.publish_dir".into()),
            "`publish_url` needs `publish_dir` (the folder the web server serves)",
        )),
        (Some(d), Some(u)) => {
            if d.get_ref().as_os_str().is_empty() {
                return Err(loc.at(
                    d.span().start,
                    Some("daemon.publish_dir".into()),
                    "must not be empty",
                ));
            }
            let url = crate::logic::publish_plan::check_publish_url(u.get_ref())
                .map_err(|m| loc.at(u.span().start, Some("daemon.publish_url".into()), m))?;
            Ok(Some(Publish {
                dir: lexical(&base.join(d.get_ref())),
                url,
            }))
        }
    }
}

/// `build_user`: an unprivileged user (looked up by the daemon when it builds, not here).
fn build_user(loc: &Locator, raw: &RawDaemon) -> Result<String, ConfigError> {
    match &raw.build_user {
        Some(u) => {
            let name = u.get_ref().trim();
            if name.is_empty() || name == "root" {
                return Err(loc.at(
                    u.span().start,
                    Some("daemon.build_user".into()),
                    "must name an unprivileged user: environments are never built as root",
                ));
            }
            Ok(name.to_string())
        }
        None => Ok(DEFAULT_BUILD_USER.to_string()),
    }
}

/// Parses `10MB`, `512KB`, `1GB` or a plain byte count.
fn parse_size(s: &str) -> Result<u64, ValueError> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| ValueError::Size(s.to_string()))?;
    let mult = match t[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" | "KIB" => 1024,
        "MB" | "M" | "MIB" => 1024 * 1024,
        "GB" | "G" | "GIB" => 1024 * 1024 * 1024,
        other => return Err(ValueError::SizeUnit(other.to_string())),
    };
    let bytes = n.saturating_mul(mult);
    if bytes < 4096 {
        return Err(ValueError::SizeTooSmall(s.to_string()));
    }
    Ok(bytes)
}
