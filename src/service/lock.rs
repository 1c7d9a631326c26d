//! The per-instance singleton: an OS file lock on `<state_dir>/daemon.lock`, held by the
//! daemon for its whole life and released by the kernel when it dies, however it dies.
//!
//! Others ask "is a daemon running?" by trying a *shared* lock for an instant: it fails
//! while the daemon holds its exclusive lock. Because that probe can briefly stand in the way
//! of a daemon taking the lock, the daemon retries for a short while before concluding that
//! another daemon owns the instance.

use std::fs::{File, TryLockError};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a starting daemon keeps trying to take the lock.
pub(crate) const ACQUIRE_PATIENCE: Duration = Duration::from_millis(500);

/// The held singleton lock; dropping it releases the instance.
#[derive(Debug)]
pub(crate) struct InstanceLock {
    file: File,
}

impl InstanceLock {
    /// The locked file (to tell whether the path still names it).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

fn open(path: &Path) -> io::Result<File> {
    crate::service::sys::file::open_or_create(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open lock file {}: {e}", path.display()),
        )
    })
}

/// Takes the exclusive lock, retrying briefly; `Ok(None)` if another process holds it.
#[cfg(test)]
pub(crate) fn acquire(path: &Path) -> io::Result<Option<InstanceLock>> {
    acquire_within(path, ACQUIRE_PATIENCE)
}

/// True if some process holds the exclusive lock (a daemon is running).
pub(crate) fn is_held(path: &Path) -> io::Result<bool> {
    // Only a lock file that is not there means "no daemon"; one this user may not see (a
    // state dir of root's) is an error, not a wrong answer.
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot look at {}: {e}", path.display()),
            ))
        }
        Ok(_) => {}
    }
    // Read access is all a probe needs: a state dir on a file system remounted read-only
    // (errors=remount-ro) still tells that its daemon runs, and `stop` can still reach it.
    let file = match crate::service::sys::file::open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open lock file {}: {e}", path.display()),
            ))
        }
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(false)
        }
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// True once no process holds the lock at `path`, polled until `patience` runs out (false
/// then, or if it cannot be told).
pub(crate) fn released_within(path: &Path, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        match is_held(path) {
            Ok(false) => return true,
            Ok(true) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => return false,
        }
    }
}

/// Takes an exclusive lock, polled until `patience` runs out; `Ok(None)` if another process
/// holds it all that time.
pub(crate) fn acquire_within(path: &Path, patience: Duration) -> io::Result<Option<InstanceLock>> {
    let file = open(path)?;
    match crate::service::sys::file::lock_within(&file, patience) {
        Ok(true) => Ok(Some(InstanceLock { file })),
        Ok(false) => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot lock {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_and_probes_see_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.lock");
        assert!(!is_held(&p).unwrap());
        let held = acquire(&p).unwrap().expect("first acquire");
        assert!(is_held(&p).unwrap());
        assert!(acquire(&p).unwrap().is_none(), "second acquire must fail");
        drop(held);
        assert!(!is_held(&p).unwrap());
        assert!(acquire(&p).unwrap().is_some());
    }
}
