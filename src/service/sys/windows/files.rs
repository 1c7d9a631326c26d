//! Files on Windows: opening without following a reparse point, whether a handle is a plain
//! file on disk, what tells a replaced file, and the questions about paths std cannot answer
//! here (file identity). Touches files through the handles and paths it is given.

use std::io;
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Storage::FileSystem::{
    GetFileType, FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_REPARSE_POINT,
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_TYPE_DISK, FILE_TYPE_UNKNOWN,
};

/// Open flags for [`crate::service::sys::file`]: a reparse point (symlink, junction) at the last
/// component is opened as itself, not followed, unless `follow`; [`is_plain_file`] then
/// refuses it. Windows has no FIFOs in the file system, so nothing can block an open.
pub(crate) fn set_open_flags(o: &mut std::fs::OpenOptions, follow: bool) {
    use std::os::windows::fs::OpenOptionsExt;
    if !follow {
        o.custom_flags(NOFOLLOW_FLAGS);
    }
}

/// What changes whenever the file is replaced: its creation time and attributes.
pub(crate) fn change_stamp(m: &std::fs::Metadata) -> String {
    use std::os::windows::fs::MetadataExt;
    format!("{}:{}", m.creation_time(), m.file_attributes())
}

/// The folder `path` leads to: on Windows the path as written (`canonicalize` would give a
/// `\\?\` path, and a junction repointed under a running daemon is not followed).
pub(crate) fn resolved_dir(path: &std::path::Path) -> Option<std::path::PathBuf> {
    path.is_dir().then(|| path.to_path_buf())
}

/// Whether two paths name one file: not told on Windows (std cannot compare file identities
/// yet).
pub(crate) fn same_file_at(_a: &std::path::Path, _b: &std::path::Path) -> Option<bool> {
    None
}

/// True if `path` still exists (Windows: std cannot compare file identities yet; a locked
/// file cannot be replaced while it is open, only deleted).
pub(crate) fn same_file(_f: &std::fs::File, path: &std::path::Path) -> bool {
    path.exists()
}

/// Open flag that stops at a symlink or junction instead of following it (for
/// `OpenOptionsExt::custom_flags`): a link planted in the state dir must not redirect the
/// daemon's reads and writes to a file of the planter's choosing.
pub(crate) const NOFOLLOW_FLAGS: u32 = FILE_FLAG_OPEN_REPARSE_POINT;

/// True for a regular file on disk that is not a reparse point. State files are opened with
/// [`NOFOLLOW_FLAGS`], which hands back the link itself, and a pipe or device would make a
/// read block or lie: the caller reads only what this accepts.
pub(crate) fn is_plain_file(f: &std::fs::File) -> io::Result<bool> {
    Ok(plain_file_len(f)?.is_some())
}

/// The length of `f` if it is a plain file ([`is_plain_file`]), in the same look.
pub(crate) fn plain_file_len(f: &std::fs::File) -> io::Result<Option<u64>> {
    use std::os::windows::fs::MetadataExt;
    use std::os::windows::io::AsRawHandle;
    // SAFETY: `f` owns a valid handle for the duration of the call.
    let kind = unsafe { GetFileType(f.as_raw_handle() as HANDLE) };
    if kind == FILE_TYPE_UNKNOWN {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(0) {
            return Err(e);
        }
    }
    if kind != FILE_TYPE_DISK {
        return Ok(None);
    }
    let m = f.metadata()?;
    let plain =
        m.file_attributes() & (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT) == 0;
    Ok(plain.then_some(m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_file_rejects_a_symlink_opened_without_following() {
        use std::os::windows::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target"), "x").unwrap();
        let link = dir.path().join("status.json");
        // Needs SeCreateSymbolicLinkPrivilege or developer mode on Windows. Wine 8 reports
        // success without creating anything (and follows Unix symlinks even with
        // FILE_FLAG_OPEN_REPARSE_POINT): nothing to assert there.
        if let Err(e) = std::os::windows::fs::symlink_file("target", &link) {
            eprintln!("no symlink ({e}); reparse-point rule not exercised here");
            return;
        }
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(NOFOLLOW_FLAGS)
            .open(&link)
        {
            Ok(f) => f,
            Err(e) => {
                eprintln!("symlink not there ({e}, Wine?); reparse-point rule not exercised here");
                return;
            }
        };
        assert!(!is_plain_file(&f).unwrap());
    }

    #[test]
    fn plain_file_is_plain_and_a_directory_or_device_is_not() {
        use std::os::windows::fs::OpenOptionsExt;
        use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_BACKUP_SEMANTICS;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status.json");
        std::fs::write(&file, "{}").unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(NOFOLLOW_FLAGS)
            .open(&file)
            .unwrap();
        assert!(is_plain_file(&f).unwrap());
        let d = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | NOFOLLOW_FLAGS)
            .open(dir.path())
            .unwrap();
        assert!(!is_plain_file(&d).unwrap());
        let nul = std::fs::OpenOptions::new().read(true).open("NUL").unwrap();
        assert!(!is_plain_file(&nul).unwrap());
    }
}
