//! The config file parsed from its text to a validated spec, without I/O.
//!
//! Two stages, as in ripgrep's flags: `Raw*` types mirror the TOML exactly (serde with
//! `deny_unknown_fields`, spans kept where validation needs them), then [`Config`] holds what
//! the daemon acts on, with defaults applied and every cross-field rule checked. Every error
//! names the file, line, column and field so an admin can fix it without guessing.
//!
//! What only the host can tell — a job's user, whether an environment file is readable,
//! where uv is, this program's path, the default state dir — is not looked at here: the
//! parse hands it over as [`Need`]s, each with its place in the file, and
//! `service::config::prepare` does the looking (so that a failure there is reported at the
//! line and field that asked for it).

mod base;
mod daemon;
mod job;
mod locate;
mod suggest;
mod warnings;

pub(crate) use base::{check_name, lexical, plain, Locator, Need};
pub(crate) use job::{check_host, check_service};
pub(crate) use locate::{daemon_block, daemon_table, location, other_instances};
pub(crate) use warnings::warnings;

use crate::model::config::{Config, ConfigError};
use crate::model::schedule::Schedule;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    daemon: Option<Spanned<daemon::RawDaemon>>,
    #[serde(default)]
    job: Vec<Spanned<job::RawJob>>,
}

/// A config parsed and validated from its text, with what only the host can tell still to be
/// done ([`Need`]s, in the order of the file).
#[derive(Debug)]
pub(crate) struct Draft {
    /// Complete but for the needs: the default state dir empty, uv not found yet, jobs'
    /// users not looked up (`user_deferred`), retry wrappers run [`base::SELF_EXE_FALLBACK`].
    pub(crate) config: Config,
    pub(crate) needs: Vec<Need>,
}

/// Why a file with nothing in it is no config. TOML takes it for one (every setting at its
/// default), but a file is empty for a moment while it is rewritten in place (`cat >`, an
/// editor, config management, a full disk leaving 0 bytes): taken as meant, it would hand a
/// daemon over to the default instance, or remove every job.
pub(crate) const EMPTY: &str = "the config is empty (no [daemon] table and no [[job]], only \
     whitespace or comments): a file being rewritten, or a write that failed? An empty file \
     is never taken for a config; a config without jobs still has its [daemon] table";

/// Whether `text` has nothing in it at all: only whitespace and comments (see [`EMPTY`]).
pub(crate) fn is_empty(text: &str) -> bool {
    text.trim_start_matches('\u{feff}').lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

/// Parses and validates config text. `path` is used for messages; relative paths in the file
/// are relative to `base` (the config's folder, absolute); `now` is when a cron job's default
/// timeout (its interval) is measured.
pub(crate) fn parse(
    path: &Path,
    base: &Path,
    text: &str,
    now: DateTime<Utc>,
) -> Result<Draft, ConfigError> {
    if is_empty(text) {
        return Err(plain(path, EMPTY.to_string()));
    }
    let loc = Locator { path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        let field = e.span().and_then(|s| loc.key_at(s.start));
        let message = suggest::admin_words(e.message().trim(), field.as_deref());
        loc.at(start, field, message)
    })?;
    let mut needs = Vec::new();
    let daemon = daemon::resolve_daemon(&loc, raw.daemon, base, &mut needs)?;
    let mut jobs = Vec::with_capacity(raw.job.len());
    // Jobs on one crontab expression share it: admins reuse a few expressions for many jobs,
    // and each copy held its text and bitmasks (some 80 bytes a job) for the daemon's life.
    let mut crons: HashMap<Arc<str>, Arc<crate::model::cron_set::CronSet>> = HashMap::new();
    for (i, job) in raw.job.into_iter().enumerate() {
        let mut job = job::resolve(&loc, i, job, base, now, &mut needs)?;
        if let Schedule::Cron { text, cron } = &mut job.schedule {
            match crons.get_key_value(&**text) {
                Some((t, c)) => (*text, *cron) = (t.clone(), c.clone()),
                None => {
                    crons.insert(text.clone(), cron.clone());
                }
            }
        }
        jobs.push(Arc::new(job));
    }
    let mut seen = HashSet::new();
    // Told apart as the monitoring core and its metric files keep them
    // (`checkmk_names::unique_key`); the daemon's
    // own check is taken first: a job's line with its name would hide the daemon's state.
    let daemon_service = format!("Robotmk {} daemon", daemon.instance);
    let mut services = HashMap::new();
    services.insert(
        crate::logic::checkmk_names::unique_key(&daemon_service),
        daemon_service,
    );
    for (i, job) in jobs.iter().enumerate() {
        if !seen.insert(job.name.clone()) {
            // Re-locate the duplicate: the resolved job no longer carries its span.
            let offset = nth_name_offset(text, &job.name, 2).unwrap_or(0);
            return Err(loc.at(
                offset,
                Some(format!("job[{i}].name")),
                format!(
                    "duplicate job name {:?}; job names must be unique",
                    job.name
                ),
            ));
        }
        let service = job
            .plugin
            .as_ref()
            .and_then(|p| p.service.clone())
            .unwrap_or_else(|| format!("Robotmk {} {}", daemon.instance, job.name));
        let key = crate::logic::checkmk_names::unique_key(&service);
        if let Some(other) = services.get(&key) {
            let offset = nth_name_offset(text, &job.name, 1).unwrap_or(0);
            let whose = if *other == format!("Robotmk {} daemon", daemon.instance) {
                "the daemon's own check".to_string()
            } else {
                "another job".to_string()
            };
            let same = if *other == service {
                String::new()
            } else if crate::logic::checkmk_names::core_key(other)
                == crate::logic::checkmk_names::core_key(&service)
            {
                format!(" (Checkmk drops `;,=!?'\"<>|` and the like from service names, and the spaces around what is left: {other:?} is the same service)")
            } else {
                format!(" (Checkmk names a service's metric files with space, `/`, `\\` and `:` written as `_`: {other:?} would share its graphs)")
            };
            return Err(loc.at(
                offset,
                Some(format!("job[{i}].service")),
                format!("the service name {service:?} is taken by {whose}{same}; service names must be unique: rename the job or give it a `service`"),
            ));
        }
        services.insert(key, service);
    }
    let config = Config {
        path: path.to_path_buf(),
        daemon,
        jobs,
        users_held: Default::default(),
    };
    Ok(Draft { config, needs })
}

/// Byte offset of the `n`th `name = "<value>"` line (1-based `n`).
fn nth_name_offset(text: &str, value: &str, n: usize) -> Option<usize> {
    let mut count = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            if k.trim() == "name" && v == value {
                count += 1;
                if count == n {
                    return Some(offset + line.len() - line.trim_start().len());
                }
            }
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    // Here rather than in staleness: the margin is read from a parsed config, and staleness
    // (below the config parse, which takes its default) must not import the parse.
    use crate::logic::staleness::{for_job, margin, DEFAULT_STALE_MARGIN};
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Two lines Checkmk takes for one service hide one of them: a job named `daemon` (or a
    /// plugin job's `service` naming the daemon's check) would hide the daemon's state, and
    /// names that differ only in what the core drops (`;`, `,`, `=`, …) are one service.
    #[test]
    fn service_names_the_core_would_merge_are_refused() {
        let parse = |jobs: &str| {
            super::parse(
                std::path::Path::new("/etc/t.toml"),
                std::path::Path::new("/etc"),
                &format!("[daemon]\ninstance = \"i\"\nstate_dir = \"/tmp/x\"\n\n{jobs}"),
                Utc::now(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        let job = |name: &str, extra: &str| {
            format!("[[job]]\nname = \"{name}\"\ncommand = [\"true\"]\nevery = \"1m\"\n{extra}\n")
        };
        let plugin = |name: &str, service: &str| {
            job(
                name,
                &format!("kind = \"plugin\"\nservice = \"{service}\"\n"),
            )
        };
        let err = parse(&job("daemon", "")).unwrap_err();
        assert!(err.contains("taken by the daemon's own check"), "{err}");
        // Every name of the daemon's own, a test's among them, which no config names.
        for reserved in ["Robotmk i daemon;", "Robotmk i web Login", "Robotmk; x y"] {
            let err = parse(&plugin("p", reserved)).unwrap_err();
            assert!(err.contains("are the daemon's own"), "{err}");
        }
        let err = parse(&(plugin("a", "Shop;HTTP") + &plugin("b", "ShopHTTP"))).unwrap_err();
        assert!(
            err.contains("\"ShopHTTP\" is taken by another job"),
            "{err}"
        );
        assert!(err.contains("\"Shop;HTTP\" is the same service"), "{err}");
        let err = parse(&(plugin("a", "Disk, root") + &plugin("b", "Disk root"))).unwrap_err();
        assert!(err.contains("is taken by another job"), "{err}");
        parse(&(plugin("a", "Shop HTTP") + &plugin("b", "ShopHTTP") + &job("daemon2", "")))
            .unwrap();
        // One service each to the core, but one metric file (W3 F1).
        for (a, b) in [
            ("Shop HTTP", "Shop_HTTP"),
            ("Disk /var", "Disk _var"),
            ("C: free", "C_ free"),
        ] {
            let err = parse(&(plugin("a", a) + &plugin("b", b))).unwrap_err();
            assert!(
                err.contains(&format!("{a:?} would share its graphs")),
                "{err}"
            );
        }
        // Nagios strips what is left: `Shop ;` is `Shop`, and `;` is no name at all.
        let err = parse(&(plugin("a", "Shop ;") + &plugin("b", "Shop"))).unwrap_err();
        assert!(err.contains("\"Shop\" is taken by another job"), "{err}");
        assert!(err.contains("\"Shop ;\" is the same service"), "{err}");
        for nothing in [";", "? !", "`~"] {
            let err = parse(&plugin("p", nothing)).unwrap_err();
            assert!(err.contains("is nothing to the monitoring core"), "{err}");
        }
    }

    #[test]
    fn the_margin_is_stop_grace_plus_stale_margin() {
        let c = super::parse(
            std::path::Path::new("/etc/t.toml"),
            std::path::Path::new("/etc"),
            "[daemon]\nstate_dir = \"/tmp/x\"\nstop_grace = \"15s\"\n\n[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1m\"\ntimeout = \"20s\"\n",
            Utc::now(),
        )
        .unwrap()
        .config;
        assert_eq!(
            margin(&c.daemon),
            Duration::from_secs(15) + DEFAULT_STALE_MARGIN
        );
        let d = for_job(&c.jobs[0], &c.daemon, at("2026-11-27T10:00:00Z")).unwrap();
        assert_eq!(d.expected_by, at("2026-11-27T10:02:05Z"));
    }
}
