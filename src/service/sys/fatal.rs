//! What a process leaves behind when it dies of something it cannot handle: a note of the
//! fatal signal (Unix) on one of its standard streams, and its stderr sent to a file the next
//! daemon reads (see `daemon::lifecycle`).
//!
//! A fatal signal (SIGSEGV, SIGBUS, SIGABRT, …) runs a handler that writes one line — a prefix
//! the caller prepared, `fatal signal 11 (SIGSEGV)`, optionally ` at <unix time>` — with
//! `write(2)` only (async-signal-safe: no allocation, no lock), then gives the signal back to
//! what handled it before (Rust's stack overflow report, or the default action), so the
//! process still dies as it would have, with the same signal. The daemon's note goes to its
//! stderr file; ctrl's is a CRIT line on stdout, so that the agent gets a section even then.
//! Windows has no signals: a panic's hook and std's own stack overflow report write to
//! stderr, which is all there is (docs/WINDOWS.md).

/// Which standard stream a fatal signal is noted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Marks the process's death as noted already (a panic hook that wrote its own line): a
/// fatal signal after it (the abort that follows a panic) writes no second note.
pub(crate) fn mark_fatal_noted() {
    imp::NOTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Raises SIGSEGV (Unix; aborts on Windows): the test-only crash hook's `segv`.
pub(crate) fn raise_segv() {
    #[cfg(unix)]
    // SAFETY: raise with a valid signal number.
    unsafe {
        libc::raise(libc::SIGSEGV);
    }
    #[cfg(windows)]
    std::process::abort();
}

#[cfg(unix)]
pub(crate) use imp::{boot_id, note_fatal_signals, redirect_stderr};

#[cfg(windows)]
pub(crate) use win::{boot_id, note_fatal_signals, redirect_stderr};

#[cfg(unix)]
mod imp {
    use super::Stream;
    use std::cell::UnsafeCell;
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    use std::sync::OnceLock;

    pub(super) static NOTED: AtomicBool = AtomicBool::new(false);
    static FD: AtomicI32 = AtomicI32::new(-1);
    static TIMED: AtomicBool = AtomicBool::new(false);
    static PREFIX: OnceLock<Vec<u8>> = OnceLock::new();

    /// The signals whose default action ends the process with a core dump: a crash, never a
    /// request (SIGTERM, SIGINT and SIGHUP are the daemon's own to handle).
    const FATAL: [(libc::c_int, &str); 10] = [
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGSYS, "SIGSYS"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
    ];

    /// The actions in place before ours, by index in [`FATAL`]: written once, before our
    /// handler is installed, and only read after.
    struct Previous(UnsafeCell<[MaybeUninit<libc::sigaction>; FATAL.len()]>);
    // SAFETY: written only by `note_fatal_signals` before any handler that reads it exists
    // (guarded by PREFIX's once), read only by the handler.
    unsafe impl Sync for Previous {}
    static PREVIOUS: Previous = Previous(UnsafeCell::new(
        [const { MaybeUninit::uninit() }; FATAL.len()],
    ));

    /// Installs the note for every fatal signal, once per process: `prefix` and the signal
    /// (and with `timed`, the Unix time) on `stream`.
    pub(crate) fn note_fatal_signals(
        stream: Stream,
        prefix: Vec<u8>,
        timed: bool,
    ) -> io::Result<()> {
        if PREFIX.set(prefix).is_err() {
            return Ok(()); // installed already
        }
        let fd = match stream {
            Stream::Stdout => io::stdout().as_raw_fd(),
            Stream::Stderr => io::stderr().as_raw_fd(),
        };
        FD.store(fd, Ordering::SeqCst);
        TIMED.store(timed, Ordering::SeqCst);
        let previous = PREVIOUS.0.get().cast::<MaybeUninit<libc::sigaction>>();
        for (i, (sig, _)) in FATAL.iter().enumerate() {
            // SAFETY: a zeroed sigaction is valid; sigaction with valid pointers. The slot
            // `i` is written before the handler that reads it is installed.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_fatal as *const () as usize;
                // On the alternate stack Rust sets up for every thread, so that a stack
                // overflow, too, is noted (and then reported by Rust's own handler).
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(*sig, std::ptr::null(), &mut old) != 0 {
                    return Err(io::Error::last_os_error());
                }
                (*previous.add(i)).write(old);
                if libc::sigaction(*sig, &new, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// Async-signal-safe: `write(2)`, `clock_gettime`, `sigaction`, `raise` only.
    extern "C" fn on_fatal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        let Some(i) = FATAL.iter().position(|(s, _)| *s == sig) else {
            return;
        };
        if !NOTED.swap(true, Ordering::SeqCst) {
            let fd = FD.load(Ordering::SeqCst);
            let mut line = Line::new();
            line.push(b"fatal signal ");
            line.number(sig as u64);
            line.push(b" (");
            line.push(FATAL[i].1.as_bytes());
            line.push(b")");
            if TIMED.load(Ordering::SeqCst) {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: clock_gettime with a valid out pointer.
                if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } == 0 {
                    line.push(b" at ");
                    line.number(ts.tv_sec.max(0) as u64);
                }
            }
            line.push(b"\n");
            if let Some(p) = PREFIX.get() {
                write_all(fd, p);
            }
            write_all(fd, line.bytes());
        }
        // SAFETY: `info` is the kernel's siginfo for this signal (SA_SIGINFO); the previous
        // action was stored before this handler was installed.
        unsafe {
            // Sent by a process (kill, raise, abort): nothing would deliver it again, so the
            // default action ends us once this handler returns. A fault (si_code > 0): the
            // instruction runs again under the previous action (Rust's stack overflow report,
            // or the default), and the process dies as it would have.
            let sent = info.is_null() || (*info).si_code <= 0;
            if sent {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
                libc::raise(sig);
            } else {
                let previous = PREVIOUS.0.get().cast::<MaybeUninit<libc::sigaction>>();
                libc::sigaction(sig, (*previous.add(i)).as_ptr(), std::ptr::null_mut());
            }
        }
    }

    fn write_all(fd: libc::c_int, mut b: &[u8]) {
        while !b.is_empty() {
            // SAFETY: write from a valid buffer of its length.
            let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
            if n <= 0 {
                return;
            }
            b = &b[n as usize..];
        }
    }

    /// A line on the stack (no allocation in a signal handler).
    struct Line {
        buf: [u8; 96],
        len: usize,
    }

    impl Line {
        fn new() -> Line {
            Line {
                buf: [0; 96],
                len: 0,
            }
        }
        fn push(&mut self, b: &[u8]) {
            let n = b.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
        }
        fn number(&mut self, mut v: u64) {
            let mut digits = [0u8; 20];
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            self.push(&digits[i..]);
        }
        fn bytes(&self) -> &[u8] {
            &self.buf[..self.len]
        }
    }

    /// Makes `file` this process's stderr (fd 2): what Rust's runtime writes there itself (a
    /// stack overflow, an allocation failure) and the fatal-signal note land in it.
    pub(crate) fn redirect_stderr(file: std::fs::File) -> io::Result<()> {
        // SAFETY: dup2 of a valid descriptor onto fd 2; `file` is closed after, fd 2 stays.
        if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// This boot of the host (Linux: `/proc/sys/kernel/random/boot_id`): a daemon of another
    /// boot did not crash, the host restarted.
    pub(crate) fn boot_id() -> Option<String> {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim();
        (!id.is_empty() && id.len() <= 64).then(|| id.to_string())
    }
}

#[cfg(windows)]
mod imp {
    pub(super) static NOTED: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);
}

#[cfg(windows)]
mod win {
    use super::Stream;
    use std::io;

    /// No signals on Windows: nothing to install.
    pub(crate) fn note_fatal_signals(_: Stream, _: Vec<u8>, _: bool) -> io::Result<()> {
        Ok(())
    }

    /// Makes `file` this process's standard error handle (std's stderr looks it up on each
    /// write): a panic's note and std's stack overflow report land in it.
    pub(crate) fn redirect_stderr(file: std::fs::File) -> io::Result<()> {
        use std::os::windows::io::IntoRawHandle;
        use windows_sys::Win32::System::Console::{SetStdHandle, STD_ERROR_HANDLE};
        let h = file.into_raw_handle();
        // SAFETY: a valid handle, kept open for the process's life (never closed).
        if unsafe { SetStdHandle(STD_ERROR_HANDLE, h as _) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// No boot id on Windows: boots are told apart by the boot time (see `daemon::lifecycle`).
    pub(crate) fn boot_id() -> Option<String> {
        None
    }
}
