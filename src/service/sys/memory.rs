//! What the long-lived daemon holds in memory that it does not use: heap pages freed by
//! glibc's malloc but kept, and the pages of its own program (the same binary as ctrl, most
//! of it argument parsing, config parsing and result reading) that start-up or a burst of
//! runs touched once.
//!
//! Only glibc on 64-bit Linux does anything here; elsewhere these are no-ops.

/// Makes freed large blocks go back to the system at once: glibc raises its mmap threshold
/// after each large block it frees (up to 32 MiB), after which blocks of that size come from
/// the heap and stay there after use. A daemon that writes a 2 MB status now and then would
/// keep that much for good. A fixed threshold turns the raising off.
pub fn tune_allocator() {
    imp::tune_allocator()
}

/// Hands back what the process holds and does not use now: free heap pages (`malloc_trim`),
/// and the resident pages of the program's read-only segments (code, constants), which the
/// kernel maps again from the page cache when they are next used. Call it when going idle:
/// it costs a few hundred microseconds, and the next pass pays a few dozen minor page faults.
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
    use std::ffi::c_void;

    /// An entry of the dynamic section (`Elf64_Dyn`).
    #[repr(C)]
    struct Dyn {
        d_tag: i64,
        d_val: u64,
    }

    /// glibc's default mmap threshold, now fixed: blocks from 128 KiB up are mapped on their
    /// own and unmapped when freed.
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

    pub fn tune_allocator() {
        // SAFETY: mallopt only changes malloc's parameters; it is safe at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }

    pub fn release_unused() {
        // SAFETY: malloc_trim only returns free memory to the system.
        unsafe {
            libc::malloc_trim(0);
        }
        release_program_pages();
    }

    pub fn page_faults() -> u64 {
        // SAFETY: getrusage writes into the struct we hand it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
            return 0;
        }
        ru.ru_minflt as u64
    }

    /// Drops the page table entries of the main program's segments that are never written
    /// (PT_LOAD without PF_W: code, constants, unwind tables). These are private file
    /// mappings whose pages still equal the file: `MADV_DONTNEED` only unmaps them, the page
    /// cache keeps them, and the next use maps them again with a minor fault. (Unlike
    /// `MADV_PAGEOUT`, which would evict them from the page cache, so that the next ctrl, the
    /// same binary, would read them from disk.) Writable segments, which hold relocated data
    /// (RELRO) and variables, are never touched: dropping those pages would lose their
    /// contents. A program with text relocations (its code patched at load time) is left
    /// alone entirely.
    fn release_program_pages() {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => return,
        };
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        // SAFETY: the callback only reads the program headers glibc hands it, for the
        // duration of the call; `data` is the `ranges` vector above.
        unsafe {
            libc::dl_iterate_phdr(Some(main_program), &mut ranges as *mut _ as *mut c_void);
        }
        for (start, end) in ranges {
            // Whole pages inside the segment only: a page it shares with a neighbour stays.
            let start = start.div_ceil(page) * page;
            let end = end / page * page;
            if end > start {
                // SAFETY: the range lies inside a read-only segment of our own program; see
                // the function's comment for why dropping its pages loses nothing.
                unsafe {
                    libc::madvise(start as *mut c_void, end - start, libc::MADV_DONTNEED);
                }
            }
        }
    }

    /// `dl_iterate_phdr` callback: collects the read-only PT_LOAD ranges of the first object
    /// (the main program) and stops.
    unsafe extern "C" fn main_program(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> libc::c_int {
        const DT_NULL: i64 = 0;
        const DT_TEXTREL: i64 = 22;
        const DT_FLAGS: i64 = 30;
        const DF_TEXTREL: u64 = 4;
        // SAFETY (whole body): glibc passes a valid `info` whose `dlpi_phdr` points at
        // `dlpi_phnum` program headers; `data` is the vector `release_program_pages` passed.
        let info = &*info;
        let ranges = &mut *(data as *mut Vec<(usize, usize)>);
        let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
        let base = info.dlpi_addr as usize;
        for ph in phdrs.iter().filter(|p| p.p_type == libc::PT_DYNAMIC) {
            let mut d = (base + ph.p_vaddr as usize) as *const Dyn;
            while (*d).d_tag != DT_NULL {
                let tag = (*d).d_tag;
                if tag == DT_TEXTREL || (tag == DT_FLAGS && (*d).d_val & DF_TEXTREL != 0) {
                    return 1; // code patched at load time: its pages are not the file's
                }
                d = d.add(1);
            }
        }
        for ph in phdrs {
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W == 0 {
                let start = base + ph.p_vaddr as usize;
                ranges.push((start, start + ph.p_memsz as usize));
            }
        }
        1 // the main program comes first; shared libraries are not ours to manage
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
