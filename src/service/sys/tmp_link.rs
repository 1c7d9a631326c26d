//! Short names for runs' temp folders. A run's temp folder lies in its run folder, whose path
//! is long (`/var/lib/robotmk-daemon/system/jobs/<job>/runs/<run_id>/tmp`, 75 bytes and
//! more), but programs bind Unix sockets below `$TMPDIR`, and a socket path has at most 107
//! bytes: Chromium binds `$TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket` (46 more) at
//! every start and aborts when it does not fit; Python's multiprocessing fails the same way.
//! So `TMPDIR` names a link `/tmp/rmkd-<12 random characters>` to the folder (22 bytes): what
//! the run writes lands in its run folder, under a name short enough for any socket.
//!
//! The link is root's (the daemon's), in root's sticky `/tmp`: no other user can replace or
//! remove it, and every user may follow it there (`fs.protected_symlinks` lets anyone follow
//! a link whose owner owns the sticky folder). It is created with `symlinkat` (never over an
//! existing name: a name someone took is skipped), and removed only if it still is such a
//! link of the daemon's user. Without a root-owned sticky `/tmp`, or on Windows (no such
//! socket limit there), there is no link and the run's folder is named directly.

use std::io;
use std::path::{Path, PathBuf};

/// The prefix of every link's name.
#[cfg(unix)]
const PREFIX: &str = "rmkd-";

/// Creates a link to `target` with a short name; its path.
pub(crate) fn create(target: &Path) -> io::Result<PathBuf> {
    imp::create(target)
}

/// Removes a link [`create`] made (a missing one is fine).
pub(crate) fn remove(link: &Path) -> io::Result<()> {
    imp::remove(link)
}

/// Removes the links of the daemon's user whose run folder (the folder above the one they
/// name) is gone: left by a daemon that was killed, or whose state dir was deleted. Returns
/// how many. A link is made only once its run folder exists, so a run being prepared loses
/// nothing.
pub(crate) fn sweep() -> usize {
    imp::sweep()
}

#[cfg(unix)]
mod imp {
    use super::PREFIX;
    use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
    use rustix::io::Errno;
    use std::io;
    use std::os::fd::OwnedFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    const TMP: &str = "/tmp";

    /// `/tmp`, by handle, when it is root's sticky folder (else a link there could be
    /// replaced by whoever owns it).
    fn tmp_dir() -> io::Result<OwnedFd> {
        let fd = rfs::open(
            TMP,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rfs::fstat(&fd)?;
        if st.st_uid != 0 || st.st_mode & libc::S_ISVTX == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "/tmp is not root's sticky folder",
            ));
        }
        Ok(fd)
    }

    /// 12 characters of [a-z2-7] from the kernel's random bytes (60 bits).
    fn random_name() -> io::Result<String> {
        let mut b = [0u8; 8];
        // SAFETY: getrandom into our buffer of 8 bytes.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        if n != b.len() as isize {
            return Err(io::Error::last_os_error());
        }
        let mut v = u64::from_le_bytes(b);
        let mut name = String::from(PREFIX);
        for _ in 0..12 {
            name.push(b"abcdefghijklmnopqrstuvwxyz234567"[(v & 31) as usize] as char);
            v >>= 5;
        }
        Ok(name)
    }

    pub(super) fn create(target: &Path) -> io::Result<PathBuf> {
        let dir = tmp_dir()?;
        for _ in 0..16 {
            let name = random_name()?;
            match rfs::symlinkat(target, &dir, name.as_str()) {
                Ok(()) => return Ok(Path::new(TMP).join(name)),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free name in /tmp",
        ))
    }

    /// `rmkd-` and 12 characters of [a-z2-7]: a name [`create`] makes.
    fn is_ours(name: &str) -> bool {
        name.strip_prefix(PREFIX).is_some_and(|r| {
            r.len() == 12
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        })
    }

    pub(super) fn sweep() -> usize {
        let Ok(dir) = tmp_dir() else {
            return 0;
        };
        let Ok(list) = std::fs::read_dir(TMP) else {
            return 0;
        };
        let me = rustix::process::geteuid().as_raw();
        let mut removed = 0;
        for e in list.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !is_ours(&name) {
                continue;
            }
            let Ok(st) = rfs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink || st.st_uid != me {
                continue;
            }
            let Ok(target) = rfs::readlinkat(&dir, name.as_str(), Vec::new()) else {
                continue;
            };
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
            // The run folder, not the temp folder in it: that one is its runner's (a user's),
            // and looking at it could follow what the user put there.
            let Some(run_folder) = target.parent().filter(|p| p.is_absolute()) else {
                continue;
            };
            if matches!(std::fs::symlink_metadata(run_folder), Err(e) if e.kind() == io::ErrorKind::NotFound)
                && rfs::unlinkat(&dir, name.as_str(), AtFlags::empty()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    pub(super) fn remove(link: &Path) -> io::Result<()> {
        let name = match (link.parent(), link.file_name().and_then(|n| n.to_str())) {
            (Some(p), Some(n)) if p == Path::new(TMP) && n.starts_with(PREFIX) => n,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is no temp folder link of ours", link.display()),
                ))
            }
        };
        let dir = tmp_dir()?;
        let st = match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let me = rustix::process::geteuid().as_raw();
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink || st.st_uid != me {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is no link of the daemon's any more; left alone",
                    link.display()
                ),
            ));
        }
        // Only root (the owner) can replace a root-owned entry of the sticky /tmp: still ours.
        match rfs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_short_link_names_the_folder_and_goes_again() {
            let t = tempfile::tempdir().unwrap();
            let link = match create(t.path()) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::Unsupported => return,
                Err(e) => panic!("{e}"),
            };
            // Removed however the test ends.
            struct Gone(PathBuf);
            impl Drop for Gone {
                fn drop(&mut self) {
                    let _ = std::fs::remove_file(&self.0);
                }
            }
            let _gone = Gone(link.clone());
            assert!(link.as_os_str().len() <= 22, "{}", link.display());
            assert_eq!(std::fs::read_link(&link).unwrap(), t.path());
            std::fs::write(link.join("f"), "x").unwrap();
            assert!(t.path().join("f").is_file());
            remove(&link).unwrap();
            assert!(std::fs::symlink_metadata(&link).is_err());
            remove(&link).unwrap();
            // Nothing but our own links.
            assert!(remove(Path::new("/tmp/other")).is_err());
            assert!(remove(Path::new("/etc/rmkd-x")).is_err());
            let plain = Path::new("/tmp").join(format!("rmkd-test-{}", std::process::id()));
            std::fs::create_dir(&plain).unwrap();
            assert!(remove(&plain).is_err());
            assert!(plain.is_dir());
            std::fs::remove_dir(&plain).unwrap();
            assert!(is_ours(link.file_name().unwrap().to_str().unwrap()));
            assert!(!is_ours("rmkd-sandbox.lock") && !is_ours("rmkd-ABCDEFGHIJKL"));
        }

        #[test]
        fn a_link_whose_run_folder_is_gone_is_swept_and_only_that() {
            let t = tempfile::tempdir().unwrap();
            let (gone, kept) = (t.path().join("gone"), t.path().join("kept"));
            std::fs::create_dir_all(kept.join("tmp")).unwrap();
            std::fs::create_dir_all(&gone).unwrap();
            let Ok(a) = create(&gone.join("tmp")) else {
                return;
            };
            let b = create(&kept.join("tmp")).unwrap();
            struct Gone(Vec<PathBuf>);
            impl Drop for Gone {
                fn drop(&mut self) {
                    for p in &self.0 {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
            let _gone = Gone(vec![a.clone(), b.clone()]);
            // The run folder is there, its temp folder not (yet): kept.
            sweep();
            assert!(std::fs::symlink_metadata(&a).is_ok());
            std::fs::remove_dir(&gone).unwrap();
            sweep();
            assert!(std::fs::symlink_metadata(&a).is_err(), "not swept");
            assert!(std::fs::symlink_metadata(&b).is_ok(), "swept a live one");
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::io;
    use std::path::{Path, PathBuf};

    pub(super) fn create(_target: &Path) -> io::Result<PathBuf> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no socket path limit to work around",
        ))
    }

    pub(super) fn remove(_link: &Path) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn sweep() -> usize {
        0
    }
}
