//! The config file's own lock (Windows): one daemon per config file, whatever state dir the
//! caller's environment gives it (see `config_lock_unix.rs` for why).
//!
//! A lock on the file itself (`LockFileEx`) is mandatory on Windows and would keep editors and
//! config management from saving the config while the daemon runs. So the lock is a named
//! kernel object instead: a small file mapping named after the config file's identity (its
//! volume's serial number and its file index — hard links are one file, a file replaced by
//! rename is another), created by the daemon and held open for its life. The object lives
//! exactly as long as some process has it open, so a daemon that dies releases it. Its
//! content says who holds it: the daemon's PID and state dir.
//!
//! It is created in the `Global\` namespace when the caller may (SYSTEM, administrators: the
//! agent's daemon and an admin's shell see one object), else in the session's `Local\` one;
//! only they may create `Global\` objects, and its DACL lets only SYSTEM, administrators and
//! its creator open it, so no other user can plant one to keep the daemon from starting. A
//! probe only opens an existing object (never creates one); a daemon that finds the name taken
//! polls until its patience runs out, as a probe holds it open for an instant.

use super::platform::{wide, ObjectSecurity, OwnedHandle};
use super::TookConfig;
use std::io;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, FILE_MAP_READ,
    FILE_MAP_WRITE, PAGE_READWRITE,
};

/// The size of the mapping: the holder's PID and state dir, as UTF-16 (`pid\nstate dir`),
/// NUL-terminated; a longer state dir is cut (the words then name a folder that is not quite
/// it, but the PID is right).
const SIZE: u32 = 4096;

/// The held lock on one config file; dropping it releases the config.
pub(crate) struct ConfigLock {
    _object: OwnedHandle,
    id: (u32, u64),
}

impl std::fmt::Debug for ConfigLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigLock({:08x}-{:016x})", self.id.0, self.id.1)
    }
}

impl ConfigLock {
    /// Nothing to remove: the named object goes with its last handle.
    pub(crate) fn remove_file(&self) {}

    /// True while `path` still leads to the locked file (not replaced by rename, not
    /// deleted, a symlink not repointed): followed as the config is read.
    pub(crate) fn still_names(&self, path: &Path) -> bool {
        file_id(path).is_ok_and(|id| id == self.id)
    }

    /// A named object has no file to watch: it lives as long as a handle to it.
    pub(crate) fn path(&self) -> Option<&Path> {
        None
    }

    /// A named object cannot be removed under its holder.
    pub(crate) fn file_lost(&self) -> bool {
        false
    }
}

/// The process holding a config's lock, as the object's content tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    /// Only SYSTEM, administrators and its creator may open the object, and only they create
    /// objects in `Global\`: a holder found is a daemon of this config.
    pub(crate) pid: u32,
    /// The state dir it runs with.
    pub(crate) state_dir: Option<PathBuf>,
}

/// The config file's identity: its volume's serial number and its file index.
fn file_id(path: &Path) -> io::Result<(u32, u64)> {
    let file = super::file::open_config(path)?;
    // SAFETY: a zeroed plain-data struct, filled by the call.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: an open file's handle and a valid out pointer.
    let ok = unsafe { GetFileInformationByHandle(file.as_raw_handle() as HANDLE, &mut info) };
    if ok == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "cannot tell the identity of the config {}: {e}",
                path.display()
            ),
        ));
    }
    let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
    Ok((info.dwVolumeSerialNumber, index))
}

/// The object's names for the file `id`, in the order they are tried.
fn names(id: (u32, u64)) -> [Vec<u16>; 2] {
    let base = format!("robotmk-daemon-config-{:08x}-{:016x}", id.0, id.1);
    [
        wide(format!("Global\\{base}")),
        wide(format!("Local\\{base}")),
    ]
}

/// Creates the object under `name`; `Ok(None)` if it exists already (held, or being probed).
fn create(name: &[u16], sa: *const SECURITY_ATTRIBUTES) -> io::Result<Option<OwnedHandle>> {
    // SAFETY: a paging-file mapping (INVALID_HANDLE_VALUE) with valid attributes or NULL and a
    // NUL-terminated name.
    let h = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            sa,
            PAGE_READWRITE,
            0,
            SIZE,
            name.as_ptr(),
        )
    };
    let err = io::Error::last_os_error();
    match OwnedHandle::new(h) {
        Some(_) if err.raw_os_error() == Some(ERROR_ALREADY_EXISTS as i32) => Ok(None),
        Some(o) => Ok(Some(o)),
        None => Err(err),
    }
}

/// Writes `pid\nstate dir` into the object, NUL-terminated.
fn publish(object: &OwnedHandle, state_dir: &Path) -> io::Result<()> {
    let text = format!("{}\n{}", std::process::id(), state_dir.display());
    let mut w: Vec<u16> = text.encode_utf16().collect();
    w.truncate(SIZE as usize / 2 - 1);
    w.push(0);
    // SAFETY: a mapping of SIZE bytes, mapped whole for writing.
    let view = unsafe { MapViewOfFile(object.0, FILE_MAP_WRITE, 0, 0, SIZE as usize) };
    if view.Value.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `w` holds at most SIZE / 2 units, the view SIZE bytes; unmapped once.
    unsafe {
        std::ptr::copy_nonoverlapping(w.as_ptr(), view.Value.cast::<u16>(), w.len());
        UnmapViewOfFile(view);
    }
    Ok(())
}

/// Takes the lock on the config file for a daemon of `state_dir`, polled until `patience`
/// runs out; `Held` if another daemon holds it all that time.
pub(crate) fn take(
    path: &Path,
    state_dir: &Path,
    patience: Duration,
) -> io::Result<TookConfig<ConfigLock>> {
    let id = file_id(path)?;
    let security = ObjectSecurity::new("D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;OW)");
    let sa_ptr = security.attributes();
    let deadline = Instant::now() + patience;
    let result = loop {
        let mut taken = None;
        let mut last = Ok(());
        for name in names(id) {
            match create(&name, sa_ptr) {
                Ok(Some(o)) => {
                    taken = Some(o);
                    break;
                }
                // Held (or probed) under this name: no daemon may take the other one.
                Ok(None) => {
                    last = Ok(());
                    break;
                }
                // No right to create `Global\` objects: the session's namespace.
                Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => last = Err(e),
                Err(e) => {
                    last = Err(e);
                    break;
                }
            }
        }
        if let Some(o) = taken {
            break publish(&o, state_dir)
                .map(|()| TookConfig::Locked(ConfigLock { _object: o, id }));
        }
        if let Err(e) = last {
            break Err(io::Error::new(
                e.kind(),
                format!("cannot lock the config {}: {e}", path.display()),
            ));
        }
        if Instant::now() >= deadline {
            break Ok(TookConfig::Held);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    result
}

/// The object of the config's lock, opened for reading if some daemon holds it.
fn open(path: &Path) -> io::Result<Option<OwnedHandle>> {
    let id = file_id(path)?;
    let mut denied = None;
    for name in names(id) {
        // SAFETY: a NUL-terminated name; the handle is owned below.
        let h = unsafe { OpenFileMappingW(FILE_MAP_READ, 0, name.as_ptr()) };
        let err = io::Error::last_os_error();
        if let Some(o) = OwnedHandle::new(h) {
            return Ok(Some(o));
        }
        match err.raw_os_error() {
            Some(c) if c == ERROR_FILE_NOT_FOUND as i32 => {}
            _ => denied = Some(err),
        }
    }
    match denied {
        Some(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot probe the lock of {}: {e}", path.display()),
        )),
        None => Ok(None),
    }
}

/// Named objects in `Global\` are created by SYSTEM and administrators only: there
/// is no folder another user could plant.
pub(crate) fn folder_problem() -> Option<String> {
    None
}

/// True if some daemon holds the config's lock.
pub(crate) fn is_held(path: &Path) -> io::Result<bool> {
    open(path).map(|o| o.is_some())
}

/// Who holds the config's lock, as its object says; `None` if nobody does, or it cannot be
/// read.
pub(crate) fn holder(path: &Path) -> Option<Holder> {
    let object = open(path).ok()??;
    // SAFETY: a mapping of SIZE bytes, mapped whole for reading.
    let view = unsafe { MapViewOfFile(object.0, FILE_MAP_READ, 0, 0, SIZE as usize) };
    if view.Value.is_null() {
        return None;
    }
    // SAFETY: the view holds SIZE bytes; read up to the first NUL, then unmapped once.
    let text = unsafe {
        let units = std::slice::from_raw_parts(view.Value.cast::<u16>(), SIZE as usize / 2);
        let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
        let text = String::from_utf16_lossy(&units[..end]);
        UnmapViewOfFile(view);
        text
    };
    // An object just created, before its creator wrote to it: a daemon starting.
    let (pid, dir) = text.split_once('\n')?;
    Some(Holder {
        pid: pid.parse().ok()?,
        state_dir: Some(PathBuf::from(dir)),
    })
}
