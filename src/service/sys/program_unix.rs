//! Unix side of [`crate::service::sys::process_program`] and
//! [`crate::service::sys::same_program`]: which file a process runs, read from
//! `/proc/PID/exe`, and whether two processes run the same program, by the GNU build-id note
//! the linker puts in every build (or, without one, byte for byte).

use super::Program;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};

/// `/proc/<pid>/exe`, or `/proc/self/exe` for this process.
fn exe_link(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/exe"),
        None => "/proc/self/exe".to_string(),
    }
}

/// The file process `pid` runs (`None`: this process), or `None` where it cannot be told: no
/// such process, no `/proc`, or not allowed to look (another user's process, for a user
/// that is not root).
pub(crate) fn process_program(pid: Option<u32>) -> Option<Program> {
    if pid.is_some_and(|p| p == 0 || p > i32::MAX as u32) {
        return None;
    }
    let link = exe_link(pid);
    let named = std::fs::read_link(&link).ok()?;
    // The magic link opens the file the process runs, named or not.
    let file = std::fs::metadata(&link).ok().map(|m| (m.dev(), m.ino()));
    // A file whose real name ends in " (deleted)" is told from a deleted one by that name
    // still leading to it.
    let still_named = || std::fs::metadata(&named).is_ok_and(|m| Some((m.dev(), m.ino())) == file);
    let stripped = {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        named
            .as_os_str()
            .as_bytes()
            .strip_suffix(b" (deleted)")
            .map(|p| std::path::PathBuf::from(std::ffi::OsString::from_vec(p.to_vec())))
    };
    let (path, deleted) = match stripped {
        Some(p) if !still_named() => (p, true),
        _ => (named, false),
    };
    Some(Program {
        path,
        deleted,
        file,
        launched: started_as(pid),
    })
}

/// Whether process `pid` runs the very file this process runs (device and inode of what
/// `/proc/PID/exe` opens, named or deleted): two looks, where [`process_program`] of both
/// takes a dozen system calls. A file a running process maps cannot be freed, so its inode
/// is no other file's while it runs. `None` where it cannot be told.
pub(crate) fn runs_my_file(pid: u32) -> Option<bool> {
    if pid == 0 || pid > i32::MAX as u32 {
        return None;
    }
    let id = |p: Option<u32>| {
        std::fs::metadata(exe_link(p))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    Some(id(Some(pid))? == id(None)?)
}

/// The absolute path process `pid` (`None`: this one) was started as: its `argv[0]`.
fn started_as(pid: Option<u32>) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let at = match pid {
        Some(p) => format!("/proc/{p}/cmdline"),
        None => "/proc/self/cmdline".to_string(),
    };
    // argv[0] only: at most one path's length.
    let bytes = crate::service::sys::file::read(
        std::path::Path::new(&at),
        64 * 1024,
        crate::service::sys::file::Links::Follow,
    )
    .ok()?;
    let first = bytes.split(|b| *b == 0).next()?;
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(first));
    p.is_absolute().then(|| p.to_path_buf())
}

/// Whether processes `a` and `b` (`None`: this process) run the same program: the same GNU
/// build-id when both files carry one (the linker's hash of what it linked: a rebuild, a
/// patched or another version's build differs, a copy does not), else the same bytes.
/// `None` if either file cannot be read.
pub(crate) fn same_program(a: Option<u32>, b: Option<u32>) -> Option<bool> {
    let fa = File::open(exe_link(a)).ok()?;
    let fb = File::open(exe_link(b)).ok()?;
    if let (Some(x), Some(y)) = (build_id(&fa), build_id(&fb)) {
        return Some(x == y);
    }
    same_bytes(fa, fb).ok()
}

/// Compares two files byte for byte (the files' sizes first).
fn same_bytes(mut a: File, mut b: File) -> io::Result<bool> {
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let mut x = vec![0u8; 64 * 1024];
    let mut y = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut a, &mut x)?;
        let m = read_full(&mut b, &mut y)?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends; the count read.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Most program headers and note bytes read from a file: a program has a dozen headers and
/// a few hundred bytes of notes.
const MAX_HEADERS: usize = 256;
const MAX_NOTES: u64 = 64 * 1024;

/// The GNU build-id note (`NT_GNU_BUILD_ID`) of the ELF file `f`, from its program headers
/// (`PT_NOTE` segments), or `None` if it has none or is no ELF file.
pub(crate) fn build_id(f: &File) -> Option<Vec<u8>> {
    let mut head = [0u8; 64];
    f.read_exact_at(&mut head, 0).ok()?;
    if head[..4] != *b"\x7fELF" {
        return None;
    }
    let wide = match head[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let e = Endian(match head[5] {
        1 => false,
        2 => true,
        _ => return None,
    });
    let (phoff, phentsize, phnum) = if wide {
        (
            e.u64(&head[0x20..]),
            e.u16(&head[0x36..]),
            e.u16(&head[0x38..]),
        )
    } else {
        (
            u64::from(e.u32(&head[0x1c..])),
            e.u16(&head[0x2a..]),
            e.u16(&head[0x2c..]),
        )
    };
    let (phentsize, phnum) = (usize::from(phentsize), usize::from(phnum));
    if phnum > MAX_HEADERS || phentsize < if wide { 0x38 } else { 0x20 } {
        return None;
    }
    let mut headers = vec![0u8; phentsize * phnum];
    f.read_exact_at(&mut headers, phoff).ok()?;
    headers.chunks_exact(phentsize).find_map(|ph| {
        const PT_NOTE: u32 = 4;
        if e.u32(ph) != PT_NOTE {
            return None;
        }
        let (offset, size, align) = if wide {
            (e.u64(&ph[8..]), e.u64(&ph[0x20..]), e.u64(&ph[0x30..]))
        } else {
            (
                u64::from(e.u32(&ph[4..])),
                u64::from(e.u32(&ph[0x10..])),
                u64::from(e.u32(&ph[0x1c..])),
            )
        };
        if size > MAX_NOTES {
            return None;
        }
        let mut notes = vec![0u8; size as usize];
        f.read_exact_at(&mut notes, offset).ok()?;
        gnu_build_id(&notes, e, if align == 8 { 8 } else { 4 })
    })
}

/// The descriptor of the `GNU` note of type `NT_GNU_BUILD_ID` among `notes`, each padded to
/// `align` bytes.
fn gnu_build_id(mut notes: &[u8], e: Endian, align: usize) -> Option<Vec<u8>> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let pad = |n: usize| n.checked_add(align - 1).map(|v| v & !(align - 1));
    while notes.len() >= 12 {
        let namesz = e.u32(notes) as usize;
        let descsz = e.u32(&notes[4..]) as usize;
        let kind = e.u32(&notes[8..]);
        let name_end = 12usize.checked_add(namesz)?;
        let desc_at = 12usize.checked_add(pad(namesz)?)?;
        let desc_end = desc_at.checked_add(descsz)?;
        if name_end > notes.len() || desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && notes[12..name_end] == *b"GNU\0" {
            return Some(notes[desc_at..desc_end].to_vec());
        }
        let next = desc_at.checked_add(pad(descsz)?)?;
        notes = notes.get(next..)?;
    }
    None
}

/// The byte order of an ELF file (`true`: big-endian).
#[derive(Clone, Copy)]
struct Endian(bool);

impl Endian {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.0 {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.0 {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
    fn u64(self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        if self.0 {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary carries the build-id `readelf -n` shows, as the program does.
    #[test]
    fn the_build_id_is_read_from_this_binary() {
        let me = File::open("/proc/self/exe").unwrap();
        let id = build_id(&me).expect("a build-id note");
        assert!(id.len() >= 8, "{id:?}");
        assert_eq!(same_program(None, None), Some(true));
        let mine = process_program(None).unwrap();
        assert!(!mine.deleted);
        assert_eq!(mine.path, std::env::current_exe().unwrap());
    }

    #[test]
    fn notes_are_walked_to_the_gnu_build_id() {
        let mut n = Vec::new();
        // A note of another owner first (name padded to 4), then the build-id.
        n.extend_from_slice(&5u32.to_le_bytes());
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&1u32.to_le_bytes());
        n.extend_from_slice(b"Go\0\0\0\0\0\0abcd");
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&3u32.to_le_bytes());
        n.extend_from_slice(&3u32.to_le_bytes());
        n.extend_from_slice(b"GNU\0xyz\0");
        assert_eq!(gnu_build_id(&n, Endian(false), 4), Some(b"xyz".to_vec()));
        // Cut short: nothing, and no panic.
        for len in 0..n.len() - 1 {
            let _ = gnu_build_id(&n[..len], Endian(false), 4);
        }
    }
}
