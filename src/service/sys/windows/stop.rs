//! How `stop` reaches a daemon on Windows: the named stop and stop-now events. The event is
//! named after the daemon's PID (`robotmk-daemon-stop-<pid>`): `stop` already knows that PID
//! from the status file and verifies it by creation time before signalling, so no other name
//! has to be shared between the two sides. The daemon creates it in the `Global\` namespace
//! when it may (SYSTEM, administrators: reachable from an admin's session), else in its
//! session's `Local\` namespace; `stop` tries both. The stop file, which the daemon watches (a
//! change notification on the state dir), remains the fallback when the event cannot be
//! reached. Touches named events (created, opened, set) and one waiting thread per event.

use super::handle::{wide, ObjectSecurity, OwnedHandle};
use std::io;
use windows_sys::Win32::Foundation::{ERROR_ALREADY_EXISTS, WAIT_OBJECT_0};
use windows_sys::Win32::System::Threading::{
    CreateEventW, OpenEventW, SetEvent, WaitForSingleObject, EVENT_MODIFY_STATE, INFINITE,
};

/// The names of the daemon's stop event (`now`: its stop-now event).
fn stop_event_names(pid: u32, now: bool) -> [String; 2] {
    let what = if now { "stopnow" } else { "stop" };
    [
        format!("Global\\robotmk-daemon-{what}-{pid}"),
        format!("Local\\robotmk-daemon-{what}-{pid}"),
    ]
}

/// Asks the daemon with this PID to stop by setting its named stop event (its handler reads
/// the stop-request file to learn whether to drain or end runs now).
pub(crate) fn signal_stop(pid: u32) -> io::Result<()> {
    set_stop_event(pid, false)
}

/// Tells the daemon with this (verified) PID to stop now, ending its runs (its stop-now
/// event): the way `stop --now` reaches it when the stop-request file cannot be written.
pub(crate) fn signal_stop_now(pid: u32) -> io::Result<()> {
    set_stop_event(pid, true)
}

fn set_stop_event(pid: u32, now: bool) -> io::Result<()> {
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for name in stop_event_names(pid, now) {
        let w = wide(&name);
        // SAFETY: OpenEventW with a NUL-terminated name; the result is checked and owned.
        match OwnedHandle::new(unsafe { OpenEventW(EVENT_MODIFY_STATE, 0, w.as_ptr()) }) {
            Some(ev) => {
                // SAFETY: a valid event handle opened with EVENT_MODIFY_STATE.
                return if unsafe { SetEvent(ev.0) } != 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                };
            }
            None => last = io::Error::last_os_error(),
        }
    }
    Err(last)
}

/// Windows has no such signal: the daemon's change notification on `requests\` wakes it.
pub(crate) fn signal_requests(_pid: u32) {}

/// Creates the stop event: SYSTEM, administrators and the owner may set it, so an admin's
/// `stop` reaches a SYSTEM daemon. Falls back to the default security if the descriptor
/// cannot be built.
fn create_stop_event(pid: u32, now: bool) -> io::Result<OwnedHandle> {
    let security = ObjectSecurity::new("D:(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;OW)");
    let sa_ptr = security.attributes();
    let mut result = Err(io::Error::from(io::ErrorKind::NotFound));
    for name in stop_event_names(pid, now) {
        let w = wide(&name);
        // SAFETY: CreateEventW (auto-reset, not signalled) with valid attributes or NULL and a
        // NUL-terminated name.
        let h = unsafe { CreateEventW(sa_ptr, 0, 0, w.as_ptr()) };
        let err = io::Error::last_os_error();
        match OwnedHandle::new(h) {
            // An event by this name from a dead predecessor with our PID cannot exist (it
            // died with its last handle), so ALREADY_EXISTS only means someone else made it.
            Some(ev) if err.raw_os_error() != Some(ERROR_ALREADY_EXISTS as i32) => {
                result = Ok(ev);
                break;
            }
            Some(_) => result = Err(io::Error::other(format!("{name} already exists"))),
            None => result = Err(err),
        }
    }
    result
}

/// Forwards the named stop event to `f` as [`crate::service::sys::ControlSignal::Stop`] and the stop-now
/// event as [`crate::service::sys::ControlSignal::StopNow`], each from a thread that sleeps in
/// `WaitForSingleObject` until its event is set (no periodic wake-ups).
pub(crate) fn forward_control_signals(
    f: impl Fn(crate::service::sys::ControlSignal) + Send + Sync + 'static,
) -> io::Result<()> {
    let f = std::sync::Arc::new(f);
    for (now, sig) in [
        (false, crate::service::sys::ControlSignal::Stop),
        (true, crate::service::sys::ControlSignal::StopNow),
    ] {
        let ev = match create_stop_event(std::process::id(), now) {
            Ok(ev) => ev,
            Err(e) => {
                // Not fatal: the daemon watches the stop file anyway.
                tracing::warn!(
                    "cannot create the stop event ({e}); stop requests go by the stop file only"
                );
                continue;
            }
        };
        let f = std::sync::Arc::clone(&f);
        std::thread::Builder::new()
            .name("stop-event".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let ev = ev;
                loop {
                    // SAFETY: a valid event handle owned by this thread for the life of the
                    // process.
                    let r = unsafe { WaitForSingleObject(ev.0, INFINITE) };
                    if r != WAIT_OBJECT_0 {
                        return;
                    }
                    f(sig);
                }
            })?;
    }
    Ok(())
}
