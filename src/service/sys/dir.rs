//! Folder listings that take little memory for a small folder.
//!
//! std's `read_dir` goes through glibc's `opendir`, which takes a 32 KiB block from the heap
//! for every listing, however few the names. The daemon lists a few folders per run (the
//! run's processes in /proc, the job's run folders to prune, the folders being removed), on
//! threads sharing one heap: those blocks, taken and given back at every run between the
//! small blocks that live on, left the heap fragmented and its top creeping up (the soak of
//! issue 25). Here `getdents64` fills a buffer of under 1 KiB that grows with the folder
//! (rustix's `Dir`) on Unix; Windows lists through std.

use std::ffi::OsString;
use std::io;
use std::path::Path;

/// One name in a folder (never `.` or `..`).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) name: OsString,
    /// A folder itself, not a link to one.
    pub(crate) is_dir: bool,
}

/// The entries of the folder at `path`, in the file system's order. An entry that vanishes
/// between the listing and the look at its kind is left out; other errors end the listing.
pub(crate) fn entries(path: &Path) -> io::Result<impl Iterator<Item = io::Result<Entry>>> {
    imp::entries(path)
}

/// The entries of a folder already open (see `super::beneath::Beneath`, which reaches it
/// without following links): listed from that handle, never again by a path.
#[cfg(unix)]
pub(crate) use imp::entries_of;

#[cfg(unix)]
mod imp {
    use super::Entry;
    use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
    use std::ffi::OsString;
    use std::io;
    use std::os::fd::OwnedFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    pub(super) fn entries(path: &Path) -> io::Result<impl Iterator<Item = io::Result<Entry>>> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        entries_of(fd)
    }

    /// The entries of the folder open as `fd` (which must have its own open file
    /// description: the listing reads from its offset).
    pub(crate) fn entries_of(fd: OwnedFd) -> io::Result<impl Iterator<Item = io::Result<Entry>>> {
        let mut dir = Dir::new(fd)?;
        Ok(std::iter::from_fn(move || loop {
            let e = match dir.read()? {
                Ok(e) => e,
                Err(e) => return Some(Err(e.into())),
            };
            let name = e.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            let kind = match e.file_type() {
                // Some file systems leave the kind out of the listing: ask, not following links.
                FileType::Unknown => match dir
                    .fd()
                    .and_then(|fd| rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW))
                {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Some(Err(e.into())),
                },
                k => k,
            };
            return Some(Ok(Entry {
                name: OsString::from(std::ffi::OsStr::from_bytes(name.to_bytes())),
                is_dir: kind == FileType::Directory,
            }));
        }))
    }
}

#[cfg(windows)]
mod imp {
    use super::Entry;
    use std::io;
    use std::path::Path;

    pub(super) fn entries(path: &Path) -> io::Result<impl Iterator<Item = io::Result<Entry>>> {
        Ok(std::fs::read_dir(path)?.map(|e| {
            let e = e?;
            Ok(Entry {
                is_dir: e.file_type()?.is_dir(),
                name: e.file_name(),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_names_and_kinds_without_dots_and_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("file"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(d.path().join("sub"), d.path().join("link")).unwrap();
        let mut got: Vec<(String, bool)> = entries(d.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.name.into_string().unwrap(), e.is_dir)
            })
            .collect();
        got.sort();
        let mut want = vec![("file".to_string(), false), ("sub".to_string(), true)];
        if cfg!(unix) {
            want.insert(1, ("link".to_string(), false));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn a_large_folder_is_listed_whole() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..2_000 {
            std::fs::write(
                d.path().join(format!("a-rather-long-file-name-{i:05}")),
                b"",
            )
            .unwrap();
        }
        let n = entries(d.path()).unwrap().filter(|e| e.is_ok()).count();
        assert_eq!(n, 2_000);
    }

    #[test]
    fn a_missing_folder_is_not_found() {
        let d = tempfile::tempdir().unwrap();
        let e = entries(&d.path().join("gone")).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
