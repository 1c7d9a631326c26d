//! What the long-lived daemon holds in memory that it does not use: heap pages freed by
//! glibc's malloc but kept. (The pages of its own program that start-up touched are left
//! mapped: unmapping them with `MADV_DONTNEED` lowered RSS and PSS while the page cache kept
//! every page, a better number and no memory given back to the machine — issue 25.)
//!
//! Only glibc on 64-bit Linux does anything here; elsewhere these are no-ops.

/// Makes freed large blocks go back to the system at once: glibc raises its mmap threshold
/// after each large block it frees (up to 32 MiB), after which blocks of that size come from
/// the heap and stay there after use. A daemon that writes a 2 MB status now and then would
/// keep that much for good. A fixed threshold turns the raising off.
///
/// And keeps the threads' allocations in two heaps (arenas): glibc gives each new thread an
/// arena of its own up to eight per core, and each keeps what its thread freed. The finisher's
/// workers come and go (up to 32 under load, `daemon::finish`), so a busy daemon's private
/// memory grew with every arena one of them touched, for good (the soak of issue 25).
pub fn tune_allocator() {
    imp::tune_allocator()
}

/// Hands back what the process holds and does not use now: free heap pages (`malloc_trim`).
/// Call it when going idle: it costs a few hundred microseconds.
pub fn release_unused() {
    imp::release_unused()
}

/// Minor page faults of the whole process so far: pages it touched that were not mapped. A
/// cheap measure of "touched new memory since the last release".
pub fn page_faults() -> u64 {
    imp::page_faults()
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod imp {
    /// glibc's default mmap threshold, now fixed: blocks from 128 KiB up are mapped on their
    /// own and unmapped when freed.
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
    /// The loop thread's heap and one the other threads share: they allocate little, and
    /// rarely at the same instant.
    const ARENA_MAX: libc::c_int = 2;

    pub fn tune_allocator() {
        // SAFETY: mallopt only changes malloc's parameters; it is safe at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    }

    pub fn release_unused() {
        // SAFETY: malloc_trim only returns free memory to the system.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    pub fn page_faults() -> u64 {
        // SAFETY: getrusage writes into the struct we hand it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
            return 0;
        }
        ru.ru_minflt as u64
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
mod imp {
    pub fn tune_allocator() {}
    pub fn release_unused() {}
    pub fn page_faults() -> u64 {
        0
    }
}
