//! Files the daemon makes for others to read: the published logs under `publish_dir` (see
//! `publish`). Folders `0755` and files `0644` whatever the umask (a web server's user must
//! read them), created new (never through a link that is already there), and the `latest`
//! link swapped in atomically. On Windows the folder's inherited ACL decides who reads, and
//! `latest` is only the page (a symbolic link needs a privilege there).

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates the folder `path` (its parent must exist), readable by all.
pub(crate) fn create_dir(path: &Path) -> io::Result<()> {
    builder().create(path)?;
    set_mode(path, 0o755)
}

#[cfg(unix)]
fn builder() -> std::fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = std::fs::DirBuilder::new();
    b.mode(0o755);
    b
}

#[cfg(not(unix))]
fn builder() -> std::fs::DirBuilder {
    std::fs::DirBuilder::new()
}

/// Creates the file `path`, which must not exist (a link in its place is not followed),
/// readable by all.
pub(crate) fn create_file(path: &Path) -> io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o644).custom_flags(libc::O_NOFOLLOW);
    }
    let f = o.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(f)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Points the link `link` at `target` (a name in the same folder), replacing what was there
/// in one step: a reader sees the old link or the new one. `tmp` is the name used on the way.
/// A no-op where links need a privilege (Windows).
pub(crate) fn replace_link(target: &str, link: &Path, tmp: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let _ = std::fs::remove_file(tmp);
        std::os::unix::fs::symlink(target, tmp)?;
        std::fs::rename(tmp, link)
    }
    #[cfg(not(unix))]
    {
        let _ = (target, link, tmp);
        Ok(())
    }
}
