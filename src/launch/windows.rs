//! Windows launch (breakaway from the agent's job object, or the parent-process attribute)
//! arrives with the Windows issue. Until then ctrl reports this error instead of starting a
//! daemon that the agent's job would kill moments later.

use super::Launched;
use std::ffi::OsString;
use std::path::Path;

pub fn launch(_exe: &Path, _args: &[OsString], _instance: &str) -> Result<Launched, String> {
    Err("starting the daemon is not supported on Windows yet".into())
}
