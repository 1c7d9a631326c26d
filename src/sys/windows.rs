//! Windows side of [`crate::sys`]: process identity by PID and creation time, the named stop
//! event, and handle hygiene for a freshly detached daemon.
//!
//! The stop event is named after the daemon's PID (`robotmk-daemon-stop-<pid>`): `stop`
//! already knows that PID from the status file and verifies it by creation time before
//! signalling, so no other name has to be shared between the two sides. The daemon creates it
//! in the `Global\` namespace when it may (SYSTEM, administrators: reachable from an admin's
//! session), else in its session's `Local\` namespace; `stop` tries both. The stop file, read
//! once a second, remains the fallback when the event cannot be reached.

use std::io;
use std::os::windows::ffi::OsStrExt;
use windows_sys::Win32::Foundation::{
    CloseHandle, LocalFree, ERROR_ALREADY_EXISTS, FILETIME, HANDLE, STILL_ACTIVE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::System::Console::{
    SetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetExitCodeProcess, GetProcessTimes, OpenEventW, OpenProcess, SetEvent,
    WaitForSingleObject, EVENT_MODIFY_STATE, INFINITE, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// A NUL-terminated UTF-16 copy of `s`, for the `W` functions.
pub(crate) fn wide(s: impl AsRef<std::ffi::OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().chain(Some(0)).collect()
}

/// A handle closed on drop.
pub(crate) struct OwnedHandle(pub(crate) HANDLE);

// SAFETY: a kernel handle is a process-wide value; the objects used here (processes, jobs,
// events, snapshots) may be used from any thread.
unsafe impl Send for OwnedHandle {}
// SAFETY: see above; the functions called on these handles are thread-safe.
unsafe impl Sync for OwnedHandle {}

impl OwnedHandle {
    /// Wraps a handle returned by a Win32 call; `None` for NULL or INVALID_HANDLE_VALUE.
    pub(crate) fn new(h: HANDLE) -> Option<OwnedHandle> {
        (!h.is_null() && h as isize != -1).then_some(OwnedHandle(h))
    }
}

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        // SAFETY: the handle is owned by this value and closed exactly once.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

fn filetime(ft: FILETIME) -> u64 {
    (u64::from(ft.dwHighDateTime) << 32) | u64::from(ft.dwLowDateTime)
}

/// The creation time of a live process (100 ns units since 1601), or `None` if no such
/// process exists or it has exited (a handle held elsewhere can keep an exited one around).
pub fn process_start_time(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    // SAFETY: OpenProcess with a plain PID; the result is checked and owned.
    let h = OwnedHandle::new(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })?;
    handle_start_time(h.0)
}

/// [`process_start_time`] for a process handle (needs PROCESS_QUERY_LIMITED_INFORMATION).
pub(crate) fn handle_start_time(h: HANDLE) -> Option<u64> {
    let mut code = 0u32;
    // SAFETY: valid process handle, valid out pointer.
    if unsafe { GetExitCodeProcess(h, &mut code) } == 0 || code != STILL_ACTIVE as u32 {
        return None;
    }
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: valid process handle, four valid out pointers.
    let ok = unsafe { GetProcessTimes(h, &mut created, &mut exited, &mut kernel, &mut user) };
    (ok != 0).then(|| filetime(created))
}

fn stop_event_names(pid: u32) -> [String; 2] {
    [
        format!("Global\\robotmk-daemon-stop-{pid}"),
        format!("Local\\robotmk-daemon-stop-{pid}"),
    ]
}

/// Asks the daemon with this PID to stop by setting its named stop event (its handler reads
/// the stop-request file to learn whether to drain or end runs now).
pub fn signal_stop(pid: u32) -> io::Result<()> {
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for name in stop_event_names(pid) {
        let w = wide(&name);
        // SAFETY: OpenEventW with a NUL-terminated name; the result is checked and owned.
        match OwnedHandle::new(unsafe { OpenEventW(EVENT_MODIFY_STATE, 0, w.as_ptr()) }) {
            Some(ev) => {
                // SAFETY: a valid event handle opened with EVENT_MODIFY_STATE.
                return if unsafe { SetEvent(ev.0) } != 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                };
            }
            None => last = io::Error::last_os_error(),
        }
    }
    Err(last)
}

/// Nothing to do: files the daemon creates inherit the ACL of the state dir (under
/// `C:\ProgramData\checkmk\agent\` only administrators and SYSTEM may write).
pub fn set_private_umask() {}

/// The daemon is created without handle inheritance, so nothing of the agent's can reach it;
/// its std handles are pointed at NUL anyway, so that no stray handle value is ever written to.
pub fn close_inherited_fds() {
    use std::os::windows::io::IntoRawHandle;
    for which in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        let Ok(nul) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("NUL")
        else {
            return;
        };
        // SAFETY: the NUL handle is given up by its File and lives for the rest of the process.
        unsafe {
            SetStdHandle(which, nul.into_raw_handle() as HANDLE);
        }
    }
}

/// Creates the stop event: SYSTEM, administrators and the owner may set it, so an admin's
/// `stop` reaches a SYSTEM daemon. Falls back to the default security if the descriptor
/// cannot be built.
fn create_stop_event(pid: u32) -> io::Result<OwnedHandle> {
    let sddl = wide("D:(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;OW)");
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: a NUL-terminated SDDL string and a valid out pointer; the descriptor is freed
    // with LocalFree below.
    let have_sd = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            std::ptr::null_mut(),
        )
    } != 0;
    let sa = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd,
        bInheritHandle: 0,
    };
    let sa_ptr: *const SECURITY_ATTRIBUTES = if have_sd { &sa } else { std::ptr::null() };
    let mut result = Err(io::Error::from(io::ErrorKind::NotFound));
    for name in stop_event_names(pid) {
        let w = wide(&name);
        // SAFETY: CreateEventW (auto-reset, not signalled) with valid attributes or NULL and a
        // NUL-terminated name.
        let h = unsafe { CreateEventW(sa_ptr, 0, 0, w.as_ptr()) };
        let err = io::Error::last_os_error();
        match OwnedHandle::new(h) {
            // An event by this name from a dead predecessor with our PID cannot exist (it
            // died with its last handle), so ALREADY_EXISTS only means someone else made it.
            Some(ev) if err.raw_os_error() != Some(ERROR_ALREADY_EXISTS as i32) => {
                result = Ok(ev);
                break;
            }
            Some(_) => result = Err(io::Error::other(format!("{name} already exists"))),
            None => result = Err(err),
        }
    }
    if have_sd {
        // SAFETY: sd was allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe {
            LocalFree(sd as _);
        }
    }
    result
}

/// Forwards the named stop event to `f` as [`super::ControlSignal::Stop`], from a thread that
/// sleeps in `WaitForSingleObject` until the event is set (no periodic wake-ups).
pub fn forward_control_signals(
    f: impl Fn(super::ControlSignal) + Send + 'static,
) -> io::Result<()> {
    let ev = match create_stop_event(std::process::id()) {
        Ok(ev) => ev,
        Err(e) => {
            // Not fatal: the daemon reads the stop file once a second anyway.
            tracing::warn!("cannot create the stop event ({e}); stop requests take up to a second");
            return Ok(());
        }
    };
    std::thread::Builder::new()
        .name("stop-event".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let ev = ev;
            loop {
                // SAFETY: a valid event handle owned by this thread for the life of the process.
                let r = unsafe { WaitForSingleObject(ev.0, INFINITE) };
                if r != WAIT_OBJECT_0 {
                    return;
                }
                f(super::ControlSignal::Stop);
            }
        })?;
    Ok(())
}

/// Finding a run by its environment is not implemented on Windows: a run the previous daemon
/// started but never journalled is recorded `interrupted` (docs/WINDOWS.md).
pub fn find_run_by_env(_key: &str, _value: &str) -> Option<(u32, Option<u64>)> {
    None
}

// ---- Files and trust (security.rs, state/file.rs) ------------------------------------------

/// Open flags for [`crate::state::file`]: a reparse point (symlink, junction) at the last
/// component is opened as itself, not followed, unless `follow`; [`is_plain_file`] then
/// refuses it. Windows has no FIFOs in the file system, so nothing can block an open.
pub fn set_open_flags(o: &mut std::fs::OpenOptions, follow: bool) {
    use std::os::windows::fs::OpenOptionsExt;
    if !follow {
        o.custom_flags(NOFOLLOW_FLAGS);
    }
}

/// What changes whenever the file is replaced: its creation time and attributes.
pub fn change_stamp(m: &std::fs::Metadata) -> String {
    use std::os::windows::fs::MetadataExt;
    format!("{}:{}", m.creation_time(), m.file_attributes())
}

/// The trust check of [`crate::security`] on Windows: the target's ACL (and owner) and the
/// ACL of every directory above it (see [`check_path_acl`]).
pub fn check_path_trust(
    path: &std::path::Path,
    what: &str,
    may_be_missing: bool,
) -> Result<(), String> {
    let exists = path.exists();
    if exists {
        check_path_acl(path, true).map_err(|e| format!("{what}: {e}"))?;
    } else if !may_be_missing {
        return Err(format!("{what} {}: does not exist", path.display()));
    }
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() || !dir.exists() {
            continue;
        }
        check_path_acl(dir, false).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    }
    Ok(())
}

/// True if process `pid` started at `start` (PID reuse) and runs this program (the daemon
/// runs from a copy named `robotmk-daemon-<build>-….exe`, see `launch::daemon_exe`).
/// Windows cannot list who holds a lock, so the lock is not part of the check here.
pub fn is_instance_daemon(pid: u32, start: Option<u64>, _lock_file: &std::path::Path) -> bool {
    use windows_sys::Win32::System::Threading::{QueryFullProcessImageNameW, PROCESS_NAME_WIN32};
    if start.is_none() || process_start_time(pid) != start {
        return false;
    }
    // SAFETY: OpenProcess with a plain PID; the result is checked and owned.
    let Some(h) =
        OwnedHandle::new(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })
    else {
        return false;
    };
    let mut buf = vec![0u16; 1024];
    let mut len = buf.len() as u32;
    // SAFETY: a valid process handle, a buffer of `len` UTF-16 units and its length.
    if unsafe { QueryFullProcessImageNameW(h.0, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len) }
        == 0
    {
        return false;
    }
    let image = String::from_utf16_lossy(&buf[..len as usize]);
    let name = std::path::Path::new(&image)
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mine = std::env::current_exe().ok().and_then(|p| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
    });
    name.starts_with("robotmk-daemon") || mine.is_some_and(|m| m == name)
}

/// True if `path` still exists (Windows: std cannot compare file identities yet; a locked
/// file cannot be replaced while it is open, only deleted).
pub fn same_file(_f: &std::fs::File, path: &std::path::Path) -> bool {
    path.exists()
}

// TEMPORARY until the win-acl branch lands: placeholders with the same names.
const NOFOLLOW_FLAGS: u32 = 0x0020_0000; // FILE_FLAG_OPEN_REPARSE_POINT
pub fn is_plain_file(f: &std::fs::File) -> io::Result<bool> {
    use std::os::windows::fs::MetadataExt;
    let m = f.metadata()?;
    Ok(m.is_file() && m.file_attributes() & 0x400 == 0)
}
pub fn check_path_acl(_path: &std::path::Path, _target: bool) -> Result<(), String> {
    Ok(())
}
