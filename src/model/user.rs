//! A local user a job runs as or an environment is built as, as looked up (by
//! `service::sys`).

/// A local user a job runs as (`user = "…"`), looked up when the config is loaded
/// ([`lookup_user`]; how depends on the build, see `users`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: std::path::PathBuf,
    /// Supplementary groups, primary group included.
    pub groups: Vec<u32>,
}
