//! Windows builds environments as the daemon itself (as before issue 20): no folder is
//! handed to another user and nothing is sealed. These exist so the callers compile; the
//! daemon never calls them there (a build runs as another user only where
//! [`super::is_root`] holds, which it never does on Windows).

use std::io;
use std::path::{Path, PathBuf};

/// Why a built tree could not be sealed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn unsupported(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{}: builds as another user are not supported on Windows",
            path.display()
        ),
    )
}

/// What a seal copied.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SealStats {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

pub(crate) fn seal_copy(from: &Path, _to: &Path, _builder: u32) -> Result<SealStats, SealError> {
    Err(SealError::Io {
        path: from.to_path_buf(),
        source: unsupported(from),
    })
}

pub(crate) fn hand_dir(path: &Path, _uid: u32, _gid: u32) -> io::Result<()> {
    Err(unsupported(path))
}

/// No uid on Windows (builds there run as the daemon itself).
pub(crate) fn current_uid() -> u32 {
    0
}

pub(crate) fn copy_link(_target: &Path, link: &Path) -> io::Result<()> {
    Err(unsupported(link))
}

/// Nothing to do: folders keep their ACLs.
pub(crate) fn seal_dir_mode(_dir: &Path, _readers: Option<u32>) -> io::Result<()> {
    Ok(())
}

/// Nothing to check: builds run as the daemon itself.
pub(crate) fn check_passable(
    _path: &Path,
    _uid: u32,
    _groups: &[u32],
) -> Result<(), super::trust::Closed> {
    Ok(())
}
