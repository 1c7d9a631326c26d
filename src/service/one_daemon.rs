//! One daemon per config file. `daemon.lock` guards an instance's state dir, but a config
//! without `state_dir` takes the state dir from `$MK_VARDIR`: ctrl run with two values (the
//! agent and an admin's shell, two agent deployments) found no daemon in its own state dir
//! each time and started a second daemon of the same config, and every job ran twice. So the
//! daemon also takes a lock keyed by the config file's identity (`sys::config_lock`: a lock
//! file in a folder only the daemon's user may write on Linux, a named object only SYSTEM and
//! administrators may create on Windows), which says who holds it: its PID and state dir. A
//! second daemon refuses to start, a ctrl does not launch one, and both say which daemon runs
//! it, with which state dir, and the fix. A running daemon that lost the lock to another (its
//! lock file removed under it, its config replaced, and the other took the new file first)
//! stands down ([`stand_down`]); with no safe place for the lock (another user planted its
//! folder) no daemon runs the config ([`Taken::Unsafe`], [`Probe::Unsafe`]). The words are
//! here, one text for all of them.

use crate::service::sys::config_lock::{self, ConfigLock, Holder};
use crate::service::sys::TookConfig;
use std::path::{Path, PathBuf};

/// How long a starting daemon keeps trying to take the config's lock: a probe (ctrl,
/// `status`) holds its shared lock for an instant.
pub(crate) const PATIENCE: std::time::Duration = crate::service::lock::ACQUIRE_PATIENCE;

/// What a probe of the config's lock found, from a caller whose state dir has no daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// No daemon of this config runs anywhere.
    Free,
    /// The daemon of this state dir holds it (it is starting, or its `daemon.lock` was
    /// replaced and it locks the new one at its next look).
    Here(u32),
    /// A daemon of this config runs with another state dir (or one that cannot be told):
    /// the words say which, and the fix.
    Elsewhere(String),
    /// This user has no safe place for the config's lock (its folder is another user's, or
    /// others may write it): a daemon launched would not start; the words say why and the fix.
    Unsafe(String),
}

/// The one text for "a daemon of this config runs with another state dir": `pid` and
/// `dir`, the other daemon's.
pub(crate) fn words(config: &Path, pid: u32, dir: &Path, own_state_dir: &Path) -> String {
    format!(
        "the config {} is already run by the daemon (pid {pid}) with the state dir {}: no second daemon of it starts with the state dir {} (the default state dir comes from MK_VARDIR, which differs between callers); set state_dir in the config so that every caller uses the same one",
        config.display(),
        dir.display(),
        own_state_dir.display()
    )
}

/// The words of a running daemon that lost the config's lock (`cause`: its lock file removed,
/// the config replaced) to another daemon of the config, which took it meanwhile: this one
/// stands down (drains: its runs in flight finish, it starts none), because that one holds
/// the lock that probes and new daemons find, and may have started runs already.
pub(crate) fn stand_down(config: &Path, cause: &str, own_state_dir: &Path) -> String {
    let holder = config_lock::holder(config);
    let other = match daemon_of(holder.as_ref()) {
        Some((pid, dir)) => format!(
            "the daemon (pid {pid}) with the state dir {}",
            dir.display()
        ),
        None => "another daemon of it (it has not said its PID yet)".to_string(),
    };
    format!(
        "{cause}, and {other} took the config's lock meanwhile: this daemon (state dir {}) stands down, it finishes its runs in flight and starts none, and that one runs the jobs of {} from now",
        own_state_dir.display(),
        config.display()
    )
}

/// The holder's PID and state dir, as it wrote them. Only a daemon of this user can hold
/// the lock (see `sys::config_lock`): what it says is trusted.
fn daemon_of(holder: Option<&Holder>) -> Option<(u32, &Path)> {
    let h = holder?;
    Some((h.pid, h.state_dir.as_deref()?))
}

/// What a starting daemon got of the config's lock.
#[derive(Debug)]
pub(crate) enum Taken {
    /// It holds the lock for its life.
    Locked(ConfigLock),
    /// A daemon of this config runs with another state dir: this one does not start; the
    /// words say which and the fix.
    Refused(String),
    /// The config cannot be opened to lock it (the error names the path): a starting daemon
    /// does not start; a running one tries again at its next look.
    Failed(String),
    /// There is no place for the lock that only this user may write (its folder belongs to
    /// another user, others may write it, or it is a symlink). Without the lock a second
    /// daemon of the config could start beside this one, and a lock kept somewhere else would
    /// not be found by it: the daemon does not start (a running one stands down); the words
    /// say why and the fix, for its line in ctrl and `status`.
    Unsafe(String),
}

/// Takes the config's lock for a starting daemon (see [`Taken`]).
pub(crate) fn take(config: &Path, own_state_dir: &Path) -> Taken {
    take_within(config, own_state_dir, PATIENCE)
}

/// Takes the config's lock, polled until `patience` runs out (see [`Taken`]).
pub(crate) fn take_within(
    config: &Path,
    own_state_dir: &Path,
    patience: std::time::Duration,
) -> Taken {
    match config_lock::take(config, own_state_dir, patience) {
        Ok(TookConfig::Locked(l)) => Taken::Locked(l),
        Ok(TookConfig::Held) => {
            let holder = config_lock::holder(config);
            match daemon_of(holder.as_ref()) {
                Some((pid, dir)) => Taken::Refused(words(config, pid, dir, own_state_dir)),
                None => Taken::Refused(unnamed(config, own_state_dir)),
            }
        }
        Ok(TookConfig::Nowhere(why)) => Taken::Unsafe(why),
        Err(e) => Taken::Failed(e.to_string()),
    }
}

/// The words for a lock held by a daemon that has not said who it is (it has just taken the
/// lock, or its words cannot be read): only a daemon of this config can hold it, so it still
/// runs the config.
fn unnamed(config: &Path, own_state_dir: &Path) -> String {
    format!(
        "the config {} is already run by another daemon (starting, it has not said its PID and state dir yet): no second daemon of it starts with the state dir {} (the default state dir comes from MK_VARDIR, which differs between callers); set state_dir in the config so that every caller uses the same one",
        config.display(),
        own_state_dir.display()
    )
}

/// Whether a daemon of `config` runs, for a caller whose state dir `own_state_dir` has none
/// (see [`Probe`]). A lock folder that is not safe says `Unsafe`; a probe that fails otherwise
/// (the config cannot be opened), or a holder that does not say who it is, says `Free`: the
/// daemon launched then reports what it finds.
pub(crate) fn probe(config: &Path, own_state_dir: &Path) -> Probe {
    if let Some(why) = config_lock::folder_problem() {
        return Probe::Unsafe(why);
    }
    if !config_lock::is_held(config).unwrap_or(false) {
        return Probe::Free;
    }
    let holder = config_lock::holder(config);
    match daemon_of(holder.as_ref()) {
        Some((pid, dir)) if same_dir(dir, own_state_dir) => Probe::Here(pid),
        Some((pid, dir)) => Probe::Elsewhere(words(config, pid, dir, own_state_dir)),
        None => Probe::Free,
    }
}

/// Where the daemon of the config at `path` is, for ctrl, `status`, `stop` and the readers of
/// its history: where the config says (its `[daemon]` table, even when the rest of it does not
/// parse), else — the config names its instance or state dir in a way nothing can use — the
/// daemon holding the config's lock, if its own status says it runs this config. An admin's
/// typo in those two lines left ctrl without the running daemon (still on its last good
/// config): it printed CRIT under the default instance, dropped every job's line and stopped
/// the heartbeat, and the daemon ended at its `heartbeat_timeout`.
///
/// The lock's holder is a daemon of this user (see `sys::config_lock`); its state dir is
/// still checked as any state dir is before its status is read.
pub(crate) fn locate(path: &Path) -> Option<(String, PathBuf)> {
    crate::service::config::locate_daemon(path).or_else(|| running(path))
}

/// The instance and state dir of the daemon holding `path`'s lock, from its status.
fn running(path: &Path) -> Option<(String, PathBuf)> {
    let path = crate::service::config::absolute(path);
    let dir = config_lock::holder(&path)?.state_dir?;
    crate::service::security::check_state_dir(&dir).ok()?;
    let status_file = crate::service::state::StateDir::new(&dir).status_file();
    let status: crate::model::status::Status =
        crate::service::state::read_json(&status_file).ok()??;
    (status.daemon.config == path).then_some((status.instance, dir))
}

/// True if `theirs` (the state dir its daemon was given) is the folder `own` leads to.
fn same_dir(theirs: &Path, own: &Path) -> bool {
    let resolved =
        |p: &Path| -> PathBuf { std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()) };
    resolved(theirs) == resolved(own)
}

// What a probe finds with real daemons is in tests/one_daemon.rs.
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn words_name_the_other_state_dir_and_the_fix() {
        let w = words(
            Path::new("/etc/c.toml"),
            42,
            Path::new("/var/a"),
            Path::new("/var/b"),
        );
        assert!(w.contains("pid 42"), "{w}");
        assert!(w.contains("/var/a"), "{w}");
        assert!(w.contains("/var/b"), "{w}");
        assert!(w.contains("set state_dir in the config"), "{w}");
    }
}
