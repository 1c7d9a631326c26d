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
//!
//! ctrl alone also notes the signals that end a process on request (SIGTERM, SIGINT, SIGHUP:
//! the agent's or `timeout(1)`'s timeout, systemd stopping the agent's connection unit) with
//! [`note_end_signals`]: the same note, then the process ends by that signal. The daemon
//! handles those signals itself. So that such a note never follows a cut line (which Checkmk
//! would join to the next plugin's section header, or give to a piggyback host), ctrl writes
//! its output through [`LineSafeStdout`]: whole lines a `write(2)`, whose count says where
//! the output stands, so its position is always known. A signal that arrives
//! while ctrl writes (waiting on a slow reader) is taken over by the writer: it first finishes
//! the line under way (a JSON line can be far longer than a pipe holds), then writes the note
//! and ends the process by the signal. A signal that arrives anywhere else is noted by the
//! handler at once, after a newline of its own if a long line's piece was out.

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

/// Raises SIGSEGV (Unix; aborts on Windows): the test-only crash hook's `segv`, which is
/// only in builds with debug assertions (`app::test_crash`).
#[cfg(debug_assertions)]
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
pub(crate) use imp::{boot_id, note_end_signals, note_fatal_signals, redirect_stderr};

#[cfg(windows)]
pub(crate) use win::{boot_id, note_end_signals, note_fatal_signals, redirect_stderr};

/// True while ctrl's stdout may stand inside a line (a piece of a long line is out, or a
/// write of one is under way): a note must begin with a newline then. Only
/// [`LineSafeStdout`] writes move it.
pub(crate) fn stdout_midline() -> bool {
    imp::MIDLINE.load(std::sync::atomic::Ordering::SeqCst)
}

/// What [`LineSafeStdout`] keeps before it writes the whole lines it holds.
const BUFFER: usize = 8192;

/// Stdout for ctrl: writes whole lines straight to the descriptor (std's stdout buffer is
/// bypassed and stays empty), in as few `write(2)`s as the pipe allows. Where each write ended
/// is known from its count, even when a signal interrupts it while the reader is slow, and
/// [`stdout_midline`] says whether that was inside a line. What is still buffered when the
/// process ends is lost, never half a line of it. (Writes of at most `PIPE_BUF` each, which
/// a pipe takes whole, cost a 1,000-job ctrl 0.3 ms in 130 more system calls: a partial
/// count says as much.)
pub(crate) struct LineSafeStdout {
    pending: Vec<u8>,
}

impl LineSafeStdout {
    pub(crate) fn new() -> LineSafeStdout {
        LineSafeStdout {
            pending: Vec::with_capacity(BUFFER),
        }
    }

    /// Writes out what ends a line (with `all`, everything) of what it holds.
    fn drain(&mut self, all: bool) -> std::io::Result<()> {
        let end = if all {
            self.pending.len()
        } else {
            line_end(&self.pending)
        };
        let (done, result) = emit(&self.pending, end);
        self.pending.drain(..done);
        result
    }
}

/// Where the last whole line of `data` ends (0: none does).
fn line_end(data: &[u8]) -> usize {
    // A vectorised search from the end: a long line's middle (the jobs' JSON, half a MiB at
    // 1,000 jobs) has no newline, and a byte-wise search took 12 % of a 1,000-job ctrl, std's
    // word-wise one still 9 % of its instructions.
    crate::model::bytes::rfind(b'\n', data).map_or(0, |i| i + 1)
}

/// Writes `data[..end]` and says how much went out. A SIGTERM, SIGINT or SIGHUP that arrives
/// during a write is handled here, where the output's position is known: see
/// [`imp::end_in_writer`].
fn emit(data: &[u8], end: usize) -> (usize, std::io::Result<()>) {
    use std::sync::atomic::Ordering;
    let mut done = 0;
    let result = loop {
        if done >= end {
            break Ok(());
        }
        let rest = &data[done..];
        imp::IN_WRITE.store(true, Ordering::SeqCst);
        imp::end_in_writer(rest);
        let written = imp::write_stdout(&data[done..end]);
        if let Ok(n) = written {
            if n > 0 {
                imp::MIDLINE.store(!rest[..n].ends_with(b"\n"), Ordering::SeqCst);
            }
            done += n;
        }
        imp::IN_WRITE.store(false, Ordering::SeqCst);
        imp::end_in_writer(&data[done..]);
        match written {
            Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    (done, result)
}

impl std::io::Write for LineSafeStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() >= BUFFER {
            // A large piece (the view's jobs, its checks) goes out from where it is, not
            // copied (copies of 530 KB cost a 1,000-job ctrl 100 page faults and 0.6 ms): what
            // is held first, then the piece up to its last newline, the rest held. A piece with
            // no newline at all (a long JSON line's middle) goes out whole, inside its line,
            // as a long line's pieces must.
            self.drain(true)?;
            let end = match line_end(buf) {
                0 => buf.len(),
                end => end,
            };
            let (done, result) = emit(buf, end);
            self.pending.extend_from_slice(&buf[done..]);
            result?;
        } else {
            self.pending.extend_from_slice(buf);
            if self.pending.len() >= BUFFER {
                self.drain(false)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.drain(true)
    }
}

impl Drop for LineSafeStdout {
    fn drop(&mut self) {
        let _ = self.drain(true);
    }
}

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
    pub(super) static MIDLINE: AtomicBool = AtomicBool::new(false);
    /// Set by [`LineSafeStdout`](super::LineSafeStdout) around each write: an end signal
    /// then only sets [`ENDING`], and the writer ends the process.
    pub(super) static IN_WRITE: AtomicBool = AtomicBool::new(false);
    /// An end signal the writer is to act on (0: none).
    static ENDING: AtomicI32 = AtomicI32::new(0);
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

    /// The signals that end a process on request, noted by ctrl only (the daemon handles
    /// them itself).
    const END: [(libc::c_int, &str); 3] = [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ];

    /// Installs the note for SIGTERM, SIGINT and SIGHUP, after [`note_fatal_signals`] (whose
    /// prefix and stream it uses): the note, then the process ends by the signal, as it
    /// would have without the handler. A signal the process ignores (`nohup`) stays ignored.
    pub(crate) fn note_end_signals() -> io::Result<()> {
        if PREFIX.get().is_none() {
            return Ok(());
        }
        for (sig, _) in END {
            // SAFETY: a zeroed sigaction is valid; sigaction with valid pointers.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_end as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut new.sa_mask);
                // One note: each of the three waits while another one's handler runs.
                for (other, _) in END {
                    libc::sigaddset(&mut new.sa_mask, other);
                }
                if libc::sigaction(sig, &new, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// Async-signal-safe: `write(2)`, `sigaction`, `raise` only.
    extern "C" fn on_end(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        if END.iter().all(|(s, _)| *s != sig) {
            return;
        }
        // ctrl waits in a write (no SA_RESTART: it returns EINTR, having written nothing of
        // its chunk, or returns having written all of it): the writer knows where the output
        // stands and ends the process itself, right after.
        if IN_WRITE.load(Ordering::SeqCst) {
            ENDING.store(sig, Ordering::SeqCst);
            return;
        }
        if MIDLINE.load(Ordering::SeqCst) {
            write_all(FD.load(Ordering::SeqCst), b"\n");
        }
        note_end_and_die(sig);
    }

    /// Writes the note of end signal `sig` (once), then ends the process by it. The signal is
    /// blocked (in its handler, or by [`end_in_writer`]): the default action ends the process
    /// as soon as it is unblocked.
    fn note_end_and_die(sig: libc::c_int) -> ! {
        if !NOTED.swap(true, Ordering::SeqCst) {
            let fd = FD.load(Ordering::SeqCst);
            let mut line = Line::new();
            line.push(b"ended by signal ");
            line.number(sig as u64);
            if let Some((_, name)) = END.iter().find(|(s, _)| *s == sig) {
                line.push(b" (");
                line.push(name.as_bytes());
                line.push(b")");
            }
            line.push(b" before it printed everything\n");
            if let Some(p) = PREFIX.get() {
                write_all(fd, p);
            }
            write_all(fd, line.bytes());
        }
        // SAFETY: sigaction, raise, sigprocmask with valid arguments.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
            libc::raise(sig);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            // Still here: the signal is blocked by a handler up the stack; end as it would.
            libc::_exit(128 + sig)
        }
    }

    /// Called by the writer before and after each write, with what it has not written yet:
    /// if an end signal came meanwhile, finishes the line under way from `rest` (a newline
    /// if `rest` does not hold its end), writes the note and ends the process by the signal.
    pub(super) fn end_in_writer(rest: &[u8]) {
        let sig = ENDING.load(Ordering::SeqCst);
        if sig == 0 {
            return;
        }
        // SAFETY: sigprocmask with a valid set: no second end signal while the note is written.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for (s, _) in END {
                libc::sigaddset(&mut set, s);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        IN_WRITE.store(false, Ordering::SeqCst);
        let fd = FD.load(Ordering::SeqCst);
        if MIDLINE.load(Ordering::SeqCst) {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => write_all(fd, &rest[..=i]),
                None => {
                    write_all(fd, rest);
                    write_all(fd, b"\n");
                }
            }
        }
        note_end_and_die(sig)
    }

    /// One `write(2)` of `b` to stdout (EINTR is the caller's to look at and retry).
    pub(super) fn write_stdout(b: &[u8]) -> io::Result<usize> {
        // SAFETY: write from a valid buffer of its length.
        let n = unsafe { libc::write(libc::STDOUT_FILENO, b.as_ptr().cast(), b.len()) };
        if n >= 0 {
            Ok(n as usize)
        } else {
            Err(io::Error::last_os_error())
        }
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
            if fd == libc::STDOUT_FILENO && MIDLINE.load(Ordering::SeqCst) {
                write_all(fd, b"\n");
            }
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
    pub(super) static MIDLINE: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);
    pub(super) static IN_WRITE: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    /// No signals on Windows: nothing ends the process from inside a write.
    pub(super) fn end_in_writer(_: &[u8]) {}

    /// Windows: std's stdout (no signals interrupt it).
    pub(super) fn write_stdout(b: &[u8]) -> std::io::Result<usize> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let n = out.write(b)?;
        out.flush()?;
        Ok(n)
    }
}

#[cfg(windows)]
mod win {
    use super::Stream;
    use std::io;

    /// No signals on Windows: nothing to install (a process ended by `TerminateProcess` runs
    /// no code of its own).
    pub(crate) fn note_end_signals() -> io::Result<()> {
        Ok(())
    }

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
