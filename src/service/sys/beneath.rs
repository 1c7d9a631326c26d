//! Opening a file that a run left in its folder — a folder a job's user owns and fills as they
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
//! A refusal is an `InvalidInput` error that names the path and the reason; a missing file
//! stays `NotFound`, the answer the user could have had from `ls` in their own folder.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Component, Path};

fn refused(folder: &Path, rel: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {why}; not read", folder.join(rel).display()),
    )
}

/// The names `rel` steps through, if it stays inside the folder.
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
    if out.is_empty() {
        return Err(refused(folder, rel, "names no file"));
    }
    Ok(out)
}

/// Opens `rel` inside `folder` for reading, by the rules of the module doc.
#[cfg(unix)]
pub(crate) fn open_beneath(folder: &Path, rel: &Path) -> io::Result<File> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;

    let names = steps(folder, rel)?;
    let cstr =
        |s: &[u8]| CString::new(s).map_err(|_| refused(folder, rel, "a name with a NUL byte"));
    let open_at = |dir: Option<&OwnedFd>, name: &CString, flags: i32| -> io::Result<OwnedFd> {
        let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
        // SAFETY: a valid NUL-terminated name; `at` is AT_FDCWD or a descriptor we own.
        let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let dir_flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    // The folder itself: its parents are the daemon's (checked by `security`); a link in
    // its own place is not followed either.
    let mut dir = open_at(None, &cstr(folder.as_os_str().as_bytes())?, dir_flags)?;
    let owner = File::from(dir.try_clone()?).metadata()?.uid();
    let (last, between) = names
        .split_last()
        .ok_or_else(|| refused(folder, rel, "names no file"))?;
    for name in between {
        dir = open_at(Some(&dir), &cstr(name.as_bytes())?, dir_flags).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => refused(
                    folder,
                    rel,
                    &format!(
                        "{} on the way is a symbolic link or not a folder; links are not followed",
                        name.to_string_lossy()
                    ),
                ),
                _ => e,
            }
        })?;
    }
    let fd = open_at(
        Some(&dir),
        &cstr(last.as_bytes())?,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => refused(folder, rel, "a symbolic link; links are not followed"),
        _ => e,
    })?;
    let f = File::from(fd);
    let m = f.metadata()?;
    if !m.file_type().is_file() {
        return Err(refused(
            folder,
            rel,
            "not a regular file (a FIFO, device or folder)",
        ));
    }
    if owner != 0 && m.uid() != owner {
        return Err(refused(
            folder,
            rel,
            &format!(
                "belongs to uid {}, not to the folder's owner (uid {owner})",
                m.uid()
            ),
        ));
    }
    Ok(f)
}

/// Opens `rel` inside `folder` for reading, by the rules of the module doc.
#[cfg(windows)]
pub(crate) fn open_beneath(folder: &Path, rel: &Path) -> io::Result<File> {
    use std::os::windows::fs::MetadataExt;
    use windows_sys::Win32::Storage::FileSystem::FILE_ATTRIBUTE_REPARSE_POINT;

    let names = steps(folder, rel)?;
    let mut path = folder.to_path_buf();
    let (last, between) = names
        .split_last()
        .ok_or_else(|| refused(folder, rel, "names no file"))?;
    // The folder and every step below it: a real folder, not a link or junction.
    for step in std::iter::once(None).chain(between.iter().map(Some)) {
        if let Some(name) = step {
            path.push(name);
        }
        let m = std::fs::symlink_metadata(&path)?;
        if !m.is_dir() || m.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
            return Err(refused(
                folder,
                rel,
                &format!(
                    "{} on the way is a link, a junction or not a folder; links are not followed",
                    path.display()
                ),
            ));
        }
    }
    path.push(last);
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    super::set_open_flags(&mut o, false);
    let f = o.open(&path)?;
    if !super::is_plain_file(&f)? {
        return Err(refused(
            folder,
            rel,
            "not a regular file (a link, device or folder)",
        ));
    }
    Ok(f)
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
}
