//! The allocator setting of the long-lived daemon: large blocks it frees go back to the
//! system at once, instead of staying in its heap for good.
//!
//! Only glibc on 64-bit Linux does anything here; elsewhere it is a no-op. (What only
//! lowered the RSS figure — dropping the program's read-only pages — is gone: issue 21 judges
//! memory by private memory and PSS. Handing back the free pages a config parse left
//! ([`release_free`]) lowers both: at 10,000 jobs, by megabytes, issue 25.)

/// Makes freed large blocks go back to the system at once: glibc raises its mmap threshold
/// after each large block it frees (up to 32 MiB), after which blocks of that size come from
/// the heap and stay there after use. A daemon that writes a 2 MB status now and then would
/// keep that much for good. A fixed threshold turns the raising off.
///
/// And keeps the threads' allocations in two heaps (arenas): glibc gives each new thread an
/// arena of its own up to eight per core, and each keeps what its thread freed. The finisher's
/// workers come and go (a few, more while results are read: `app::daemon::finish`), so a busy
/// daemon's private memory grew with every arena one of them touched, for good (the soak of
/// issue 25). Two, not one: the config is parsed on a thread of its own so that its tens of
/// megabytes of transients fill the second heap and the jobs kept are copied into the first
/// compactly (`service::config::load_compact`). With one heap the kept jobs sat between the
/// parse's freed blocks: 10,000 jobs with results held 10,300 KiB private dirty against 5,284
/// with two (scripts/bench-memory.sh, same session, release build). One heap saved 72 KiB
/// idle at 100 jobs (commit 63a1aa7), a hundredth of that.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    {
        /// glibc's default mmap threshold, now fixed: blocks from 128 KiB up are mapped on
        /// their own and unmapped when freed.
        const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
        /// Two heaps for all threads (see above).
        const ARENA_MAX: libc::c_int = 2;
        // SAFETY: mallopt only changes malloc's parameters; it is safe at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    }
}

/// Hands the free pages of the heaps back to the system (glibc's `malloc_trim`): after a large
/// transient is freed — a config of 10,000 jobs takes some 38 MB to parse — the freed memory
/// stays the process's, counted in its private memory for good, as long as a live block sits
/// above it or glibc's small-block lists still hold pieces of it. Only pages with nothing live
/// on them go back; a page used later is given anew by the kernel. No-op elsewhere.
pub(crate) fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    // SAFETY: malloc_trim only releases memory no allocation uses; safe at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
