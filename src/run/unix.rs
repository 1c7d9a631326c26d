//! Unix runs: each runner leads a new process group; SIGTERM then SIGKILL go to the group.

use super::{ExitInfo, RunSpec};
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

/// Starts the runner in its own process group and a waiter thread that calls `on_exit` when
/// the runner (the group leader) exits. Returns its PID, which is also the group id.
pub fn spawn(
    spec: RunSpec,
    on_exit: impl FnOnce(u32, ExitInfo) + Send + 'static,
) -> io::Result<u32> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&spec.env)
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null())
        .stdout(spec.stdout)
        .stderr(spec.stderr)
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let waiter = std::thread::Builder::new()
        .name(format!("run-{pid}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let exit = match child.wait() {
                Ok(status) => ExitInfo {
                    code: status.code(),
                    signal: status.signal(),
                },
                Err(_) => ExitInfo {
                    code: None,
                    signal: None,
                },
            };
            on_exit(pid, exit);
        });
    if let Err(e) = waiter {
        // Without a waiter nobody would ever report this run: end it rather than lose it.
        kill_group(pid);
        return Err(io::Error::new(
            e.kind(),
            format!("cannot start a waiter thread for the runner: {e}"),
        ));
    }
    Ok(pid)
}

fn signal_group(pgid: u32, sig: i32) -> bool {
    if pgid <= 1 || pgid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: killpg on a group we created; 0, 1 and out-of-range ids are excluded above.
    unsafe { libc::killpg(pgid as libc::pid_t, sig) == 0 }
}

/// Asks every process of the run's group to end (SIGTERM).
pub fn terminate_group(pgid: u32) -> bool {
    signal_group(pgid, libc::SIGTERM)
}

/// Ends every process of the run's group (SIGKILL).
pub fn kill_group(pgid: u32) -> bool {
    signal_group(pgid, libc::SIGKILL)
}

/// True while any process of the group exists.
pub fn group_alive(pgid: u32) -> bool {
    if pgid <= 1 || pgid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::killpg(pgid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
