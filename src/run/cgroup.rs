//! One cgroup per run, where systemd delegated the daemon's cgroup to it (the transient unit
//! is started with `Delegate=yes`): a descendant can leave a process group, clear its
//! environment, call `setsid` — but it cannot leave its cgroup, so a timeout reaches it
//! whatever it does. Only cgroup v2 and only for the daemon's own unit; elsewhere runs are held
//! by their process group and tag alone (see `run::unix`).
//!
//! Layout: `<the daemon's cgroup>/run-<n>/`, created before the fork; the child moves itself
//! into it (writes `0` to its `cgroup.procs`) before it execs. No controllers are enabled, so
//! the daemon itself may stay in the unit's own cgroup (systemd's MainPID check holds).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The daemon's delegated cgroup, once enabled.
static BASE: OnceLock<PathBuf> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Turns run cgroups on, if this process sits in a cgroup v2 that systemd delegated to it (a
/// unit named `robotmk-daemon-*.service`, started with `Delegate=yes`). Returns where, or why
/// not.
pub fn enable() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 (unified) hierarchy")?;
    let unit = rel.rsplit('/').next().unwrap_or_default();
    if !(unit.starts_with("robotmk-daemon-") && unit.ends_with(".service")) {
        return Err(format!("not in the daemon's own unit (in {rel})"));
    }
    let base = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    // Delegated: the unit's cgroup is ours to write (systemd chowns and stops managing it).
    let probe = base.join(format!("run-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)
        .and_then(|_| std::fs::remove_dir(&probe))
        .map_err(|e| {
            format!(
                "cannot create a cgroup in {}: {e} (not delegated?)",
                base.display()
            )
        })?;
    let _ = BASE.set(base.clone());
    Ok(base)
}

/// A run's cgroup: created before the spawn, removed when the run is over.
#[derive(Debug)]
pub struct RunCgroup {
    pub dir: PathBuf,
    /// `<dir>/cgroup.procs`, for the child to write `0` to.
    pub procs: CString,
}

/// A new cgroup for a run about to start, if run cgroups are on.
pub fn create() -> Option<RunCgroup> {
    let base = BASE.get()?;
    let dir = base.join(format!("run-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir(&dir).ok()?;
    let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok()?;
    Some(RunCgroup { dir, procs })
}

/// The PIDs in the cgroup now.
pub fn members(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// True while a process is in the cgroup (`populated 1` in `cgroup.events`).
pub fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

/// SIGKILL to every process in the cgroup: `cgroup.kill` (Linux 5.14+), else one by one.
pub fn kill(dir: &Path) -> bool {
    let any = populated(dir);
    if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
        for pid in members(dir) {
            // SAFETY: kill(2) on a member of the run's own cgroup.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
    any
}

/// Removes an empty run cgroup (a cgroup with processes cannot be removed: kept then).
pub fn remove(dir: &Path) -> bool {
    std::fs::remove_dir(dir).is_ok()
}
