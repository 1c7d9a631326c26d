//! A local user a job runs as or an environment is built as, as looked up (by
//! `service::sys`).

/// A local user a job runs as (`user = "…"`), looked up when the config is loaded
/// (`service::sys::lookup_user`; how depends on the build, see `users`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserInfo {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: std::path::PathBuf,
    /// The login shell as the database has it (`SHELL` of a run as this user); empty when
    /// the entry names none (which means `/bin/sh`). The OS's bytes, like `home`: a path
    /// need not be UTF-8.
    pub(crate) shell: std::ffi::OsString,
    /// Supplementary groups, primary group included.
    pub(crate) groups: Vec<u32>,
}
