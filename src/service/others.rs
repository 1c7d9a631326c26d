//! Other instances ctrl reports besides its own: `[daemon] other_instances`, each an
//! instance's state dir or its config file. A USER instance (a second daemon in a user's
//! desktop session, for GUI tests, started by the Task Scheduler or the desktop's autostart)
//! has no agent of its own: the system instance's ctrl, which the agent runs, prints its
//! sections too — its daemon line (running, answering its own ctrl's heartbeat, stable), its
//! jobs and per-test checks, its piggyback blocks — read with the same bounds as its own state
//! (`service::sys::file`: by handle, no links, regular files, capped) after the same kind of trust
//! check: nobody but root, this user and the instance's owner may write the path or anything
//! above it. An instance that cannot be read is a CRIT line that says why.
//!
//! This module reads and judges; ctrl renders what it found (`logic::agent`: the sections of
//! a report, the CRIT line of an entry that cannot be shown), so that every line it prints
//! keeps the grammar's guarantees.
//!
//! ctrl never writes into another instance's state dir: that instance's own ctrl (run by the
//! Task Scheduler or a timer in the user's session) keeps its heartbeat.

use crate::model::report::{ConfigView, Report};
use crate::service::report;
use std::path::{Path, PathBuf};

/// Why another instance is not shown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OtherError {
    #[error("cannot read the instance at {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not reading the instance at {path}: {why}")]
    Untrusted { path: PathBuf, why: String },
    #[error("the instance at {path}: its config names no instance and state dir")]
    NoConfig { path: PathBuf },
    #[error("the instance at {path}: no status.json in {state_dir} (has its daemon ever run?)")]
    NoStatus { path: PathBuf, state_dir: PathBuf },
    #[error("the instance at {path}: its status.json cannot be read: {why}")]
    BadStatus { path: PathBuf, why: String },
    #[error("the instance at {path} is also named {instance:?}: give it an `instance` name of its own, its services would be taken for the other's")]
    NameTaken { path: PathBuf, instance: String },
    #[error("the instance at {path} has a name no instance can have: {why}")]
    BadName { path: PathBuf, why: String },
}

/// The instance at `path` (a state dir or a config file): its name, state dir and what to
/// show as its config.
fn locate(path: &Path) -> Result<(String, PathBuf), OtherError> {
    let meta = std::fs::metadata(path).map_err(|source| OtherError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    // The trust check speaks of the daemon's own paths; here it is about a report.
    let untrusted = |why: crate::service::sys::trust::TrustError| OtherError::Untrusted {
        path: path.to_path_buf(),
        why: why
            .to_string()
            .trim_start_matches("refusing to run: ")
            .replace(
                "another user could steer the daemon",
                "another user could forge what it reports",
            ),
    };
    if meta.is_dir() {
        crate::service::sys::check_instance_path_trust(path, "state dir").map_err(untrusted)?;
        let st = crate::service::state::StateDir::new(path);
        // Its name is in its status: one that is there but cannot be read (not a plain file,
        // cut short, a newer build's) is said so, not taken for "has its daemon ever run?".
        let status = match crate::service::state::read_json::<crate::model::status::Status>(
            &st.status_file(),
        ) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(OtherError::NoStatus {
                    path: path.to_path_buf(),
                    state_dir: path.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(OtherError::BadStatus {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                })
            }
        };
        return Ok((status.instance, path.to_path_buf()));
    }
    crate::service::sys::check_instance_path_trust(path, "config file").map_err(untrusted)?;
    let (instance, dir) =
        crate::service::one_daemon::locate(path).ok_or_else(|| OtherError::NoConfig {
            path: path.to_path_buf(),
        })?;
    crate::service::sys::check_instance_path_trust(&dir, "state dir").map_err(untrusted)?;
    Ok((instance, dir))
}

/// The report of the instance at `path`, as its sections show it, or why it is not shown.
/// `taken`: the instance names shown so far (this instance's first); the name is added.
pub(crate) fn read_one(path: &Path, taken: &mut Vec<String>) -> Result<Report, OtherError> {
    let (instance, dir) = locate(path)?;
    // Read from its status file when the entry is a state dir: its owner's to write.
    if let Err(e) = crate::logic::config::check_name(&instance) {
        return Err(OtherError::BadName {
            path: path.to_path_buf(),
            why: e.to_string(),
        });
    }
    if taken.contains(&instance) {
        return Err(OtherError::NameTaken {
            path: path.to_path_buf(),
            instance,
        });
    }
    match crate::service::state::read_json::<crate::model::status::Status>(
        &crate::service::state::StateDir::new(&dir).status_file(),
    ) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(OtherError::NoStatus {
                path: path.to_path_buf(),
                state_dir: dir,
            })
        }
        // There, but not a status this build reads: said so, not "has its daemon ever run?".
        Err(e) => {
            return Err(OtherError::BadStatus {
                path: path.to_path_buf(),
                why: e.to_string(),
            })
        }
    }
    taken.push(instance.clone());
    // The daemon's status is the authority on its jobs: its config is the user's, and the
    // daemon validated it.
    let mut r = report::build(
        path.to_path_buf(),
        ConfigView::VouchedByDaemon,
        Some((instance.clone(), dir)),
    );
    keep_to_its_names(&mut r.jobs, &instance);
    drop_unnamed_jobs(&mut r);
    Ok(r)
}

/// Another instance's jobs whose names no config can have are not shown: its status file is
/// its owner's to write, and a job's name goes into ctrl's output as it is (`Robotmk
/// <instance> <job>`, each test's check); a name with a line break and section headers in
/// it printed whatever its owner liked into the system agent's output (the system
/// instance's own checks OK, services on other hosts, a piggyback block left open for the
/// plugins after ctrl). The daemon line says how many were left out (WARN).
fn drop_unnamed_jobs(r: &mut crate::model::report::Report) {
    let before = r.jobs.len();
    r.jobs
        .retain(|j| crate::logic::config::check_name(&j.name).is_ok());
    let dropped = before - r.jobs.len();
    if dropped > 0 {
        let note =
            format!("{dropped} job(s) of its status.json not shown: their names are no job names");
        r.section_cut = Some(match r.section_cut.take() {
            Some(cut) => format!("{cut}; {note}"),
            None => note,
        });
    }
}

/// Another instance's checks stay within its own names, `Robotmk <instance> …`: a plugin
/// job's own `service` elsewhere (its owner's choice, in its config or its status file) is
/// replaced by that. Its owner could otherwise print a line under a service name of the
/// instance whose ctrl shows it, or of any instance before it — `Robotmk <system> daemon`
/// OK, `Robotmk <system> web` OK — and Checkmk keeps the later line of two with one name.
/// Instance names are unique among the instances shown and hold no space, so these names
/// never meet.
fn keep_to_its_names(jobs: &mut [crate::model::status::JobStatus], instance: &str) {
    let prefix = format!("Robotmk {instance} ");
    for j in jobs {
        if j.checkmk
            .service
            .as_deref()
            .is_some_and(|s| !crate::logic::checkmk_names::core_key(s).starts_with(&prefix))
        {
            j.checkmk.service = None;
        }
    }
}

/// The service name of each entry's CRIT line, should it not be shown: `Robotmk instance
/// <path>`, unique as the core keeps names (`checkmk_names::core_key`). A path becomes a name
/// Checkmk can carry (`clean`), which makes `no such` and `no  such` one, and the core drops
/// `;` and more, which makes `no;such` and `nosuch` one; the later of two lines with one name
/// would hide the earlier. Numbered (` #2`) from the whole list, so an entry keeps its name
/// whichever others fail. No other line ctrl prints has such a name: the rest are
/// `Robotmk <instance> <job>…` with a job name of letters, digits, `_`, `.` and `-`, and an
/// entry is an absolute path (`/`, `C:⧵`, `⧵⧵server`), or a plugin job's `service`, which
/// may not begin with `Robotmk `.
fn error_names(paths: &[PathBuf]) -> Vec<String> {
    let plain: Vec<String> = paths
        .iter()
        .map(|p| {
            format!(
                "Robotmk instance {}",
                crate::logic::checkmk_names::clean(&p.display().to_string())
            )
        })
        .collect();
    crate::logic::checkmk_names::numbered(&plain, &std::collections::HashSet::new())
}

/// One configured entry as ctrl shows it: the instance's report, or why there is none.
#[derive(Debug)]
pub(crate) struct Other {
    /// The service name of the entry's CRIT line, should it not be shown (see [`error_names`]).
    pub(crate) name: String,
    pub(crate) shown: Result<Report, OtherError>,
}

/// Every other instance, in the order configured.
pub(crate) fn read_all(paths: &[PathBuf], own: &str) -> Vec<Other> {
    let mut taken = vec![own.to_string()];
    let names = error_names(paths);
    paths
        .iter()
        .zip(names)
        .map(|(p, name)| Other {
            name,
            shown: read_one(p, &mut taken),
        })
        .collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Paths that become one name for Checkmk (`clean` makes runs of spaces and a TAB one
    /// space, `\\` and `⧵` one sign; the core drops `;`) still give a line each under a
    /// name of its own, and an entry keeps its name whichever others fail.
    #[test]
    fn entries_that_cannot_be_read_have_names_the_core_tells_apart() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = [
            "no such",
            "no  such",
            "no\tsuch",
            "no;such",
            "nosuch",
            "no\\such",
            "no⧵such",
            "no such ;",
        ]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
        let all = read_all(&paths, "sys");
        assert!(all.iter().all(|o| o.shown.is_err()), "{all:?}");
        let names: Vec<&str> = all.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names.len(), paths.len(), "{names:?}");
        let keys: std::collections::HashSet<String> = names
            .iter()
            .map(|n| crate::logic::checkmk_names::core_key(n))
            .collect();
        assert_eq!(keys.len(), paths.len(), "{names:?}");
        let base = crate::logic::checkmk_names::clean(&dir.path().display().to_string());
        assert_eq!(names[0], format!("Robotmk instance {base}/no such"));
        assert_eq!(names[1], format!("Robotmk instance {base}/no such #2"));
        // The same entry, alone, keeps the name it has among the others.
        assert_eq!(
            error_names(&paths[1..2])[0],
            format!("Robotmk instance {base}/no such")
        );
    }

    /// A state dir's name comes from its status file, which its owner writes: a name with a
    /// space would reach into another instance's service names (`Robotmk sys web …`).
    #[test]
    fn an_instance_whose_status_names_it_oddly_is_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        let st = dir.path().join("state");
        std::fs::create_dir(&st).unwrap();
        let status = serde_json::json!({
            "version": 1, "instance": "sys web", "updated": chrono::Utc::now(),
            "daemon": crate::model::status::sample_daemon_info(true), "jobs": [],
        });
        std::fs::write(st.join("status.json"), status.to_string()).unwrap();
        match read_one(&st, &mut vec!["sys".to_string()]) {
            Err(OtherError::BadName { why, .. }) => assert!(why.contains("' '"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
