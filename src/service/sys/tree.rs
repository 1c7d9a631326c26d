//! Removing folder trees that someone else shaped: a run's folder (what its runner left), a
//! `user` job's folder (what that user left), a run's temp folder, what an environment's build
//! left (a failed build's `venv/` is its builder's, who may fill it later). Every removal of a
//! tree in the product goes through here: `clippy.toml` forbids std's `remove_dir_all`
//! elsewhere (this module's Windows path and tests aside). Such a tree may be 81,000
//! levels deep, a million entries wide, full of links to root's files, hold folders its owner
//! locked (mode 0000), or a mount point; the daemon runs as root and must neither crash on
//! it (a recursive walk overflows the stack: issue 19), nor block on it, nor touch anything
//! outside it.
//!
//! One call is one *look*, bounded by a [`Budget`] (time and entries): a tree too big for one
//! look answers [`Removal::More`] and the next look goes on where this one stopped, since all
//! that was done is done on disk. On Linux the walk holds at most a few dozen descriptors,
//! uses no recursion and no memory that grows with the tree, opens every folder by handle,
//! never follows a link, and never enters another mount (see `tree_unix/`). A tree that
//! belongs to a job's user is removed in a child process with that user's rights.
//!
//! Windows has no `user` jobs and no mount points in run folders; there std's
//! `remove_dir_all` does it (by handle, iterative, links and junctions removed, not followed),
//! in one go.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Whose rights a removal runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// The daemon's own: for trees only root's runners shape (the state dir).
    Daemon,
    /// The tree's owner's, when the daemon is root and the tree is not root's: a `user` job's
    /// folder. A trick there then only reaches what that user could reach anyway.
    Owner,
}

/// What one look may spend: a deadline and a number of entries.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
    entries: u64,
}

impl Budget {
    pub fn new(time: Duration, entries: u64) -> Budget {
        Budget {
            deadline: Instant::now() + time,
            entries,
        }
    }

    /// Whether nothing is left for another tree.
    pub(crate) fn spent(&self) -> bool {
        self.entries == 0 || Instant::now() >= self.deadline
    }

    #[cfg(unix)]
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    #[cfg(unix)]
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    pub(crate) fn take(&mut self, n: u64) {
        self.entries = self.entries.saturating_sub(n);
    }
}

/// How far a look got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The tree is gone (or was never there).
    Gone,
    /// The budget ran out first; what was removed stays removed, the next look goes on.
    More,
}

/// Why a tree could not be removed (all of it, or for now).
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove {what} in {}: {source}", tree.display())]
    Entry {
        tree: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    #[cfg(unix)]
    #[error(
        "{} holds a mount point ({what}); it is left alone: unmount it, and the rest goes at the next look",
        tree.display()
    )]
    MountPoint { tree: PathBuf, what: String },
    #[cfg(unix)]
    #[error("cannot remove {} as its owner (uid {uid}): {source}", tree.display())]
    AsOwner {
        tree: PathBuf,
        uid: u32,
        #[source]
        source: io::Error,
    },
}

#[cfg(unix)]
#[path = "tree_unix/mod.rs"]
mod imp;

pub use imp::remove_tree;
pub(crate) use imp::{drop_spare, remove_tree_fully};

/// Removes `path` (a folder and everything in it, a file, a link, or nothing) within `limit`
/// as its owner ([`Rights::Owner`]): an environment's trees (a failed build's `venv/`, a
/// sealed `venv.built`, a build's copy of a project) are their builder's, so whatever it left
/// there can make root remove nothing that user could not. What is not gone within `limit`
/// is an error (the next attempt goes on where this one stopped).
pub(crate) fn remove_whole(path: &std::path::Path, limit: Duration) -> io::Result<()> {
    match remove_tree_fully(path, Rights::Owner, limit).map_err(io::Error::other)? {
        Removal::Gone => Ok(()),
        Removal::More => Err(io::Error::other(format!(
            "not all removed within {} (what is left goes at the next attempt)",
            crate::model::duration::format(limit)
        ))),
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::path::Path;

    /// Nothing is kept between removals on Windows.
    pub(crate) fn drop_spare() {}

    /// Removes `path` (a folder and everything in it, or a file or link) within `budget`,
    /// with `rights`. A missing `path` is [`Removal::Gone`]. std's Windows `remove_dir_all`
    /// opens every entry relative to its folder's handle, removes links and junctions without
    /// following them, and walks with a heap stack: one look does it all.
    pub fn remove_tree(
        path: &Path,
        _rights: Rights,
        budget: &mut Budget,
    ) -> Result<Removal, RemoveError> {
        if budget.spent() {
            return Ok(Removal::More);
        }
        budget.take(1);
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
            Err(source) => {
                return Err(RemoveError::Open {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let removed = if meta.is_dir() {
            // The one place std's remover may be used (clippy.toml forbids it elsewhere):
            // on Windows it walks iteratively by handle and never follows a link or a
            // junction (see the doc above), and there are no `user` jobs whose rights to take.
            #[allow(clippy::disallowed_methods)]
            std::fs::remove_dir_all(path)
        } else if meta.file_type().is_symlink() {
            // A link to a folder is removed as a folder, one to a file as a file.
            std::fs::remove_dir(path).or_else(|_| std::fs::remove_file(path))
        } else {
            std::fs::remove_file(path)
        };
        match removed {
            Ok(()) => Ok(Removal::Gone),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Removal::Gone),
            Err(source) => Err(RemoveError::Entry {
                tree: path.to_path_buf(),
                what: "an entry".into(),
                source,
            }),
        }
    }

    /// Removes `path` completely, within `limit`: one look does it all here.
    pub(crate) fn remove_tree_fully(
        path: &Path,
        rights: Rights,
        limit: Duration,
    ) -> Result<Removal, RemoveError> {
        remove_tree(path, rights, &mut Budget::new(limit, u64::MAX))
    }
}

#[cfg(all(test, windows))]
mod windows_tests {
    use super::*;

    #[test]
    fn a_tree_a_file_and_nothing_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("tree");
        let mut deep = top.clone();
        for _ in 0..50 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), "x").unwrap();
        let file = t.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let mut budget = Budget::new(Duration::from_secs(60), u64::MAX);
        for p in [&top, &file, &top] {
            assert_eq!(
                remove_tree(p, Rights::Owner, &mut budget).unwrap(),
                Removal::Gone
            );
            assert!(std::fs::symlink_metadata(p).is_err());
        }
    }
}
