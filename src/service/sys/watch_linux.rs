//! Linux side of [`Watcher`]: inotify, plus a `CLOCK_REALTIME` timerfd armed with
//! `TFD_TIMER_CANCEL_ON_SET`, which the kernel cancels whenever the wall clock is set (by
//! hand, by NTP stepping it, on resume from suspend). One thread sleeps in `poll` on both and
//! calls the daemon back only for changes its filters keep: the daemon's own writes in the
//! state dir (status.json, heartbeat-ack, records) never wake it.
//!
//! Hand-rolled (about a hundred lines) rather than the `notify` crate: the daemon needs
//! per-name filters and self-only events on ancestors, which `notify` does not expose, and
//! would pull in its own threads and dependencies for them.

use super::{Child, Watch};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

/// What one watch descriptor lets through.
#[derive(Default)]
struct Filter {
    itself: bool,
    children: Vec<(OsString, u32)>,
    new_json: bool,
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

const SELF_EVENTS: u32 = libc::IN_ATTRIB | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF;
const ENTRY: u32 = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;
/// A [`Child::Meta`] file is watched itself: setting its mtime alone (ctrl's beat, utimensat
/// with UTIME_OMIT for the atime) is reported as IN_MODIFY, both times or its mode as
/// IN_ATTRIB. Asked of the directory, IN_MODIFY would also report the daemon's own answer
/// (`heartbeat-ack`, the same kind of write) and its log: a second wake of this thread per
/// ctrl call, and one per log line.
const FILE_META: u32 = libc::IN_MODIFY | libc::IN_ATTRIB;

fn child_mask(how: Child) -> u32 {
    match how {
        Child::Content => ENTRY | libc::IN_ATTRIB | libc::IN_CLOSE_WRITE,
        // In its directory only replaced, created or removed; the rest on the file itself
        // (see FILE_META).
        Child::Meta => ENTRY,
        Child::Entry => ENTRY,
    }
}

impl Watcher {
    /// Starts the watching thread; `wake` is called from it on each batch of relevant
    /// changes. Nothing is watched until [`Watcher::arm`].
    pub(crate) fn start(wake: impl Fn() + Send + 'static) -> io::Result<Watcher> {
        // SAFETY: plain syscall; the descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("inotify_init1: {e}")));
        }
        // SAFETY: a fresh descriptor we own.
        let ino = unsafe { OwnedFd::from_raw_fd(fd) };
        let clock = clock_change_fd();
        let inner = Arc::new(Inner {
            ino,
            table: Mutex::new(HashMap::new()),
        });
        let has_clock = clock.is_some();
        let t = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("watcher".into())
            .stack_size(64 * 1024)
            .spawn(move || watch_forever(&t, clock, wake))?;
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
        // Merged per directory: one descriptor per inode, whose mask is replaced, not added.
        let mut per_dir: Vec<(std::path::PathBuf, u32, Filter)> = Vec::new();
        let mut files: Vec<std::path::PathBuf> = Vec::new();
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
                *mask |= libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;
                f.new_json = true;
            }
        }
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
            .map(|(d, m, f)| (d, m | libc::IN_ONLYDIR, f));
        for (dir, mask, f) in per_dir.chain(files) {
            let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
                continue;
            };
            let mut flags = mask | libc::IN_DONT_FOLLOW;
            // SAFETY: a valid C string and our inotify descriptor.
            let mut wd =
                unsafe { libc::inotify_add_watch(self.inner.ino.as_raw_fd(), c.as_ptr(), flags) };
            if wd >= 0 && next.contains_key(&wd) {
                // Another path to the same directory (a bind mount): add to its mask.
                flags |= libc::IN_MASK_ADD;
                // SAFETY: as above.
                wd = unsafe {
                    libc::inotify_add_watch(self.inner.ino.as_raw_fd(), c.as_ptr(), flags)
                };
            }
            if wd < 0 {
                let e = io::Error::last_os_error();
                if mask & libc::IN_ONLYDIR == 0 && e.kind() == io::ErrorKind::NotFound {
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
            // SAFETY: removing a descriptor of ours; a stale one fails harmlessly.
            unsafe { libc::inotify_rm_watch(self.inner.ino.as_raw_fd(), *wd) };
        }
        *table = next;
        problems
    }
}

/// A timerfd that becomes readable (with ECANCELED) when the wall clock is set; `None` where
/// the kernel cannot do that.
fn clock_change_fd() -> Option<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned below.
    let fd = unsafe {
        libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK)
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    arm_clock(&fd).then_some(fd)
}

/// Arms the timer far in the future (it only has to exist to be cancelled).
fn arm_clock(fd: &OwnedFd) -> bool {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        // Absolute: the year 2255, beyond any schedule's horizon.
        it_value: libc::timespec {
            tv_sec: 9_000_000_000,
            tv_nsec: 0,
        },
    };
    // SAFETY: a valid timerfd and itimerspec.
    let r = unsafe {
        libc::timerfd_settime(
            fd.as_raw_fd(),
            libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET,
            &spec,
            std::ptr::null_mut(),
        )
    };
    r == 0
}

fn watch_forever(inner: &Inner, clock: Option<OwnedFd>, wake: impl Fn()) {
    // Aligned for inotify_event; room for many events per read.
    let mut buf = vec![0u64; 512];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: inner.ino.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: clock.as_ref().map_or(-1, |c| c.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on a valid array (a -1 descriptor is ignored).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            continue; // EINTR
        }
        let mut relevant = false;
        if let Some(c) = clock.as_ref().filter(|_| fds[1].revents != 0) {
            let mut count = 0u64;
            // SAFETY: reading 8 bytes from our timerfd into a u64.
            unsafe { libc::read(c.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
            arm_clock(c);
            relevant = true;
        }
        if fds[0].revents != 0 {
            let bytes = buf.len() * 8;
            // SAFETY: reading into our own buffer of `bytes` bytes.
            let got = unsafe { libc::read(inner.ino.as_raw_fd(), buf.as_mut_ptr().cast(), bytes) };
            if got > 0 {
                // SAFETY: the kernel filled `got` bytes of the buffer.
                let data =
                    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), got as usize) };
                let table = inner.table.lock().unwrap_or_else(|e| e.into_inner());
                relevant |= parse(data).any(|(wd, mask, name)| wanted(&table, wd, mask, name));
            }
        }
        if relevant {
            wake();
        }
    }
}

/// The events in a buffer read from inotify: (watch descriptor, mask, name).
fn parse(data: &[u8]) -> impl Iterator<Item = (i32, u32, &OsStr)> {
    let head = std::mem::size_of::<libc::inotify_event>();
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + head > data.len() {
            return None;
        }
        // SAFETY: a complete header lies at `at`; read unaligned to be safe.
        let ev: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(data[at..].as_ptr().cast()) };
        let len = ev.len as usize;
        let raw = data.get(at + head..at + head + len).unwrap_or(&[]);
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        at += head + len;
        Some((ev.wd, ev.mask, OsStr::from_bytes(&raw[..end])))
    })
}

fn wanted(table: &HashMap<i32, Filter>, wd: i32, mask: u32, name: &OsStr) -> bool {
    if mask & libc::IN_Q_OVERFLOW != 0 {
        return true; // events were lost: look at everything
    }
    // Only watches still in the table count: one removed by `arm` reports IN_IGNORED too.
    let Some(f) = table.get(&wd) else {
        return false;
    };
    if name.is_empty() {
        // The directory itself; IN_IGNORED: it is gone, arm again.
        return f.itself
            || mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0;
    }
    if f.children.iter().any(|(n, m)| n == name && mask & m != 0) {
        return true;
    }
    let b = name.as_bytes();
    f.new_json
        && mask & (libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE) != 0
        && !b.starts_with(b".")
        && b.ends_with(b".json")
}
