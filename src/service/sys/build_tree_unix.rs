//! The folders of an environment build that runs as another user, and the seal that makes
//! what it built the daemon's own.
//!
//! A build as an unprivileged user writes only into folders handed to that user
//! ([`hand_dir`]). When it has ended, [`seal_copy`] copies its tree into a new folder of the
//! daemon's, by handle: every entry is opened relative to its parent's descriptor with
//! `O_NOFOLLOW`, must belong to the builder, and is created afresh, so the sealed tree shares no
//! inode with the built one. A process of the builder that outlived the build (escaped its
//! process group, cleared its environment, and no cgroup held it) keeps writable descriptors
//! only to the discarded tree; hard links into the builder's cache (uv links from it) stay
//! behind too; and a link the builder planted to a file it does not own is refused rather
//! than read as root. Names of one inode in the built tree stay names of one inode in the
//! sealed tree: copied once, linked after.

use super::copy::{copy_with_holes, FirstCopies};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Nesting a venv never reaches (pip's own tree is about 10 deep).
const MAX_DEPTH: usize = 64;
/// Entries and bytes a sealed tree may hold: a venv with Robot Framework's browser library
/// and its node modules is tens of thousands of files and a few hundred MB.
const MAX_ENTRIES: u64 = 1_000_000;
const MAX_BYTES: u64 = 32 * 1024 * 1024 * 1024;

/// Why a built tree could not be sealed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} belongs to uid {owner}, not to the build's user (uid {builder}): not sealed")]
    Owner {
        path: PathBuf,
        owner: u32,
        builder: u32,
    },
    #[error("{path}: the built tree is larger than a venv can be ({what}): not sealed")]
    TooLarge { path: PathBuf, what: &'static str },
    /// The copy ran out of space (or quota): it needs the built tree's size a second time.
    #[error(
        "{path}: {source}: the seal copies the built environment ({need}) beside it, so its \
         disk needs that much free besides the build; free space there or put state_dir on a \
         larger disk, then save the requirements file again or restart the daemon to build \
         again"
    )]
    NoSpace {
        path: PathBuf,
        source: io::Error,
        need: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(rustix::io::Errno) -> SealError + '_ {
    move |e| SealError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn std_io_at(path: &Path) -> impl FnOnce(io::Error) -> SealError + '_ {
    move |source| SealError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a seal copied.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SealStats {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

type Budget = SealStats;

/// The sealed copies of the built files that have more than one name, by the built inode.
/// A builder's hundred hard links to one 10 MiB file cost it 10 MiB of its own disk; copied
/// as a hundred files they would be a GiB of root's, charged to no quota. The further names
/// become links to the first copy, and its bytes count against the cap once.
struct Links<'a> {
    /// The sealed tree's top folder: the first copies are named relative to it.
    root: BorrowedFd<'a>,
    /// The built tree's top folder, which the walk's paths begin with.
    from: &'a Path,
    /// A built file's first copy, as a path below `root`.
    first: FirstCopies,
}

/// Copies the tree at `from` (a folder of `builder`'s) to `to`, which must not exist and
/// whose parent must be the daemon's: folders `0755`, files `0755` when the builder made them
/// executable and `0644` otherwise (no set-id bits, nothing writable by others), links as
/// links. Special files (FIFOs, sockets, devices) are left out. Files with several names in
/// the tree are copied once and linked under the others. Everything is synced before it
/// returns.
pub(crate) fn seal_copy(from: &Path, to: &Path, builder: u32) -> Result<SealStats, SealError> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let src = rustix::fs::open(from, dir_flags, Mode::empty()).map_err(io_at(from))?;
    let st = rustix::fs::fstat(&src).map_err(io_at(from))?;
    if st.st_uid != builder {
        return Err(SealError::Owner {
            path: from.to_path_buf(),
            owner: st.st_uid,
            builder,
        });
    }
    rustix::fs::mkdir(to, Mode::from_raw_mode(0o700)).map_err(io_at(to))?;
    let dst = rustix::fs::open(to, dir_flags, Mode::empty()).map_err(io_at(to))?;
    let mut budget = Budget::default();
    let mut links = Links {
        root: dst.as_fd(),
        from,
        first: FirstCopies::default(),
    };
    if let Err(e) = copy_dir(&src, &dst, from, builder, 0, &mut budget, &mut links) {
        return Err(match e {
            SealError::Io { path, source } if out_of_space(&source) => SealError::NoSpace {
                need: tree_bytes(&src, 0).map_or_else(
                    || "its size".into(),
                    |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
                ),
                path,
                source,
            },
            e => e,
        });
    }
    rustix::fs::fchmod(&dst, Mode::from_raw_mode(0o755)).map_err(io_at(to))?;
    // One flush of the file system instead of an fsync per file: a state that says "ready"
    // (written durably after this) never names a tree that a power cut could leave empty.
    rustix::fs::syncfs(&dst).map_err(io_at(to))?;
    Ok(budget)
}

/// ENOSPC or EDQUOT: the copy's disk (or root's quota on it) is full.
fn out_of_space(e: &io::Error) -> bool {
    let raw = e.raw_os_error();
    raw == Some(rustix::io::Errno::NOSPC.raw_os_error())
        || raw == Some(rustix::io::Errno::DQUOT.raw_os_error())
}

/// The bytes (allocated blocks, so holes count for nothing, as in the copy) of the regular
/// files below `dir`, walked by handle as the copy walks it (no link followed); `None` when
/// it cannot be walked or is deeper or larger than a venv can be.
fn tree_bytes(dir: &OwnedFd, depth: usize) -> Option<u64> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut sum = 0u64;
    for entry in Dir::read_from(dir).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let child = rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?;
                sum = sum.saturating_add(tree_bytes(&child, depth + 1)?);
            }
            FileType::RegularFile => {
                sum = sum.saturating_add(u64::try_from(st.st_blocks).unwrap_or(0) * 512);
            }
            _ => {}
        }
        if sum > MAX_BYTES {
            return None;
        }
    }
    Some(sum)
}

fn copy_dir(
    src: &OwnedFd,
    dst: &OwnedFd,
    at: &Path,
    builder: u32,
    depth: usize,
    budget: &mut Budget,
    links: &mut Links<'_>,
) -> Result<(), SealError> {
    if depth > MAX_DEPTH {
        return Err(SealError::TooLarge {
            path: at.to_path_buf(),
            what: "too deep",
        });
    }
    let entries = Dir::read_from(src).map_err(io_at(at))?;
    for entry in entries {
        let entry = entry.map_err(io_at(at))?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let path = at.join(OsStr::from_bytes(name.to_bytes()));
        budget.entries += 1;
        if budget.entries > MAX_ENTRIES {
            return Err(SealError::TooLarge {
                path,
                what: "too many files",
            });
        }
        let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io_at(&path))?;
        if st.st_uid != builder {
            return Err(SealError::Owner {
                path,
                owner: st.st_uid,
                builder,
            });
        }
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let child =
                    rustix::fs::openat(src, name, flags, Mode::empty()).map_err(io_at(&path))?;
                // Swapped since the look: the handle is what counts.
                let cst = rustix::fs::fstat(&child).map_err(io_at(&path))?;
                if cst.st_uid != builder {
                    return Err(SealError::Owner {
                        path,
                        owner: cst.st_uid,
                        builder,
                    });
                }
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700)).map_err(io_at(&path))?;
                let out =
                    rustix::fs::openat(dst, name, flags, Mode::empty()).map_err(io_at(&path))?;
                copy_dir(&child, &out, &path, builder, depth + 1, budget, links)?;
                rustix::fs::fchmod(&out, Mode::from_raw_mode(0o755)).map_err(io_at(&path))?;
            }
            FileType::RegularFile => copy_file(src, dst, name, &path, builder, budget, links)?,
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, Vec::new()).map_err(io_at(&path))?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name).map_err(io_at(&path))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn copy_file(
    src: &OwnedFd,
    dst: &OwnedFd,
    name: &CStr,
    path: &Path,
    builder: u32,
    budget: &mut Budget,
    links: &mut Links<'_>,
) -> Result<(), SealError> {
    // Non-blocking: a FIFO swapped in since the look must not hang the open.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(src, name, flags, Mode::empty()).map_err(io_at(path))?;
    let st = rustix::fs::fstat(&fd).map_err(io_at(path))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(());
    }
    if st.st_uid != builder {
        // A hard link to someone else's file: never read it as root.
        return Err(SealError::Owner {
            path: path.to_path_buf(),
            owner: st.st_uid,
            builder,
        });
    }
    // Another name of a file this seal has copied: the same inode (the handle's, not the
    // look's), so the same content and mode; the copy is root's in root's tree, unchanged
    // since. A number the kernel reused for a new file of the builder's (the first one
    // removed meanwhile) gives this name the builder's earlier content, which it could have
    // written here as well.
    let key = super::copy::shared(&st);
    if let Some(first) = links.first.get(key) {
        match rustix::fs::linkat(links.root, first, dst, name, AtFlags::empty()) {
            Ok(()) => return Ok(()),
            // The sealed tree's file system takes fewer names per inode than the built
            // one's: a copy, which the names after it link to.
            Err(rustix::io::Errno::MLINK) => {}
            Err(e) => return Err(io_at(path)(e)),
        }
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    budget.bytes = budget.bytes.saturating_add(size);
    if budget.bytes > MAX_BYTES {
        return Err(SealError::TooLarge {
            path: path.to_path_buf(),
            what: "too many bytes",
        });
    }
    let mode = if st.st_mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    let out_flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let out = rustix::fs::openat(dst, name, out_flags, Mode::from_raw_mode(0o600))
        .map_err(io_at(path))?;
    let reader = File::from(fd);
    let mut writer = File::from(out);
    // A file that grows while it is copied is cut at the size it had: the budget holds.
    // Holes stay holes (a terabyte in no blocks is no block of root's either). No limit
    // beyond `size`, which the budget has counted.
    copy_with_holes(&reader, &mut writer, size, u64::MAX).map_err(std_io_at(path))?;
    writer.flush().map_err(std_io_at(path))?;
    rustix::fs::fchmod(&writer, Mode::from_raw_mode(mode)).map_err(io_at(path))?;
    if let Ok(below) = path.strip_prefix(links.from) {
        links.first.insert(key, below.to_path_buf());
    }
    Ok(())
}

/// Creates `path` (its parent is the daemon's) as a folder of `uid`:`gid`, mode `0700`, or
/// keeps the one there if it is already exactly that; anything else in its place (a file, a
/// link, someone else's folder) is removed first.
pub(crate) fn hand_dir(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for attempt in 0..2 {
        match rustix::fs::mkdir(path, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            // A link or a file: not ours to keep.
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) if attempt == 0 => {
                std::fs::remove_file(path)?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        let mine = euid();
        if st.st_uid == uid && st.st_gid == gid {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
            return Ok(());
        }
        if st.st_uid == mine {
            // Just made (or left by a daemon that died before handing it over): empty or ours.
            give(fd.as_fd(), uid, gid)?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
            return Ok(());
        }
        if attempt == 0 {
            // Another user's (the build user was changed): its content is no one's now. That
            // user shaped it: removed without recursion, by handle, with its owner's rights.
            drop(fd);
            use super::tree::{remove_tree_fully, Removal, Rights};
            match remove_tree_fully(path, Rights::Owner, std::time::Duration::from_secs(60)) {
                Ok(Removal::Gone) => {}
                Ok(Removal::More) => {
                    return Err(io::Error::other(format!(
                        "{} (another user's) is not all removed within a minute; what is left \
                         goes at the next attempt",
                        path.display()
                    )))
                }
                Err(e) => return Err(io::Error::other(e)),
            }
            continue;
        }
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} keeps changing while it is created for uid {uid}",
            path.display()
        ),
    ))
}

fn give(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    use rustix::fs::{Gid, Uid};
    rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    Ok(())
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The first folder above `path` that a process of `uid` (in `groups`) cannot pass through
/// (no search permission for it), as `<folder> (mode 0700, owner uid 0)`; `Ok` when it can
/// reach `path`. Checked before a build starts as that user, so a folder an admin (or an
/// older version) closed is named, instead of the build's bare "Permission denied".
pub(crate) fn check_passable(
    path: &Path,
    uid: u32,
    groups: &[u32],
) -> Result<(), super::trust::Closed> {
    use std::os::unix::fs::MetadataExt;
    for dir in path
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
    {
        let Ok(m) = std::fs::metadata(dir) else {
            continue;
        };
        let bit = if m.uid() == uid {
            0o100
        } else if groups.contains(&m.gid()) {
            0o010
        } else {
            0o001
        };
        if m.mode() & bit == 0 {
            return Err(super::trust::Closed {
                dir: dir.to_path_buf(),
                mode: m.mode() & 0o7777,
                owner: m.uid(),
            });
        }
    }
    Ok(())
}

/// The mode of a sealed environment's own folder (the daemon's): `0755` when jobs' users run
/// it, else `0700`.
pub(crate) fn seal_dir_mode(dir: &Path, readers: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Open to the group of the job's user who runs it (root's folder, group the user's:
    // 0750), not to every local user: what a job's project puts into its environment is
    // that user's business. Else closed (0700).
    let mode = match readers {
        Some(gid) => {
            std::os::unix::fs::lchown(dir, None, Some(gid))?;
            0o750
        }
        None => 0o700,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// This process's effective uid (for a build's messages).
pub(crate) fn current_uid() -> u32 {
    euid()
}

/// Creates the link `link` pointing at `target`, as it was (a copied project's links).
pub(crate) fn copy_link(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn me() -> u32 {
        euid()
    }

    /// A sparse file stays sparse in the sealed copy (root's disk), its content the same.
    #[test]
    fn a_sparse_file_is_sealed_sparse() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("built");
        std::fs::create_dir_all(&from).unwrap();
        let f = std::fs::File::create(from.join("big")).unwrap();
        f.set_len(1 << 30).unwrap();
        use std::io::{Seek, Write as _};
        let mut f = f;
        f.seek(io::SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        drop(f);
        let to = d.path().join("sealed");
        seal_copy(&from, &to, me()).unwrap();
        let m = std::fs::metadata(to.join("big")).unwrap();
        assert_eq!(m.len(), 1 << 30);
        assert!(m.blocks() * 512 < 1 << 20, "{} blocks", m.blocks());
        let mut back = std::fs::File::open(to.join("big")).unwrap();
        back.seek(io::SeekFrom::Start(5 << 20)).unwrap();
        let mut six = [0u8; 6];
        back.read_exact(&mut six).unwrap();
        assert_eq!(&six, b"middle");
    }

    /// A hundred hard links to one 1 MiB file are one inode and one MiB in the sealed tree
    /// (root's disk), across folders, not a hundred copies; a file whose other name is
    /// outside the tree is copied.
    #[test]
    fn hard_links_are_sealed_as_one_inode_copied_once() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("built");
        std::fs::create_dir_all(from.join("a/b")).unwrap();
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(from.join("a/big"), &data).unwrap();
        std::fs::set_permissions(from.join("a/big"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let mut names = vec!["a/big".to_string()];
        for i in 0..100 {
            let name = match i % 3 {
                0 => format!("l{i}"),
                1 => format!("a/l{i}"),
                _ => format!("a/b/l{i}"),
            };
            std::fs::hard_link(from.join("a/big"), from.join(&name)).unwrap();
            names.push(name);
        }
        std::fs::write(from.join("cached"), "from a cache").unwrap();
        std::fs::hard_link(from.join("cached"), d.path().join("cache-copy")).unwrap();
        let to = d.path().join("sealed");
        let stats = seal_copy(&from, &to, me()).unwrap();
        let built = std::fs::metadata(from.join("a/big")).unwrap();
        let sealed: Vec<_> = names
            .iter()
            .map(|n| std::fs::symlink_metadata(to.join(n)).unwrap())
            .collect();
        // Disk use: each sealed inode's blocks, once.
        let inodes: std::collections::BTreeMap<u64, u64> =
            sealed.iter().map(|m| (m.ino(), m.blocks() * 512)).collect();
        let disk: u64 = inodes.values().sum();
        eprintln!(
            "sealed: {} names, {} inode(s), nlink {}, {disk} bytes on disk, {} bytes counted",
            names.len(),
            inodes.len(),
            sealed[0].nlink(),
            stats.bytes
        );
        assert_eq!(inodes.len(), 1, "one inode for the {} names", names.len());
        assert!(disk < 2 << 20, "{disk} bytes on disk for one MiB");
        assert_ne!(
            sealed[0].ino(),
            built.ino(),
            "a fresh inode, not the built one"
        );
        assert_eq!(sealed[0].nlink(), 101);
        assert_eq!(sealed[0].mode() & 0o7777, 0o755);
        assert_eq!(sealed[0].uid(), me());
        assert_eq!(std::fs::read(to.join("a/b/l2")).unwrap(), data);
        // The content once against the cap, plus the other file.
        assert_eq!(stats.bytes, (1 << 20) + 12);
        assert_eq!(stats.entries, 2 + 101 + 1);
        let cached = std::fs::metadata(to.join("cached")).unwrap();
        assert_eq!(cached.nlink(), 1);
        assert_eq!(
            std::fs::read_to_string(to.join("cached")).unwrap(),
            "from a cache"
        );
    }

    #[test]
    fn a_sealed_copy_keeps_content_and_links_and_drops_special_bits() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("built");
        std::fs::create_dir_all(from.join("bin")).unwrap();
        std::fs::write(from.join("bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            from.join("bin/tool"),
            std::fs::Permissions::from_mode(0o4777),
        )
        .unwrap();
        std::fs::write(from.join("data"), "x").unwrap();
        std::fs::set_permissions(from.join("data"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        symlink("/usr/bin/python3", from.join("bin/python")).unwrap();
        symlink("bin", from.join("lib64")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            from.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let to = d.path().join("sealed");
        seal_copy(&from, &to, me()).unwrap();
        let mode = |p: &str| std::fs::symlink_metadata(to.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(
            std::fs::read_to_string(to.join("bin/tool")).unwrap(),
            "#!/bin/sh\n"
        );
        assert_eq!(mode("bin/tool"), 0o755);
        assert_eq!(mode("data"), 0o644);
        assert_eq!(mode("bin"), 0o755);
        assert_eq!(mode(""), 0o755);
        assert_eq!(
            std::fs::read_link(to.join("bin/python")).unwrap(),
            Path::new("/usr/bin/python3")
        );
        assert_eq!(
            std::fs::read_link(to.join("lib64")).unwrap(),
            Path::new("bin")
        );
        assert!(!to.join("fifo").exists());
        // Fresh inodes: a writer holding the built file changes nothing sealed.
        let mut held = std::fs::OpenOptions::new()
            .append(true)
            .open(from.join("data"))
            .unwrap();
        held.write_all(b"tampered").unwrap();
        assert_eq!(std::fs::read_to_string(to.join("data")).unwrap(), "x");
    }

    #[test]
    fn a_tree_with_someone_elses_file_is_not_sealed() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("built");
        std::fs::create_dir(&from).unwrap();
        std::fs::write(from.join("f"), "x").unwrap();
        // Whoever we are, uid 4242 is not the owner of what we just wrote.
        let e = seal_copy(&from, &d.path().join("sealed"), 4242).unwrap_err();
        assert!(
            matches!(e, SealError::Owner { owner, .. } if owner == me()),
            "{e}"
        );
    }

    #[test]
    fn a_closed_folder_on_the_way_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let closed = d.path().join("closed");
        std::fs::create_dir_all(closed.join("inner")).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = closed.join("inner/venv");
        // Someone else (not the owner, in none of its groups) is stopped at `closed`...
        let e = check_passable(&target, 4242, &[4242])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{} (mode 0700", closed.display())),
            "{e}"
        );
        // ...its owner is not, nor is anyone once it lets others pass.
        check_passable(&target, me(), &[]).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).unwrap();
        check_passable(&target, 4242, &[4242]).unwrap();
    }

    #[test]
    fn a_handed_dir_replaces_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let p = d.path().join("home");
        symlink(&target, &p).unwrap();
        let gid = std::fs::metadata(d.path()).unwrap().gid();
        hand_dir(&p, me(), gid).unwrap();
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o777, 0o700);
        assert!(target.is_dir(), "the link's target is left alone");
    }

    /// Another user's folder where the builder's should be (the build user was changed) goes
    /// first, as its owner: deeper than a recursive remover's stack, and root's file moved in
    /// (the owner cannot remove it) is left, with the reason.
    #[test]
    fn another_users_folder_goes_with_its_owners_rights_however_deep() {
        if me() != 0 {
            eprintln!("SKIP: not root (another user's folder, removed as that user)");
            return;
        }
        use rustix::fs::{Gid, Uid};
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = d.path().join("venv");
        std::fs::create_dir(&p).unwrap();
        let mut fd =
            rustix::fs::open(&p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..5_000 {
            rustix::fs::mkdirat(&fd, c"d", Mode::RWXU).unwrap();
            rustix::fs::fchown(&fd, Some(Uid::from_raw(65534)), Some(Gid::from_raw(65534)))
                .unwrap();
            fd = rustix::fs::openat(&fd, c"d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .unwrap();
        }
        rustix::fs::fchown(&fd, Some(Uid::from_raw(65534)), Some(Gid::from_raw(65534))).unwrap();
        drop(fd);
        let gid = std::fs::metadata(d.path()).unwrap().gid();
        // On a small stack: a walk that recursed per level would overflow it.
        let q = p.clone();
        let r = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || hand_dir(&q, 4242, gid).map_err(|e| e.to_string()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(r, Ok(()));
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (4242, 0o700));
        assert_eq!(std::fs::read_dir(&p).unwrap().count(), 0);
        // Root's folder in it: the owner cannot empty that, so it stays, and the error says so.
        let q = d.path().join("home");
        std::fs::create_dir_all(q.join("roots")).unwrap();
        std::fs::write(q.join("roots/f"), "root's").unwrap();
        std::os::unix::fs::chown(&q, Some(65534), Some(65534)).unwrap();
        let e = hand_dir(&q, 4242, gid).unwrap_err().to_string();
        assert!(
            e.contains("\"f\"") && e.contains("Permission denied"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(q.join("roots/f")).unwrap(),
            "root's"
        );
    }
}
