//! The allocator setting of the long-lived daemon: large blocks it frees go back to the
//! system at once, instead of staying in its heap for good.
//!
//! Only glibc on 64-bit Linux does anything here; elsewhere it is a no-op. (What only
//! lowered the RSS figure — dropping the program's read-only pages, `malloc_trim`, parsing
//! the config on a thread of its own — is gone: issue 21 judges memory by private memory and
//! PSS, which they did not measurably lower.)

/// Makes freed large blocks go back to the system at once: glibc raises its mmap threshold
/// after each large block it frees (up to 32 MiB), after which blocks of that size come from
/// the heap and stay there after use. A daemon that writes a 2 MB status now and then would
/// keep that much for good. A fixed threshold turns the raising off.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    {
        /// glibc's default mmap threshold, now fixed: blocks from 128 KiB up are mapped on
        /// their own and unmapped when freed.
        const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt only changes malloc's parameters; it is safe at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}
