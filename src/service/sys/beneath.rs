//! Opening a file (or listing a folder) that a run left in its folder — a folder a job's user owns and fills as they
//! like — for the root daemon to read. The user must not be able to make root read anything
//! they could not read themselves, nor learn what exists elsewhere:
//!
//! - the name is relative and stays inside the folder (no `..`, no absolute path);
//! - no symbolic link is followed, at any step: on Unix each step is opened relative to the
//!   handle of the one before (`openat` with `O_NOFOLLOW`), so nothing can be swapped in
//!   between a check and the open; on Windows (no `user` jobs there) each step is checked
//!   for a reparse point before the last one is opened without following one;
//! - the file is a regular file (a FIFO or device is refused, and the open never blocks);
//! - in a folder that belongs to a user other than root, the file belongs to that user too
//!   (a hard link to another user's file keeps that user as its owner).
//!
//! Folders in it are listed by the same rules ([`Beneath::entries`]): every step is opened
//! as above, and the entries are read from the handle of the last one (on Unix), never by
//! the folder's path, so a folder swapped for a link after it was checked is not listed.
//!
//! A refusal is an `InvalidInput` error that names the path and the reason; a missing file
//! stays `NotFound`, the answer the user could have had from `ls` in their own folder.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

fn refused(folder: &Path, rel: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {why}; not read", folder.join(rel).display()),
    )
}

/// The names `rel` steps through, if it stays inside the folder (none: the folder itself).
fn steps<'a>(folder: &Path, rel: &'a Path) -> io::Result<Vec<&'a OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(refused(
                    folder,
                    rel,
                    "leaves the run folder (`..` or an absolute path)",
                ))
            }
        }
    }
    Ok(out)
}

/// The steps to a file: at least one name.
fn file_steps<'a>(folder: &Path, rel: &'a Path) -> io::Result<Vec<&'a OsStr>> {
    let out = steps(folder, rel)?;
    if out.is_empty() {
        return Err(refused(folder, rel, "names no file"));
    }
    Ok(out)
}

/// Opens `rel` inside `folder` for reading, by the rules of the module doc.
pub(crate) fn open_beneath(folder: &Path, rel: &Path) -> io::Result<File> {
    file_steps(folder, rel)?;
    Beneath::open(folder)?.open_file(rel)
}

/// A run's folder, opened once (on Unix: a handle, reached without following a link in its
/// own place; its parents are the daemon's, checked by `security`). Files in it are opened
/// and folders in it listed relative to that handle, one step at a time, by the rules of the
/// module doc: there is no check by path that a swap could outrun.
pub(crate) struct Beneath {
    folder: PathBuf,
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    /// The folder's owner: in a user's folder, only that user's files are read.
    #[cfg(unix)]
    owner: u32,
}

#[cfg(unix)]
mod unix {
    use super::refused;
    use std::ffi::{CString, OsStr};
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    pub(super) const DIR_FLAGS: i32 = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

    pub(super) fn cstr(folder: &Path, rel: &Path, s: &OsStr) -> io::Result<CString> {
        CString::new(s.as_bytes()).map_err(|_| refused(folder, rel, "a name with a NUL byte"))
    }

    /// `openat` relative to `dir` (the current folder if none), close-on-exec.
    pub(super) fn open_at(
        dir: Option<BorrowedFd<'_>>,
        name: &CString,
        flags: i32,
    ) -> io::Result<OwnedFd> {
        let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
        // SAFETY: a valid NUL-terminated name; `at` is AT_FDCWD or a descriptor borrowed
        // for the call.
        let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

#[cfg(unix)]
impl Beneath {
    /// Opens the folder itself: a link in its place is not followed.
    pub(crate) fn open(folder: &Path) -> io::Result<Beneath> {
        use std::os::unix::fs::MetadataExt;
        let fd = unix::open_at(
            None,
            &unix::cstr(folder, Path::new(""), folder.as_os_str())?,
            unix::DIR_FLAGS,
        )?;
        let owner = File::from(fd.try_clone()?).metadata()?.uid();
        Ok(Beneath {
            folder: folder.to_path_buf(),
            fd,
            owner,
        })
    }

    /// The folder at `names` below the handle: each step opened relative to the one before,
    /// a folder, never a link. A handle of its own (its own offset), also for no step.
    fn walk(&self, rel: &Path, names: &[&OsStr]) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        let here = std::ffi::CString::from(c".");
        let mut dir = unix::open_at(Some(self.fd.as_fd()), &here, unix::DIR_FLAGS)?;
        for name in names {
            let step = unix::cstr(&self.folder, rel, name)?;
            dir = unix::open_at(Some(dir.as_fd()), &step, unix::DIR_FLAGS).map_err(|e| match e
                .raw_os_error()
            {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => refused(
                    &self.folder,
                    rel,
                    &format!(
                        "{} on the way is a symbolic link or not a folder; links are not followed",
                        name.to_string_lossy()
                    ),
                ),
                _ => e,
            })?;
        }
        Ok(dir)
    }

    /// Opens the file `rel` for reading, by the rules of the module doc.
    pub(crate) fn open_file(&self, rel: &Path) -> io::Result<File> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let names = file_steps(&self.folder, rel)?;
        let (last, between) = names
            .split_last()
            .ok_or_else(|| refused(&self.folder, rel, "names no file"))?;
        let dir = self.walk(rel, between)?;
        let fd = unix::open_at(
            Some(dir.as_fd()),
            &unix::cstr(&self.folder, rel, last)?,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                refused(&self.folder, rel, "a symbolic link; links are not followed")
            }
            _ => e,
        })?;
        let f = File::from(fd);
        let m = f.metadata()?;
        if !m.file_type().is_file() {
            return Err(refused(
                &self.folder,
                rel,
                "not a regular file (a FIFO, device or folder)",
            ));
        }
        if self.owner != 0 && m.uid() != self.owner {
            return Err(refused(
                &self.folder,
                rel,
                &format!(
                    "belongs to uid {}, not to the folder's owner (uid {})",
                    m.uid(),
                    self.owner
                ),
            ));
        }
        Ok(f)
    }

    /// The entries of the folder `rel` (empty: the folder itself), reached as
    /// [`Beneath::open_file`] reaches a file and listed from the handle that reached it.
    pub(crate) fn entries(&self, rel: &Path) -> io::Result<Vec<super::dir::Entry>> {
        let names = steps(&self.folder, rel)?;
        super::dir::entries_of(self.walk(rel, &names)?)?.collect()
    }
}

#[cfg(windows)]
impl Beneath {
    /// The folder itself: a real folder, not a link or junction.
    pub(crate) fn open(folder: &Path) -> io::Result<Beneath> {
        let b = Beneath {
            folder: folder.to_path_buf(),
        };
        b.real_folder(Path::new(""), folder)?;
        Ok(b)
    }

    fn real_folder(&self, rel: &Path, path: &Path) -> io::Result<()> {
        use std::os::windows::fs::MetadataExt;
        use windows_sys::Win32::Storage::FileSystem::FILE_ATTRIBUTE_REPARSE_POINT;
        let m = std::fs::symlink_metadata(path)?;
        if !m.is_dir() || m.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
            return Err(refused(
                &self.folder,
                rel,
                &format!(
                    "{} on the way is a link, a junction or not a folder; links are not followed",
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    /// The folder at `names`, each step checked for a reparse point (Windows has no `user`
    /// jobs: the run's tree is the daemon's own user's).
    fn walk(&self, rel: &Path, names: &[&OsStr]) -> io::Result<PathBuf> {
        let mut path = self.folder.clone();
        for name in names {
            path.push(name);
            self.real_folder(rel, &path)?;
        }
        Ok(path)
    }

    /// Opens the file `rel` for reading, by the rules of the module doc.
    pub(crate) fn open_file(&self, rel: &Path) -> io::Result<File> {
        let names = file_steps(&self.folder, rel)?;
        let (last, between) = names
            .split_last()
            .ok_or_else(|| refused(&self.folder, rel, "names no file"))?;
        let mut path = self.walk(rel, between)?;
        path.push(last);
        let mut o = std::fs::OpenOptions::new();
        o.read(true);
        super::set_open_flags(&mut o, false);
        let f = o.open(&path)?;
        if !super::is_plain_file(&f)? {
            return Err(refused(
                &self.folder,
                rel,
                "not a regular file (a link, device or folder)",
            ));
        }
        Ok(f)
    }

    /// The entries of the folder `rel` (empty: the folder itself), reached as
    /// [`Beneath::open_file`] reaches a file.
    pub(crate) fn entries(&self, rel: &Path) -> io::Result<Vec<super::dir::Entry>> {
        let names = steps(&self.folder, rel)?;
        super::dir::entries(&self.walk(rel, &names)?)?.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    #[cfg(unix)]
    use std::os::unix::fs::symlink;

    fn read(folder: &Path, rel: &str) -> io::Result<String> {
        let mut s = String::new();
        open_beneath(folder, Path::new(rel))?.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn files_inside_are_read_and_nothing_leads_out() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("run");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/output.xml"), "mine").unwrap();
        std::fs::write(outer.path().join("secret"), "not mine").unwrap();
        assert_eq!(read(&dir, "a/b/output.xml").unwrap(), "mine");
        assert_eq!(read(&dir, "./a/b/output.xml").unwrap(), "mine");
        for (rel, why) in [
            ("../secret", "leaves the run folder"),
            ("a/../../secret", "leaves the run folder"),
            ("/etc/hostname", "leaves the run folder"),
            ("", "names no file"),
        ] {
            let e = read(&dir, rel).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{rel}: {e}");
            assert!(e.to_string().contains(why), "{rel}: {e}");
        }
        // A folder is not a file (Windows refuses to open one for reading at all).
        let e = read(&dir, "a/b").unwrap_err();
        #[cfg(unix)]
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert_ne!(e.kind(), io::ErrorKind::NotFound, "{e}");
        // Missing stays missing (no different answer than `ls` in the folder gives).
        assert_eq!(
            read(&dir, "a/nope.xml").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[cfg(unix)]
    #[test]
    fn no_link_is_followed_anywhere() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        let elsewhere = outer.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("output.xml"), "not mine").unwrap();
        symlink(elsewhere.join("output.xml"), dir.join("output.xml")).unwrap();
        symlink(&elsewhere, dir.join("out")).unwrap();
        // Dangling links answer no differently from links to existing files.
        symlink(outer.path().join("missing"), dir.join("gone.xml")).unwrap();
        for rel in ["output.xml", "out/output.xml", "gone.xml"] {
            let e = read(&dir, rel).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{rel}: {e}");
        }
        // The folder itself as a link.
        let link = outer.path().join("run-link");
        symlink(&elsewhere, &link).unwrap();
        assert!(read(&link, "output.xml").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn in_a_users_folder_only_that_users_files_are_read() {
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("SKIP: needs root (to give files to another uid)");
            return;
        }
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("mine.xml"), "mine").unwrap();
        // Root's file in the user's folder: what a hard link to a root-only file would be.
        std::fs::write(dir.join("roots.xml"), "root's").unwrap();
        std::os::unix::fs::chown(dir.join("mine.xml"), Some(54321), None).unwrap();
        std::os::unix::fs::chown(&dir, Some(54321), None).unwrap();
        assert_eq!(read(&dir, "mine.xml").unwrap(), "mine");
        let e = read(&dir, "roots.xml").unwrap_err();
        assert!(e.to_string().contains("belongs to uid 0"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("output.xml");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read(dir.path(), "output.xml").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[cfg(unix)]
    fn names(b: &Beneath, rel: &str) -> io::Result<Vec<String>> {
        let mut n: Vec<String> = b
            .entries(Path::new(rel))?
            .into_iter()
            .map(|e| e.name.into_string().unwrap())
            .collect();
        n.sort();
        Ok(n)
    }

    /// A folder is listed only when every step to it is a real folder: a link at any step
    /// (or in the folder's own place) is refused, whatever it points at.
    #[cfg(unix)]
    #[test]
    fn a_link_at_any_step_is_not_listed() {
        let outer = tempfile::tempdir().unwrap();
        let secret = outer.path().join("secret");
        std::fs::create_dir_all(secret.join("b/c")).unwrap();
        for d in ["", "b", "b/c"] {
            std::fs::write(secret.join(d).join("secret.png"), "s").unwrap();
        }
        let dir = outer.path().join("run");
        std::fs::create_dir_all(dir.join("a/b/c")).unwrap();
        std::fs::write(dir.join("a/b/c/mine.png"), "mine").unwrap();
        let b = Beneath::open(&dir).unwrap();
        assert_eq!(names(&b, "a/b/c").unwrap(), ["mine.png"]);
        assert_eq!(names(&b, "").unwrap(), ["a"]);
        assert_eq!(names(&b, "./a").unwrap(), ["b"]);
        for step in ["a", "a/b", "a/b/c"] {
            let real = dir.join(step);
            let aside = dir.join("aside");
            std::fs::rename(&real, &aside).unwrap();
            // a -> secret, a/b -> secret/b, a/b/c -> secret/b/c: every one leads to a
            // `secret.png` when followed.
            let to = secret.join(step.trim_start_matches('a').trim_start_matches('/'));
            symlink(&to, &real).unwrap();
            let e = names(&b, "a/b/c").unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{step}: {e}");
            let e = names(&b, step).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{step}: {e}");
            std::fs::remove_file(&real).unwrap();
            std::fs::rename(&aside, &real).unwrap();
        }
        for rel in ["..", "a/../..", "/etc"] {
            let e = names(&b, rel).unwrap_err();
            assert!(
                e.to_string().contains("leaves the run folder"),
                "{rel}: {e}"
            );
        }
        let link = outer.path().join("run-link");
        symlink(&secret, &link).unwrap();
        assert!(Beneath::open(&link).is_err());
    }

    /// A job's user swaps folders of its run with links (renameat2 RENAME_EXCHANGE in a loop,
    /// at two levels) while the daemon lists them, thousands of times: never a name from
    /// the folder the links point at.
    #[cfg(unix)]
    #[test]
    fn a_folder_swapped_for_a_link_while_listed_is_never_entered() {
        use rustix::fs::{renameat_with, RenameFlags};
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let outer = tempfile::tempdir().unwrap();
        let secret = outer.path().join("secret");
        std::fs::create_dir_all(secret.join("screenshot")).unwrap();
        std::fs::write(secret.join("secret.png"), "s").unwrap();
        std::fs::write(secret.join("screenshot/secret.png"), "s").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
        let dir = outer.path().join("run");
        std::fs::create_dir_all(dir.join("browser/screenshot")).unwrap();
        std::fs::write(dir.join("browser/screenshot/mine.png"), "mine").unwrap();
        symlink(&secret, dir.join("browser/x")).unwrap();
        symlink(&secret, dir.join("y")).unwrap();
        let (top, browser) = (
            File::open(&dir).unwrap(),
            File::open(dir.join("browser")).unwrap(),
        );
        let stop = AtomicBool::new(false);
        let (mut lists, mut mine, mut refused) = (0u32, 0u32, 0u32);
        std::thread::scope(|t| {
            t.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..16 {
                        let _ = renameat_with(
                            &browser,
                            "screenshot",
                            &browser,
                            "x",
                            RenameFlags::EXCHANGE,
                        );
                    }
                    let _ = renameat_with(&top, "browser", &top, "y", RenameFlags::EXCHANGE);
                }
            });
            let b = Beneath::open(&dir).unwrap();
            let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while std::time::Instant::now() < end || lists < 2000 {
                lists += 1;
                match names(&b, "browser/screenshot") {
                    Ok(n) if n.iter().any(|n| n.contains("secret")) => {
                        stop.store(true, Ordering::Relaxed);
                        panic!("listed {n:?} at listing {lists}: a link was followed");
                    }
                    Ok(n) => mine += u32::from(n == ["mine.png"]),
                    Err(_) => refused += 1,
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        // The swaps did race the listings: some saw the real folder, some a link.
        assert!(
            mine > 0 && refused > 0,
            "{lists} listings: {mine} real, {refused} refused"
        );
    }
}
