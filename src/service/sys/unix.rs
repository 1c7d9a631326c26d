//! Unix side of [`crate::service::sys`].

use rustix::process::Signal;
use std::io;
use std::path::PathBuf;

/// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22), or `None`
/// if no such process exists. Outside Linux (no procfs) only existence is known; `Some(0)`.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    if pid == 0 || pid > i32::MAX as u32 {
        return None;
    }
    let mut buf = [0u8; STAT_BUF];
    match read_stat(pid, &mut buf) {
        Ok(stat) => {
            // Field 3 is the first one after the command name, so field 22 is index 19.
            let mut fields = stat_fields(stat)?;
            if fields.next() == Some("Z") {
                return None; // a zombie has ended; it only waits to be reaped
            }
            fields.nth(18)?.parse().ok()
        }
        Err(_) if !procfs() => match rustix::process::test_kill_process(pid_of(pid)?) {
            Ok(()) => Some(0),
            Err(e) => (e == rustix::io::Errno::PERM).then_some(0),
        },
        Err(_) => None,
    }
}

/// Asks the daemon with this PID to stop by sending SIGTERM (its handler reads the
/// stop-request file to learn whether to drain or end runs now).
pub(crate) fn signal_stop(pid: u32) -> io::Result<()> {
    kill(pid, Signal::TERM)
}

/// Tells the daemon with this (verified) PID to stop now, ending its runs (SIGUSR2): the
/// way `stop --now` reaches it when the stop-request file cannot be written (a full disk),
/// since SIGTERM without a request means a polite stop.
pub(crate) fn signal_stop_now(pid: u32) -> io::Result<()> {
    kill(pid, Signal::USR2)
}

/// Tells the daemon with this (verified) PID that a `run-once` request waits (SIGUSR1), so
/// it starts the run at once instead of at its next look.
pub(crate) fn signal_requests(pid: u32) {
    let _ = kill(pid, Signal::USR1);
}

/// A PID as rustix takes it: never 0 (this process's group) nor out of range.
fn pid_of(pid: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)
}

/// kill(2) on a PID the caller verified (by start time, or with `is_instance_daemon`).
fn kill(pid: u32, sig: Signal) -> io::Result<()> {
    let pid = pid_of(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::kill_process(pid, sig)?)
}

/// Ends the process `pid` at once (SIGKILL: a stopped or hung process cannot ignore it), if
/// it still is the one that started at `start`. The start time is checked through a pidfd
/// taken first, so a PID recycled between the caller's check and the kill is never hit.
pub(crate) fn kill_process(pid: u32, start: Option<u64>) -> io::Result<()> {
    let not_it = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} has exited or is another process now"),
        )
    };
    let Some(p) = pid_of(pid) else {
        return Err(not_it());
    };
    let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(e) if e != rustix::io::Errno::NOSYS => return Err(e.into()),
        // Kernels before 5.3: the check and the kill are microseconds apart.
        Err(_) => {
            if start.is_none() || process_start_time(pid) != start {
                return Err(not_it());
            }
            return kill(pid, Signal::KILL);
        }
    };
    if start.is_none() || process_start_time(pid) != start {
        return Err(not_it());
    }
    Ok(rustix::process::pidfd_send_signal(&fd, Signal::KILL)?)
}

/// Files the daemon creates are private to its user (0700 dirs, 0600 files).
pub(crate) fn set_private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Closes every descriptor above stderr that the daemon may have inherited from ctrl's parent
/// (the agent's socket, say), so the agent sees EOF as soon as ctrl exits. Called first thing
/// in a detached daemon, before it opens anything of its own.
pub(crate) fn close_inherited_fds() {
    // SAFETY: close_range on [3, MAX] closes descriptors this process has not opened itself
    // yet (called before any other file is opened).
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if r == 0 {
        return;
    }
    // Kernels before 5.9: close what /proc lists (the listing's own fd fails harmlessly).
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<i32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect();
        for fd in fds {
            // SAFETY: see above.
            unsafe {
                libc::close(fd);
            }
        }
    }
}

/// Forwards SIGTERM/SIGINT (stop) and SIGHUP (reload) to `f`, from a thread that sleeps in a
/// blocking read until a signal arrives (no periodic wake-ups).
pub(crate) fn forward_control_signals(
    f: impl Fn(super::ControlSignal) + Send + 'static,
) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2])?;
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for sig in signals.forever() {
                f(match sig {
                    SIGHUP => super::ControlSignal::Reload,
                    SIGUSR1 => super::ControlSignal::Requests,
                    SIGUSR2 => super::ControlSignal::StopNow,
                    _ => super::ControlSignal::Stop,
                });
            }
        })?;
    Ok(())
}

/// The process group of a runner whose environment holds `key=value` (its ROBOTMK_RUN_DIR),
/// with the leader's start time: finds a run the previous daemon spawned but died before
/// journalling its PID. A `/proc` scan, done only in that rare case at start-up.
pub(crate) fn find_run_by_env(key: &str, value: &str) -> Option<(u32, Option<u64>)> {
    let mut found: Option<(u32, Option<u64>)> = None;
    for pid in processes_with_env(key, value) {
        let Some(pgid) = process_group(pid) else {
            continue;
        };
        if pgid == pid {
            return Some((pid, process_start_time(pid)));
        }
        found.get_or_insert((pgid, None));
    }
    found
}

/// Every live process (but this one) whose environment holds `key=value`: a scan of /proc,
/// for rare moments (ending a run's tree, recovery), never for polling.
pub(crate) fn processes_with_env(key: &str, value: &str) -> Vec<u32> {
    let needle = format!("{key}={value}").into_bytes();
    let me = std::process::id();
    let Ok(dir) = super::dir::entries(std::path::Path::new("/proc")) else {
        return Vec::new();
    };
    // One buffer for all the environments read: a scan reads every process's.
    let mut buf = Vec::new();
    dir.flatten()
        .filter_map(|e| e.name.to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && env_holds(pid, &needle, &mut buf))
        .collect()
}

/// Whether process `pid` has `needle` (`KEY=value`) in its environment.
pub(crate) fn has_env(pid: u32, needle: &[u8]) -> bool {
    env_holds(pid, needle, &mut Vec::new())
}

/// The most of a process's environment a scan reads. Any local user can run thousands of
/// processes with environments of megabytes (copy-on-write, cheap for them): read whole, one
/// scan — on the daemon's loop, at every run end that ends processes — took seconds to
/// minutes. A run's processes carry a few KiB; a process past this whose tag lies beyond it
/// is still found by the run's cgroup or process group.
const ENV_SCAN_CAP: u64 = 64 * 1024;

/// [`has_env`], reading into `buf` (at most [`ENV_SCAN_CAP`] bytes).
fn env_holds(pid: u32, needle: &[u8], buf: &mut Vec<u8>) -> bool {
    use std::io::Read;
    buf.clear();
    // A short path: std builds its C string on the stack.
    let path = format!("/proc/{pid}/environ");
    std::fs::File::open(path)
        .and_then(|f| f.take(ENV_SCAN_CAP).read_to_end(buf))
        .is_ok()
        && buf.split(|b| *b == 0).any(|v| v == needle)
}

/// The process group of `pid` (`/proc/PID/stat` field 5; also for a zombie).
pub(crate) fn process_group(pid: u32) -> Option<u32> {
    stat_field(pid, 2)
}

/// The parent of process `pid` (`/proc/PID/stat` field 4).
pub(crate) fn parent_process(pid: u32) -> Option<u32> {
    stat_field(pid, 1)
}

/// Field `n` after the command name in `/proc/PID/stat` (the name may hold spaces and
/// parentheses): 0 is the state, 1 the parent, 2 the process group.
fn stat_field(pid: u32, n: usize) -> Option<u32> {
    let mut buf = [0u8; STAT_BUF];
    let stat = read_stat(pid, &mut buf).ok()?;
    let field = stat_fields(stat)?.nth(n)?.parse().ok();
    field
}

/// Whether /proc is there: asked once (a mount does not come and go under a daemon), not at
/// every process found gone.
fn procfs() -> bool {
    static THERE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *THERE.get_or_init(|| std::path::Path::new("/proc/self/stat").exists())
}

/// Room for a `/proc/PID/stat` line: 52 numeric fields of at most 20 digits and a name of
/// at most 64 bytes come to under 1.2 KiB.
const STAT_BUF: usize = 2048;

/// `/proc/PID/stat` read into `buf`: an open, a read and a close. (`fs::read` adds a
/// `statx` for a size procfs does not give and grows its buffer from 32 bytes, five reads
/// for one line: eight system calls where three do, at several looks per run.) A line that
/// fills the buffer is refused rather than cut.
fn read_stat(pid: u32, buf: &mut [u8; STAT_BUF]) -> io::Result<&[u8]> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/{pid}/stat"))?;
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                // procfs gives the line whole in one read.
                if buf[len - 1] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if len == buf.len() {
        return Err(io::Error::other("/proc/PID/stat longer than expected"));
    }
    Ok(&buf[..len])
}

/// The fields of a `/proc/PID/stat` after the command name (field 2), from field 3 on. The
/// name is whatever the process set (`prctl(PR_SET_NAME)`: spaces, parentheses, bytes that
/// are not UTF-8), so the split is after the last `)` and on bytes: read as text, a name
/// that is not UTF-8 made a live process look gone (never ended at its run's end).
fn stat_fields(stat: &[u8]) -> Option<impl Iterator<Item = &str>> {
    let after = stat.iter().rposition(|&b| b == b')')? + 1;
    let rest = std::str::from_utf8(&stat[after..]).ok()?;
    Some(rest.split_ascii_whitespace())
}

/// Open flags for [`crate::service::sys::file`]: never block (a FIFO opens at once and is then
/// refused), and refuse a symlink at the last component unless `follow`.
pub(crate) fn set_open_flags(o: &mut std::fs::OpenOptions, follow: bool) {
    use std::os::unix::fs::OpenOptionsExt;
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    o.custom_flags(libc::O_NONBLOCK | nofollow);
}

/// The length of `f` if it is a regular file (not a directory, FIFO or device), else `None`:
/// checked on the open descriptor, so nothing can be swapped in between the check and the use.
pub(crate) fn plain_file_len(f: &std::fs::File) -> io::Result<Option<u64>> {
    let m = f.metadata()?;
    Ok(m.file_type().is_file().then_some(m.len()))
}

/// What changes whenever the file is replaced or its owner or mode change: inode and ctime.
/// (`mv` keeps the mtime; a user cannot set the ctime.)
pub(crate) fn change_stamp(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{}:{}.{}", m.ino(), m.ctime(), m.ctime_nsec())
}

/// The trust check of [`crate::service::security`]: `path`, every directory above it and every
/// symlink on the way (resolved one component at a time, as the kernel does) must belong to
/// root or to this process's user, and none may be writable by group or others — except a
/// sticky directory (like `/tmp`) above the target, where only an entry's owner may replace
/// it. `may_be_missing`: the path (a state dir) need not exist yet; the part that exists is
/// checked, and what is missing is created by this process, 0700.
pub(crate) fn check_path_trust(
    path: &std::path::Path,
    what: &'static str,
    may_be_missing: bool,
) -> Result<(), super::trust::TrustError> {
    check_path_trust_also(path, what, may_be_missing, None)
}

/// [`check_path_trust`] for another instance's state dir or config (a USER instance's, in
/// its user's home): the owner of `path` itself is trusted too, besides root and this user,
/// on the way to it. Nobody else may write any of it.
pub(crate) fn check_instance_path_trust(
    path: &std::path::Path,
    what: &'static str,
) -> Result<(), super::trust::TrustError> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(path)
        .map_err(|source| super::trust::TrustError::Stat {
            what,
            path: path.to_path_buf(),
            source,
        })?
        .uid();
    check_path_trust_also(path, what, false, Some(owner))
}

fn check_path_trust_also(
    path: &std::path::Path,
    what: &'static str,
    may_be_missing: bool,
    also: Option<u32>,
) -> Result<(), super::trust::TrustError> {
    use super::trust::TrustError;
    if !path.is_absolute() {
        return Err(TrustError::Relative {
            what,
            path: path.to_path_buf(),
        });
    }
    let mut w = TrustWalk {
        path,
        what,
        me: rustix::process::geteuid().as_raw(),
        also,
        todo: trust_parts(path).into(),
        at: PathBuf::from("/"),
        entry: PathBuf::from("/"),
        links: 0,
        shared: None,
    };
    loop {
        let last = w.todo.is_empty();
        let m = match std::fs::symlink_metadata(&w.entry) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && may_be_missing => return Ok(()),
            Err(source) => {
                return Err(TrustError::Unreadable {
                    what,
                    path: path.to_path_buf(),
                    entry: w.entry,
                    source,
                })
            }
        };
        w.check_owner(&m)?;
        if m.file_type().is_symlink() {
            w.follow_link()?;
        } else {
            w.check_mode(&m, last)?;
            w.at = w.entry.clone();
        }
        if !w.advance() {
            return Ok(());
        }
    }
}

/// The components of `p` the trust walk visits (`..` kept, `/` and `.` dropped).
fn trust_parts(p: &std::path::Path) -> Vec<std::ffi::OsString> {
    use std::path::Component;
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Where the trust walk of `path` is: each entry from `/` down, links followed one component
/// at a time from the folder they are in.
struct TrustWalk<'a> {
    path: &'a std::path::Path,
    what: &'static str,
    me: u32,
    /// An owner trusted besides root and this process's user.
    also: Option<u32>,
    todo: std::collections::VecDeque<std::ffi::OsString>,
    /// The real folder the walk is in.
    at: PathBuf,
    entry: PathBuf,
    links: u32,
    /// The last world-writable sticky folder (/tmp) on the way: what is below it anyone made.
    shared: Option<PathBuf>,
}

impl TrustWalk<'_> {
    fn refuse(&self, why: super::trust::Unsafe) -> super::trust::TrustError {
        super::trust::TrustError::Unsafe {
            what: self.what,
            path: self.path.to_path_buf(),
            entry: self.entry.clone(),
            why,
        }
    }

    fn check_owner(&self, m: &std::fs::Metadata) -> Result<(), super::trust::TrustError> {
        use std::os::unix::fs::MetadataExt;
        let uid = m.uid();
        if uid != 0 && uid != self.me && Some(uid) != self.also {
            return Err(self.refuse(super::trust::Unsafe::Owner {
                uid,
                me: self.me,
                shared: self.shared.clone(),
            }));
        }
        Ok(())
    }

    /// The link's folder is checked and its owner is trusted: the walk goes on to where it
    /// points, from that folder.
    fn follow_link(&mut self) -> Result<(), super::trust::TrustError> {
        use super::trust::TrustError;
        self.links += 1;
        if self.links > 40 {
            return Err(TrustError::LinkLoop {
                what: self.what,
                path: self.path.to_path_buf(),
            });
        }
        let target =
            std::fs::read_link(&self.entry).map_err(|source| TrustError::LinkUnreadable {
                what: self.what,
                path: self.path.to_path_buf(),
                entry: self.entry.clone(),
                source,
            })?;
        if target.is_absolute() {
            self.at = PathBuf::from("/");
        }
        for c in trust_parts(&target).into_iter().rev() {
            self.todo.push_front(c);
        }
        Ok(())
    }

    /// Not writable by others (a sticky folder on the way excepted), and a folder unless
    /// `last`.
    fn check_mode(
        &mut self,
        m: &std::fs::Metadata,
        last: bool,
    ) -> Result<(), super::trust::TrustError> {
        use std::os::unix::fs::MetadataExt;
        let mode = m.mode() & 0o7777;
        let sticky_dir = m.is_dir() && mode & 0o1000 != 0;
        if sticky_dir && mode & 0o002 != 0 {
            self.shared = Some(self.entry.clone());
        }
        if mode & 0o022 != 0 && (last || !sticky_dir) {
            return Err(self.refuse(super::trust::Unsafe::Writable { mode }));
        }
        if !last && !m.is_dir() {
            return Err(super::trust::TrustError::NotADirectory {
                what: self.what,
                path: self.path.to_path_buf(),
                entry: self.entry.clone(),
            });
        }
        Ok(())
    }

    /// Moves to the next component (`..` climbs from a real folder); `false` at the end.
    fn advance(&mut self) -> bool {
        loop {
            match self.todo.pop_front() {
                None => return false,
                Some(c) if c == ".." => {
                    self.at.pop();
                }
                Some(c) => {
                    self.entry = self.at.join(c);
                    return true;
                }
            }
        }
    }
}

/// The program to start when the daemon runs a helper of its own (the retry wrapper of
/// `attempts`, an environment build): `/proc/self/exe`, the very file this process runs,
/// whatever happened to its name. An upgrade renames a new binary over the old one (dpkg
/// does), after which [`std::env::current_exe`] names `… (deleted)`, which cannot be started;
/// this path still can (the kernel resolves it in the starting process, before and after the
/// fork alike), and the helper is always the daemon's own version. Without `/proc` (not
/// mounted), the path the binary was started from.
pub(crate) fn self_exe() -> io::Result<std::path::PathBuf> {
    let proc_exe = std::path::Path::new("/proc/self/exe");
    if proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe()
}

/// True if process `pid` is this program serving this instance: it started at
/// `start` (PID reuse), runs this program's executable (or an older copy of it, replaced on
/// disk by an upgrade, or a copy of it under another `robotmk…` name), and holds the
/// exclusive lock on `lock_file`. A PID read from a file
/// alone is never signalled.
pub(crate) fn is_instance_daemon(
    pid: u32,
    start: Option<u64>,
    lock_file: &std::path::Path,
) -> bool {
    use std::os::unix::fs::MetadataExt;
    if start.is_none() || process_start_time(pid) != start {
        return false;
    }
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    let mine = std::env::current_exe().ok();
    // A copy of this program under another name is still this program: the agent's plugin
    // (`robotmk_daemon_ctrl`, or any name ending in `ctrl`, which the program answers to as
    // ctrl) may judge a daemon the admin started as `robotmk-daemon`.
    let ours = |p: &std::path::Path| {
        p.file_stem().is_some_and(|n| {
            let n = n.to_string_lossy().to_ascii_lowercase();
            n.starts_with("robotmk") || n.ends_with("ctrl")
        })
    };
    let same_name = |a: &std::path::Path| {
        mine.as_ref()
            .is_some_and(|m| m == a || m.file_name() == a.file_name() || (ours(m) && ours(a)))
    };
    if !same_name(std::path::Path::new(exe)) {
        return false;
    }
    let Ok(m) = std::fs::symlink_metadata(lock_file) else {
        return false;
    };
    holds_flock(pid, m.ino())
}

/// Whether `/proc/locks` lists an exclusive flock by `pid` on inode `ino`.
fn holds_flock(pid: u32, ino: u64) -> bool {
    // Read here, not through `sys::file` (which opens files with this module's flags: a cycle
    // between the two); the kernel's own file, bounded as `file::cap::STATUS` bounds it.
    let mut locks = String::new();
    let read = std::fs::File::open("/proc/locks").and_then(|f| {
        use std::io::Read;
        f.take(32 * 1024 * 1024).read_to_string(&mut locks)
    });
    if read.is_err() {
        return false;
    }
    // "1: FLOCK  ADVISORY  WRITE 4711 fd:01:1234567 0 EOF"
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 6
            && f[1] == "FLOCK"
            && f[3] == "WRITE"
            && f[4].parse() == Ok(pid)
            && f[5].rsplit(':').next().and_then(|i| i.parse().ok()) == Some(ino)
    })
}

/// The folder `path` leads to now, every symlink on the way resolved (`None` while it leads
/// nowhere). The daemon keeps its state dir as this path, taken once at start (see
/// `app/daemon/start.rs`).
pub(crate) fn resolved_dir(path: &std::path::Path) -> Option<std::path::PathBuf> {
    std::fs::canonicalize(path).ok().filter(|p| p.is_dir())
}

/// True if `path` still names the open file `f` (same device and inode): a file that was
/// deleted or replaced by another is no longer what the path opens.
pub(crate) fn same_file(f: &std::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether two paths name one file (hard links of it included), not following a final link;
/// `None` if either cannot be looked at.
pub(crate) fn same_file_at(a: &std::path::Path, b: &std::path::Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::symlink_metadata(a).ok()?,
        std::fs::symlink_metadata(b).ok()?,
    );
    Some(a.dev() == b.dev() && a.ino() == b.ino())
}

// ---- Paths and file modes (config, state) ---------------------------------------------------

/// The files of the host's user database a job's `user` is looked up in (NSS's `files`
/// source; a change of LDAP or sssd behind NSS shows only at the next reload), `/etc/shadow`
/// for the account's expiry date (`chage -E`).
pub(crate) const USER_DATABASE: &[&str] = &["/etc/passwd", "/etc/group", "/etc/shadow"];

/// The host's temporary folders besides `$TMPDIR` (what `std::env::temp_dir` names): a state
/// dir in one of them is lost at a reboot or to a cleaner (`check-config` warns).
pub(crate) const TEMP_DIRS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm"];

/// A terminal renders UTF-8 only when the locale says so.
pub(crate) const CONSOLE_ALWAYS_UTF8: bool = false;

/// Where the config is looked for when nothing names it.
pub(crate) const DEFAULT_CONFIG_DIR: &str = "/etc/check_mk";

/// The base of the default state dir when `$MK_VARDIR` is not set: the Checkmk agent's var
/// dir if the agent is installed (an admin's shell lacks `$MK_VARDIR` but must find the state
/// dir ctrl used), else `/var/lib`.
pub(crate) fn default_state_base() -> std::path::PathBuf {
    const AGENT_VARDIR: &str = "/var/lib/check_mk_agent";
    if std::path::Path::new(AGENT_VARDIR).is_dir() {
        AGENT_VARDIR.into()
    } else {
        "/var/lib".into()
    }
}

/// New files only the owner can read: 0600.
pub(crate) fn private_file(o: &mut std::fs::OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    o.mode(0o600);
}

/// New folders only the owner can enter: 0700.
pub(crate) fn private_dir(b: &mut std::fs::DirBuilder) {
    use std::os::unix::fs::DirBuilderExt;
    b.mode(0o700);
}

/// Whether a rename that failed with `PermissionDenied` is worth retrying: never on Unix.
pub(crate) fn rename_denied_is_transient() -> bool {
    false
}

/// How long the system has been up (`CLOCK_BOOTTIME`: counts suspended time too), for
/// `start_delay`.
pub(crate) fn uptime() -> Option<std::time::Duration> {
    let ts = rustix::time::clock_gettime_dynamic(rustix::time::DynamicClockId::Boottime).ok()?;
    Some(std::time::Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    ))
}

/// Whether no one but this process's user can change what is in `dir`: a folder (not a
/// link) it owns that others cannot write.
pub(crate) fn only_mine(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir() && m.uid() == rustix::process::geteuid().as_raw() && m.mode() & 0o022 == 0
    })
}

/// The permission bits of `m` if users other than the owner may read the file (the
/// config's secrets).
pub(crate) fn others_may_read(m: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = m.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

/// Whether a file's mode lets anyone execute it.
pub(crate) fn mode_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

/// The signal that ended a process, if one did.
pub(crate) fn exit_signal(s: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    s.signal()
}

/// A flag SIGTERM and SIGINT set (a runner's helper stops between steps on them).
pub(crate) fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, std::sync::Arc::clone(&flag));
    }
    flag
}

/// True when this process runs as root (only root can run a job as another user).
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// True when this process may write a daemon's state dir: only root's writes are trusted
/// there (the daemon runs as root), so a command that writes one (`pause`) refuses early and
/// says so instead of failing at the trust check.
pub(crate) fn may_write_state_dir() -> bool {
    is_root()
}

/// Files an environment build creates must be readable by a job's user: 022 instead of the
/// daemon's 077 (the folders above decide who can reach them).
pub(crate) fn set_shared_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
}

/// Creates (or checks) a folder a job's user may pass through (`0711`) or read (`0755`):
/// never a link, and only the daemon's own and not writable by others, so what the daemon
/// writes below it cannot be redirected.
pub(crate) fn public_dir(path: &std::path::Path, readable: bool) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let mode = if readable { 0o755 } else { 0o711 };
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let m = std::fs::symlink_metadata(path)?;
    let me = rustix::process::geteuid().as_raw();
    if !m.is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a folder of uid {me} writable only by it (a link, or someone else's); remove it",
                path.display()
            ),
        ));
    }
    if m.mode() & 0o777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Hands a file or folder the daemon just created to a job's user (never through a link).
pub(crate) fn give_to(path: &std::path::Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

/// Adds read (and, where the owner may, execute) permission for everyone to every file and
/// folder below `root`, never following links: an environment a job's user runs from.
pub(crate) fn make_readable_tree(root: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p)?;
        if m.file_type().is_symlink() {
            continue;
        }
        let mode = m.permissions().mode() & 0o7777;
        let exec = if m.is_dir() || mode & 0o100 != 0 {
            0o011
        } else {
            0
        };
        let want = mode | 0o044 | exec;
        if want != mode {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(want))?;
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p)? {
                todo.push(e?.path());
            }
        }
    }
    Ok(())
}
