//! The host's places (the agent's config and state folders), and what Windows answers at once
//! where Unix asks the host: file modes and umasks (ACLs decide here), users (no `user` jobs),
//! signals, uptime and this program's path. Touches nothing but the tick count and
//! `current_exe`; most of these do nothing on purpose, each says why.

/// Where the config is looked for when nothing names it (the agent's config folder).
pub(crate) const DEFAULT_CONFIG_DIR: &str = r"C:\ProgramData\checkmk\agent\config";

/// No user database files: `user` jobs are refused on Windows.
pub(crate) const USER_DATABASE: &[&str] = &[];

/// No temporary folders besides `%TEMP%` (what `std::env::temp_dir` names).
pub(crate) const TEMP_DIRS: &[&str] = &[];

/// Windows consoles render UTF-8 (and ANSI) since Windows 10, and have no locale variables.
pub(crate) const CONSOLE_ALWAYS_UTF8: bool = true;

/// The base of the default state dir when `$MK_VARDIR` is not set: the agent's state folder.
pub(crate) fn default_state_base() -> std::path::PathBuf {
    r"C:\ProgramData\checkmk\agent\state".into()
}

/// Windows has no mode bits: access comes from the folder's ACL (checked by `security`).
pub(crate) fn private_file(_o: &mut std::fs::OpenOptions) {}

/// See [`private_file`].
pub(crate) fn private_dir(_b: &mut std::fs::DirBuilder) {}

/// A rename over a file a reader holds open fails with access denied; readers keep files
/// open only for a moment, so the rename is retried briefly (platform.md, measured under
/// Wine).
pub(crate) fn rename_denied_is_transient() -> bool {
    true
}

/// How long the system has been up, for `start_delay`.
pub(crate) fn uptime() -> Option<std::time::Duration> {
    // SAFETY: GetTickCount64 takes no arguments and cannot fail.
    let ms = unsafe { windows_sys::Win32::System::SystemInformation::GetTickCount64() };
    Some(std::time::Duration::from_millis(ms))
}

/// The program to start when the daemon runs a helper of its own (the retry wrapper of
/// `attempts`, an environment build): the daemon's own copy of the binary
/// ([`crate::service::launch::daemon_exe`] starts it from a copy in the state dir, which no upgrade
/// replaces while it runs), so the helper is always the daemon's own version.
pub(crate) fn self_exe() -> std::io::Result<std::path::PathBuf> {
    std::env::current_exe()
}

/// Windows runs no job as another user: a suite that needs a desktop session runs in a
/// daemon instance started in that user's session (docs/WINDOWS.md).
pub(crate) fn lookup_user(
    name: &str,
) -> Result<crate::service::sys::UserInfo, crate::service::sys::UserLookupError> {
    Err(crate::service::sys::UserLookupError::Unsupported {
        name: name.to_string(),
    })
}

/// Never on Windows: who may change a folder is its ACL's matter, and a copy is kept there
/// (see `record::link_latest`).
pub(crate) fn only_mine(_dir: &std::path::Path) -> bool {
    false
}

/// Windows has ACLs, not modes: docs/WINDOWS.md says how to protect the config there.
pub(crate) fn others_may_read(_m: &std::fs::Metadata) -> Option<u32> {
    None
}

/// Windows has no execute bit: any file may be started (its extension decides how).
pub(crate) fn mode_executable(_m: &std::fs::Metadata) -> bool {
    true
}

/// Windows has no signals: a process ends with an exit code only.
pub(crate) fn exit_signal(_s: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// A flag nothing sets: a run's helper is ended with its job object, not asked to stop.
pub(crate) fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}

/// Only Unix root may run a job as another user.
pub(crate) fn is_root() -> bool {
    false
}

/// Whoever the state dir's ACL lets write (SYSTEM, administrators) may: no check of its own
/// before the state dir's trust check and the write itself.
pub(crate) fn may_write_state_dir() -> bool {
    true
}

/// Nothing to do: files the daemon creates inherit the ACL of the state dir (under
/// `C:\ProgramData\checkmk\agent\` only administrators and SYSTEM may write).
pub(crate) fn set_private_umask() {}

/// Nothing to do: environments get the ACLs of their folder.
pub(crate) fn set_shared_umask() {}

/// Windows runs no job as another user (see [`lookup_user`]): a plain folder.
pub(crate) fn public_dir(path: &std::path::Path, _readable: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Windows runs no job as another user (see [`lookup_user`]).
pub(crate) fn give_to(_path: &std::path::Path, _uid: u32, _gid: u32) -> std::io::Result<()> {
    Ok(())
}

/// Nothing to do: files inherit their folder's ACL.
pub(crate) fn make_readable_tree(_root: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}
