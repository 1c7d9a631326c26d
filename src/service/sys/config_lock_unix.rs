//! The config file's own lock (Linux): one daemon per config file, whatever state dir the
//! caller's environment gives it. A config without `state_dir` takes its state dir from
//! `$MK_VARDIR`, so two callers with two values (the agent, an admin's shell) would otherwise
//! start two daemons of one config, each with a lock of its own, and every job would run twice.
//!
//! The lock is a file of its own, `config-<dev>-<ino>.lock`, named after the config file's
//! identity (device and inode of the file the path leads to, symlinks followed: hard links
//! are one file, so one lock; a config replaced by rename is another file, which the daemon
//! locks at its next look, see `app/daemon/control.rs`), in a folder only the daemon's user
//! may write: `/run/robotmk-daemon/` for root, else `$XDG_RUNTIME_DIR/robotmk-daemon/`,
//! `/run/user/<uid>/robotmk-daemon/` or `/tmp/robotmk-daemon-<uid>/` ([`folder_for`]). The
//! daemon holds an exclusive `flock` on it for its life and writes its PID and state dir into
//! it; probes open it read-only and take a shared lock for an instant, as they probe
//! `daemon.lock`. Whoever holds it is a daemon of this user: nobody else can create or open
//! a file there, so what the file says is trusted, and nothing is read from `/proc`.
//!
//! (It used to be a `flock` on the config file itself, found through `/proc`: any user who
//! could read the config could take that, and through a setuid-root program keeping the
//! descriptor, or a `daemon.lock` shown at the state dir's path from a mount namespace of its
//! own, pass for root's daemon.)
//!
//! The file is never removed unlocked: a removal races with a daemon that opened it and
//! waits for it, which would then hold a file nobody else sees. It is removed while locked,
//! by its daemon as it stops, and by a taker that sweeps the folder of stale files (their
//! daemons killed: nobody holds their locks; [`sweep`]). A taker checks after locking that
//! the path still names the file it locked (a cleaner of `/tmp`, or logind at a logout, may
//! remove the folder), and a daemon whose lock file was removed takes a new one at once: it
//! watches the file's path ([`ConfigLock::path`], [`ConfigLock::file_lost`];
//! `app/daemon/control.rs`). Where a user's daemon keeps its lock depends on its session, so a
//! lock held in any of the user's places counts ([`other_places`]).

use super::TookConfig;
use rustix::fs::{Mode, OFlags};
use std::ffi::OsStr;
use std::fs::{File, TryLockError};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The held lock on one config file; dropping it releases the config.
#[derive(Debug)]
pub(crate) struct ConfigLock {
    file: File,
    /// The config file, kept open: its inode number is not given to another file while the
    /// lock named after it is held (a config removed, another created: not "already run").
    _config_file: File,
    /// The config file's device and inode.
    config: (u64, u64),
    /// Where the lock file is.
    path: PathBuf,
}

impl ConfigLock {
    /// True while `path` still leads to the locked file (not replaced by rename, not
    /// deleted, a symlink not repointed): followed as the config is read. False too when
    /// the lock file itself is no longer where probes look (its folder removed): the daemon
    /// takes a new one.
    pub(crate) fn still_names(&self, path: &Path) -> bool {
        let config = std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == self.config);
        config && same_file(&self.file, &self.path)
    }

    /// Where the lock file is: the daemon watches it, so that a removal (a cleaner of its
    /// folder, logind at a logout, an admin's `rm`) wakes it at once, not at its next
    /// safety look minutes later, while a second daemon of the config could start.
    pub(crate) fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    /// True if the lock file is no longer where probes look (removed, or its folder): the
    /// lock is then on a file nobody else finds, and a second daemon could take a new one.
    pub(crate) fn file_lost(&self) -> bool {
        !same_file(&self.file, &self.path)
    }
}

/// The daemon holding a config's lock, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    /// The state dir it runs with.
    pub(crate) state_dir: Option<PathBuf>,
}

/// The folder of this user's config locks, opened and checked (see [`folder`]).
struct Folder {
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

/// Where user `uid` keeps its config locks: `/run/robotmk-daemon` for root (`/run` is root's
/// alone); for another user its runtime dir (`xdg`, when it is the user's own 0700 folder, as
/// the XDG spec requires), else `/run/user/<uid>` when that is the user's, else
/// `/tmp/robotmk-daemon-<uid>`, which [`folder`] checks as tmux checks its socket folder.
pub(crate) fn folder_for(uid: u32, xdg: Option<&OsStr>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from("/run/robotmk-daemon");
    }
    let owned = |p: &Path, mask: u32| {
        std::fs::symlink_metadata(p)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & mask == 0)
    };
    if let Some(x) = xdg.map(Path::new).filter(|x| x.is_absolute()) {
        if owned(x, 0o077) {
            return x.join("robotmk-daemon");
        }
    }
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    if owned(&run_user, 0o022) {
        return run_user.join("robotmk-daemon");
    }
    PathBuf::from(format!("/tmp/robotmk-daemon-{uid}"))
}

/// Opens the folder `path` for user `uid`, created 0700 if missing and `create` (`Ok(None)`:
/// missing and not to be created, so nobody holds a lock in it); refused (the words say why
/// and the fix) if it is a symlink or not a folder, belongs to another user, or its group or
/// others may write it: a lock there would be theirs to take or plant.
fn folder(path: &Path, uid: u32, create: bool) -> Result<Option<Folder>, String> {
    // Not "run without it": a second daemon of the config could then start beside this one
    // (the lock is what keeps it out), and a folder of another user's is theirs to steer.
    let refuse = |why: String| {
        format!(
            "the folder for the config's lock {p} {why}, so another user could take or plant the lock: no daemon runs the config without its lock, so that a second one cannot start beside it (fix: remove {p}, as root or as its owner; the daemon then creates it 0700 as uid {uid}{more})",
            p = path.display(),
            more = runtime_dir_hint(path, uid),
        )
    };
    if create {
        match rustix::fs::mkdir(path, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(format!(
                    "cannot create the folder for the config's lock {}: {e}: no daemon runs the config without its lock, so that a second one cannot start beside it (fix: make its parent folder writable for uid {uid}{})",
                    path.display(),
                    runtime_dir_hint(path, uid),
                ))
            }
        }
    }
    let fd = match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) if !create => return Ok(None),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
            let owner = std::fs::symlink_metadata(path)
                .map(|m| format!(" (owned by uid {})", m.uid()))
                .unwrap_or_default();
            return Err(refuse(format!("is a symlink or not a folder{owner}")));
        }
        Err(e) => {
            return Err(format!(
                "cannot open the folder for the config's lock {}: {e}: no daemon runs the config without its lock, so that a second one cannot start beside it",
                path.display()
            ))
        }
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("{}: {e}", path.display()))?;
    if st.st_uid != uid {
        return Err(refuse(format!(
            "belongs to uid {}, not to this daemon's user",
            st.st_uid
        )));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(refuse(format!(
            "may be written by its group or others (mode {:o})",
            st.st_mode & 0o7777
        )));
    }
    Ok(Some(Folder {
        fd,
        path: path.to_path_buf(),
    }))
}

/// For the last place of [`folder_for`], `/tmp`, which any user may plant: the fix of giving
/// the user a runtime dir of its own.
fn runtime_dir_hint(path: &Path, uid: u32) -> String {
    if path.starts_with("/tmp") {
        format!("; or give uid {uid} a runtime dir of its own, /run/user/{uid} (e.g. `loginctl enable-linger` for the user), or XDG_RUNTIME_DIR set to a 0700 folder of its own, for every caller that starts the daemon")
    } else {
        String::new()
    }
}

/// Why this user has no safe folder for config locks now (see [`folder`]), if it has none:
/// the words, for a ctrl or `status` with no daemon in their state dir, where a daemon
/// launched would not start.
pub(crate) fn folder_problem() -> Option<String> {
    own_folder(false).err()
}

/// This process's folder for config locks (see [`folder_for`]).
fn own_folder(create: bool) -> Result<Option<Folder>, String> {
    let uid = rustix::process::geteuid().as_raw();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR");
    folder(&folder_for(uid, xdg.as_deref()), uid, create)
}

/// The places other than `own` where a daemon of user `uid` may keep its config locks (see
/// [`folder_for`]). Which one a daemon takes depends on its environment and on the user's
/// session, which differ between callers and over time: logind removes `/run/user/<uid>` at
/// the user's last logout, and the daemon, taking its lock again, falls back to `/tmp`, where
/// a daemon started in the next session would not look. So a lock held in any of them keeps a
/// second daemon of the config out. Root has one place.
fn other_places(uid: u32, xdg: Option<&OsStr>, own: &Path) -> Vec<PathBuf> {
    if uid == 0 {
        return Vec::new();
    }
    let mut places = Vec::new();
    if let Some(x) = xdg.map(Path::new).filter(|x| x.is_absolute()) {
        places.push(x.join("robotmk-daemon"));
    }
    places.push(PathBuf::from(format!("/run/user/{uid}/robotmk-daemon")));
    places.push(PathBuf::from(format!("/tmp/robotmk-daemon-{uid}")));
    places.retain(|p| p != own);
    places.dedup();
    places
}

/// The lock file `name`, held by a daemon, in one of this user's other places (see
/// [`other_places`]). A folder there that is not safe (another user's) holds no lock of a
/// daemon of this user: passed over.
fn held_elsewhere(own: &Path, name: &str) -> Option<File> {
    let uid = rustix::process::geteuid().as_raw();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR");
    other_places(uid, xdg.as_deref(), own).iter().find_map(|p| {
        let dir = folder(p, uid, false).ok()??;
        let file = open_in(&dir, name, false).ok()??;
        held(&file).ok()?.then_some(file)
    })
}

/// The config file, opened as it is read, and its identity: the device and inode of the file
/// `path` leads to.
fn open_config(path: &Path) -> io::Result<(File, (u64, u64))> {
    let f = super::file::open_config(path)?;
    let m = f.metadata()?;
    Ok((f, (m.dev(), m.ino())))
}

fn config_id(path: &Path) -> io::Result<(u64, u64)> {
    open_config(path).map(|(_, id)| id)
}

fn lock_name((dev, ino): (u64, u64)) -> String {
    format!("config-{dev}-{ino}.lock")
}

/// True if `path` names the open `file` (not replaced, not removed).
/// The lock file goes with the lock: each config replaced by rename is a new identity and a
/// new file, so files left behind would pile up in the folder for as long as it lives. It
/// is removed while still locked: a daemon waiting on it then finds, once it has the lock,
/// that its path names no file any more and takes a new one (see `take_in`), so there are
/// never two holders. A daemon that dies leaves its file, harmless: not locked, free.
impl Drop for ConfigLock {
    fn drop(&mut self) {
        self.remove_file();
    }
}

impl ConfigLock {
    /// Removes the lock file while the lock is still held (see the `Drop` above): for a
    /// daemon that exits with its locks held until the kernel frees them (`app/daemon/start.rs`
    /// ends the process without dropping them).
    pub(crate) fn remove_file(&self) {
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Opens `name` in the folder: created (0600) and opened for writing for a daemon, an
/// existing one read-only for a probe (`Ok(None)`: none, so nobody holds it). Never through a
/// symlink, never blocking on a FIFO.
fn open_in(dir: &Folder, name: &str, create: bool) -> io::Result<Option<File>> {
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let flags = if create {
        flags | OFlags::RDWR | OFlags::CREATE
    } else {
        flags | OFlags::RDONLY
    };
    match rustix::fs::openat(&dir.fd, name, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => {
            let file = File::from(fd);
            if !file.metadata()?.is_file() {
                return Err(io::Error::other(format!(
                    "{} is not a regular file",
                    dir.path.join(name).display()
                )));
            }
            Ok(Some(file))
        }
        Err(rustix::io::Errno::NOENT) if !create => Ok(None),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot open {}: {e}", dir.path.join(name).display()),
        )),
    }
}

/// Takes the exclusive lock for a daemon of `state_dir`, polled until `patience` runs out (a
/// probe holds its shared lock for an instant): `Held` if another daemon holds it all that
/// time, `Nowhere` if this user has no folder for it that only it may write.
pub(crate) fn take(
    path: &Path,
    state_dir: &Path,
    patience: Duration,
) -> io::Result<TookConfig<ConfigLock>> {
    let config = open_config(path)?;
    let dir = match own_folder(true) {
        Ok(Some(d)) => d,
        // Created above, so there: `None` is for probes only.
        Ok(None) => {
            return Ok(TookConfig::Nowhere(
                "no folder for the config's lock".into(),
            ))
        }
        Err(why) => return Ok(TookConfig::Nowhere(why)),
    };
    let name = lock_name(config.1);
    sweep(&dir, &name);
    // Locked here first, then the other places looked at: of two daemons taking the lock in
    // two places at once, at least one sees the other's (both may, and both give up: no
    // daemon for a moment, never two).
    match take_in(&dir, config, path, state_dir, patience)? {
        TookConfig::Locked(lock) if held_elsewhere(&dir.path, &name).is_some() => {
            drop(lock);
            Ok(TookConfig::Held)
        }
        took => Ok(took),
    }
}

/// True for a name [`lock_name`] gives: `config-<digits>-<digits>.lock`.
fn is_lock_name(name: &OsStr) -> bool {
    let Some(mid) = name
        .as_bytes()
        .strip_prefix(b"config-")
        .and_then(|n| n.strip_suffix(b".lock"))
    else {
        return false;
    };
    let number = |p: &[u8]| !p.is_empty() && p.len() <= 20 && p.iter().all(u8::is_ascii_digit);
    let mut parts = mid.split(|&b| b == b'-');
    let two = (parts.next(), parts.next(), parts.next());
    matches!(two, (Some(dev), Some(ino), None) if number(dev) && number(ino))
}

/// How many names of the folder one sweep looks at: the folder is this user's alone, so this
/// only bounds the work of a start in a folder that grew huge.
const SWEEP_MAX: usize = 10_000;

/// Removes the lock files in the folder that nobody holds, but `keep` (the one the caller is
/// about to take): the `Drop` path removes a daemon's own file, but a daemon killed (SIGKILL,
/// a crash) leaves it behind, one per daemon, for as long as the folder lives (a test suite
/// left hundreds in `/run/robotmk-daemon/` per run). Only names of [`lock_name`]'s pattern,
/// only regular files opened without following a link ([`open_in`]). Each is locked first
/// and removed while still locked, as the `Drop` path does: a daemon that opened it and
/// waits for it finds, once it has the lock, that its path names no file any more and takes
/// a new one (see [`take_in`]); one that holds it keeps the sweep from taking it.
fn sweep(dir: &Folder, keep: &str) {
    // A listing of its own open file description (it reads from its offset).
    let Ok(fd) = rustix::fs::openat(
        &dir.fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(entries) = super::dir::entries_of(fd) else {
        return;
    };
    for e in entries.take(SWEEP_MAX).map_while(Result::ok) {
        if e.is_dir || e.name == keep || !is_lock_name(&e.name) {
            continue;
        }
        let Some(name) = e.name.to_str() else {
            continue;
        };
        let Ok(Some(file)) = open_in(dir, name, false) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        // Still the file locked (not removed and created again meanwhile).
        let here = rustix::fs::statat(&dir.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
        let same = file
            .metadata()
            .is_ok_and(|m| here.is_ok_and(|h| (h.st_dev, h.st_ino) == (m.dev(), m.ino())));
        if same {
            let _ = rustix::fs::unlinkat(&dir.fd, name, rustix::fs::AtFlags::empty());
        }
    }
}

fn take_in(
    dir: &Folder,
    (config_file, id): (File, (u64, u64)),
    path: &Path,
    state_dir: &Path,
    patience: Duration,
) -> io::Result<TookConfig<ConfigLock>> {
    let name = lock_name(id);
    let deadline = Instant::now() + patience;
    let failed = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot lock the config {}: {e}", path.display()),
        )
    };
    loop {
        // Created if missing, so there: `None` is for probes only.
        let file = open_in(dir, &name, true)
            .and_then(|f| f.ok_or_else(|| io::ErrorKind::NotFound.into()))
            .map_err(failed)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if !super::file::lock_within(&file, left).map_err(failed)? {
            return Ok(TookConfig::Held);
        }
        // Removed (or replaced) after this open: the lock is on a file no probe finds.
        if !same_file(&file, &dir.path.join(&name)) {
            if Instant::now() >= deadline {
                return Ok(TookConfig::Held);
            }
            continue;
        }
        let mut text = format!("{}\n", std::process::id()).into_bytes();
        text.extend_from_slice(state_dir.as_os_str().as_bytes());
        file.set_len(0)
            .and_then(|()| file.write_all_at(&text, 0))
            .map_err(failed)?;
        return Ok(TookConfig::Locked(ConfigLock {
            file,
            _config_file: config_file,
            config: id,
            path: dir.path.join(&name),
        }));
    }
}

/// The lock file of `path`'s config, opened read-only, that a daemon of this user holds: in
/// this process's own place, else in one of the others ([`other_places`]); `Err` for an own
/// folder that cannot be trusted (its words).
fn probe_file(path: &Path) -> io::Result<Option<File>> {
    let name = lock_name(config_id(path)?);
    let own = match own_folder(false) {
        Ok(d) => d,
        Err(why) => return Err(io::Error::other(why)),
    };
    if let Some(dir) = &own {
        if let Some(file) = open_in(dir, &name, false)? {
            if held(&file)? {
                return Ok(Some(file));
            }
        }
    }
    let own = match own {
        Some(d) => d.path,
        None => folder_for(
            rustix::process::geteuid().as_raw(),
            std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
        ),
    };
    Ok(held_elsewhere(&own, &name))
}

/// True if `file` is locked exclusively (a daemon holds it).
fn held(file: &File) -> io::Result<bool> {
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(false)
        }
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// True if a daemon of this user holds the config's lock.
pub(crate) fn is_held(path: &Path) -> io::Result<bool> {
    match probe_file(path)? {
        Some(f) => held(&f).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot probe the lock of {}: {e}", path.display()),
            )
        }),
        None => Ok(false),
    }
}

/// How long a probe waits for a daemon that has just locked the file to write who it is.
const WRITE_PATIENCE: Duration = Duration::from_millis(200);

/// Who holds the config's lock, as its lock file says; `None` if nobody does, or it cannot be
/// read.
pub(crate) fn holder(path: &Path) -> Option<Holder> {
    let file = probe_file(path).ok()??;
    let deadline = Instant::now() + WRITE_PATIENCE;
    loop {
        if !held(&file).ok()? {
            return None;
        }
        if let Some(h) = parse(&read_all(&file)?) {
            return Some(h);
        }
        // Locked, not yet written: a daemon starting.
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The lock file's text (a PID and a path: small; a longer file is cut).
fn read_all(file: &File) -> Option<Vec<u8>> {
    let mut text = Vec::new();
    let mut f = file;
    let _ = io::Seek::rewind(&mut f);
    f.take(8192).read_to_end(&mut text).ok()?;
    Some(text)
}

/// `pid\nstate dir`, as [`take_in`] writes it.
fn parse(text: &[u8]) -> Option<Holder> {
    let nl = text.iter().position(|&b| b == b'\n')?;
    let pid = std::str::from_utf8(&text[..nl]).ok()?.parse().ok()?;
    let dir = &text[nl + 1..];
    Some(Holder {
        pid,
        state_dir: (!dir.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(dir))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn one_holder_probes_see_it_and_its_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, "[daemon]\n").unwrap();
        let locks = dir.path().join("locks");
        let f = folder(&locks, me(), true).unwrap().unwrap();
        let probe = |p: &Path| {
            let name = lock_name(config_id(p).unwrap());
            open_in(&f, &name, false)
                .unwrap()
                .is_some_and(|f| held(&f).unwrap())
        };
        assert!(!probe(&cfg));
        let state = dir.path().join("state\nwith a line break");
        let TookConfig::Locked(lock) =
            take_in(&f, open_config(&cfg).unwrap(), &cfg, &state, Duration::ZERO).unwrap()
        else {
            panic!("first take")
        };
        assert!(probe(&cfg));
        let text = read_all(&lock.file).unwrap();
        assert_eq!(
            parse(&text),
            Some(Holder {
                pid: std::process::id(),
                state_dir: Some(state.clone()),
            })
        );
        // A hard link is the same file: the same lock, held.
        let link = dir.path().join("link.toml");
        std::fs::hard_link(&cfg, &link).unwrap();
        assert!(probe(&link));
        assert!(matches!(
            take_in(
                &f,
                open_config(&link).unwrap(),
                &link,
                dir.path(),
                Duration::from_millis(20)
            )
            .unwrap(),
            TookConfig::Held
        ));
        // A symlink to the config leads to the locked file.
        let sym = dir.path().join("sym.toml");
        std::os::unix::fs::symlink(&cfg, &sym).unwrap();
        assert!(lock.still_names(&sym));
        // The lock file removed (a cleaner): the daemon takes a new one at its next look.
        std::fs::remove_file(&lock.path).unwrap();
        assert!(!lock.still_names(&cfg));
        let TookConfig::Locked(lock) =
            take_in(&f, open_config(&cfg).unwrap(), &cfg, &state, Duration::ZERO).unwrap()
        else {
            panic!("taken again")
        };
        assert!(lock.still_names(&cfg));
        // Replaced by rename: the path names another file, which nobody holds.
        let new = dir.path().join("c.toml.new");
        std::fs::write(&new, "[daemon]\n").unwrap();
        std::fs::rename(&new, &cfg).unwrap();
        assert!(!lock.still_names(&cfg));
        assert!(!probe(&cfg));
        // Let go, its file goes with it: none piles up per identity the config had.
        let gone = lock.path.clone();
        assert!(gone.exists());
        drop(lock);
        assert!(!gone.exists(), "the lock file stayed behind");
        // A stale file is free.
        assert!(!probe(&link));
    }

    #[test]
    fn a_lock_in_any_place_of_the_user_counts() {
        assert!(other_places(0, None, Path::new("/run/robotmk-daemon")).is_empty());
        let own = Path::new("/run/user/7/robotmk-daemon");
        assert_eq!(
            other_places(7, Some(OsStr::new("/x")), own),
            [
                PathBuf::from("/x/robotmk-daemon"),
                PathBuf::from("/tmp/robotmk-daemon-7")
            ]
        );
        assert_eq!(
            other_places(
                7,
                Some(OsStr::new("relative")),
                Path::new("/tmp/robotmk-daemon-7")
            ),
            [PathBuf::from("/run/user/7/robotmk-daemon")]
        );
    }

    #[test]
    fn a_sweep_removes_only_lock_files_nobody_holds() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let f = folder(&locks, me(), true).unwrap().unwrap();
        let at = |n: &str| locks.join(n);
        std::fs::write(at("config-1-2.lock"), "").unwrap();
        std::fs::write(at("config-1-3.lock"), "").unwrap();
        let held = File::open(at("config-1-3.lock")).unwrap();
        held.lock().unwrap();
        std::fs::write(at("config-1-4.lock"), "").unwrap();
        for other in [
            "config-1-x.lock",
            "config-1-2-3.lock",
            "config-1.lock",
            "other",
        ] {
            std::fs::write(at(other), "").unwrap();
        }
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, at("config-1-5.lock")).unwrap();
        rustix::fs::mkfifoat(&f.fd, "config-1-6.lock", Mode::from_raw_mode(0o600)).unwrap();
        std::fs::create_dir(at("config-1-7.lock")).unwrap();
        sweep(&f, "config-1-4.lock");
        assert!(!at("config-1-2.lock").exists(), "a stale lock file stayed");
        for stays in [
            "config-1-3.lock",
            "config-1-4.lock",
            "config-1-x.lock",
            "config-1-2-3.lock",
            "config-1.lock",
            "other",
            "config-1-6.lock",
            "config-1-7.lock",
        ] {
            assert!(at(stays).exists(), "{stays} was removed");
        }
        assert!(std::fs::symlink_metadata(at("config-1-5.lock")).is_ok());
        assert!(target.exists());
        assert!(is_lock_name(OsStr::new(&lock_name((u64::MAX, 0)))));
    }

    #[test]
    fn a_folder_others_could_write_or_own_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Missing: created 0700 when asked, else none (nobody holds a lock in it).
        let p = dir.path().join("locks");
        assert!(folder(&p, me(), false).unwrap().is_none());
        assert!(folder(&p, me(), true).unwrap().is_some());
        let mode = std::fs::symlink_metadata(&p).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Group or others may write it.
        for m in [0o770, 0o702, 0o1777] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
            let e = folder(&p, me(), true).err().expect("refused");
            assert!(e.contains("may be written by its group or others"), "{e}");
            assert!(
                e.contains("no daemon runs the config without its lock"),
                "{e}"
            );
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(folder(&p, me(), true).unwrap().is_some());
        // Another user's: the uid asked for is not the owner.
        let e = folder(&p, me() + 1, true).err().expect("refused");
        assert!(e.contains(&format!("belongs to uid {}", me())), "{e}");
        // A symlink, even to a good folder; and a file.
        let sym = dir.path().join("sym");
        std::os::unix::fs::symlink(&p, &sym).unwrap();
        let e = folder(&sym, me(), true).err().expect("refused");
        assert!(
            e.contains("is a symlink or not a folder (owned by uid"),
            "{e}"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = folder(&file, me(), true).err().expect("refused");
        assert!(e.contains("is a symlink or not a folder"), "{e}");
    }

    #[test]
    fn root_runs_in_run_and_others_in_their_own_folders() {
        assert_eq!(folder_for(0, None), Path::new("/run/robotmk-daemon"));
        assert_eq!(
            folder_for(0, Some(OsStr::new("/tmp"))),
            Path::new("/run/robotmk-daemon")
        );
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().join("xdg");
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
        // An uid with no /run/user folder: a test's own, far from any real one.
        let uid = me();
        if uid != 0 {
            assert_eq!(
                folder_for(uid, Some(xdg.as_os_str())),
                xdg.join("robotmk-daemon")
            );
        }
        // Not the user's own 0700 runtime dir (here: another uid's, or group-readable):
        // the next place.
        let other = 4_000_000_000;
        assert_eq!(
            folder_for(other, Some(xdg.as_os_str())),
            Path::new("/tmp/robotmk-daemon-4000000000")
        );
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o750)).unwrap();
        if uid != 0 {
            assert_ne!(
                folder_for(uid, Some(xdg.as_os_str())),
                xdg.join("robotmk-daemon")
            );
        }
        assert_eq!(
            folder_for(other, Some(OsStr::new("relative"))),
            Path::new("/tmp/robotmk-daemon-4000000000")
        );
    }
}
