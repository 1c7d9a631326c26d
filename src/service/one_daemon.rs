//! One daemon per config file. `daemon.lock` guards an instance's state dir, but a config
//! without `state_dir` takes the state dir from `$MK_VARDIR`: ctrl run with two values (the
//! agent and an admin's shell, two agent deployments) found no daemon in its own state dir
//! each time and started a second daemon of the same config, and every job ran twice. So the
//! daemon also locks the config file itself (`sys::config_lock`: a `flock` on Linux, a named
//! object keyed by the file's identity on Windows); a second daemon refuses to
//! start, a ctrl does not launch one, and both say which daemon runs it, with which state
//! dir, and the fix. The words are here, one text for all of them.

use crate::service::state::StateDir;
use crate::service::sys::config_lock::{self, ConfigLock, Holder};
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
}

/// The name of the instance lock a daemon holds in its state dir.
fn lock_name() -> String {
    StateDir::new(Path::new("/"))
        .lock_file()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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

/// The holder's PID and state dir if it is a daemon: a process of this user that holds a
/// `daemon.lock` too. Any user who may read the config may lock it, and a tool of this user
/// may: neither is a daemon of it, nor keeps one from starting.
fn daemon_of(holder: Option<&Holder>) -> Option<(u32, &Path)> {
    let h = holder.filter(|h| h.mine)?;
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
    /// A process of another user (or one this user cannot see) holds it: any user who may
    /// read the config may lock it, and must not keep the daemon from starting. It starts
    /// without the lock (as before there was one); the words say so, for the log.
    Without(String),
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
        Ok(Some(l)) => Taken::Locked(l),
        Ok(None) => {
            let holder = config_lock::holder(config, &lock_name());
            match daemon_of(holder.as_ref()) {
                Some((pid, dir)) => Taken::Refused(words(config, pid, dir, own_state_dir)),
                None => Taken::Without(stranger(config, holder.as_ref())),
            }
        }
        Err(e) => Taken::Failed(e.to_string()),
    }
}

/// The log's words for a lock on the config that no daemon of this user holds.
pub(crate) fn stranger(config: &Path, holder: Option<&Holder>) -> String {
    let who = match holder {
        Some(h) if h.mine => format!("pid {}, which holds no daemon.lock", h.pid),
        Some(h) => format!("pid {}, of another user", h.pid),
        None => "a process this user cannot see".to_string(),
    };
    format!(
        "the config {} is locked by {who}, not by a daemon of it; running without the config's lock, so a daemon of this config with another state dir is not kept from starting (set state_dir in the config so that every caller uses the same one)",
        config.display()
    )
}

/// Whether a daemon of `config` runs, for a caller whose state dir `own_state_dir` has none
/// (see [`Probe`]). A probe that fails (the config cannot be opened), or a lock held by
/// another user's process, says `Free`: the daemon launched then reports what it finds.
pub(crate) fn probe(config: &Path, own_state_dir: &Path) -> Probe {
    if !config_lock::is_held(config).unwrap_or(false) {
        return Probe::Free;
    }
    let holder = config_lock::holder(config, &lock_name());
    match daemon_of(holder.as_ref()) {
        Some((pid, dir)) if same_dir(dir, own_state_dir) => Probe::Here(pid),
        Some((pid, dir)) => Probe::Elsewhere(words(config, pid, dir, own_state_dir)),
        None => Probe::Free,
    }
}

/// True if `theirs` (resolved as `/proc` shows it on Linux; as its daemon was given it on
/// Windows) is the folder `own` leads to.
fn same_dir(theirs: &Path, own: &Path) -> bool {
    let resolved =
        |p: &Path| -> PathBuf { std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()) };
    resolved(theirs) == resolved(own)
}

// What a probe finds with real daemons is in tests/one_daemon.rs: in this test process other
// tests hold `daemon.lock` files, which would make the holder's state dir any of theirs.
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
