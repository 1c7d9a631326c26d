//! Unix side of [`crate::sys`].

use std::io;

/// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22), or `None`
/// if no such process exists. Outside Linux (no procfs) only existence is known; `Some(0)`.
pub fn process_start_time(pid: u32) -> Option<u64> {
    if pid == 0 || pid > i32::MAX as u32 {
        return None;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The command name (field 2) may contain spaces and parentheses: split after the
            // last ')'. Field 3 is then the first one after it, so field 22 is index 19.
            let rest = &stat[stat.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.first() == Some(&"Z") {
                return None; // a zombie has ended; it only waits to be reaped
            }
            fields.get(19)?.parse().ok()
        }
        Err(_) if !std::path::Path::new("/proc/self/stat").exists() => {
            // SAFETY: kill with signal 0 only checks for existence and permission.
            let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
            (r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)).then_some(0)
        }
        Err(_) => None,
    }
}

/// Asks the daemon with this PID to stop by sending SIGTERM (its handler reads the
/// stop-request file to learn whether to drain or end runs now).
pub fn signal_stop(pid: u32) -> io::Result<()> {
    // SAFETY: plain kill(2) on a PID we verified by start time just before.
    let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Files the daemon creates are private to its user (0700 dirs, 0600 files).
pub fn set_private_umask() {
    // SAFETY: umask cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Closes every descriptor above stderr that the daemon may have inherited from ctrl's parent
/// (the agent's socket, say), so the agent sees EOF as soon as ctrl exits. Called first thing
/// in a detached daemon, before it opens anything of its own.
pub fn close_inherited_fds() {
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
pub fn forward_control_signals(
    f: impl Fn(super::ControlSignal) + Send + 'static,
) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for sig in signals.forever() {
                f(if sig == SIGHUP {
                    super::ControlSignal::Reload
                } else {
                    super::ControlSignal::Stop
                });
            }
        })?;
    Ok(())
}

/// The process group of a runner whose environment holds `key=value` (its ROBOTMK_RUN_DIR),
/// with the leader's start time: finds a run the previous daemon spawned but died before
/// journalling its PID. A `/proc` scan, done only in that rare case at start-up.
pub fn find_run_by_env(key: &str, value: &str) -> Option<(u32, Option<u64>)> {
    let needle = format!("{key}={value}");
    let mut found: Option<(u32, Option<u64>)> = None;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let Some(pgid) = fields.get(2).and_then(|g| g.parse::<u32>().ok()) else {
            continue;
        };
        if pgid == pid {
            return Some((pid, process_start_time(pid)));
        }
        found.get_or_insert((pgid, None));
    }
    found
}
