//! Who may steer the daemon. A local user who can write the config or the state dir could make
//! the daemon run any command, fake its heartbeat or plant stop requests, so the daemon
//! refuses to start (and ctrl refuses to launch it) unless both belong to the daemon's own
//! user (or root) and are not writable by group or others.
//!
//! Stop requests need no check of their own: they are a file in the state dir (writable only
//! by its owner) plus SIGTERM (which only the same user or root may send).
//!
//! Windows: ACLs are not inspected yet (docs/WINDOWS.md says so); the check passes there.

use crate::config::Config;
use std::path::Path;

/// Checks the config file and the state dir (when it exists); the error names the path, what
/// is wrong and the fix.
pub fn check(cfg: &Config) -> Result<(), String> {
    check_path(&cfg.path, "config file")?;
    if cfg.daemon.state_dir.exists() {
        check_path(&cfg.daemon.state_dir, "state dir")?;
    }
    Ok(())
}

#[cfg(unix)]
fn check_path(path: &Path, what: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me && m.uid() != 0 {
        return Err(format!(
            "refusing to run: {what} {} belongs to uid {}, not to this user (uid {me}) or root; another user could steer the daemon. Fix: chown it",
            path.display(),
            m.uid()
        ));
    }
    let mode = m.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "refusing to run: {what} {} is writable by group or others (mode {mode:03o}); another user could steer the daemon. Fix: chmod go-w {}",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_path(_path: &Path, _what: &str) -> Result<(), String> {
    Ok(())
}
