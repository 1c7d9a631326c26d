//! The Linux tree remover: an iterative walk by handle (what it is for: see `tree.rs`).
//!
//! Why hand-written: std's `remove_dir_all`, cap-std's and the `remove_dir_all` crate's all
//! recurse once per level (an 81,000-level tree overflows a thread's stack, and holds a
//! descriptor per level), none stops at a mount point of the same file system, none can be
//! bounded per look, and none can run in a forked child (they allocate). The system calls
//! come from rustix (safe wrappers, no allocation); the walk itself is what is here.
//!
//! The walk:
//! - holds a descriptor per level, at most `MAX_DEPTH` levels below the tree's root; a folder
//!   met deeper is moved up into the root (`renameat2`, `RENAME_NOREPLACE`, within the tree)
//!   and walked from there later. Depth costs nothing, and every look makes progress: a chain
//!   deeper than one look's budget is cut into pieces that later looks remove in turn;
//! - reads each folder with `getdents` into one fixed buffer; after a subfolder is removed it
//!   goes on at the entry after it (the seek cookie), and passes over a folder again from its
//!   start while a pass removed something (entries moved in meanwhile are not missed);
//! - never follows a link: an entry is unlinked first (a link, file or FIFO is just a name
//!   there); a folder is opened with `openat2` (`RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV |
//!   RESOLVE_BENEATH`) and `O_NOFOLLOW | O_DIRECTORY`, so a folder swapped for a link between
//!   the listing and the open is refused, and a mount point (a bind mount of the same file
//!   system too) is never entered;
//! - leaves what it cannot remove (a mount point, what the owner may not remove) and removes
//!   the rest: a folder is done after a pass that removed nothing, and the first entry left
//!   is reported, by name, once the walk is through. On a kernel without `openat2` (before
//!   5.6): `openat` with `O_NOFOLLOW` and a device check, which cannot see a bind mount of
//!   the same file system;
//! - allocates nothing and makes only system calls, so it can run in a forked child.
//!
//! With [`Rights::Owner`] the daemon (root) opens the tree's parent and the tree by handle,
//! then forks a child that takes the tree owner's effective uid and gid (no supplementary
//! groups; root's real and saved uid stay, so that the user cannot signal it),
//! becomes non-dumpable (it holds a copy of the daemon's memory: no ptrace and no
//! `/proc/PID/mem` for the user), dies with the daemon, keeps no descriptor but the tree's
//! and its report pipe, and empties the tree through that handle; root then removes the
//! empty folder from its own parent (`rmdir` removes only an empty folder). As its owner, the
//! child opens up a folder the owner locked (mode 0000, 0500) with `chmod`: if a link was
//! swapped in, the kernel follows it, but the owner can change only what it owns.
//!
//! Why a child and not root by handle alone: root by handle is already safe against links and
//! mounts, but the owner's rights add the kernel's own checks to every step (a folder the user
//! moves in from elsewhere while the walk runs, a FUSE mount the user controls, what we did not
//! think of): the worst a trick can do is remove what that user may remove anyway. The child
//! keeps to its look's deadline and is killed two seconds after it, so a user's hung file
//! system cannot hold the daemon's finisher.

use super::{Budget, Removal, RemoveError, Rights};
use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, RawDir, RenameFlags, ResolveFlags, SeekFrom,
};
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Levels held open below the tree's root; deeper folders are moved up to the root.
const MAX_DEPTH: usize = 32;
/// A file name (at most 255 bytes on Linux) and its NUL.
const NAME_CAP: usize = 256;
/// The `getdents` buffer: room for dozens of the longest names.
const DIR_BUF: usize = 16 * 1024;
/// How long past its look's deadline a child may take before it is killed.
const CHILD_GRACE: Duration = Duration::from_secs(2);

/// A name copied out of the `getdents` buffer, NUL-terminated.
#[derive(Clone, Copy)]
struct Name {
    bytes: [u8; NAME_CAP],
    len: usize,
}

impl Name {
    const EMPTY: Name = Name {
        bytes: [0; NAME_CAP],
        len: 0,
    };

    fn set(&mut self, s: &CStr) -> bool {
        let b = s.to_bytes_with_nul();
        if b.len() > NAME_CAP {
            return false;
        }
        self.bytes[..b.len()].copy_from_slice(b);
        self.len = b.len() - 1;
        true
    }

    fn c(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"")
    }

    /// For a message: the name is the tree owner's choice, so it is quoted with escapes.
    fn shown(&self) -> String {
        format!("{:?}", String::from_utf8_lossy(&self.bytes[..self.len]))
    }
}

/// What the walk was doing when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read = 1,
    Unlink,
    Open,
    Rmdir,
    Move,
    Mount,
    Identity,
}

impl Op {
    fn from_u8(b: u8) -> Op {
        [
            Op::Read,
            Op::Unlink,
            Op::Open,
            Op::Rmdir,
            Op::Move,
            Op::Mount,
            Op::Identity,
        ]
        .into_iter()
        .find(|o| *o as u8 == b)
        .unwrap_or(Op::Read)
    }

    fn verb(self) -> &'static str {
        match self {
            Op::Read => "reading",
            Op::Unlink => "unlinking",
            Op::Open => "opening",
            Op::Rmdir => "removing the folder",
            Op::Move => "moving up",
            Op::Mount => "entering",
            Op::Identity => "taking the owner's identity for",
        }
    }
}

/// Why a walk stopped (the entry's name is in [`Walk::failed`]).
#[derive(Debug, Clone, Copy)]
struct Fail {
    op: Op,
    errno: i32,
    depth: u32,
}

/// One open level below the root.
#[derive(Clone, Copy)]
struct Level {
    /// This folder's name in its parent.
    name: Name,
    /// Where the next pass over this folder goes on (a `getdents` cookie).
    resume: u64,
    /// This pass removed something: another pass follows. A pass that removes nothing ends
    /// the folder: it is empty, or what is left cannot be removed (see [`Walk::first`]).
    progress: bool,
    /// Its mode was set to 0700 already (owner mode), not again.
    opened_up: bool,
}

impl Level {
    const NEW: Level = Level {
        name: Name::EMPTY,
        resume: 0,
        progress: false,
        opened_up: false,
    };
}

enum Found {
    /// A folder, its name in [`Walk::found`].
    Dir,
    End,
    Spent,
}

/// The walk's large part (25 KiB): its levels and its `getdents` buffer.
struct Scratch {
    levels: [Level; MAX_DEPTH],
    buf: [MaybeUninit<u8>; DIR_BUF],
}

/// One scratch kept between walks. The daemon removes a tree after most runs (a pruned run
/// folder), on the finisher's threads, which share one heap with the loop: a 25 KiB block
/// taken and given back at every run, between small blocks that live on, left the heap
/// fragmented and its top creeping up (the soak of issue 25). A walk takes the spare, or a new
/// scratch when another walk holds it, and gives it back to be the spare if there is none.
static SPARE: Mutex<Option<Box<Scratch>>> = Mutex::new(None);

impl Scratch {
    fn take() -> Box<Scratch> {
        let spare = SPARE.lock().ok().and_then(|mut s| s.take());
        let mut s = spare.unwrap_or_else(|| {
            Box::new(Scratch {
                levels: [Level::NEW; MAX_DEPTH],
                buf: [MaybeUninit::uninit(); DIR_BUF],
            })
        });
        s.levels = [Level::NEW; MAX_DEPTH];
        s
    }

    fn give_back(self: Box<Scratch>) {
        if let Ok(mut spare) = SPARE.lock() {
            spare.get_or_insert(self);
        }
    }
}

/// Frees the kept scratch: an idle daemon hands back what its runs left (the next walk makes
/// a new one).
pub(crate) fn drop_spare() {
    if let Ok(mut spare) = SPARE.lock() {
        spare.take();
    }
}

/// The walk's whole state: fixed size, allocated before any fork.
struct Walk<'a> {
    root: BorrowedFd<'a>,
    /// `fds[d]` for levels 1.. (level 0 is `root`).
    fds: [Option<OwnedFd>; MAX_DEPTH],
    scratch: Box<Scratch>,
    depth: usize,
    found: Name,
    /// The first entry that could not be removed, and why: the walk goes on with the rest.
    first: Option<Fail>,
    failed: Name,
    as_owner: bool,
    root_dev: u64,
    no_openat2: bool,
    /// Names for folders moved up: `.rmkd-rm-<seed>-<n>`.
    seed: u64,
    moved: u64,
    entries: u64,
    max_entries: u64,
    deadline: Instant,
}

/// Keeps the first failure of a walk, with the entry's name.
fn note(first: &mut Option<Fail>, failed: &mut Name, f: Fail, name: &CStr) {
    if first.is_none() {
        *first = Some(f);
        failed.set(name);
    }
}

fn fail(op: Op, e: Errno, depth: usize) -> Fail {
    Fail {
        op,
        errno: e.raw_os_error(),
        depth: depth as u32,
    }
}

/// Opens folder `name` in `parent` by handle: no link at it, no mount point crossed.
fn open_dir_at(
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
    fn new(root: BorrowedFd<'a>, root_dev: u64, budget: &Budget, no_openat2: bool) -> Walk<'a> {
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
    fn run(&mut self) -> Result<Removal, Fail> {
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

// ---- the report a child sends back ----------------------------------------------------------

/// status(1) op(1) errno(4) depth(4) entries(8) name_len(2) name(255).
const REPORT: usize = 1 + 1 + 4 + 4 + 8 + 2 + (NAME_CAP - 1);

fn encode(result: &Result<Removal, Fail>, entries: u64, failed: &Name) -> [u8; REPORT] {
    let mut b = [0u8; REPORT];
    let (status, f) = match result {
        Ok(Removal::Gone) => (1u8, None),
        Ok(Removal::More) => (2, None),
        Err(f) => (3, Some(f)),
    };
    b[0] = status;
    if let Some(f) = f {
        b[1] = f.op as u8;
        b[2..6].copy_from_slice(&f.errno.to_le_bytes());
        b[6..10].copy_from_slice(&f.depth.to_le_bytes());
        let n = failed.len.min(NAME_CAP - 1);
        b[18..20].copy_from_slice(&(n as u16).to_le_bytes());
        b[20..20 + n].copy_from_slice(&failed.bytes[..n]);
    }
    b[10..18].copy_from_slice(&entries.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<(Result<Removal, Fail>, u64, Name)> {
    if b.len() != REPORT {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut e = [0u8; 8];
    e.copy_from_slice(&b[10..18]);
    let entries = u64::from_le_bytes(e);
    let mut name = Name::EMPTY;
    let n = (u16::from_le_bytes([b[18], b[19]]) as usize).min(NAME_CAP - 1);
    name.bytes[..n].copy_from_slice(&b[20..20 + n]);
    name.len = n;
    let result = match b[0] {
        1 => Ok(Removal::Gone),
        2 => Ok(Removal::More),
        3 => Err(Fail {
            op: Op::from_u8(b[1]),
            errno: u32_at(2) as i32,
            depth: u32_at(6),
        }),
        _ => return None,
    };
    Some((result, entries, name))
}

// ---- the driver -----------------------------------------------------------------------------

/// Removes `path` (a folder and everything in it, or a file or link) within `budget`, with
/// `rights`. A missing `path` is [`Removal::Gone`].
pub fn remove_tree(
    path: &Path,
    rights: Rights,
    budget: &mut Budget,
) -> Result<Removal, RemoveError> {
    let open_err = |p: &Path, e: Errno| RemoveError::Open {
        path: p.to_path_buf(),
        source: e.into(),
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(open_err(path, Errno::INVAL));
    };
    let parent_fd = match rfs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Removal::Gone),
        Err(e) => return Err(open_err(parent, e)),
    };
    let cname = CString::new(name.as_bytes()).map_err(|_| open_err(path, Errno::INVAL))?;
    let dev = rfs::fstat(&parent_fd)
        .map_err(|e| open_err(parent, e))?
        .st_dev as u64;
    let mut no_openat2 = false;
    let entry_err = |what: &str, e: Errno| RemoveError::Entry {
        tree: path.to_path_buf(),
        what: what.to_string(),
        source: e.into(),
    };
    let tree = match open_dir_at(parent_fd.as_fd(), &cname, dev, &mut no_openat2) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Removal::Gone),
        Err(Errno::NOTDIR | Errno::LOOP) => {
            // A file or a link where the folder was: a name to unlink, nothing to follow.
            return match rfs::unlinkat(&parent_fd, cname.as_c_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(Removal::Gone),
                Err(e) => Err(entry_err("it", e)),
            };
        }
        Err(Errno::XDEV) => {
            return Err(RemoveError::MountPoint {
                tree: path.to_path_buf(),
                what: "the folder itself".into(),
            })
        }
        Err(e) => return Err(open_err(path, e)),
    };
    let st = rfs::fstat(&tree).map_err(|e| open_err(path, e))?;
    if is_empty(tree.as_fd()) {
        // Nothing to walk (a run's temp folder, most often): no walk is set up. Filled
        // meanwhile, the rmdir below fails and the next look walks it.
        drop(tree);
        return conclude(Ok(Removal::Gone), &Name::EMPTY, &parent_fd, &cname, path);
    }
    let mut walk = Walk::new(tree.as_fd(), st.st_dev as u64, budget, no_openat2);
    let root = rustix::process::geteuid().as_raw() == 0;
    let (result, entries, failed) = if rights == Rights::Owner && root && st.st_uid != 0 {
        as_owner(&mut walk, st.st_uid, st.st_gid, path)?
    } else {
        let r = walk.run();
        (r, walk.entries, walk.failed)
    };
    let Walk { scratch, .. } = walk;
    scratch.give_back();
    drop(tree);
    budget.take(entries);
    conclude(result, &failed, &parent_fd, &cname, path)
}

/// What the walk of `path` came to: the emptied folder removed from its parent, or why not.
fn conclude(
    result: Result<Removal, Fail>,
    failed: &Name,
    parent_fd: &OwnedFd,
    cname: &CString,
    path: &Path,
) -> Result<Removal, RemoveError> {
    let entry_err = |what: &str, e: Errno| RemoveError::Entry {
        tree: path.to_path_buf(),
        what: what.to_string(),
        source: e.into(),
    };
    match result {
        Ok(Removal::Gone) => {
            match rfs::unlinkat(parent_fd, cname.as_c_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => Ok(Removal::Gone),
                // Filled again since it was emptied: the next look.
                Err(Errno::NOTEMPTY | Errno::EXIST) => Ok(Removal::More),
                Err(Errno::BUSY) => Err(RemoveError::MountPoint {
                    tree: path.to_path_buf(),
                    what: "the folder itself".into(),
                }),
                Err(e) => Err(entry_err("the emptied folder", e)),
            }
        }
        Ok(Removal::More) => Ok(Removal::More),
        Err(f) => {
            let what = format!(
                "{} {} ({} levels down)",
                f.op.verb(),
                failed.shown(),
                f.depth
            );
            Err(if f.op == Op::Mount {
                RemoveError::MountPoint {
                    tree: path.to_path_buf(),
                    what,
                }
            } else {
                RemoveError::Entry {
                    tree: path.to_path_buf(),
                    what,
                    source: io::Error::from_raw_os_error(f.errno),
                }
            })
        }
    }
}

/// Removes `path` completely, look after look, until it is gone, an error stops it, or
/// `limit` has passed: for a caller with no later look (a one-off clean-up off the loop
/// thread).
pub(crate) fn remove_tree_fully(
    path: &Path,
    rights: Rights,
    limit: Duration,
) -> Result<Removal, RemoveError> {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let mut budget = Budget::new(left.min(Duration::from_secs(1)), u64::MAX);
        match remove_tree(path, rights, &mut budget)? {
            Removal::Gone => return Ok(Removal::Gone),
            Removal::More if left.is_zero() => return Ok(Removal::More),
            Removal::More => {}
        }
    }
}

/// Whether a folder holds nothing (then there is nothing to remove with the owner's rights,
/// and no child to fork: a run's temp folder is mostly empty). Reading a listing by handle
/// follows nothing; an error answers "not empty", so the child looks.
fn is_empty(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    let mut it = RawDir::new(dir, &mut buf);
    while let Some(ent) = it.next() {
        match ent {
            Ok(e) if e.file_name() == c"." || e.file_name() == c".." => {}
            _ => return false,
        }
    }
    true
}

/// Runs the walk in a child that took the tree owner's identity; returns what it reported.
fn as_owner(
    walk: &mut Walk<'_>,
    uid: u32,
    gid: u32,
    tree: &Path,
) -> Result<(Result<Removal, Fail>, u64, Name), RemoveError> {
    let err = |source: io::Error| RemoveError::AsOwner {
        tree: tree.to_path_buf(),
        uid,
        source,
    };
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just created both; nothing else owns them.
    let (report_r, report_w) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    // Recorded as the daemon's own before anyone can look at it: a subreaper's spawner would
    // take it for an orphan a run left and end it (see `sys::children`).
    // Every signal blocked across the fork: none of the daemon's handlers may run in the
    // child (they write to the daemon's pipes); the child resets them, then unblocks.
    // SAFETY: signal sets on the stack; fork's child runs only `child_main`, which makes
    // system calls on memory prepared before the fork, and `_exit`s.
    let started = crate::service::sys::children::start(|| unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::fork();
        if pid == 0 {
            child_main(walk, uid, gid, report_w.as_raw_fd(), me);
        }
        let fork_err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(fork_err);
        }
        Ok((pid as u32, ()))
    });
    let pid = started.map_err(err)?.0 as libc::pid_t;
    drop(report_w);
    // The child's own handle, for the signal below: it names that process even if something
    // else collected it meanwhile (a PID could be another process's by then).
    // SAFETY: pidfd_open(2) with a PID and no flags; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new descriptor owned by nobody else.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) });
    let mut buf = [0u8; REPORT];
    let (got, killed) = read_report(&report_r, walk.deadline + CHILD_GRACE, &mut buf);
    kill_child(pid, pidfd.as_ref());
    collect(pid, pidfd.as_ref());
    if killed {
        return Err(err(io::Error::new(
            io::ErrorKind::TimedOut,
            "it did not end within its look (a hung file system in the folder?) and was killed",
        )));
    }
    match decode(&buf[..got]) {
        Some((Err(f), _, _)) if f.op == Op::Identity => {
            Err(err(io::Error::from_raw_os_error(f.errno)))
        }
        Some(r) => Ok(r),
        None => Err(err(io::Error::other(
            "it ended without a report (killed by its user?)",
        ))),
    }
}

/// Reads the walking child's report from `report_r` into `buf` until it is whole, the
/// child closes its end, or `until`; returns the bytes read and whether time ran out.
fn read_report(report_r: &OwnedFd, until: Instant, buf: &mut [u8; REPORT]) -> (usize, bool) {
    let mut got = 0;
    let mut killed = false;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            killed = true;
            break;
        }
        let mut pfd = libc::pollfd {
            fd: report_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, 60_000) as libc::c_int;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            continue;
        }
        // SAFETY: reading into the rest of our buffer.
        let n = unsafe {
            libc::read(
                report_r.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                REPORT - got,
            )
        };
        if n > 0 {
            got += n as usize;
            if got < REPORT {
                continue;
            }
        } else if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break;
    }
    (got, killed)
}

/// Ends the walking child.
fn kill_child(pid: libc::pid_t, pidfd: Option<&OwnedFd>) {
    // Its work is done (or its time is up): ended for sure, since its user may have stopped
    // it (SIGSTOP) between its report and its exit, and a stopped child is never collected.
    match pidfd {
        // SAFETY: pidfd_send_signal on our own pidfd, no info, no flags.
        Some(fd) => unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        },
        // SAFETY: our own child, not collected by us yet.
        None => unsafe {
            libc::kill(pid, libc::SIGKILL);
        },
    }
}

/// Collects the child (SIGKILLed: ending), as a recorded child of ours (see
/// `sys::children`). One that hangs in the kernel a while (an NFS or FUSE wait) is collected by
/// a thread of its own, not by the finisher.
fn collect(pid: libc::pid_t, pidfd: Option<&OwnedFd>) {
    let reap = move || {
        crate::service::sys::children::collect(pid as u32, || {
            let mut status = 0;
            // SAFETY: waitpid on our own child, which has exited, without blocking.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        })
    };
    if let Some(fd) = pidfd {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd (readable once the child has exited).
        if unsafe { libc::poll(&mut pfd, 1, 1000) } > 0 {
            return reap();
        }
    }
    let _ = std::thread::Builder::new()
        .name("tree-child".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            crate::service::sys::children::wait_exited(pid as u32);
            reap()
        });
}

/// The child's side: takes the owner's identity, walks, reports, exits.
///
/// # Safety
/// Only in a child fresh from `fork` with every signal blocked. It makes system calls only,
/// on memory prepared before the fork, and never returns.
unsafe fn child_main(
    walk: &mut Walk<'_>,
    uid: u32,
    gid: u32,
    report: RawFd,
    parent: libc::pid_t,
) -> ! {
    // The daemon's handlers would write to its pipes: default actions here.
    for sig in 1..65 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
    close_other_fds(walk.root.as_raw_fd(), report);
    // The owner's rights for every file system check (the effective ids; with an effective
    // uid that is not 0 the kernel clears every effective capability), but root's real and
    // saved uid: a process may signal another only if its own uids match the target's real or
    // saved one, so the user cannot stop this child (`kill(-1, SIGSTOP)` in a loop held each
    // removal to its deadline, two seconds past its look, while that user's runs kept ending).
    // The child runs no code of the user's and cannot be traced (below).
    let groups = [gid];
    let (mut r, mut e, mut sv) = (u32::MAX, u32::MAX, u32::MAX);
    let identity = libc::setgroups(1, groups.as_ptr()) == 0
        && libc::setresgid(gid, gid, gid) == 0
        && libc::setresuid(0, uid, 0) == 0
        && libc::getresuid(&mut r, &mut e, &mut sv) == 0
        && (r, e, sv) == (0, uid, 0)
        && libc::getegid() == gid;
    let errno = *libc::__errno_location();
    // A copy of the daemon's memory (its config, secrets) must not be readable by the user:
    // no ptrace, no /proc/PID/mem. Set after the uid change, which resets both of these.
    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    if libc::getppid() != parent {
        libc::_exit(3);
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    let result = if identity {
        walk.as_owner = true;
        walk.run()
    } else {
        Err(Fail {
            op: Op::Identity,
            errno: if errno == 0 { libc::EPERM } else { errno },
            depth: 0,
        })
    };
    let b = encode(&result, walk.entries, &walk.failed);
    libc::write(report, b.as_ptr().cast(), b.len());
    libc::_exit(0)
}

/// Closes every descriptor above stderr but `a` and `b` (close_range, Linux 5.9+; on an older
/// kernel they stay open, in a process the user can neither trace nor read).
///
/// # Safety
/// In a forked child only: it closes descriptors the parent's objects own.
unsafe fn close_other_fds(a: RawFd, b: RawFd) {
    let mut from: libc::c_uint = 3;
    for keep in [a.min(b), a.max(b)] {
        let keep = keep as libc::c_uint;
        if keep >= from {
            if keep > from {
                libc::syscall(libc::SYS_close_range, from, keep - 1, 0);
            }
            from = keep + 1;
        }
    }
    libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// A chain `depth` folders deep below `top/deep`, built by handle (no path is that long).
    fn chain(top: &Path, depth: usize) {
        std::fs::create_dir(top.join("deep")).unwrap();
        let mut fd = rfs::open(
            top.join("deep"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        for _ in 0..depth {
            rfs::mkdirat(&fd, c"d", Mode::RWXU).unwrap();
            fd = rfs::openat(&fd, c"d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        }
        let f = rfs::openat(&fd, c"bottom", OFlags::WRONLY | OFlags::CREATE, Mode::RUSR).unwrap();
        drop(f);
    }

    fn budget() -> Budget {
        Budget::new(Duration::from_secs(600), u64::MAX)
    }

    #[test]
    fn a_tree_deeper_than_any_stack_is_removed_on_a_small_stack() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("tree");
        std::fs::create_dir(&top).unwrap();
        chain(&top, 20_000);
        // 128 KiB of stack: a walk that recursed per level would overflow it at once.
        let path = top.clone();
        let r = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                remove_tree(&path, Rights::Daemon, &mut budget()).map_err(|e| e.to_string())
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(r, Ok(Removal::Gone));
        assert!(!top.exists());
    }

    /// Walks at once each have a scratch (one takes the spare, the others new ones), and a
    /// scratch used again starts from clean levels: deep trees, whose walks leave every
    /// level's state set, removed by four threads, twice over.
    #[test]
    fn walks_at_once_and_one_after_another_remove_whole_trees() {
        let t = tempfile::tempdir().unwrap();
        for round in 0..2 {
            let tops: Vec<_> = (0..4)
                .map(|i| {
                    let top = t.path().join(format!("tree-{round}-{i}"));
                    std::fs::create_dir(&top).unwrap();
                    chain(&top, MAX_DEPTH + 8);
                    for f in 0..50 {
                        std::fs::write(top.join(format!("f{f}")), "x").unwrap();
                    }
                    top
                })
                .collect();
            let walks: Vec<_> = tops
                .iter()
                .cloned()
                .map(|top| {
                    std::thread::spawn(move || remove_tree(&top, Rights::Daemon, &mut budget()))
                })
                .collect();
            for (w, top) in walks.into_iter().zip(&tops) {
                assert_eq!(w.join().unwrap().unwrap(), Removal::Gone);
                assert!(!top.exists(), "{} is left", top.display());
            }
        }
    }

    #[test]
    fn an_empty_folder_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("empty");
        std::fs::create_dir(&top).unwrap();
        assert_eq!(
            remove_tree(&top, Rights::Daemon, &mut budget()).unwrap(),
            Removal::Gone
        );
        assert!(!top.exists());
    }

    #[test]
    fn links_are_removed_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("file"), "keep").unwrap();
        std::fs::write(outside.join("sub/file"), "keep").unwrap();
        let top = t.path().join("tree");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        symlink(&outside, top.join("dir")).unwrap();
        symlink(outside.join("file"), top.join("file")).unwrap();
        symlink(&outside, top.join("a/b/dir")).unwrap();
        symlink("..", top.join("a/up")).unwrap();
        symlink("/", top.join("a/b/root")).unwrap();
        assert_eq!(
            remove_tree(&top, Rights::Daemon, &mut budget()).unwrap(),
            Removal::Gone
        );
        assert!(!top.exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("file")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("sub/file")).unwrap(),
            "keep"
        );
        // The path itself a link: the link goes, not what it names.
        let link = t.path().join("link");
        symlink(&outside, &link).unwrap();
        assert_eq!(
            remove_tree(&link, Rights::Daemon, &mut budget()).unwrap(),
            Removal::Gone
        );
        assert!(outside.join("sub/file").exists());
        // Nothing there: gone already.
        assert_eq!(
            remove_tree(&link, Rights::Daemon, &mut budget()).unwrap(),
            Removal::Gone
        );
    }

    #[test]
    fn a_small_budget_removes_a_part_per_look_and_every_look_makes_progress() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("tree");
        std::fs::create_dir(&top).unwrap();
        for i in 0..2_000 {
            std::fs::write(top.join(format!("f{i}")), "").unwrap();
        }
        // A chain far deeper than one look's budget: moved up in pieces, removed in turn.
        chain(&top, 3_000);
        let count = |p: &Path| {
            let out = std::process::Command::new("find").arg(p).output().unwrap();
            out.stdout.iter().filter(|b| **b == b'\n').count()
        };
        let mut looks = 0;
        let mut before = count(&top);
        loop {
            looks += 1;
            let mut b = Budget::new(Duration::from_secs(600), 500);
            match remove_tree(&top, Rights::Daemon, &mut b).unwrap() {
                Removal::Gone => break,
                Removal::More => {
                    assert_eq!(b.entries(), 0);
                    let now = count(&top);
                    assert!(now < before, "look {looks} made no progress: {now} entries");
                    before = now;
                }
            }
            assert!(looks < 200, "not done after {looks} looks");
        }
        assert!(looks > 5, "{looks}");
        assert!(!top.exists());
    }

    #[test]
    fn a_full_removal_goes_on_look_after_look() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("tree");
        std::fs::create_dir(&top).unwrap();
        chain(&top, 5_000);
        let r = remove_tree_fully(&top, Rights::Daemon, Duration::from_secs(600)).unwrap();
        assert_eq!(r, Removal::Gone);
        assert!(!top.exists());
    }

    #[test]
    fn the_child_takes_the_owners_rights_and_opens_up_what_the_owner_locked() {
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("SKIP: not root (the owner's child needs root to take another uid)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let top = t.path().join("tree");
        std::fs::create_dir_all(top.join("locked/inner")).unwrap();
        std::fs::write(top.join("locked/inner/f"), "").unwrap();
        chain(&top, 100);
        let out = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&top)
            .status()
            .unwrap();
        assert!(out.success());
        std::fs::set_permissions(
            top.join("locked/inner"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        std::fs::set_permissions(top.join("locked"), std::fs::Permissions::from_mode(0o500))
            .unwrap();
        // Root's folder in the owner's tree: the owner may not empty it, so neither may the
        // child (proof that it runs with the owner's rights, not root's).
        std::fs::create_dir(top.join("roots")).unwrap();
        std::fs::write(top.join("roots/f"), "root's").unwrap();
        let r = remove_tree(&top, Rights::Owner, &mut budget());
        let e = r.unwrap_err().to_string();
        assert!(e.contains("\"f\""), "{e}");
        assert!(e.contains("Permission denied"), "{e}");
        assert_eq!(
            std::fs::read_to_string(top.join("roots/f")).unwrap(),
            "root's"
        );
        assert_eq!(std::fs::metadata(top.join("roots")).unwrap().uid(), 0);
        // The rest went all the same, locked folders opened up by their owner.
        let left: Vec<_> = std::fs::read_dir(&top)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["roots"]);
        assert_eq!(
            remove_tree(&top.join("roots"), Rights::Daemon, &mut budget()).unwrap(),
            Removal::Gone
        );
        assert_eq!(
            remove_tree(&top, Rights::Owner, &mut budget()).unwrap(),
            Removal::Gone
        );
        assert!(!top.exists());
    }

    #[test]
    fn a_report_survives_the_pipe() {
        let mut n = Name::EMPTY;
        n.set(c"we\x01ird");
        let f = Fail {
            op: Op::Mount,
            errno: libc::EXDEV,
            depth: 7,
        };
        let b = encode(&Err(f), 42, &n);
        let (r, entries, name) = decode(&b).unwrap();
        let back = r.unwrap_err();
        assert_eq!(
            (back.op, back.errno, back.depth, entries),
            (Op::Mount, libc::EXDEV, 7, 42)
        );
        assert_eq!(name.shown(), "\"we\\u{1}ird\"");
        let b = encode(&Ok(Removal::More), 3, &Name::EMPTY);
        assert!(matches!(decode(&b), Some((Ok(Removal::More), 3, _))));
        assert!(decode(&b[..10]).is_none());
        assert_eq!(moved_name(12, 3).c(), c".rmkd-rm-12-3");
    }
}
