//! Windows side of [`crate::sys`]. Process identity and stop signalling arrive with the
//! Windows issue; until then the functions that would silently do nothing say so instead.

use std::io;

/// Not yet implemented on Windows: reports every process as unknown.
pub fn process_start_time(_pid: u32) -> Option<u64> {
    None
}

pub fn signal_stop(_pid: u32) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "stopping a daemon is not supported on Windows yet",
    ))
}

pub fn set_private_umask() {}

pub fn close_inherited_fds() {}

/// The named stop event arrives with the Windows issue; the daemon's once-a-second look at
/// the stop-request file already stops it meanwhile.
pub fn forward_control_signals(
    _f: impl Fn(super::ControlSignal) + Send + 'static,
) -> io::Result<()> {
    Ok(())
}
