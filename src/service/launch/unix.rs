//! Linux/Unix launch: a transient systemd unit when systemd is PID 1 (the agent's own unit
//! kills everything left in its cgroup when it ends, double fork or not), otherwise a double
//! fork with `setsid`. The daemon gets /dev/null as stdio in both cases and closes any other
//! inherited descriptor first thing, so the agent reading ctrl's output sees EOF as soon as
//! ctrl exits.

use super::{LaunchError, Launched};
use crate::model::status::Route;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Environment passed on to a daemon started by systemd-run, which otherwise starts it with
/// systemd's own minimal environment: runners must find `robot` on the agent's PATH, and the
/// default state dir depends on `MK_VARDIR`. Not `TZ`: see [`NOT_PASSED`].
const PASS_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "HOME",
    "MK_CONFDIR",
    "MK_VARDIR",
    "MK_LOGDIR",
    "ROBOTMK_DAEMON_LOG",
];

/// Never passed on to a launched daemon, by either route. `TZ`: cron schedules are in the
/// host's local time (`/etc/localtime`), as the agent, which runs without `TZ`, sees it; a
/// daemon must not take the zone of whichever shell's ctrl happened to start it and keep it
/// until its next restart. A unit or container that wants another zone sets `TZ` for
/// `start --foreground`, which this does not touch.
const NOT_PASSED: &[&str] = &["TZ"];

/// The executable the daemon runs from: ctrl's own. Replacing a running binary is fine on
/// Unix (the old inode lives on), so no copy is needed (Windows makes one).
pub(crate) fn daemon_exe(exe: &Path, _state_dir: &Path) -> Result<std::path::PathBuf, LaunchError> {
    Ok(exe.to_path_buf())
}

fn systemd_is_pid1() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Starts `exe args…` detached; `instance` names the systemd unit.
pub(crate) fn launch(
    exe: &Path,
    args: &[OsString],
    instance: &str,
) -> Result<Launched, LaunchError> {
    if systemd_is_pid1() && std::env::var_os("ROBOTMK_DAEMON_NO_SYSTEMD").is_none() {
        match systemd_run(exe, args, instance) {
            Ok(l) => return Ok(l),
            // Not a failure of systemd's that a fork works around: a second daemon of that
            // name beside the first would be ended with the agent's unit and started again.
            Err(e @ LaunchError::UnitTaken { .. }) => return Err(e),
            Err(why) => {
                // A forked daemon still works where the agent does not run in a unit (a shell,
                // cron); under the agent's unit it would die with it, so say so loudly.
                let mut l = fork(exe, args)?;
                l.note = Some(format!(
                    "systemd-run failed ({why}); started by fork instead, which the agent's systemd unit may kill when it ends"
                ));
                return Ok(l);
            }
        }
    }
    fork(exe, args)
}

/// The main process of systemd unit `unit` (0: the unit has none, e.g. while it winds down
/// after its daemon exited), if systemctl can tell.
fn unit_main_pid(unit: &str) -> Option<u32> {
    let out = Command::new("systemctl")
        .args(["show", "--property=MainPID", "--value"])
        .arg(format!("{unit}.service"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// How long a launch waits for the unit of a daemon that has just exited to go (an upgrade's
/// ctrl starts the new build the moment the old daemon lets go of its lock, before systemd
/// has collected the old unit).
const UNIT_GONE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The config the daemon of systemd unit `unit` runs with (`--config PATH` on its command
/// line), if the unit has a main process this can read.
fn unit_config(unit: &str) -> Option<std::path::PathBuf> {
    let pid = unit_main_pid(unit)?;
    if pid == 0 {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut parts = cmdline.split(|&b| b == 0);
    parts.find(|p| *p == b"--config")?;
    let path = parts.next()?;
    use std::os::unix::ffi::OsStrExt;
    Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(path)))
}

fn systemd_run(exe: &Path, args: &[OsString], instance: &str) -> Result<Launched, LaunchError> {
    let unit = format!("robotmk-daemon-{instance}");
    let mut cmd = Command::new("systemd-run");
    cmd.arg(format!("--unit={unit}"))
        .args(["--collect", "--quiet", "--service-type=simple"])
        // The unit's cgroup becomes the daemon's to manage: one cgroup per run, which no
        // descendant can leave (run::cgroup).
        .arg("--property=Delegate=yes")
        .arg(format!("--description=robotmk-daemon instance {instance}"));
    for name in PASS_ENV {
        if let Some(v) = std::env::var_os(name) {
            let mut kv = OsString::from(format!("--setenv={name}="));
            kv.push(v);
            cmd.arg(kv);
        }
    }
    cmd.arg("--")
        .arg(exe)
        .args(args)
        .args(["--route", "systemd-run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let deadline = std::time::Instant::now() + UNIT_GONE_PATIENCE;
    let (out, err) = loop {
        let out = cmd.output().map_err(LaunchError::SystemdRun)?;
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let taken = err.contains("already loaded") || err.contains("already exists");
        // A unit with no main process is one whose daemon has exited (ctrl found its lock
        // free): systemd is about to collect it.
        if taken && std::time::Instant::now() < deadline && unit_main_pid(&unit) == Some(0) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        break (out, err);
    };
    if out.status.success() {
        return Ok(Launched {
            route: Route::SystemdRun,
            already_running: false,
            note: None,
        });
    }
    if err.contains("already loaded") || err.contains("already exists") {
        // The unit is named by the instance only (SPEC): a second config with the same
        // instance name and its own state dir finds the first one's unit loaded, and its own
        // daemon never started while ctrl showed only "daemon not running".
        let ours = args
            .iter()
            .position(|a| a == "--config")
            .and_then(|i| args.get(i + 1));
        if let Some(other) =
            unit_config(&unit).filter(|o| Some(o.as_os_str()) != ours.map(|a| a.as_os_str()))
        {
            return Err(LaunchError::UnitTaken { unit, other });
        }
        return Ok(Launched {
            route: Route::SystemdRun,
            already_running: true,
            note: Some(format!("unit {unit}.service is already loaded")),
        });
    }
    Err(LaunchError::SystemdRunFailed {
        status: out.status,
        stderr: err,
    })
}

fn fork(exe: &Path, args: &[OsString]) -> Result<Launched, LaunchError> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .args(["--route", "fork"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    for name in NOT_PASSED {
        cmd.env_remove(name);
    }
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (setsid, fork, _exit).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // Second fork: the session leader exits at once, so the daemon can never acquire
            // a controlling terminal and is re-parented to init (or a subreaper).
            match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
    let mut child = cmd.spawn().map_err(|source| LaunchError::Start {
        exe: exe.to_path_buf(),
        source,
    })?;
    // Reap the intermediate process (it exits right after the second fork).
    let _ = child.wait();
    Ok(Launched {
        route: Route::Fork,
        already_running: false,
        note: None,
    })
}
