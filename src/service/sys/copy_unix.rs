//! Unix: holes found with `SEEK_DATA`/`SEEK_HOLE`, shared files by `st_nlink` (see the parent
//! module).

use super::Inode;
use std::fs::File;
use std::io::{self, Read, Seek};

/// Copies the first `size` bytes of `from` to `to`, leaving the holes of a sparse file holes,
/// and returns the bytes of data written. Where the file system cannot tell holes
/// (`SEEK_DATA` refused), all of it is data. `None` when the data is more than `limit`
/// bytes: the copy stops before the part that would pass it (`to` is then incomplete, for
/// the caller to remove), so no more than `limit` bytes are ever written. A file that grows
/// while it is copied is cut at `size`.
pub(crate) fn copy_with_holes(
    from: &File,
    to: &mut File,
    size: u64,
    limit: u64,
) -> io::Result<Option<u64>> {
    use rustix::fs::{seek, SeekFrom};
    let mut at = 0u64;
    let mut written = 0u64;
    while at < size {
        let data = match seek(from, SeekFrom::Data(at)) {
            Ok(d) => d,
            // Only a hole from here to the end.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) if at == 0 => {
                if size > limit {
                    return Ok(None);
                }
                return io::copy(&mut from.take(size), to).map(Some);
            }
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = seek(from, SeekFrom::Hole(data))
            .map_err(io::Error::from)?
            .min(size);
        if written.saturating_add(hole - data) > limit {
            return Ok(None);
        }
        (&*from).seek(io::SeekFrom::Start(data))?;
        to.seek(io::SeekFrom::Start(data))?;
        written += io::copy(&mut from.take(hole - data), to)?;
        at = hole;
    }
    to.set_len(size)?;
    Ok(Some(written))
}

/// The inode of the regular file open as `file` when it has more than one name (from the
/// handle, so it is the file that was opened and checked); `None` for a file with one.
pub(crate) fn shared_inode(file: &File) -> io::Result<Option<Inode>> {
    Ok(shared(&rustix::fs::fstat(file)?))
}

/// [`shared_inode`] from an `fstat` already made.
// `st_dev` and `st_ino` are not `u64` on every Unix target.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn shared(st: &rustix::fs::Stat) -> Option<Inode> {
    (st.st_nlink > 1).then_some(Inode {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
    })
}
