//! Short names for runs' temp folders. A run's temp folder lies in its run folder, whose path
//! is long (`/var/lib/robotmk-daemon/system/jobs/<job>/runs/<run_id>/tmp`, 75 bytes and
//! more), but programs bind Unix sockets below `$TMPDIR`, and a socket path has at most 107
//! bytes: Chromium binds `$TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket` (46 more) at
//! every start and aborts when it does not fit; Python's multiprocessing fails the same way.
//! So `TMPDIR` goes through a link `/tmp/rmkd-<12 characters>` (22 bytes): what the run
//! writes lands in its run folder, under a name short enough for any socket.
//!
//! One link per job, to the folder its run folders are in: `TMPDIR` is
//! `<link>/<run_id>/tmp` (45 bytes). The process that holds the instance (the daemon, or
//! `run-once` without one) makes it at the job's first run and removes it when it exits
//! ([`release_shared`]); its name comes from the folder's path, so a daemon started after a
//! crash takes up the link its predecessor left. (A link per run, made and removed around
//! each run, allocated and freed an inode in `/tmp` per run: on an ext4 without a journal,
//! where an allocation scans past every inode freed in the last half minute, that was a
//! third of the daemon's CPU time per run at 400 runs a second.) Where the job's name is
//! taken, the run gets a link of its own ([`create`], a random name), removed with its run.
//!
//! Every link is root's (the daemon's), in root's sticky `/tmp`: no other user can replace or
//! remove it, and every user may follow it there (`fs.protected_symlinks` lets anyone follow
//! a link whose owner owns the sticky folder); following it gives no access the folder's own
//! permissions do not. It is created with `symlinkat` (never over an existing name: a name
//! someone took is not used), and removed only if it still is such a link of the daemon's
//! user. Without a root-owned sticky `/tmp`, or on Windows (no such socket limit there),
//! there is no link and the run's folder is named directly.

use std::io;
use std::path::{Path, PathBuf};

/// The prefix of every link's name.
#[cfg(unix)]
const PREFIX: &str = "rmkd-";

/// Creates a link to `target` with a short name; its path.
pub(crate) fn create(target: &Path) -> io::Result<PathBuf> {
    imp::create(target)
}

/// The longest `TMPDIR` a short name may be: Chromium's socket (46 bytes more) must fit 107.
pub(crate) const MAX_SHORT: usize = 61;

/// A short path for a run's temp folder `<runs>/<run_id>/tmp`: through the job's link to
/// `<runs>` ([`for_runs_in`]), else through a link of the run's own ([`create`]). `None`
/// when there can be no link (see the module's doc): the folder is named directly.
pub(crate) fn short(tmp: &Path) -> Option<PathBuf> {
    let shared = (|| {
        let run = tmp.parent()?;
        let link = for_runs_in(run.parent()?).ok()?;
        Some(link.join(run.file_name()?).join(tmp.file_name()?))
    })();
    match shared {
        Some(p) if p.as_os_str().len() <= MAX_SHORT => Some(p),
        _ => create(tmp).ok(),
    }
}

/// The link to `folder` (the folder a job's run folders are in) shared by the job's runs:
/// made, or taken up when this process's predecessor left it, and removed when this process
/// exits ([`release_shared`]). An error when the name is someone else's.
pub(crate) fn for_runs_in(folder: &Path) -> io::Result<PathBuf> {
    imp::for_runs_in(folder)
}

/// Removes the links [`for_runs_in`] handed out in this process (when it gives up the
/// instance: no run of it starts any more). Returns how many.
pub(crate) fn release_shared() -> usize {
    imp::release_shared()
}

/// Removes the link of a run's own that [`short`] or [`create`] made (a missing one is
/// fine); a path through a job's shared link is left alone (the link stays for the job's
/// next runs).
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
        Ok(name_of(b))
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

    /// `rmkd-` and 12 characters of [a-z2-7] from the first 60 bits of `bytes`.
    fn name_of(bytes: [u8; 8]) -> String {
        let mut v = u64::from_le_bytes(bytes);
        let mut name = String::from(PREFIX);
        for _ in 0..12 {
            name.push(b"abcdefghijklmnopqrstuvwxyz234567"[(v & 31) as usize] as char);
            v >>= 5;
        }
        name
    }

    /// The shared link's name for `folder`: from the SHA-256 of its path, so the same folder
    /// always gets the same name (60 bits: two folders meeting on one name is as unlikely as
    /// two random names meeting).
    fn shared_name(folder: &Path) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(folder.as_os_str().as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        name_of(b)
    }

    /// The shared links this process made or took up: (name, folder).
    static SHARED: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());

    /// Whether `name` in `/tmp` is a link of the daemon's user to `target`.
    fn is_our_link_to(dir: &OwnedFd, name: &str, target: &Path) -> io::Result<bool> {
        let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let me = rustix::process::geteuid().as_raw();
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink || st.st_uid != me {
            return Ok(false);
        }
        let to = rfs::readlinkat(dir, name, Vec::new())?;
        Ok(to.as_bytes() == target.as_os_str().as_bytes())
    }

    pub(super) fn for_runs_in(folder: &Path) -> io::Result<PathBuf> {
        let name = shared_name(folder);
        let path = Path::new(TMP).join(&name);
        // Looked at each time, not remembered: a link another daemon's sweep removed (its job
        // folder was deleted meanwhile) is made again.
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let mut keep = |name: String| {
            if !shared.iter().any(|(n, f)| *n == name && f == folder) {
                shared.push((name, folder.to_path_buf()));
            }
        };
        let dir = tmp_dir()?;
        // Two tries: a name that appears between the look and the make is looked at again.
        for _ in 0..2 {
            match is_our_link_to(&dir, &name, folder) {
                Ok(true) => {
                    keep(name);
                    return Ok(path);
                }
                Ok(false) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} is taken", path.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            match rfs::symlinkat(folder, &dir, name.as_str()) {
                Ok(()) => {
                    keep(name);
                    return Ok(path);
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is taken", path.display()),
        ))
    }

    pub(super) fn release_shared() -> usize {
        let taken = std::mem::take(&mut *SHARED.lock().unwrap_or_else(|e| e.into_inner()));
        let Ok(dir) = tmp_dir() else {
            return 0;
        };
        let mut removed = 0;
        for (name, folder) in taken {
            // Only root (the owner) can replace a root-owned entry of the sticky /tmp: a
            // link of ours to the folder is still the one this process made.
            if is_our_link_to(&dir, &name, &folder).unwrap_or(false)
                && rfs::unlinkat(&dir, name.as_str(), AtFlags::empty()).is_ok()
            {
                removed += 1;
            }
        }
        removed
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

    /// `/tmp/<a name of ours>/<run_id>/tmp`: a path [`super::short`] made through a job's link.
    fn through_shared(p: &Path) -> bool {
        let mut c = p
            .strip_prefix(TMP)
            .ok()
            .into_iter()
            .flat_map(Path::components);
        let first = c
            .next()
            .and_then(|c| c.as_os_str().to_str().map(str::to_string));
        first.is_some_and(|n| is_ours(&n))
            && c.all(|c| matches!(c, std::path::Component::Normal(_)))
    }

    /// Registers the job's link `p` goes through as this process's (see [`release_shared`])
    /// if it is a shared link of the daemon's user, named for the folder it names. A run an
    /// earlier daemon started (adopted after its crash) used that daemon's link: unless its
    /// job runs again here, nothing else would remove it (its job may be gone from the
    /// config). Nothing to do for links this process handed out already.
    fn take_up(p: &Path) {
        let Some(name) = p
            .strip_prefix(TMP)
            .ok()
            .and_then(|r| r.components().next())
            .and_then(|c| c.as_os_str().to_str())
        else {
            return;
        };
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if shared.iter().any(|(n, _)| n == name) {
            return;
        }
        let Ok(dir) = tmp_dir() else {
            return;
        };
        let Ok(to) = rfs::readlinkat(&dir, name, Vec::new()) else {
            return;
        };
        let folder = PathBuf::from(std::ffi::OsStr::from_bytes(to.as_bytes()));
        // A run's own link (a random name) is not a job's; and only our own link counts.
        if shared_name(&folder) == name && is_our_link_to(&dir, name, &folder).unwrap_or(false) {
            shared.push((name.to_string(), folder));
        }
    }

    pub(super) fn remove(link: &Path) -> io::Result<()> {
        let name = match (link.parent(), link.file_name().and_then(|n| n.to_str())) {
            (Some(p), Some(n)) if p == Path::new(TMP) && n.starts_with(PREFIX) => n,
            // A run's folder through its job's shared link: the link stays, now this
            // process's to remove when it exits.
            _ if through_shared(link) => {
                take_up(link);
                return Ok(());
            }
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

        /// The only test that hands out shared links: `release_shared` gives up all of
        /// this process's.
        #[test]
        fn a_jobs_runs_share_one_link_that_goes_when_the_process_gives_it_up() {
            let t = tempfile::tempdir().unwrap();
            let runs = t.path().join("runs");
            std::fs::create_dir_all(runs.join("r1/tmp")).unwrap();
            std::fs::create_dir_all(runs.join("r2/tmp")).unwrap();
            let Some(a) = super::super::short(&runs.join("r1/tmp")) else {
                return; // no root-owned sticky /tmp here
            };
            struct Gone(PathBuf);
            impl Drop for Gone {
                fn drop(&mut self) {
                    let _ = std::fs::remove_file(&self.0);
                }
            }
            let link = a.parent().unwrap().parent().unwrap().to_path_buf();
            let _gone = Gone(link.clone());
            let b = super::super::short(&runs.join("r2/tmp")).unwrap();
            assert_eq!(a, link.join("r1/tmp"));
            assert_eq!(b, link.join("r2/tmp"), "one link for the job's runs");
            assert!(a.as_os_str().len() <= super::super::MAX_SHORT);
            assert_eq!(link.parent(), Some(Path::new("/tmp")));
            assert_eq!(std::fs::read_link(&link).unwrap(), runs);
            std::fs::write(b.join("f"), "x").unwrap();
            assert!(runs.join("r2/tmp/f").is_file());
            // A run's end leaves the job's link; the process giving up the instance removes it.
            remove(&a).unwrap();
            assert!(std::fs::symlink_metadata(&link).is_ok());
            assert!(remove(Path::new("/tmp/rmkd-aaaaaaaaaaaa/../../etc/x")).is_err());
            assert_eq!(release_shared(), 1);
            assert!(std::fs::symlink_metadata(&link).is_err());
            // Taken up again by the next holder (the name comes from the folder).
            assert_eq!(for_runs_in(&runs).unwrap(), link);
            // A name someone else took is not used: the run gets a link of its own.
            let other = t.path().join("other");
            std::fs::create_dir_all(other.join("r1/tmp")).unwrap();
            let squat = Path::new(TMP).join(shared_name(&other));
            std::fs::create_dir(&squat).unwrap();
            let _squat = Gone(squat.clone());
            let own = super::super::short(&other.join("r1/tmp")).unwrap();
            let _own = Gone(own.clone());
            assert_eq!(own.parent(), Some(Path::new("/tmp")), "{}", own.display());
            assert_ne!(own, squat);
            assert_eq!(std::fs::read_link(&own).unwrap(), other.join("r1/tmp"));
            std::fs::remove_dir(&squat).unwrap();
            assert_eq!(release_shared(), 1, "only what was handed out");
            assert!(std::fs::symlink_metadata(&link).is_err());
            // A predecessor's link (made here by hand, as a killed daemon leaves it): the end
            // of a run through it makes it this process's, removed when it gives up.
            std::os::unix::fs::symlink(&runs, &link).unwrap();
            remove(&a).unwrap();
            assert!(std::fs::symlink_metadata(&link).is_ok());
            assert_eq!(release_shared(), 1, "a predecessor's link taken up");
            assert!(std::fs::symlink_metadata(&link).is_err());
            // Not a link that names another folder than its name says.
            std::os::unix::fs::symlink(&other, &link).unwrap();
            remove(&a).unwrap();
            assert_eq!(release_shared(), 0);
            std::fs::remove_file(&link).unwrap();
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

    pub(super) fn for_runs_in(_folder: &Path) -> io::Result<PathBuf> {
        create(_folder)
    }

    pub(super) fn release_shared() -> usize {
        0
    }

    pub(super) fn remove(_link: &Path) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn sweep() -> usize {
        0
    }
}
