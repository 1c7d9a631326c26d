//! Win32 basics the other files share: UTF-16 strings for the `W` functions and a handle that
//! is closed on drop. Touches no object of its own: it only wraps what others open.

use std::os::windows::ffi::OsStrExt;
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};

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
