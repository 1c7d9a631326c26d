//! Copying files someone else made into the daemon's own trees (a sealed environment, a
//! published run) without paying more of the daemon's disk than they paid of theirs: a
//! sparse file stays sparse ([`copy_with_holes`]), and the names of one inode become names of
//! one copy ([`FirstCopies`], keyed by [`shared_inode`]). A user who makes a terabyte in no
//! blocks, or a hundred hard links to one file, costs the daemon's disk (root's, charged to
//! no quota) what it costs theirs. On Windows the copy is a plain one and no file counts as
//! shared: each name is copied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[cfg(unix)]
#[path = "copy_unix.rs"]
mod os;
#[cfg(windows)]
#[path = "copy_windows.rs"]
mod os;

/// [`shared_inode`] from an `fstat` already made.
#[cfg(unix)]
pub(crate) use os::shared;
pub(crate) use os::{copy_with_holes, shared_inode};

/// A source file with more than one name, by its `(st_dev, st_ino)`: the key under which
/// its first copy is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Inode {
    dev: u64,
    ino: u64,
}

/// The first copy of each source file that has several names (by its [`Inode`]), so its
/// other names become links to that copy instead of copies of their own, and its bytes are
/// counted once. Where the copy is named is the caller's business (a path, or a path
/// relative to a folder's descriptor).
#[derive(Debug, Default)]
pub(crate) struct FirstCopies {
    first: HashMap<Inode, PathBuf>,
}

impl FirstCopies {
    /// The copy already made of `inode`, if any (`None` for a file with one name).
    pub(crate) fn get(&self, inode: Option<Inode>) -> Option<&Path> {
        self.first.get(&inode?).map(PathBuf::as_path)
    }

    /// Notes `copy` as the copy of `inode` (nothing for a file with one name); a later copy
    /// of the same inode (the first took no more names) replaces it.
    pub(crate) fn insert(&mut self, inode: Option<Inode>, copy: PathBuf) {
        if let Some(inode) = inode {
            self.first.insert(inode, copy);
        }
    }
}
