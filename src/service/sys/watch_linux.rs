//! Linux side of [`Watcher`]: inotify, plus a `CLOCK_REALTIME` timerfd armed with
//! `TFD_TIMER_CANCEL_ON_SET`, which the kernel cancels whenever the wall clock is set (by
//! hand, by NTP stepping it, on resume from suspend). One thread sleeps in `poll` on both and
//! calls the daemon back only for changes its filters keep: the daemon's own writes in the
//! state dir (status.json, heartbeat-ack, records) never wake it.
//!
//! A mount or unmount is no inotify event on the directory mounted over: a config on a mount
//! that vanished and came back (NFS, an automount) would be a new file nobody watches. So the
//! thread also polls `/proc/self/mountinfo`, which the kernel marks (POLLPRI) whenever this
//! mount namespace's mount table changes; the daemon then looks, and arming the watches again
//! follows each path to what is there now.
//!
//! The system calls go through rustix (inotify, timerfd, poll: no unsafe code here). The
//! filtering is our own rather than the `notify` crate's: the daemon needs per-name filters
//! and self-only events on ancestors, which `notify` does not expose, and would pull in its
//! own threads and dependencies for them; the `inotify` crate would cover inotify alone, not
//! the timerfd or the poll on both, which rustix (already a dependency) does.

use super::{Child, Watch};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What one watch descriptor lets through.
#[derive(Default)]
struct Filter {
    itself: bool,
    children: Vec<(OsString, u32)>,
    new_json: bool,
    /// The path watched and the (device, inode) it led to when armed: a change of the mount
    /// table wakes the daemon only when one of them leads elsewhere now.
    at: Option<(PathBuf, (u64, u64))>,
}

/// The (device, inode) `path` names itself (a symlink is not followed), if it exists.
fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

struct Inner {
    ino: OwnedFd,
    table: Mutex<HashMap<i32, Filter>>,
}

/// Watches directories and calls back on the changes its [`Watch`]es name.
pub(crate) struct Watcher {
    inner: Arc<Inner>,
    clock: bool,
}

const SELF_EVENTS: u32 =
    WatchFlags::ATTRIB.bits() | WatchFlags::MOVE_SELF.bits() | WatchFlags::DELETE_SELF.bits();
const ENTRY: u32 = WatchFlags::CREATE.bits()
    | WatchFlags::DELETE.bits()
    | WatchFlags::MOVED_FROM.bits()
    | WatchFlags::MOVED_TO.bits();
/// A [`Child::Meta`] file is watched itself: setting its mtime alone (ctrl's beat, utimensat
/// with UTIME_OMIT for the atime) is reported as IN_MODIFY, both times or its mode as
/// IN_ATTRIB. Asked of the directory, IN_MODIFY would also report the daemon's own answer
/// (`heartbeat-ack`, the same kind of write) and its log: a second wake of this thread per
/// ctrl call, and one per log line.
const FILE_META: u32 = WatchFlags::MODIFY.bits() | WatchFlags::ATTRIB.bits();
/// A new result file in a folder watched for them: moved in, or written and closed.
const NEW_FILE: u32 = WatchFlags::MOVED_TO.bits() | WatchFlags::CLOSE_WRITE.bits();

fn child_mask(how: Child) -> u32 {
    match how {
        Child::Content => ENTRY | WatchFlags::ATTRIB.bits() | WatchFlags::CLOSE_WRITE.bits(),
        // In its directory only replaced, created or removed; the rest on the file itself
        // (see FILE_META).
        Child::Meta => ENTRY,
        Child::Entry => ENTRY,
        Child::Gone => WatchFlags::DELETE.bits() | WatchFlags::MOVED_FROM.bits(),
    }
}

impl Watcher {
    /// Starts the watching thread; `wake` is called from it on each batch of relevant
    /// changes. Nothing is watched until [`Watcher::arm`].
    pub(crate) fn start(wake: impl Fn() + Send + 'static) -> io::Result<Watcher> {
        let ino = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("inotify_init1: {e}"))
        })?;
        let clock = clock_change_fd();
        let inner = Arc::new(Inner {
            ino,
            table: Mutex::new(HashMap::new()),
        });
        let has_clock = clock.is_some();
        // Where /proc is not mounted there is no such file: mounts are then noticed only by
        // the looks (the unmount of a watched directory still wakes: IN_IGNORED).
        let mounts = std::fs::File::open("/proc/self/mountinfo")
            .ok()
            .map(OwnedFd::from);
        let t = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("watcher".into())
            .stack_size(64 * 1024)
            .spawn(move || watch_forever(&t, clock, mounts, wake))?;
        Ok(Watcher {
            inner,
            clock: has_clock,
        })
    }

    /// Whether a set wall clock wakes the daemon (else it must not sleep long on wall time).
    pub(crate) fn sees_clock_changes(&self) -> bool {
        self.clock
    }

    /// Watches exactly `watches` from now on (directories replaced since the last call are
    /// watched anew, ones no longer named are dropped). Returns what could not be watched,
    /// with why.
    pub(crate) fn arm(&self, watches: &[Watch]) -> Vec<String> {
        let mut problems = Vec::new();
        let (per_dir, files) = merge_per_dir(watches);
        let mut table = self.inner.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: HashMap<i32, Filter> = HashMap::new();
        let files = files.into_iter().map(|p| {
            let f = Filter {
                itself: true,
                ..Filter::default()
            };
            (p, FILE_META, f)
        });
        let per_dir = per_dir
            .into_iter()
            .map(|(d, m, f)| (d, m | WatchFlags::ONLYDIR.bits(), f));
        let ino = &self.inner.ino;
        for (dir, mask, f) in per_dir.chain(files) {
            let mut flags = WatchFlags::from_bits_retain(mask) | WatchFlags::DONT_FOLLOW;
            let mut added = inotify::add_watch(ino, &dir, flags);
            if added.as_ref().is_ok_and(|wd| next.contains_key(wd)) {
                // Another path to the same directory (a bind mount): add to its mask.
                flags |= WatchFlags::MASK_ADD;
                added = inotify::add_watch(ino, &dir, flags);
            }
            let wd = match added {
                Ok(wd) => wd,
                Err(e) => {
                    let e = io::Error::from(e);
                    if !flags.contains(WatchFlags::ONLYDIR) && e.kind() == io::ErrorKind::NotFound {
                        continue; // a file not there yet: its directory reports its creation
                    }
                    let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
                        " (fs.inotify.max_user_watches reached)"
                    } else {
                        ""
                    };
                    problems.push(format!("cannot watch {}: {e}{hint}", dir.display()));
                    continue;
                }
            };
            let f = Filter {
                at: identity(&dir).map(|id| (dir.clone(), id)),
                ..f
            };
            match next.get_mut(&wd) {
                Some(old) => {
                    old.itself |= f.itself;
                    old.new_json |= f.new_json;
                    old.children.extend(f.children);
                }
                None => {
                    next.insert(wd, f);
                }
            }
        }
        for wd in table.keys().filter(|wd| !next.contains_key(wd)) {
            // A stale descriptor fails harmlessly.
            let _ = inotify::remove_watch(ino, *wd);
        }
        *table = next;
        problems
    }
}

/// The directories to watch, each once with the events and names of all `watches` in it
/// (one descriptor per inode: its mask is replaced, not added), and the files watched for
/// their own changes.
fn merge_per_dir(watches: &[Watch]) -> (Vec<(PathBuf, u32, Filter)>, Vec<PathBuf>) {
    // Merged per directory: one descriptor per inode, whose mask is replaced, not added.
    let mut per_dir: Vec<(PathBuf, u32, Filter)> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for w in watches {
        let i = match per_dir.iter().position(|(d, _, _)| *d == w.dir) {
            Some(i) => i,
            None => {
                per_dir.push((w.dir.clone(), 0, Filter::default()));
                per_dir.len() - 1
            }
        };
        let (_, mask, f) = &mut per_dir[i];
        if w.itself {
            *mask |= SELF_EVENTS;
            f.itself = true;
        }
        for (name, how) in &w.children {
            if *how == Child::Meta {
                files.push(w.dir.join(name));
            }
            *mask |= child_mask(*how);
            match f.children.iter_mut().find(|(n, _)| n == name) {
                Some((_, m)) => *m |= child_mask(*how),
                None => f.children.push((name.clone(), child_mask(*how))),
            }
        }
        if w.new_json {
            *mask |= NEW_FILE;
            f.new_json = true;
        }
    }
    (per_dir, files)
}

/// A timerfd that becomes readable (with ECANCELED) when the wall clock is set; `None` where
/// the kernel cannot do that.
fn clock_change_fd() -> Option<OwnedFd> {
    let fd = rustix::time::timerfd_create(
        TimerfdClockId::Realtime,
        TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
    )
    .ok()?;
    arm_clock(&fd).then_some(fd)
}

/// Arms the timer far in the future (it only has to exist to be cancelled).
fn arm_clock(fd: &OwnedFd) -> bool {
    let spec = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        // Absolute: the year 2255, beyond any schedule's horizon.
        it_value: Timespec {
            tv_sec: 9_000_000_000,
            tv_nsec: 0,
        },
    };
    rustix::time::timerfd_settime(
        fd,
        TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
        &spec,
    )
    .is_ok()
}

/// How long the watcher leaves the mount table alone after a change it looked at: on a host
/// whose mounts churn (containers starting, a test suite's tmpfs), each change woke this
/// thread to look at every watched path — 170 times in 5 s beside a busy test run. Changes
/// meanwhile are kept by the kernel (its mark stays until a poll asks for it), so a config on
/// a mount that came back is still seen, a second later at most.
const MOUNT_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

fn watch_forever(inner: &Inner, clock: Option<OwnedFd>, mounts: Option<OwnedFd>, wake: impl Fn()) {
    // Room for many events per read (rustix aligns it for inotify_event).
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 4096];
    let mut mounts_quiet_until: Option<std::time::Instant> = None;
    loop {
        let now = std::time::Instant::now();
        let settling = mounts_quiet_until.filter(|t| *t > now);
        let mut fds = vec![PollFd::new(&inner.ino, PollFlags::IN)];
        // Only POLLPRI is asked of the mount table: it is always readable. The kernel reports
        // a change once per open file (and POLLERR with it), until the table is read again.
        let watch_mounts = mounts.as_ref().filter(|_| settling.is_none());
        if let Some(m) = watch_mounts {
            fds.push(PollFd::new(m, PollFlags::PRI));
        }
        if let Some(c) = &clock {
            fds.push(PollFd::new(c, PollFlags::IN));
        }
        let timeout = settling.map(|t| {
            rustix::time::Timespec::try_from(t.saturating_duration_since(now)).unwrap_or(
                rustix::time::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                },
            )
        });
        if poll(&mut fds, timeout.as_ref()).is_err() {
            continue; // EINTR
        }
        let events = fds[0].revents();
        let mut rest = fds[1..].iter();
        let mounted =
            watch_mounts.is_some() && rest.next().is_some_and(|f| !f.revents().is_empty());
        let clock_set = rest.next().is_some_and(|f| !f.revents().is_empty());
        drop(fds);
        let mut relevant = false;
        if mounted {
            // The poll that reported the change cleared its mark; changes while the table is
            // left alone mark it again, reported once at the next poll that asks.
            mounts_quiet_until = Some(std::time::Instant::now() + MOUNT_SETTLE);
            // Mounts come and go on a busy host (containers): only one that changed what a
            // watched path leads to wakes the loop, to arm the watches anew.
            let table = inner.table.lock().unwrap_or_else(|e| e.into_inner());
            relevant = table.values().any(|f| {
                f.at.as_ref()
                    .is_some_and(|(p, id)| identity(p) != Some(*id))
            });
        }
        if let Some(c) = clock.as_ref().filter(|_| clock_set) {
            // ECANCELED: the clock was set; the read consumes it either way.
            let _ = rustix::io::read(c, &mut [0u8; 8]);
            arm_clock(c);
            relevant = true;
        }
        if !events.is_empty() {
            // One read: the events the kernel has now (the descriptor does not block).
            let mut reader = inotify::Reader::new(&inner.ino, &mut buf);
            let table = inner.table.lock().unwrap_or_else(|e| e.into_inner());
            while let Ok(ev) = reader.next() {
                let name = ev
                    .file_name()
                    .map_or(OsStr::new(""), |n| OsStr::from_bytes(n.to_bytes()));
                relevant |= wanted(&table, ev.wd(), ev.events(), name);
                if reader.is_buffer_empty() {
                    break;
                }
            }
        }
        if relevant {
            wake();
        }
    }
}

fn wanted(table: &HashMap<i32, Filter>, wd: i32, events: ReadFlags, name: &OsStr) -> bool {
    if events.contains(ReadFlags::QUEUE_OVERFLOW) {
        return true; // events were lost: look at everything
    }
    // Only watches still in the table count: one removed by `arm` reports IN_IGNORED too.
    let Some(f) = table.get(&wd) else {
        return false;
    };
    if name.is_empty() {
        // The directory itself; IN_IGNORED: it is gone, arm again.
        return f.itself
            || events
                .intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF);
    }
    let mask = events.bits();
    if f.children.iter().any(|(n, m)| n == name && mask & m != 0) {
        return true;
    }
    let b = name.as_bytes();
    f.new_json && mask & NEW_FILE != 0 && !b.starts_with(b".") && b.ends_with(b".json")
}
