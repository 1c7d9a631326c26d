//! The config file's own lock (Linux): one daemon per config file, whatever state dir the
//! caller's environment gives it. A config without `state_dir` takes its state dir from
//! `$MK_VARDIR`, so two callers with two values (the agent, an admin's shell) would otherwise
//! start two daemons of one config, each with a lock of its own, and every job would run twice.
//!
//! The daemon holds an exclusive `flock` on the config file itself, opened read-only as the
//! config is read; an advisory lock keeps no editor from saving it. Hard links are one file,
//! so one lock. A config replaced by rename is another file: the daemon locks the new one
//! when it looks at the config again (see `app/daemon/control.rs`). Others probe it with a
//! shared lock taken and dropped at once, as they probe `daemon.lock`.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The held lock on one config file; dropping it releases the config.
#[derive(Debug)]
pub(crate) struct ConfigLock {
    file: File,
}

impl ConfigLock {
    /// True while `path` still leads to the locked file (not replaced by rename, not
    /// deleted, a symlink not repointed): followed as the config is read.
    pub(crate) fn still_names(&self, path: &Path) -> bool {
        match (self.file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

/// The process holding a config's lock, as `/proc` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    /// It runs as this process's user. Any user who may read the config may lock it: a
    /// holder of another user (or one this user cannot see) is no daemon of this config's
    /// and must not keep one from starting.
    pub(crate) mine: bool,
    /// The folder of the instance lock it holds too (named `lock_name`): its state dir.
    /// `None` where it holds none (no daemon), or its descriptors cannot be read (another
    /// user's process).
    pub(crate) state_dir: Option<PathBuf>,
}

fn open(path: &Path) -> io::Result<File> {
    super::file::open_config(path)
}

/// Takes the exclusive lock on the config file, polled until `patience` runs out (a probe
/// holds its shared lock for an instant); `Ok(None)` if another process holds it all that
/// time. (`_state_dir` is for Windows, where the holder writes it down: here `/proc` tells
/// it.)
pub(crate) fn take(
    path: &Path,
    _state_dir: &Path,
    patience: Duration,
) -> io::Result<Option<ConfigLock>> {
    let file = open(path)?;
    match super::file::lock_within(&file, patience) {
        Ok(true) => Ok(Some(ConfigLock { file })),
        Ok(false) => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot lock the config {}: {e}", path.display()),
        )),
    }
}

/// True if some process holds the exclusive lock on the config file (a daemon of it runs).
pub(crate) fn is_held(path: &Path) -> io::Result<bool> {
    let file = open(path)?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(false)
        }
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(io::Error::new(
            e.kind(),
            format!("cannot probe the lock of {}: {e}", path.display()),
        )),
    }
}

/// Who holds the exclusive lock on the config file: found in `/proc/locks` by the file's
/// device and inode, and its state dir by the instance lock (`lock_name`) among its open
/// files. `None` if nobody does, or it cannot be told.
pub(crate) fn holder(path: &Path, lock_name: &str) -> Option<Holder> {
    let m = std::fs::metadata(path).ok()?;
    let pid = flock_writer(m.dev(), m.ino())?;
    let mine = effective_uid(pid) == Some(rustix::process::geteuid().as_raw());
    Some(Holder {
        pid,
        mine,
        // Only a holder of this user's can be a daemon of this config; another user's
        // process (anyone who may read the config may lock it) is not walked: its open files
        // are as many as it likes, each a readlink and a read of /proc/locks.
        state_dir: if mine {
            instance_lock_dir(pid, lock_name)
        } else {
            None
        },
    })
}

/// The effective user of `pid` (`/proc/PID/status`, "Uid: real effective saved fs").
fn effective_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The glibc encoding of a device number, as `/proc/locks` prints it (`major:minor`, hex).
fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    (major, minor)
}

/// The PID of the process with an exclusive flock on `dev`:`ino`.
fn flock_writer(dev: u64, ino: u64) -> Option<u32> {
    let locks = super::file::read_string(
        Path::new("/proc/locks"),
        super::file::cap::STATUS,
        super::file::Links::Refuse,
    )
    .ok()?;
    let want = major_minor(dev);
    // "1: FLOCK  ADVISORY  WRITE 4711 fd:01:1234567 0 EOF"
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[1] != "FLOCK" || f[3] != "WRITE" {
            return None;
        }
        let mut id = f[5].split(':');
        let major = u64::from_str_radix(id.next()?, 16).ok()?;
        let minor = u64::from_str_radix(id.next()?, 16).ok()?;
        let inode: u64 = id.next()?.parse().ok()?;
        ((major, minor) == want && inode == ino)
            .then(|| f[4].parse().ok())
            .flatten()
    })
}

/// The folder of the file named `lock_name` that `pid` has open and holds an exclusive flock
/// on: the state dir of a daemon (its `daemon.lock`, which it holds for its whole life).
fn instance_lock_dir(pid: u32, lock_name: &str) -> Option<PathBuf> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.flatten().find_map(|fd| {
        let target = std::fs::read_link(fd.path()).ok()?;
        let text = target.to_string_lossy();
        // A lock file deleted under the daemon still names its folder.
        let text = text.strip_suffix(" (deleted)").unwrap_or(&text);
        let target = Path::new(text);
        if target.file_name()? != lock_name {
            return None;
        }
        // The open file itself (the descriptor's link leads to it, deleted or not).
        let m = std::fs::metadata(fd.path()).ok()?;
        (flock_writer(m.dev(), m.ino()) == Some(pid))
            .then(|| target.parent().map(Path::to_path_buf))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_probes_see_it_and_proc_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, "[daemon]\n").unwrap();
        // A name of its own: other tests of this process hold `daemon.lock` files.
        let inst = dir.path().join("config-lock-test.lock");
        let inst_file = std::fs::File::create(&inst).unwrap();
        inst_file.lock().unwrap();
        assert!(!is_held(&cfg).unwrap());
        let held = take(&cfg, dir.path(), Duration::ZERO)
            .unwrap()
            .expect("first take");
        assert!(is_held(&cfg).unwrap());
        // A hard link is the same file: the same lock.
        let link = dir.path().join("link.toml");
        std::fs::hard_link(&cfg, &link).unwrap();
        assert!(is_held(&link).unwrap());
        // flock locks belong to the open file description: a second open in this process
        // is refused as another process's would be.
        assert!(take(&link, dir.path(), Duration::from_millis(20))
            .unwrap()
            .is_none());
        let h = holder(&cfg, "config-lock-test.lock").expect("the holder");
        assert_eq!(h.pid, std::process::id());
        assert!(h.mine);
        assert_eq!(h.state_dir.as_deref(), Some(dir.path()));
        // A symlink to the config leads to the locked file.
        let sym = dir.path().join("sym.toml");
        std::os::unix::fs::symlink(&cfg, &sym).unwrap();
        assert!(held.still_names(&sym));
        drop(inst_file);
        // Replaced by rename: the path names another file, which nobody holds.
        let new = dir.path().join("c.toml.new");
        std::fs::write(&new, "[daemon]\n").unwrap();
        std::fs::rename(&new, &cfg).unwrap();
        assert!(!held.still_names(&cfg));
        assert!(!is_held(&cfg).unwrap());
        drop(held);
        assert!(!is_held(&link).unwrap());
    }
}
