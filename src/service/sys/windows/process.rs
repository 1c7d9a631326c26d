//! Processes on Windows: a process's identity by PID and creation time, ending one, the
//! image it runs (is it a daemon of this program?), and the std handles of a freshly detached
//! daemon. Touches other processes through handles opened by PID, and this process's std
//! handles.

use super::handle::OwnedHandle;
use std::io;
use windows_sys::Win32::Foundation::{FILETIME, HANDLE, STILL_ACTIVE};
use windows_sys::Win32::System::Console::{
    SetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
};

fn filetime(ft: FILETIME) -> u64 {
    (u64::from(ft.dwHighDateTime) << 32) | u64::from(ft.dwLowDateTime)
}

/// The creation time of a live process (100 ns units since 1601), or `None` if no such
/// process exists or it has exited (a handle held elsewhere can keep an exited one around).
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
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

/// Ends the process `pid` at once (TerminateProcess), if it still is the one that started
/// at `start`. The start time is checked on the same handle that terminates, so a PID
/// recycled between the caller's check and the kill is never hit.
pub(crate) fn kill_process(pid: u32, start: Option<u64>) -> io::Result<()> {
    use windows_sys::Win32::System::Threading::{TerminateProcess, PROCESS_TERMINATE};
    // SAFETY: OpenProcess with a plain PID; the result is checked and owned.
    let h = OwnedHandle::new(unsafe {
        OpenProcess(
            PROCESS_TERMINATE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid,
        )
    })
    .ok_or_else(io::Error::last_os_error)?;
    if start.is_none() || handle_start_time(h.0) != start {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} has exited or is another process now"),
        ));
    }
    // SAFETY: a valid process handle opened with PROCESS_TERMINATE.
    if unsafe { TerminateProcess(h.0, 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The daemon is created without handle inheritance, so nothing of the agent's can reach it;
/// its std handles are pointed at NUL anyway, so that no stray handle value is ever written to.
pub(crate) fn close_inherited_fds() {
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

/// Finding a run by its environment is not implemented on Windows: a run the previous daemon
/// started but never journalled is recorded `interrupted` (docs/WINDOWS.md).
pub(crate) fn find_run_by_env(_key: &str, _value: &str) -> Option<(u32, Option<u64>)> {
    None
}

/// True if process `pid` started at `start` (PID reuse) and runs this program (the daemon
/// runs from a copy named `robotmk-daemon-<build>-….exe`, see `launch::daemon_exe`).
/// Windows cannot list who holds a lock, so the lock is not part of the check here.
pub(crate) fn is_instance_daemon(
    pid: u32,
    start: Option<u64>,
    _lock_file: &std::path::Path,
) -> bool {
    if start.is_none() || process_start_time(pid) != start {
        return false;
    }
    let Some(image) = process_image(pid) else {
        return false;
    };
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

/// The full path of the image process `pid` runs, or `None` if it cannot be told.
fn process_image(pid: u32) -> Option<String> {
    use windows_sys::Win32::System::Threading::{QueryFullProcessImageNameW, PROCESS_NAME_WIN32};
    // SAFETY: OpenProcess with a plain PID; the result is checked and owned.
    let h = OwnedHandle::new(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })?;
    let mut buf = vec![0u16; 1024];
    let mut len = buf.len() as u32;
    // SAFETY: a valid process handle, a buffer of `len` UTF-16 units and its length.
    if unsafe { QueryFullProcessImageNameW(h.0, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len) }
        == 0
    {
        return None;
    }
    Some(String::from_utf16_lossy(&buf[..len as usize]))
}

/// The file process `pid` runs (`None`: this process). Windows tells its path only: a
/// running .exe cannot be replaced or renamed over, so it is never `deleted`, and std cannot
/// read a file's identity (`file` is `None`). The daemon runs from its own copy in the state
/// dir (`launch::daemon_exe`), so its path is never ctrl's.
pub(crate) fn process_program(pid: Option<u32>) -> Option<crate::service::sys::Program> {
    let path = match pid {
        Some(pid) => std::path::PathBuf::from(process_image(pid)?),
        None => std::env::current_exe().ok()?,
    };
    Some(crate::service::sys::Program {
        path,
        deleted: false,
        file: None,
        launched: None,
    })
}

/// Whether process `pid` runs this process's file: not told on Windows (see
/// [`process_program`]).
pub(crate) fn runs_my_file(_pid: u32) -> Option<bool> {
    None
}

/// Whether two processes run the same program: not told on Windows (see [`process_program`]:
/// no program is replaced under a running process there).
pub(crate) fn same_program(_a: Option<u32>, _b: Option<u32>) -> Option<bool> {
    None
}
