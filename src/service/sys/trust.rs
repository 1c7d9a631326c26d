//! Why a path is not trusted (the check of [`crate::service::security`], done per OS by
//! `check_path_trust`): which path, which entry on the way, what is wrong and the command
//! that fixes it; and the folder a build's user cannot pass through ([`Closed`]).

#[cfg(unix)]
use std::io;
use std::path::PathBuf;

/// A path another user could change, or one that could not be checked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrustError {
    #[cfg(unix)]
    #[error("refusing to run: {what} {} is a relative path", .path.display())]
    Relative { what: &'static str, path: PathBuf },
    #[cfg(unix)]
    /// `entry` (the path itself or a directory or link on the way) is unsafe.
    #[error(
        "refusing to run: {} {why}; another user could steer the daemon. Fix: {}",
        place(what, path, entry),
        why.fix(entry)
    )]
    Unsafe {
        what: &'static str,
        path: PathBuf,
        entry: PathBuf,
        why: Unsafe,
    },
    #[cfg(unix)]
    #[error("{what} {}: cannot check {}: {source}", .path.display(), .entry.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        entry: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another instance's path whose owner could not be read.
    #[cfg(unix)]
    #[error("{what} {}: {source}", .path.display())]
    Stat {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[cfg(unix)]
    #[error("{what} {}: too many levels of symlinks", .path.display())]
    LinkLoop { what: &'static str, path: PathBuf },
    #[cfg(unix)]
    #[error("{what} {}: cannot read link {}: {source}", .path.display(), .entry.display())]
    LinkUnreadable {
        what: &'static str,
        path: PathBuf,
        entry: PathBuf,
        #[source]
        source: io::Error,
    },
    #[cfg(unix)]
    #[error("{what} {}: {} is not a directory", .path.display(), .entry.display())]
    NotADirectory {
        what: &'static str,
        path: PathBuf,
        entry: PathBuf,
    },
    #[cfg(windows)]
    /// Windows: the target must exist unless it may be created.
    #[error("{what} {}: does not exist", .path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[cfg(windows)]
    /// Windows: the ACL of the target (`above` None) or of a directory above it refuses;
    /// the reason names that directory, what is wrong and the `icacls` that fixes it.
    #[error("{what}{}: {reason}", .above.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Acl {
        what: &'static str,
        above: Option<PathBuf>,
        reason: String,
    },
}

/// The first folder on the way to a path that a user cannot pass through (no search
/// permission for them): `<folder> (mode 0700, owner uid 0)`.
#[derive(Debug, thiserror::Error)]
#[error("{} (mode {mode:04o}, owner uid {owner})", .dir.display())]
pub(crate) struct Closed {
    pub(crate) dir: PathBuf,
    pub(crate) mode: u32,
    pub(crate) owner: u32,
}

/// What makes an entry unsafe on Unix.
#[cfg(unix)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unsafe {
    /// Owned by `uid`, neither root nor this process's user `me`; `shared` is the
    /// world-writable sticky folder (such as /tmp) it lies in, if any.
    Owner {
        uid: u32,
        me: u32,
        shared: Option<PathBuf>,
    },
    /// Writable by group or others (`mode`, permission bits).
    Writable { mode: u32 },
}

#[cfg(unix)]
impl Unsafe {
    /// The command that makes `entry` safe.
    fn fix(&self, entry: &std::path::Path) -> String {
        match self {
            // Adopting a folder another user made in /tmp (chown) would keep whatever its
            // maker left inside.
            Unsafe::Owner {
                shared: Some(tmp), ..
            } => format!(
                "choose a path outside world-writable folders such as {} (e.g. under /var/lib or /etc), and do not chown a folder another user made",
                tmp.display()
            ),
            Unsafe::Owner { .. } => format!("chown root {}", entry.display()),
            Unsafe::Writable { .. } => format!("chmod go-w {}", entry.display()),
        }
    }
}

#[cfg(unix)]
impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsafe::Owner { uid, me, .. } => write!(
                f,
                "belongs to uid {uid}, not to this user (uid {me}) or root"
            ),
            Unsafe::Writable { mode } => write!(
                f,
                "is writable by group or others (mode {:03o})",
                mode & 0o777
            ),
        }
    }
}

#[cfg(unix)]
/// `config file /etc/x.toml`, or with the entry on the way: `config file /etc/x.toml: /etc`.
fn place(what: &str, path: &std::path::Path, entry: &std::path::Path) -> String {
    if entry == path {
        format!("{what} {}", path.display())
    } else {
        format!("{what} {}: {}", path.display(), entry.display())
    }
}
