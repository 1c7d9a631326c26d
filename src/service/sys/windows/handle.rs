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

/// The security of a named object the daemon creates (its stop events, the config's lock),
/// parsed from SDDL and freed on drop. `attributes()` is NULL (the default security) when the
/// SDDL could not be parsed.
pub(crate) struct ObjectSecurity {
    sd: windows_sys::Win32::Security::PSECURITY_DESCRIPTOR,
    sa: windows_sys::Win32::Security::SECURITY_ATTRIBUTES,
}

impl ObjectSecurity {
    pub(crate) fn new(sddl: &str) -> ObjectSecurity {
        use windows_sys::Win32::Security::Authorization::{
            ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
        };
        let sddl = wide(sddl);
        let mut sd = std::ptr::null_mut();
        // SAFETY: a NUL-terminated SDDL string and a valid out pointer; the descriptor is
        // freed with LocalFree on drop.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        } != 0;
        if !ok {
            sd = std::ptr::null_mut();
        }
        ObjectSecurity {
            sd,
            sa: windows_sys::Win32::Security::SECURITY_ATTRIBUTES {
                nLength: std::mem::size_of::<windows_sys::Win32::Security::SECURITY_ATTRIBUTES>()
                    as u32,
                lpSecurityDescriptor: sd,
                bInheritHandle: 0,
            },
        }
    }

    /// For the `Create*W` calls; NULL: the default security.
    pub(crate) fn attributes(&self) -> *const windows_sys::Win32::Security::SECURITY_ATTRIBUTES {
        if self.sd.is_null() {
            std::ptr::null()
        } else {
            &self.sa
        }
    }
}

impl Drop for ObjectSecurity {
    fn drop(&mut self) {
        if !self.sd.is_null() {
            // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW,
            // freed exactly once.
            unsafe {
                windows_sys::Win32::Foundation::LocalFree(self.sd as _);
            }
        }
    }
}
