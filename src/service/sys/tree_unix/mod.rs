//! The Linux tree remover: an iterative walk by handle (what it is for: see `tree.rs`). This
//! file is its driver; it touches the tree's parent folder by handle, and the tree through the
//! walk (`walk.rs`, or `child.rs` with the owner's rights).
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
//!
//! The files: `walk.rs` (the walk), `scratch.rs` (its memory, kept between walks), `name.rs`
//! and `fail.rs` (what it holds of an entry and of a failure), `child.rs` (the walk run as the
//! tree's owner) with `report.rs` (what that child sends back); this file is the driver: it
//! opens the tree by handle, chooses the walk's rights, and removes the emptied folder.

mod child;
mod fail;
mod name;
mod report;
mod scratch;
mod walk;

pub(crate) use scratch::drop_spare;

use super::{Budget, Removal, RemoveError, Rights};
use child::as_owner;
use fail::{Fail, Op};
use name::Name;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RawDir};
use rustix::io::Errno;
use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};
use walk::{open_dir_at, Walk};

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

#[cfg(test)]
mod tests {
    use super::scratch::MAX_DEPTH;
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
}
