//! The walk itself: empties one folder tree through the handle of its root, level by level,
//! with a descriptor per level and no recursion, never following a link or entering a mount
//! (see `mod.rs` for the rules). Touches only the tree below the handle it is given, by
//! system calls alone (no allocation: it also runs in the forked child of `child.rs`).

use super::fail::{fail, note, Fail, Op};
use super::name::Name;
use super::scratch::{Level, Scratch, MAX_DEPTH};
use crate::service::sys::tree::{Budget, Removal};
use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, RawDir, RenameFlags, ResolveFlags, SeekFrom,
};
use rustix::io::Errno;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

enum Found {
    /// A folder, its name in [`Walk::found`].
    Dir,
    End,
    Spent,
}

/// The walk's whole state: fixed size, allocated before any fork.
pub(super) struct Walk<'a> {
    pub(super) root: BorrowedFd<'a>,
    /// `fds[d]` for levels 1.. (level 0 is `root`).
    fds: [Option<OwnedFd>; MAX_DEPTH],
    pub(super) scratch: Box<Scratch>,
    depth: usize,
    found: Name,
    /// The first entry that could not be removed, and why: the walk goes on with the rest.
    first: Option<Fail>,
    pub(super) failed: Name,
    pub(super) as_owner: bool,
    root_dev: u64,
    no_openat2: bool,
    /// Names for folders moved up: `.rmkd-rm-<seed>-<n>`.
    seed: u64,
    moved: u64,
    pub(super) entries: u64,
    max_entries: u64,
    pub(super) deadline: Instant,
}

/// Opens folder `name` in `parent` by handle: no link at it, no mount point crossed.
pub(super) fn open_dir_at(
    parent: BorrowedFd<'_>,
    name: &CStr,
    dev: u64,
    no_openat2: &mut bool,
) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if !*no_openat2 {
        let how = ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV
            | ResolveFlags::BENEATH;
        match rfs::openat2(parent, name, flags, Mode::empty(), how) {
            Err(Errno::NOSYS) => *no_openat2 = true,
            other => return other,
        }
    }
    let fd = rfs::openat(parent, name, flags, Mode::empty())?;
    if rfs::fstat(&fd)?.st_dev as u64 != dev {
        return Err(Errno::XDEV);
    }
    Ok(fd)
}

impl<'a> Walk<'a> {
    pub(super) fn new(
        root: BorrowedFd<'a>,
        root_dev: u64,
        budget: &Budget,
        no_openat2: bool,
    ) -> Walk<'a> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Walk {
            root,
            fds: std::array::from_fn(|_| None),
            scratch: Scratch::take(),
            depth: 0,
            found: Name::EMPTY,
            first: None,
            failed: Name::EMPTY,
            as_owner: false,
            root_dev,
            no_openat2,
            seed,
            moved: 0,
            entries: 0,
            max_entries: budget.entries(),
            deadline: budget.deadline(),
        }
    }

    fn fd(&self, d: usize) -> BorrowedFd<'_> {
        match self.fds.get(d).and_then(Option::as_ref) {
            Some(f) => f.as_fd(),
            None => self.root,
        }
    }

    fn spent(&self) -> bool {
        self.entries >= self.max_entries || Instant::now() >= self.deadline
    }

    /// Empties the root folder, or as much of it as the budget allows. What cannot be removed
    /// (a mount point, an entry the owner may not remove) is left, the rest removed, and the
    /// first such entry reported once the walk is through.
    pub(super) fn run(&mut self) -> Result<Removal, Fail> {
        loop {
            if self.spent() {
                return Ok(Removal::More);
            }
            let d = self.depth;
            match self.scan(d)? {
                Found::Spent => return Ok(Removal::More),
                Found::End if self.scratch.levels[d].progress => {
                    // Another pass from the start: entries moved here meanwhile are met too.
                    self.scratch.levels[d].progress = false;
                    self.scratch.levels[d].resume = 0;
                }
                Found::End if d == 0 => return self.first.map_or(Ok(Removal::Gone), Err),
                Found::End => {
                    self.fds[d] = None;
                    self.depth = d - 1;
                    self.remove_dir(d - 1);
                }
                Found::Dir if d + 1 >= MAX_DEPTH => self.move_to_root(d),
                Found::Dir => {
                    if let Some(fd) = self.open_dir(d) {
                        self.fds[d + 1] = Some(fd);
                        self.scratch.levels[d + 1] = Level {
                            name: self.found,
                            ..Level::NEW
                        };
                        self.depth = d + 1;
                    }
                }
            }
        }
    }

    fn stuck(&mut self, op: Op, e: Errno, d: usize, name: &Name) {
        note(&mut self.first, &mut self.failed, fail(op, e, d), name.c());
    }

    /// One pass over level `d` from where it stopped: unlinks what is not a folder, stops at
    /// a folder, at the end, or when the budget is spent.
    fn scan(&mut self, d: usize) -> Result<Found, Fail> {
        let Walk {
            root,
            fds,
            scratch,
            found,
            first,
            failed,
            as_owner,
            entries,
            max_entries,
            deadline,
            ..
        } = self;
        let fd = match fds[d].as_ref() {
            Some(f) => f.as_fd(),
            None => *root,
        };
        let Scratch { levels, buf } = &mut **scratch;
        let level = &mut levels[d];
        if rfs::seek(fd, SeekFrom::Start(level.resume)).is_err() {
            // A cookie the file system does not take back: a pass from the start.
            level.resume = 0;
            rfs::seek(fd, SeekFrom::Start(0)).map_err(|e| fail(Op::Read, e, d))?;
        }
        let mut dir = RawDir::new(fd, &mut buf[..]);
        while let Some(ent) = dir.next() {
            let ent = ent.map_err(|e| fail(Op::Read, e, d))?;
            let name = ent.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            *entries += 1;
            let cookie = ent.next_entry_cookie();
            let mut is_dir = ent.file_type() == FileType::Directory;
            if !is_dir {
                match unlink(fd, name, level, *as_owner) {
                    Ok(Some(removed)) => level.progress |= removed,
                    Ok(None) => is_dir = true,
                    Err(e) => note(first, failed, fail(Op::Unlink, e, d), name),
                }
            }
            if is_dir {
                if found.set(name) {
                    level.resume = cookie;
                    return Ok(Found::Dir);
                }
                note(
                    first,
                    failed,
                    fail(Op::Open, Errno::NAMETOOLONG, d),
                    c"(too long)",
                );
            }
            if *entries >= *max_entries || Instant::now() >= *deadline {
                level.resume = cookie;
                return Ok(Found::Spent);
            }
        }
        Ok(Found::End)
    }

    /// Opens the folder [`Walk::found`] of level `d`; `None` if it is gone, no folder now (a
    /// link or file swapped in: unlinked as such), or cannot be entered (noted).
    fn open_dir(&mut self, d: usize) -> Option<OwnedFd> {
        let name = self.found;
        let mut opened_up = false;
        for _ in 0..8 {
            let mut no_openat2 = self.no_openat2;
            let r = open_dir_at(self.fd(d), name.c(), self.root_dev, &mut no_openat2);
            self.no_openat2 = no_openat2;
            match r {
                Ok(fd) => return Some(fd),
                // A rename raced the lookup (RESOLVE_BENEATH): again.
                Err(Errno::AGAIN) => {}
                Err(Errno::NOENT) => return None,
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    if rfs::unlinkat(self.fd(d), name.c(), AtFlags::empty()).is_ok() {
                        self.scratch.levels[d].progress = true;
                    }
                    return None;
                }
                Err(Errno::ACCESS) if self.as_owner && !opened_up => {
                    // Locked by its owner (us, now): open it up, and its parent too (a
                    // parent without search permission refuses the lookup).
                    opened_up = true;
                    let _ = rfs::fchmod(self.fd(d), Mode::RWXU);
                    let _ = rfs::chmodat(self.fd(d), name.c(), Mode::RWXU, AtFlags::empty());
                }
                Err(e) => {
                    let op = if e == Errno::XDEV {
                        Op::Mount
                    } else {
                        Op::Open
                    };
                    self.stuck(op, e, d, &name);
                    return None;
                }
            }
        }
        self.stuck(Op::Open, Errno::AGAIN, d, &name);
        None
    }

    /// Removes level `d + 1`'s folder (emptied as far as it goes, closed) from level `d`.
    fn remove_dir(&mut self, d: usize) {
        let name = self.scratch.levels[d + 1].name;
        loop {
            match rfs::unlinkat(self.fd(d), name.c(), AtFlags::REMOVEDIR) {
                Ok(()) => {
                    self.scratch.levels[d].progress = true;
                    return;
                }
                // Gone, or not empty: what is left in it was noted, or was put there since
                // (a process still writes there; a later look).
                Err(Errno::NOENT | Errno::NOTEMPTY | Errno::EXIST) => return,
                Err(Errno::ACCESS | Errno::PERM)
                    if self.as_owner && !self.scratch.levels[d].opened_up =>
                {
                    self.scratch.levels[d].opened_up = true;
                    let _ = rfs::fchmod(self.fd(d), Mode::RWXU);
                }
                Err(e) => {
                    let op = if e == Errno::BUSY {
                        Op::Mount
                    } else {
                        Op::Rmdir
                    };
                    self.stuck(op, e, d, &name);
                    return;
                }
            }
        }
    }

    /// Moves the folder [`Walk::found`] of the deepest level up into the root, to be walked
    /// from there.
    fn move_to_root(&mut self, d: usize) {
        let name = self.found;
        let mut opened_up = false;
        for _ in 0..64 {
            self.moved += 1;
            let to = moved_name(self.seed, self.moved);
            let mut r = rfs::renameat_with(
                self.fd(d),
                name.c(),
                self.root,
                to.c(),
                RenameFlags::NOREPLACE,
            );
            if r == Err(Errno::INVAL) {
                // A file system without RENAME_NOREPLACE: our own name, taken at most by an
                // empty folder of an earlier move.
                r = rfs::renameat(self.fd(d), name.c(), self.root, to.c());
            }
            match r {
                Ok(()) => {
                    self.scratch.levels[d].progress = true;
                    self.scratch.levels[0].progress = true;
                    self.entries += 1;
                    return;
                }
                Err(Errno::EXIST | Errno::NOTEMPTY) => {}
                Err(Errno::NOENT) => return,
                Err(Errno::ACCESS | Errno::PERM) if self.as_owner && !opened_up => {
                    opened_up = true;
                    let _ = rfs::fchmod(self.fd(d), Mode::RWXU);
                    let _ = rfs::fchmod(self.root, Mode::RWXU);
                }
                Err(e) => {
                    let op = if e == Errno::BUSY {
                        Op::Mount
                    } else {
                        Op::Move
                    };
                    self.stuck(op, e, d, &name);
                    return;
                }
            }
        }
        self.stuck(Op::Move, Errno::EXIST, d, &name);
    }
}

/// Unlinks an entry that is not a folder: whether it was removed (not gone already), or
/// `None` when it is a folder after all.
fn unlink(
    fd: BorrowedFd<'_>,
    name: &CStr,
    level: &mut Level,
    as_owner: bool,
) -> Result<Option<bool>, Errno> {
    loop {
        match rfs::unlinkat(fd, name, AtFlags::empty()) {
            Ok(()) => return Ok(Some(true)),
            Err(Errno::NOENT) => return Ok(Some(false)),
            Err(Errno::ISDIR) => return Ok(None),
            Err(Errno::ACCESS | Errno::PERM) if as_owner && !level.opened_up => {
                // Locked by its owner (us, now): open it up, once, and try again.
                level.opened_up = true;
                let _ = rfs::fchmod(fd, Mode::RWXU);
            }
            Err(e) => return Err(e),
        }
    }
}

/// `.rmkd-rm-<seed>-<n>`, written without allocating.
fn moved_name(seed: u64, n: u64) -> Name {
    let mut name = Name::EMPTY;
    let mut at = 0;
    let mut put = |b: &[u8], at: &mut usize| {
        name.bytes[*at..*at + b.len()].copy_from_slice(b);
        *at += b.len();
    };
    put(b".rmkd-rm-", &mut at);
    for (i, v) in [seed, n].into_iter().enumerate() {
        if i > 0 {
            put(b"-", &mut at);
        }
        let mut digits = [0u8; 20];
        let mut k = digits.len();
        let mut v = v;
        loop {
            k -= 1;
            digits[k] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        put(&digits[k..], &mut at);
    }
    name.len = at;
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_name_is_written_without_allocating() {
        assert_eq!(moved_name(12, 3).c(), c".rmkd-rm-12-3");
    }
}
