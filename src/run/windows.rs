//! Windows runs (job objects) arrive with the Windows issue; until then starting a run fails
//! with a clear error instead of doing something half right.

use super::{ExitInfo, RunSpec};
use std::io;

pub fn spawn(
    _spec: RunSpec,
    _on_exit: impl FnOnce(u32, ExitInfo) + Send + 'static,
) -> io::Result<u32> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "running jobs is not supported on Windows yet",
    ))
}

pub fn terminate_group(_pgid: u32) -> bool {
    false
}

pub fn kill_group(_pgid: u32) -> bool {
    false
}

pub fn group_alive(_pgid: u32) -> bool {
    false
}
