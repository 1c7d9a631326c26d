//! The one way the program opens a file in the state dir (and the config file): a root
//! daemon must not be steered into writing through a planted symlink, hang on a FIFO, or read
//! `/dev/zero` until memory runs out.
//!
//! Every open here:
//! - does not follow a symlink at the last component (`O_NOFOLLOW`; a reparse point on
//!   Windows), except for the config file, which an admin may link on purpose (its whole
//!   path is checked by [`crate::service::security`] instead);
//! - never blocks (`O_NONBLOCK`: opening a FIFO returns at once) and accepts only a regular
//!   file, checked on the open handle (`fstat`), so a FIFO or device is an error naming the
//!   path;
//! - reads at most a cap, given per file by the caller.
//!
//! The directories above the file are trusted because [`crate::service::security`] checked them.

use crate::service::sys;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// Whether the last component of a path may be a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// State files: a symlink is refused.
    Refuse,
    /// The config file: an admin may link it (its whole path is checked separately).
    Follow,
}

/// Caps on what is read from each kind of file. Generous for real content, small enough that
/// a hostile or runaway file cannot exhaust memory.
pub(crate) mod cap {
    /// `status.json`: about 1 KiB per job; 10,000 jobs fit.
    pub(crate) const STATUS: u64 = 32 * 1024 * 1024;
    /// `stop-request` and other markers.
    pub(crate) const SMALL: u64 = 64 * 1024;
    /// The config file.
    pub(crate) const CONFIG: u64 = 16 * 1024 * 1024;
    /// A Python environment's requirements or pyproject file.
    pub(crate) const ENV_SOURCE: u64 = 1024 * 1024;
}

fn options(links: Links) -> OpenOptions {
    let mut o = OpenOptions::new();
    sys::set_open_flags(&mut o, links == Links::Follow);
    o
}

/// Turns an open error into one that says why: a symlink or a special file in the way.
fn explain(path: &Path, e: io::Error, links: Links) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        return e;
    }
    if let Ok(m) = fs::symlink_metadata(path) {
        if m.file_type().is_symlink() && links == Links::Refuse {
            return io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symlink; refusing to follow it (remove it)",
                    path.display()
                ),
            );
        }
        if !m.is_file() && !m.file_type().is_symlink() {
            return not_plain(path);
        }
    }
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn not_plain(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is not a regular file (a FIFO, device or directory); refusing to use it (remove it)",
            path.display()
        ),
    )
}

/// Opens with `o`, then insists on a regular file.
fn open_plain(path: &Path, o: &OpenOptions, links: Links) -> io::Result<File> {
    open_plain_len(path, o, links).map(|(f, _)| f)
}

/// [`open_plain`], and the file's length as it was opened (one look at it, not two).
fn open_plain_len(path: &Path, o: &OpenOptions, links: Links) -> io::Result<(File, u64)> {
    let f = o.open(path).map_err(|e| explain(path, e, links))?;
    match sys::plain_file_len(&f)? {
        Some(len) => Ok((f, len)),
        None => Err(not_plain(path)),
    }
}

/// Reads a whole file of at most `cap` bytes. `NotFound` passes through unchanged, so callers
/// can tell "absent" from "refused".
pub(crate) fn read(path: &Path, cap: u64, links: Links) -> io::Result<Vec<u8>> {
    let mut o = options(links);
    o.read(true);
    let (f, len) = open_plain_len(path, &o, links)?;
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is larger than {} bytes; refusing to read it",
                path.display(),
                cap
            ),
        )
    };
    if len > cap {
        return Err(too_big());
    }
    // Sized from the start: one read for a file that does not grow meanwhile, not a dozen
    // doubling ones (ctrl reads the daemon's view on every agent call).
    let mut buf = Vec::with_capacity(len as usize + 1);
    f.take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(too_big());
    }
    Ok(buf)
}

/// A whole file's bytes for reading once: on Unix the page cache's own pages, mapped read-only
/// (no copy into fresh, zeroed heap pages: reading ctrl's 0.5 MB view that way was a fifth of
/// ctrl's CPU at 1,000 jobs, scripts/bench-ctrl.sh); elsewhere, and for an empty file, a copy.
pub(crate) struct Whole {
    #[cfg(unix)]
    map: Option<(std::ptr::NonNull<u8>, usize)>,
    owned: Vec<u8>,
}

impl std::ops::Deref for Whole {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        #[cfg(unix)]
        if let Some((ptr, len)) = self.map {
            // SAFETY: a live read-only mapping of `len` bytes, unmapped only in `drop`.
            return unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) };
        }
        &self.owned
    }
}

#[cfg(unix)]
impl Drop for Whole {
    fn drop(&mut self) {
        if let Some((ptr, len)) = self.map.take() {
            // SAFETY: the mapping made in `read_whole`, not used after this.
            let _ = unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), len) };
        }
    }
}

/// Like [`read`], for a file that is only ever replaced by rename, never changed in place
/// (the daemon's pre-rendered ctrl view, [`crate::service::state`]): its old inode stays as it
/// was while mapped, so the bytes cannot change under the reader. Mapping a file that another
/// process truncates would fault; the state dir it lies in is checked to be writable by root
/// (or its owner) only, and nothing there truncates it.
pub(crate) fn read_whole(path: &Path, cap: u64) -> io::Result<Whole> {
    #[cfg(unix)]
    {
        let mut o = options(Links::Refuse);
        o.read(true);
        let (f, len) = open_plain_len(path, &o, Links::Refuse)?;
        if len > cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is larger than {cap} bytes; refusing to read it",
                    path.display()
                ),
            ));
        }
        if len > 0 {
            let len = len as usize;
            // SAFETY: a fresh private read-only mapping of a regular file's first `len` bytes
            // (its size, checked on the open handle); see the doc for why it cannot shrink.
            let ptr = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    len,
                    rustix::mm::ProtFlags::READ,
                    rustix::mm::MapFlags::PRIVATE,
                    &f,
                    0,
                )
            }?;
            if let Some(ptr) = std::ptr::NonNull::new(ptr.cast::<u8>()) {
                return Ok(Whole {
                    map: Some((ptr, len)),
                    owned: Vec::new(),
                });
            }
        }
        Ok(Whole {
            map: None,
            owned: Vec::new(),
        })
    }
    #[cfg(not(unix))]
    Ok(Whole {
        owned: read(path, cap, Links::Refuse)?,
    })
}

/// Like [`read`], as UTF-8 text (invalid sequences replaced).
pub(crate) fn read_string(path: &Path, cap: u64, links: Links) -> io::Result<String> {
    read(path, cap, links).map(|b| match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn private(o: &mut OpenOptions) {
    sys::private_file(o);
}

/// Opens an existing regular file for reading (a run's output, followed as it grows).
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    let mut o = options(Links::Refuse);
    o.read(true);
    open_plain(path, &o, Links::Refuse)
}

/// Opens the config file for reading as it is read (a symlink followed, see [`Links`]): to
/// lock it (`config_lock`), or to tell its identity (Windows).
pub(crate) fn open_config(path: &Path) -> io::Result<File> {
    let mut o = options(Links::Follow);
    o.read(true);
    open_plain(path, &o, Links::Follow)
}

/// Opens for appending, creating it (0600) if missing.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    let mut o = options(Links::Refuse);
    o.append(true).create(true);
    private(&mut o);
    open_plain(path, &o, Links::Refuse)
}

/// Opens an existing file for writing in place (no truncation).
pub(crate) fn open_write(path: &Path) -> io::Result<File> {
    let mut o = options(Links::Refuse);
    o.write(true);
    open_plain(path, &o, Links::Refuse)
}

/// How many bytes `f` can hold without a new block from its file system: its allocated
/// blocks on Unix; its length elsewhere (no growth assumed).
pub(crate) fn room(f: &File) -> io::Result<u64> {
    let m = f.metadata()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok((m.blocks() * 512).max(m.len()))
    }
    #[cfg(not(unix))]
    Ok(m.len())
}

/// Opens for reading and writing, creating it (0600) if missing: lock files, the heartbeat.
pub(crate) fn open_or_create(path: &Path) -> io::Result<File> {
    let mut o = options(Links::Refuse);
    o.read(true).write(true).create(true).truncate(false);
    private(&mut o);
    open_plain(path, &o, Links::Refuse)
}

/// Creates a new file (0600); fails if anything, a symlink included, has the name.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    let mut o = options(Links::Refuse);
    o.write(true).create_new(true);
    private(&mut o);
    open_plain(path, &o, Links::Refuse)
}

/// Takes an exclusive lock on `file`, polled every 2 ms until `patience` runs out (a probe
/// holds a shared lock for an instant): false if another process held it all that time.
pub(crate) fn lock_within(file: &File, patience: std::time::Duration) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// The metadata of a regular file at `path`, not following a symlink; `None` for anything
/// else (absent, a link, a FIFO).
pub(crate) fn plain_metadata(path: &Path) -> Option<fs::Metadata> {
    fs::symlink_metadata(path).ok().filter(|m| m.is_file())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn a_fifo_is_refused_at_once_for_every_kind_of_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status.json");
        mkfifo(&p);
        let t = Instant::now();
        let e = read(&p, cap::STATUS, Links::Refuse).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(open_append(&p).is_err());
        assert!(open_write(&p).is_err());
        assert!(open_or_create(&p).is_err());
        assert!(read(&p, cap::CONFIG, Links::Follow).is_err());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn a_symlink_is_refused_unless_followed_on_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let p = dir.path().join("heartbeat");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let e = open_or_create(&p).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(open_append(&p).is_err());
        assert!(open_write(&p).is_err());
        assert!(read(&p, cap::SMALL, Links::Refuse).is_err());
        assert_eq!(read(&p, cap::SMALL, Links::Follow).unwrap(), b"keep");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn reads_are_capped_and_devices_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state-error");
        fs::write(&p, vec![b'x'; 100]).unwrap();
        assert_eq!(read(&p, 100, Links::Refuse).unwrap().len(), 100);
        let e = read(&p, 99, Links::Refuse).unwrap_err();
        assert!(e.to_string().contains("larger than 99"), "{e}");
        let e = read(Path::new("/dev/zero"), 10, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert_eq!(
            read(&dir.path().join("nope"), 1, Links::Refuse)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn created_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (name, open) in [
            ("a", open_append as fn(&Path) -> io::Result<File>),
            ("b", open_or_create),
            ("c", create_new),
        ] {
            let p = dir.path().join(name);
            open(&p).unwrap();
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
}
