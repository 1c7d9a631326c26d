//! Finding a byte in a long buffer (line ends in ctrl's output, half a MiB at 1,000 jobs)
//! with vector instructions the build can count on, without asking the CPU which others it
//! has: the `memchr` crate's own dispatch does that with `cpuid` on its first call, which a
//! virtual machine traps — 16 µs of every ctrl (2 % of it at 100 jobs; perf, 2 cores). SSE2
//! is part of x86_64 itself; elsewhere the portable word-at-a-time search.

/// Where `needle` first is in `hay`.
pub(crate) fn find(needle: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(sse2) = memchr::arch::x86_64::sse2::memchr::One::new(needle) {
        return sse2.find(hay);
    }
    memchr::arch::all::memchr::One::new(needle).find(hay)
}

/// Where `needle` last is in `hay`.
pub(crate) fn rfind(needle: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(sse2) = memchr::arch::x86_64::sse2::memchr::One::new(needle) {
        return sse2.rfind(hay);
    }
    memchr::arch::all::memchr::One::new(needle).rfind(hay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_a_plain_search_finds_at_every_length_and_place() {
        for len in 0..200usize {
            for at in [None, Some(0), Some(len / 2), Some(len.saturating_sub(1))] {
                let mut hay = vec![b'x'; len];
                if let Some(i) = at.filter(|&i| i < len) {
                    hay[i] = b'\n';
                    if i + 3 < len {
                        hay[i + 3] = b'\n';
                    }
                }
                let plain_first = hay.iter().position(|&b| b == b'\n');
                let plain_last = hay.iter().rposition(|&b| b == b'\n');
                assert_eq!(find(b'\n', &hay), plain_first, "{len} {at:?}");
                assert_eq!(rfind(b'\n', &hay), plain_last, "{len} {at:?}");
            }
        }
    }
}
