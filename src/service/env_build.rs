//! One Python environment's build on the host, as the daemon's environment worker does it:
//! the folder made ready for a build (what an earlier one left removed, the venv and a HOME
//! handed to the builder), the `robotmk-daemon env-build` command line and its environment,
//! the seal of what another user built (copied by handle into a tree of root's), the words
//! of a failed build from its log, and the removal of an environment's folder with its
//! owners' rights. Touches the environment's folder `<key>/` and the builder's HOME; which
//! folders those are, and when a build starts or ends, is the worker's (`app/daemon/envs/`).

use crate::model::env::EnvSpec;
use crate::model::user::UserInfo;
use crate::service::pyenv;
use crate::service::run;
use crate::service::sys::tree::{remove_tree_fully, remove_whole, Removal, RemoveError, Rights};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Makes `<key>/venv` ready for a build: whatever an earlier build left there goes (see
/// [`remove_whole`]: a failed build's `venv/` is still its builder's, who may have filled
/// it since); for a build as another user the venv folder is handed to it, and so is its HOME
/// (`<uid>/` in the folder `homes` makes, `<state_dir>.users/build-homes/`, kept for its
/// caches; `homes` says what failed in words), which is returned.
pub(crate) fn prepare(
    dir: &Path,
    builder: Option<&UserInfo>,
    homes: impl FnOnce() -> Result<PathBuf, String>,
) -> Result<Option<PathBuf>, String> {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| format!("cannot prepare {}: {e}", p.display())
    };
    for old in [VENV_BUILT, VENV_SEALING, "venv"] {
        let p = dir.join(old);
        remove_whole(&p, CLEAN_UP).map_err(|e| format!("cannot prepare {}: {e}", p.display()))?;
    }
    let Some(u) = builder else {
        return Ok(None);
    };
    let venv = pyenv::venv_dir(dir);
    crate::service::sys::hand_dir(&venv, u.uid, u.gid).map_err(at(&venv))?;
    let homes = homes()?;
    let home = homes.join(u.uid.to_string());
    crate::service::sys::hand_dir(&home, u.uid, u.gid).map_err(at(&home))?;
    for p in [&venv, &home] {
        crate::service::sys::check_passable(p, u.uid, &u.groups).map_err(|closed| {
            format!(
                "not built: the build runs as {}, which cannot pass through {closed} on the \
                 way to {}; let other users pass through that folder (chmod o+x: nothing in \
                 it becomes listable or readable), or put state_dir below folders they can",
                pyenv::builder_label(u),
                p.display()
            )
        })?;
    }
    Ok(Some(home))
}

/// The command line and environment of `robotmk-daemon env-build` for one build in `dir_s`,
/// with uv at `uv` (pip without), and for a build as another user its `home`.
pub(crate) fn command(
    dir_s: &str,
    spec: &EnvSpec,
    uv: Option<&Path>,
    builder: Option<&UserInfo>,
    home: Option<&Path>,
) -> (Vec<String>, BTreeMap<String, std::ffi::OsString>) {
    let me = crate::service::sys::self_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "robotmk-daemon".into());
    let mut argv = vec![
        me,
        "env-build".into(),
        "--dir".into(),
        dir_s.to_string(),
        "--source".into(),
        spec.source.display().to_string(),
        "--kind".into(),
        spec.kind.as_str().into(),
        "--python".into(),
        spec.python.clone(),
    ];
    if let Some(uv) = uv {
        argv.extend(["--uv".into(), uv.display().to_string()]);
    }
    let mut env = BTreeMap::new();
    if let (Some(u), Some(h)) = (builder, home) {
        argv.extend(["--home".into(), h.display().to_string()]);
        // Started as the builder, it gets this environment and nothing of the daemon's
        // (`spawn_as`): what the installers get (`pyenv::build_env`: the daemon's locale,
        // PATH and CA bundles, proxies and installer settings of the daemon's or, for a
        // `user` job, of its `env`; HOME, XDG folders and TMPDIR in the builder's folder),
        // with the builder's names.
        env.extend(
            pyenv::build_env(h, spec)
                .into_iter()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v))),
        );
        env.insert("USER".into(), u.name.clone().into());
        env.insert("LOGNAME".into(), u.name.clone().into());
    }
    // The run tag: a timeout ends every process of the build, also those that left its
    // process group.
    env.insert(run::TAG.to_string(), dir_s.into());
    (argv, env)
}

/// The error of a failed build: the tool's own error lines first, no progress output (see
/// `logic::build_error`), then `why` and where the whole log is.
/// `seal_failed`: the build itself succeeded and only its seal did not; that is the news, not
/// the installer's output, which would push it out of the check's note.
pub(crate) fn failure(dir: &Path, why: &str, seal_failed: bool) -> String {
    let log = dir.join("build.log");
    let summary = crate::logic::build_error::summarize(&pyenv::log_end(&log, 64 * 1024));
    if summary.is_empty() || seal_failed {
        format!("{why}; log {}", log.display())
    } else {
        format!("{summary} ({why}; log {})", log.display())
    }
}

/// Where a finished build's venv goes while it is copied (only root can rename in `<key>/`).
const VENV_BUILT: &str = "venv.built";
/// The sealed copy until it is renamed into place.
const VENV_SEALING: &str = "venv.sealing";

/// Turns what `builder` built in `<key>/venv` into a tree of the daemon's: the venv is renamed
/// aside, copied by handle into a new folder of root's (see [`crate::service::sys::seal_copy`]: links
/// not followed, every entry the builder's, no inode shared), which is renamed into place;
/// then the built tree goes. `<key>/` is opened to jobs' users (`shared`) or closed to all
/// but root. The venv keeps its path: its scripts name their interpreter by it.
pub(crate) fn seal(dir: &Path, builder: u32, readers: Option<u32>) -> Result<(), String> {
    let venv = pyenv::venv_dir(dir);
    let built = dir.join(VENV_BUILT);
    let sealing = dir.join(VENV_SEALING);
    for p in [&built, &sealing] {
        remove_whole(p, CLEAN_UP).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    std::fs::rename(&venv, &built).map_err(|e| format!("{}: {e}", venv.display()))?;
    let t0 = Instant::now();
    let copied = crate::service::sys::seal_copy(&built, &sealing, builder).map_err(|e| {
        // Neither tree is of use now, and on a full disk they are what keeps it full (no
        // run of any job could be recorded): both go at once, the built one with its
        // builder's rights (`remove_whole`). The next config edit or start builds again.
        for p in [&sealing, &built] {
            if let Err(e) = remove_whole(p, CLEAN_UP) {
                warn!("cannot remove {} after a failed seal: {e}", p.display());
            }
        }
        e.to_string()
    })?;
    info!(
        files = copied.entries,
        bytes = copied.bytes,
        ms = t0.elapsed().as_millis() as u64,
        "sealed the built environment {}",
        venv.display()
    );
    std::fs::rename(&sealing, &venv).map_err(|e| format!("{}: {e}", sealing.display()))?;
    // A process of the builder's that escaped may still write in it: it is no one's now and
    // goes with the next build or the environment, if not now.
    if let Err(e) = remove_whole(&built, CLEAN_UP) {
        warn!("cannot remove the built tree {}: {e}", built.display());
    }
    crate::service::sys::seal_dir_mode(dir, readers).map_err(|e| format!("{}: {e}", dir.display()))
}

/// How long one removal on the worker thread may take: it holds up builds' timeouts and the
/// news to the loop meanwhile. What is left goes at the next attempt (all that was removed
/// stays removed).
const CLEAN_UP: Duration = Duration::from_secs(60);

/// Removes an environment's folder `<key>/` within [`CLEAN_UP`]: each entry with its own
/// owner's rights first (`<key>/` is root's, but a failed build's `venv/` is its builder's,
/// and a walk takes the rights of its tree's top for the whole tree), then the emptied folder.
pub(crate) fn remove(dir: &Path) -> Result<Removal, RemoveError> {
    let end = Instant::now() + CLEAN_UP;
    let left = || end.saturating_duration_since(Instant::now());
    if let Ok(list) = std::fs::read_dir(dir) {
        for e in list.flatten() {
            if remove_tree_fully(&e.path(), Rights::Owner, left())? == Removal::More {
                return Ok(Removal::More);
            }
        }
    }
    remove_tree_fully(dir, Rights::Owner, left())
}
