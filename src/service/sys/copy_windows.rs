//! Windows: a plain copy, and no file counts as shared (see the parent module).

use super::Inode;
use std::fs::File;
use std::io::{self, Read};

/// Copies at most the first `size` bytes of `from` to `to`, all of them: the bytes written,
/// or `None` when they would be more than `limit` (nothing is written then).
pub(crate) fn copy_with_holes(
    from: &File,
    to: &mut File,
    size: u64,
    limit: u64,
) -> io::Result<Option<u64>> {
    if size > limit {
        return Ok(None);
    }
    let n = io::copy(&mut from.take(size), to)?;
    Ok(Some(n))
}

/// No file's other names are looked for: each name is copied.
pub(crate) fn shared_inode(_file: &File) -> io::Result<Option<Inode>> {
    Ok(None)
}
