//! Who may steer the daemon (SPEC.md, "Who may steer it"; threat model in docs/SECURITY.md).
//!
//! The daemon usually runs as root and runs what its config says, so whoever can change the
//! config, the state dir, or any directory above them owns the host. Like sshd's StrictModes,
//! a path is trusted only when the file, every directory above it and every symlink on the
//! way belong to root or to the daemon's own user and are not writable by group or others
//! (a sticky directory such as `/tmp` may be above an entry that belongs to one of them).
//! On Windows: no write access for Users, Authenticated Users or Everyone.
//!
//! The check runs at start, on every config reload and whenever a watched path changes in the daemon, in
//! `run-once`, and in ctrl before it reads or writes anything in the state dir. Files inside a
//! trusted state dir are then opened by [`crate::service::sys::file`] (no symlinks, no FIFOs, capped
//! reads).

use crate::model::config::Config;
use crate::service::sys::trust::TrustError;
use std::path::Path;

/// The config file and every directory above it.
pub(crate) fn check_config(path: &Path) -> Result<(), TrustError> {
    crate::service::sys::check_path_trust(path, "config file", false)
}

/// The state dir and every directory above it; the part that does not exist yet is created
/// later by this process (0700), so only what exists is checked.
pub(crate) fn check_state_dir(dir: &Path) -> Result<(), TrustError> {
    crate::service::sys::check_path_trust(dir, "state dir", true)
}

/// Both paths of a loaded config; the error names the path, what is wrong and the fix.
/// A job's requirements or pyproject file: the daemon runs an installer on it as its own
/// user (root), which may run code the file names (a local project's build), so it must be
/// as safe from other users as the config itself.
pub(crate) fn check_env_source(path: &Path) -> Result<(), TrustError> {
    crate::service::sys::check_path_trust(path, "environment file", false)
}

pub(crate) fn check(cfg: &Config) -> Result<(), TrustError> {
    check_config(&cfg.path)?;
    check_state_dir(&cfg.daemon.state_dir)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A private tree under the temp dir: `<tmp>/base/etc/c.toml`.
    fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        fs::create_dir(&etc).unwrap();
        chmod(&etc, 0o755);
        let cfg = etc.join("c.toml");
        fs::write(&cfg, "").unwrap();
        chmod(&cfg, 0o600);
        (dir, cfg)
    }

    #[test]
    fn a_private_path_passes_and_a_writable_ancestor_fails() {
        let (dir, cfg) = tree();
        check_config(&cfg).unwrap();
        let etc = cfg.parent().unwrap();
        chmod(etc, 0o777);
        let e = check_config(&cfg).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{}: {} is writable", cfg.display(), etc.display())),
            "{e}"
        );
        assert!(e.contains(&format!("chmod go-w {}", etc.display())), "{e}");
        // Sticky and world-writable (like /tmp) is fine above the target, not as the target.
        chmod(etc, 0o1777);
        check_config(&cfg).unwrap();
        chmod(&cfg, 0o1666);
        assert!(check_config(&cfg).is_err());
        drop(dir);
    }

    #[test]
    fn symlinks_are_followed_and_checked_on_the_way() {
        let (dir, cfg) = tree();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        // A link in a trusted dir pointing into a world-writable one: the target's dir counts.
        let real = open.join("real.toml");
        fs::write(&real, "").unwrap();
        chmod(&real, 0o600);
        let link = cfg.parent().unwrap().join("link.toml");
        symlink(&real, &link).unwrap();
        let e = check_config(&link).unwrap_err().to_string();
        assert!(e.contains(&open.display().to_string()), "{e}");
        // A relative link to the private file passes.
        let ok = cfg.parent().unwrap().join("ok.toml");
        symlink("c.toml", &ok).unwrap();
        check_config(&ok).unwrap();
        // A state dir that does not exist yet: its existing ancestors are checked.
        check_state_dir(&cfg.parent().unwrap().join("state/x")).unwrap();
        assert!(check_state_dir(&open.join("state")).is_err());
    }

    #[test]
    fn a_relative_path_is_refused() {
        assert!(check_config(Path::new("etc/c.toml")).is_err());
    }
}
