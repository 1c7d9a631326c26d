//! The state dir: its layout, and the one way files in it are written.
//!
//! ```text
//! <state_dir>/                 mode 0700, created by whoever comes first (ctrl or daemon)
//!   daemon.lock                held (OS file lock) by the daemon for its whole life
//!   start.lock                 held briefly by a ctrl that launches a daemon, so 50 racing
//!                              ctrls launch one daemon, not 50
//!   starting                   from a launch until the new daemon holds its lock
//!   heartbeat                  its mtime is touched by every ctrl whose previous beat the
//!                              daemon answered (the dead man switch); its content is
//!                              what ctrl saw of the agent (`agent_mode::Beat`: a sync
//!                              beat carries the last cached one with its wall time)
//!   heartbeat-ack              its mtime is set by the daemon to the heartbeat mtime it saw
//!                              last: ctrl's proof that the daemon still answers (liveness)
//!   restart-note               why ctrl ended the previous daemon; logged and removed by
//!                              the next one
//!   start-error                why the last daemon launched did not start (its config:
//!                              a user that is not there); read by the ctrl that launched
//!                              it, removed by a daemon that starts
//!   starts.json                the daemons of this instance: when each started and how it
//!                              ended (`daemon::lifecycle`), written only by the daemon
//!   daemon.stderr              the daemon's stderr: what a panic, an abort, a stack
//!                              overflow or a fatal signal leaves, read by the next daemon
//!   stop-request               written by `stop`, claimed (renamed, then read) by the daemon
//!   requests/<id>.json         `run-once` asking the daemon to run a job now; the daemon
//!                              claims it, or answers `<id>.rejected` with the reason
//!   status.json                daemon + per-job summary, written only by the daemon
//!   state-error                4 KiB reserved at start; overwritten in place with the
//!                              message when state cannot be written (a full disk)
//!   daemon.log[.1..]           the daemon's log, rotated by size, written only by the daemon
//!   jobs/<job>/latest.json     the job's latest finished result
//!   jobs/<job>/runs/<run_id>/  one folder per run: record.json, stdout.log, stderr.log, and
//!                              whatever the runner writes to {run_dir}
//! ```
//!
//! Every JSON file is replaced atomically (unique temp file in the same folder, optional
//! fsync, rename), so a reader sees the old or the new document, never a torn one.

pub(crate) mod record;

use crate::service::sys::file;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Paths inside one instance's state dir.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    pub(crate) root: PathBuf,
}

impl StateDir {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }
    /// Left by the ctrl that launched a daemon until that daemon holds its lock: a daemon slow
    /// to come up (a cold binary, a virus scanner) is not launched a second time.
    pub(crate) fn starting_file(&self) -> PathBuf {
        self.root.join("starting")
    }
    pub(crate) fn start_lock_file(&self) -> PathBuf {
        self.root.join("start.lock")
    }
    pub(crate) fn heartbeat_file(&self) -> PathBuf {
        self.root.join("heartbeat")
    }
    pub(crate) fn heartbeat_ack_file(&self) -> PathBuf {
        self.root.join("heartbeat-ack")
    }
    pub(crate) fn restart_note_file(&self) -> PathBuf {
        self.root.join("restart-note")
    }
    /// Why the last daemon launched could not start ([`crate::model::request::StartFailure`]).
    pub(crate) fn start_error_file(&self) -> PathBuf {
        self.root.join("start-error")
    }
    /// The daemons of this instance and how each ended (`daemon::lifecycle`).
    pub(crate) fn starts_file(&self) -> PathBuf {
        self.root.join("starts.json")
    }
    /// The daemon's stderr (a detached daemon's; see `daemon::lifecycle`).
    pub(crate) fn daemon_stderr_file(&self) -> PathBuf {
        self.root.join("daemon.stderr")
    }
    pub(crate) fn stop_file(&self) -> PathBuf {
        self.root.join("stop-request")
    }
    pub(crate) fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }
    /// The agent output pre-rendered by the daemon for ctrl's fast path ([`crate::logic::ctrl_view`]).
    pub(crate) fn ctrl_view_file(&self) -> PathBuf {
        self.root.join("ctrl-view")
    }
    pub(crate) fn alert_file(&self) -> PathBuf {
        self.root.join("state-error")
    }
    pub(crate) fn log_file(&self) -> PathBuf {
        self.root.join("daemon.log")
    }
    pub(crate) fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
    pub(crate) fn job_dir(&self, job: &str) -> PathBuf {
        self.jobs_dir().join(job)
    }
    pub(crate) fn runs_dir(&self, job: &str) -> PathBuf {
        self.job_dir(job).join("runs")
    }
    pub(crate) fn latest_file(&self, job: &str) -> PathBuf {
        self.job_dir(job).join("latest.json")
    }
    /// Where `run-once` leaves a request for the daemon to run a job now
    /// (`<id>.json`), and where the daemon says why it declined one (`<id>.rejected`).
    pub(crate) fn requests_dir(&self) -> PathBuf {
        self.root.join("requests")
    }

    /// Creates the state dir (mode 0700) if missing and checks it is a directory.
    pub(crate) fn ensure(&self) -> io::Result<()> {
        create_private_dir(&self.root).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create state dir {}: {e}", self.root.display()),
            )
        })
    }

    /// Refreshes the heartbeat: sets the file's mtime to now (creating it, 0600, if needed).
    pub(crate) fn touch_heartbeat(&self) -> io::Result<()> {
        file::open_or_create(&self.heartbeat_file())?.set_modified(SystemTime::now())
    }

    /// The daemon's answer to the heartbeat: gives the ack file the heartbeat mtime `seen`.
    /// An mtime, not content: setting it is one atomic metadata update that needs no free
    /// space, and ctrl reads it with a single `stat`.
    pub(crate) fn ack_heartbeat(&self, seen: SystemTime) -> io::Result<()> {
        file::open_or_create(&self.heartbeat_ack_file())?.set_modified(seen)
    }

    /// The heartbeat mtime the daemon answered last, if the ack is a regular file.
    pub(crate) fn heartbeat_ack(&self) -> Option<SystemTime> {
        file::plain_metadata(&self.heartbeat_ack_file())?
            .modified()
            .ok()
    }

    /// The heartbeat's mtime, if it is a regular file.
    pub(crate) fn heartbeat_mtime(&self) -> Option<SystemTime> {
        file::plain_metadata(&self.heartbeat_file())?
            .modified()
            .ok()
    }

    /// Refreshes the heartbeat and records in its content what ctrl saw of the agent (see
    /// [`crate::logic::agent_mode`]). The content is replaced, atomically, only when it changes;
    /// otherwise only the mtime is set, as for every beat: ctrl stays one small read slower.
    /// A sync beat carries the last cached one over (see [`crate::logic::agent_mode::recorded`]).
    pub(crate) fn beat(&self, beat: &crate::logic::agent_mode::Beat) -> io::Result<()> {
        let path = self.heartbeat_file();
        let old = file::read(&path, file::cap::SMALL, file::Links::Refuse);
        let data = self.recorded(beat, old.as_deref().ok())?;
        match old {
            Ok(old) if old == data => self.touch_heartbeat(),
            Ok(_) => write_atomic(&path, &data, Durability::NoSync),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomic(&path, &data, Durability::NoSync)
            }
            Err(e) => Err(e),
        }
    }

    /// Records what ctrl saw of the agent without beating: the content is replaced when it
    /// changed, and the mtime is set back to the beat the daemon has not answered yet (see
    /// [`crate::logic::liveness`]). The daemon reads the content when it sees that beat.
    pub(crate) fn note_beat(&self, beat: &crate::logic::agent_mode::Beat) -> io::Result<()> {
        let Some(unanswered) = self.heartbeat_mtime() else {
            return self.beat(beat);
        };
        let path = self.heartbeat_file();
        let old = file::read(&path, file::cap::SMALL, file::Links::Refuse);
        let data = self.recorded(beat, old.as_deref().ok())?;
        match old {
            Ok(old) if old == data => Ok(()),
            _ => {
                write_atomic(&path, &data, Durability::NoSync)?;
                file::open_or_create(&path)?.set_modified(unanswered)
            }
        }
    }

    /// The heartbeat's content for ctrl's `beat`, given its `old` content (and its mtime, the
    /// previous beat's wall time): a cached beat it replaces stays known to later daemons.
    fn recorded(
        &self,
        beat: &crate::logic::agent_mode::Beat,
        old: Option<&[u8]>,
    ) -> io::Result<Vec<u8>> {
        let previous = old
            .and_then(|b| serde_json::from_slice(b).ok())
            .zip(self.heartbeat_mtime().map(unix_ms));
        let beat =
            crate::logic::agent_mode::recorded(beat, previous.as_ref().map(|(b, t)| (b, *t)));
        let mut data = serde_json::to_vec(&beat).map_err(io::Error::other)?;
        data.push(b'\n');
        Ok(data)
    }

    /// What the last ctrl recorded in the heartbeat (the synchronous mode when it says
    /// nothing readable, as a heartbeat touched by an older ctrl or by `start`).
    pub(crate) fn read_beat(&self) -> crate::logic::agent_mode::Beat {
        file::read(
            &self.heartbeat_file(),
            file::cap::SMALL,
            file::Links::Refuse,
        )
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
    }
}

/// A wall time in Unix milliseconds (before 1970: negative), as the heartbeat records it.
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

/// Size of the reserved `state-error` file.
const ALERT_SIZE: usize = 4096;

/// Reserves the `state-error` file (blank, with its blocks written) while there is space, so a
/// full disk can still be reported: overwriting written blocks needs no new ones.
pub(crate) fn reserve_alert(st: &StateDir) -> io::Result<()> {
    let mut f = file::open_or_create(&st.alert_file())?;
    f.write_all(&[b'\n'; ALERT_SIZE])?;
    f.sync_all()
}

/// Overwrites the reserved `state-error` file in place with `msg` (blank to clear it). Not
/// atomic, unlike every other file here: it is the one write that must work without space.
pub(crate) fn write_alert(st: &StateDir, msg: Option<&str>) -> io::Result<()> {
    let mut buf = vec![b'\n'; ALERT_SIZE];
    if let Some(m) = msg {
        let m = m.as_bytes();
        let n = m.len().min(ALERT_SIZE - 1);
        buf[..n].copy_from_slice(&m[..n]);
    }
    file::open_write(&st.alert_file())?.write_all(&buf)
}

/// The message in the `state-error` file, if any.
pub(crate) fn read_alert(st: &StateDir) -> Option<String> {
    let text = match file::read_string(&st.alert_file(), ALERT_SIZE as u64, file::Links::Refuse) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        // Not the daemon's reserved file: say so, without passing its content on.
        Err(e) => return Some(e.to_string()),
    };
    // The file keeps its reserved size padded with line ends: trimmed as bytes first (the
    // padding is ASCII), which ctrl does on every agent call; Unicode's trim, 15
    // instructions a character, then has only the message to look at.
    let t = text.trim_ascii().trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Creates `dir` and its parents; the last component gets mode 0700 on Unix. For the state
/// dir itself, which an admin may place behind a symlink (its owner and mode are checked).
///
/// Parents it creates let others pass, not list (0711): the users' tree beside the state dir
/// (`<state_dir>.users`, see `daemon::workdir`) must be reachable by the users that jobs and
/// environment builds run as, and a 0700 parent (what `recursive(true)` made) shut them out of
/// the default layout. Parents that exist are the admin's and keep their modes.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .skip(1)
        .take_while(|p| !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err())
        .collect();
    for p in missing.into_iter().rev() {
        crate::service::sys::public_dir(p, false)?;
    }
    match private_dir_builder().create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        r => r,
    }
}

/// Creates the folders `rel` below the state dir one level at a time, refusing any level that
/// is a symlink: a link planted in the state dir must not redirect the daemon's writes.
pub(crate) fn create_state_subdirs(root: &Path, rel: &[&str]) -> io::Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for part in rel {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symlink; refusing to write through it (remove it)",
                        dir.display()
                    ),
                ))
            }
            Ok(m) if m.is_dir() => {}
            _ => match private_dir_builder().create(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            },
        }
    }
    Ok(dir)
}

/// A `DirBuilder` for folders only the owner can enter (0700 on Unix).
pub(crate) fn private_dir_builder() -> fs::DirBuilder {
    let mut b = fs::DirBuilder::new();
    crate::service::sys::private_dir(&mut b);
    b
}

/// Whether to force the data to disk before the rename. Final run records and latest results
/// are synced (they must survive a power loss); frequently rewritten summaries are not, since
/// the daemon rebuilds them from the records at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    Sync,
    NoSync,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` atomically with `data`.
///
/// The temp file is created with `create_new` (never follows a planted symlink and never
/// shares a name with another writer), in the target's own folder (renames across file
/// systems fail).
pub(crate) fn write_atomic(path: &Path, data: &[u8], durability: Durability) -> io::Result<()> {
    replace(path, durability, |f| f.write_all(data))
}

/// [`write_atomic`] with the content written by `fill` (buffered), so a large file is never
/// held in memory whole. An error from `fill` leaves `path` as it was.
pub(crate) fn write_atomic_with(
    path: &Path,
    durability: Durability,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    replace(path, durability, |f| {
        // std's 8 KiB: most files written here (records, latest results) are smaller, and a
        // larger buffer is a larger block taken from and given back to the heap per write.
        let mut w = io::BufWriter::new(f);
        fill(&mut w)?;
        w.flush()
    })
}

fn replace(
    path: &Path,
    durability: Durability,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = private_file_options().open(&tmp)?;
        fill(&mut f)?;
        if durability == Durability::Sync {
            f.sync_all()?;
        }
        drop(f);
        rename_replacing(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
}

/// Writes `value` as JSON over the file at `path` in place, within the blocks it has: the one
/// write a full disk allows (as [`write_alert`] does). Not atomic, so only where the other
/// choice is to lose it: a daemon exiting with final records a full disk kept unwritten
/// writes each over its run's journal. Shorter than the old text, it is padded with spaces
/// (JSON allows them) to the old length. Fails if the file is not there or has no room.
pub(crate) fn overwrite_json_in_place<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> io::Result<()> {
    let mut data = serde_json::to_vec(value).map_err(io::Error::other)?;
    data.push(b'\n');
    let mut f = file::open_write(path)?;
    let room = file::room(&f)?;
    if data.len() as u64 > room {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{}: {} bytes do not fit in the {room} it has",
                path.display(),
                data.len()
            ),
        ));
    }
    let old = f.metadata()?.len();
    if (data.len() as u64) < old {
        data.resize(usize::try_from(old).unwrap_or(data.len()), b' ');
    }
    f.write_all(&data)?;
    f.sync_all()
}

/// Serializes `value` as JSON and replaces `path` atomically.
pub(crate) fn write_json<T: serde::Serialize>(
    path: &Path,
    value: &T,
    durability: Durability,
) -> io::Result<()> {
    write_atomic_with(path, durability, |w| {
        serde_json::to_writer(&mut *w, value)?;
        w.write_all(b"\n")
    })
}

/// Reads and parses a JSON file in the state dir (see [`file`]: no symlink, no FIFO, at most
/// [`file::cap::STATUS`] bytes). `Ok(None)` when it does not exist.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match file::read(path, file::cap::STATUS, file::Links::Refuse) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a valid document: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// Moves a corrupt file aside (to `<name>.corrupt-<unix time>`) so it is kept for inspection
/// and no longer read; returns the new path.
pub(crate) fn quarantine(path: &Path) -> io::Result<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = path.with_file_name(format!("{name}.corrupt-{stamp}"));
    fs::rename(path, &aside)?;
    Ok(aside)
}

/// Options for a new file only the owner can read (0600 on Unix).
pub(crate) fn private_file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    crate::service::sys::private_file(&mut o);
    o
}

/// Opens (creating) a file for appending, 0600; never through a symlink or into a FIFO.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    file::open_append(path)
}

/// Gives the file `from` the name `to` as well (a hard link), replacing `to` atomically: a
/// reader sees the old file or the new one. The link is made under a unique temp name in
/// `to`'s folder and renamed over it, like [`write_atomic`]'s temp file.
pub(crate) fn link_replacing(from: &Path, to: &Path) -> io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let name = to.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::hard_link(from, &tmp)?;
    let renamed = rename_replacing(&tmp, to);
    // A rename between two names of one file does nothing and leaves both: `to` already was
    // this file. The temp name goes either way (after a rename it is gone already).
    let _ = fs::remove_file(&tmp);
    renamed.map_err(|e| io::Error::new(e.kind(), format!("cannot link {}: {e}", to.display())))
}

fn rename_replacing(from: &Path, to: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match fs::rename(from, to) {
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied
                    && crate::service::sys::rename_denied_is_transient()
                    && tries < 50 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_parents_of_a_new_state_dir_let_others_pass() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let state = dir.path().join("base/robotmk-daemon/system");
        create_private_dir(&state).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("base")), 0o711);
        assert_eq!(mode(&dir.path().join("base/robotmk-daemon")), 0o711);
        assert_eq!(mode(&state), 0o700);
        // An existing parent is the admin's: left as it is.
        fs::set_permissions(dir.path().join("base"), fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&dir.path().join("base/other")).unwrap();
        assert_eq!(mode(&dir.path().join("base")), 0o750);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one", Durability::Sync).unwrap();
        write_atomic(&p, b"two", Durability::NoSync).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_does_not_follow_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let p = dir.path().join("a.json");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomic(&p, b"new", Durability::NoSync).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
    }

    #[test]
    fn quarantine_moves_aside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        fs::write(&p, b"{garbage").unwrap();
        assert!(read_json::<serde_json::Value>(&p).is_err());
        let aside = quarantine(&p).unwrap();
        assert!(!p.exists());
        assert_eq!(fs::read(aside).unwrap(), b"{garbage");
    }

    #[test]
    fn ctrl_records_the_mode_in_the_heartbeat() {
        use crate::logic::agent_mode::{detect, Beat};
        use std::ffi::OsStr;
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        assert_eq!(st.read_beat(), Beat::default(), "no heartbeat: sync");
        let cached = detect(OsStr::new("300/robotmk_daemon_ctrl"));
        st.beat(&cached).unwrap();
        assert_eq!(st.read_beat(), cached);
        let ino = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        let before = ino(&st.heartbeat_file());
        std::thread::sleep(std::time::Duration::from_millis(20));
        st.beat(&cached).unwrap();
        assert!(ino(&st.heartbeat_file()) > before, "a beat moves the mtime");
        // A sync beat (by hand, or the agent moved) carries the cached beat it replaced, with
        // that beat's wall time, for a daemon started later.
        let cached_at = unix_ms(ino(&st.heartbeat_file()));
        st.beat(&Beat::default()).unwrap();
        let sync = st.read_beat();
        assert_eq!(sync.cache_interval_s, None, "sync");
        let carried = sync.last_cached.clone().expect("the cached beat carried");
        assert_eq!(
            (carried.cache_interval_s, carried.source.as_deref()),
            (300, Some("plugins/300/"))
        );
        assert_eq!(carried.at_unix_ms, cached_at);
        // Later sync beats (and notes) carry it on unchanged.
        let bytes = || std::fs::read(st.heartbeat_file()).unwrap();
        let written = bytes();
        st.beat(&Beat::default()).unwrap();
        st.note_beat(&Beat::default()).unwrap();
        assert_eq!(bytes(), written);
        // A cached beat carries nothing: it is the mode.
        st.note_beat(&cached).unwrap();
        assert_eq!(st.read_beat(), cached);
        // Heartbeats of older builds read as they did: what they say, with nothing carried.
        std::fs::write(
            st.heartbeat_file(),
            b"{\"cache_interval_s\":60,\"source\":\"plugins/60/\"}\n",
        )
        .unwrap();
        assert_eq!(st.read_beat(), detect(OsStr::new("60/x")));
        std::fs::write(st.heartbeat_file(), b"{}\n").unwrap();
        assert_eq!(st.read_beat(), Beat::default());
        // A heartbeat touched by an older ctrl (empty) reads as sync.
        std::fs::write(st.heartbeat_file(), b"").unwrap();
        assert_eq!(st.read_beat(), Beat::default());
    }
}
