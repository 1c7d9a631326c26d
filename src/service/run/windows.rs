//! Windows runs: each runner lives in a job object of its own, so a timeout or `stop --now`
//! ends the runner together with everything it started (`TerminateJobObject`).
//!
//! The runner is created suspended (`CREATE_SUSPENDED | CREATE_NO_WINDOW`), assigned to its
//! job, and only then resumed: no grandchild can be started before the job holds the runner.
//! The job is named `robotmk-run-<pid>-<creation time>`, so a daemon that restarted while the
//! run was in flight can find the job again by the PID and creation time in the run's record.
//!
//! The interface is keyed by the runner's PID (like the process group on Unix): the
//! [`Spawner`]'s registry maps it to the job and a handle on the runner. That handle also keeps the PID from being reused
//! while the entry exists. An entry is dropped once the runner has exited and its job is empty
//! (or killed). Windows has no polite way to end a tree: "terminate" and "kill" both terminate
//! the job.

use super::{ExitInfo, RunAs, RunSpec};
use crate::service::sys::{handle_start_time, wide, OwnedHandle};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::os::windows::io::AsRawHandle;
use std::os::windows::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use windows_sys::Win32::Foundation::{HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectBasicAccountingInformation,
    OpenJobObjectW, QueryInformationJobObject, TerminateJobObject,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION,
};
use windows_sys::Win32::System::Threading::{
    OpenProcess, OpenThread, ResumeThread, TerminateProcess, WaitForSingleObject, CREATE_NO_WINDOW,
    CREATE_SUSPENDED, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
    THREAD_SUSPEND_RESUME,
};

/// Job access rights (winnt.h; windows-sys files them under a feature we need nothing else from).
const JOB_OBJECT_QUERY: u32 = 0x0004;
const JOB_OBJECT_TERMINATE: u32 = 0x0008;

/// Exit code given to processes ended by terminating their job.
const TERMINATED: u32 = 1;

/// One run's job and a handle on its runner.
struct Tracked {
    /// `None` for an adopted run whose job could not be opened (only the runner is reachable).
    job: Option<OwnedHandle>,
    process: OwnedHandle,
}

impl Tracked {
    fn runner_exited(&self) -> bool {
        // SAFETY: a valid process handle opened with SYNCHRONIZE.
        unsafe { WaitForSingleObject(self.process.0, 0) == WAIT_OBJECT_0 }
    }

    /// Processes left in the job (the runner alone when there is no job).
    fn active(&self) -> u32 {
        let Some(job) = &self.job else {
            return u32::from(!self.runner_exited());
        };
        // SAFETY: zero is a valid bit pattern for this plain-data struct.
        let mut info: JOBOBJECT_BASIC_ACCOUNTING_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: a valid job handle with JOB_OBJECT_QUERY and an out buffer of the right size.
        let ok = unsafe {
            QueryInformationJobObject(
                job.0,
                JobObjectBasicAccountingInformation,
                (&mut info as *mut JOBOBJECT_BASIC_ACCOUNTING_INFORMATION).cast(),
                std::mem::size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            // Cannot tell: judge by the runner alone.
            return u32::from(!self.runner_exited());
        }
        info.ActiveProcesses
    }

    fn terminate(&self) -> bool {
        match &self.job {
            // SAFETY: a valid job handle with JOB_OBJECT_TERMINATE.
            Some(job) => unsafe { TerminateJobObject(job.0, TERMINATED) != 0 },
            // SAFETY: a valid process handle with PROCESS_TERMINATE.
            None => unsafe { TerminateProcess(self.process.0, TERMINATED) != 0 },
        }
    }
}

/// Starts runs in job objects and ends them (see the module doc). Cheap to clone: the clones
/// share one registry.
#[derive(Clone, Default)]
pub struct Spawner {
    runs: Arc<Mutex<HashMap<u32, Arc<Tracked>>>>,
}

fn job_name(pid: u32, start: u64) -> Vec<u16> {
    wide(format!("robotmk-run-{pid}-{start}"))
}

fn open_process(pid: u32) -> Option<OwnedHandle> {
    let access = PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE | PROCESS_TERMINATE;
    // SAFETY: OpenProcess with a plain PID; the result is checked and owned.
    OwnedHandle::new(unsafe { OpenProcess(access, 0, pid) })
}

/// Resumes every thread of a process created suspended (its main thread; std does not hand
/// out the thread handle). Returns how many threads were resumed.
fn resume_threads(pid: u32) -> io::Result<usize> {
    // SAFETY: a thread snapshot of the whole system; the result is checked and owned.
    let snap = OwnedHandle::new(unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) })
        .ok_or_else(io::Error::last_os_error)?;
    // SAFETY: zero is a valid bit pattern for this plain-data struct.
    let mut te: THREADENTRY32 = unsafe { std::mem::zeroed() };
    te.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut resumed = 0;
    // SAFETY: a valid snapshot handle and an entry with dwSize set.
    let mut more = unsafe { Thread32First(snap.0, &mut te) } != 0;
    while more {
        if te.th32OwnerProcessID == pid {
            // SAFETY: OpenThread by id; the result is checked and owned.
            if let Some(t) =
                OwnedHandle::new(unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, te.th32ThreadID) })
            {
                // SAFETY: a valid thread handle with THREAD_SUSPEND_RESUME.
                if unsafe { ResumeThread(t.0) } != u32::MAX {
                    resumed += 1;
                }
            }
        }
        // SAFETY: as for Thread32First.
        more = unsafe { Thread32Next(snap.0, &mut te) } != 0;
    }
    Ok(resumed)
}

/// Puts a suspended process into a new job named after it, then resumes it.
fn contain(child: &std::process::Child) -> io::Result<Tracked> {
    let pid = child.id();
    let handle = child.as_raw_handle() as HANDLE;
    let start = handle_start_time(handle)
        .ok_or_else(|| io::Error::other("the runner vanished before it was resumed"))?;
    let name = job_name(pid, start);
    // SAFETY: CreateJobObjectW with default security and a NUL-terminated name; the result is
    // checked and owned.
    let job = OwnedHandle::new(unsafe { CreateJobObjectW(std::ptr::null(), name.as_ptr()) })
        .ok_or_else(|| {
            let e = io::Error::last_os_error();
            io::Error::new(e.kind(), format!("cannot create a job object: {e}"))
        })?;
    // SAFETY: valid job and process handles (the child is suspended and ours).
    if unsafe { AssignProcessToJobObject(job.0, handle) } == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot put the runner into its job object: {e}"),
        ));
    }
    let process = open_process(pid).ok_or_else(io::Error::last_os_error)?;
    if resume_threads(pid)? == 0 {
        return Err(io::Error::other("cannot resume the runner's main thread"));
    }
    Ok(Tracked {
        job: Some(job),
        process,
    })
}

impl Spawner {
    /// A spawner with an empty registry (each runner gets a waiter thread of its own).
    pub fn new() -> io::Result<Spawner> {
        Ok(Spawner::default())
    }

    fn runs(&self) -> MutexGuard<'_, HashMap<u32, Arc<Tracked>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run with this PID, from the registry: spawned by us, or adopted
    /// ([`Spawner::adopt`]). A bare PID is never opened here: it may belong to another process
    /// by now.
    fn lookup(&self, pid: u32) -> Option<Arc<Tracked>> {
        self.runs().get(&pid).cloned()
    }

    fn forget(&self, pid: u32) {
        self.runs().remove(&pid);
    }

    /// Takes over a run the previous daemon left running: opens the runner, checks it is the
    /// process that started at `start` (PIDs are reused), and opens the job it was put in, by
    /// name. The handle then pins that process: later calls can no longer reach another one.
    /// False if the runner is gone or the PID names another process now.
    pub(crate) fn adopt(&self, pid: u32, start: Option<u64>) -> bool {
        let Some(process) = open_process(pid) else {
            return false;
        };
        let Some(actual) = handle_start_time(process.0) else {
            return false;
        };
        if start.is_some_and(|s| s != actual) {
            return false;
        }
        let name = job_name(pid, actual);
        // SAFETY: OpenJobObjectW with a NUL-terminated name; the result is checked and owned.
        let job = OwnedHandle::new(unsafe {
            OpenJobObjectW(JOB_OBJECT_QUERY | JOB_OBJECT_TERMINATE, 0, name.as_ptr())
        });
        self.runs().insert(pid, Arc::new(Tracked { job, process }));
        true
    }

    /// Starts the runner in a job object of its own; `on_exit` is called (on a waiter thread)
    /// when the runner exits. Returns its PID, the key for the methods below.
    pub(crate) fn spawn(
        &self,
        spec: RunSpec,
        on_exit: impl FnOnce(u32, ExitInfo) + Send + 'static,
    ) -> io::Result<u32> {
        let Some(program) = spec.argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let open = |p: &std::path::Path| OpenOptions::new().append(true).create(true).open(p);
        let mut cmd = Command::new(program);
        cmd.args(&spec.argv[1..])
            .envs(&spec.env)
            .current_dir(&spec.working_dir)
            .stdin(Stdio::null())
            .stdout(open(&spec.stdout)?)
            .stderr(open(&spec.stderr)?)
            .creation_flags(CREATE_SUSPENDED | CREATE_NO_WINDOW);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let tracked = match contain(&child) {
            Ok(t) => t,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        self.runs().insert(pid, Arc::new(tracked));
        std::thread::Builder::new()
            .name(format!("wait-{pid}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                let exit = match child.wait() {
                    Ok(status) => ExitInfo {
                        code: status.code(),
                        signal: None,
                    },
                    // Not waitable (never seen): an exit with no code, a failed run.
                    Err(_) => ExitInfo {
                        code: None,
                        signal: None,
                    },
                };
                on_exit(pid, exit);
            })
            .inspect_err(|_| {
                if let Some(t) = self.lookup(pid) {
                    t.terminate();
                }
                self.forget(pid);
            })?;
        Ok(pid)
    }

    /// Windows runs no job as another user (a job's `user` is refused when the config is
    /// loaded, see `sys::lookup_user`).
    pub fn spawn_as(
        &self,
        _spec: RunSpec,
        _user: RunAs,
        _on_exit: impl FnOnce(u32, ExitInfo) + Send + 'static,
    ) -> io::Result<u32> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "running a job as another user is not supported on Windows",
        ))
    }

    /// Ends the run's whole tree: Windows has no polite stop for a process tree, so this
    /// terminates the job (for an adopted run without a job: the runner alone).
    pub(crate) fn terminate_tree(&self, pid: u32, _run_dir: &str) -> bool {
        self.lookup(pid).is_some_and(|t| t.terminate())
    }

    /// Ends the run's whole tree (the job holds it); true if any process was left to end.
    /// Nothing to end: a killed daemon's job objects took its builds and runs with it.
    pub(crate) fn end_leftovers(&self, _run_dir: &str) -> bool {
        false
    }

    pub(crate) fn kill_tree(&self, pid: u32, _run_dir: &str) -> bool {
        let Some(t) = self.lookup(pid) else {
            return false;
        };
        let had = t.active() > 0;
        if had {
            t.terminate();
        }
        if t.runner_exited() {
            self.forget(pid);
        }
        had
    }

    /// True while any process of the run's job is left.
    pub(crate) fn tree_alive(&self, pid: u32, _run_dir: &str) -> bool {
        let Some(t) = self.lookup(pid) else {
            return false;
        };
        if t.active() > 0 {
            return true;
        }
        if t.runner_exited() {
            self.forget(pid);
        }
        false
    }

    /// Nothing to do on Windows: a job object holds every descendant, whatever it does.
    pub(crate) fn become_subreaper(&self) {}

    /// Orphans are not inherited on Windows (a job object holds them, and ends them with the
    /// run): `f` is never called.
    pub(crate) fn on_inherited_exit(&self, _f: impl Fn() + Send + 'static) {}

    /// Nothing to make ahead of a run on Windows: its job object is made with it.
    pub(crate) fn keep_spare(&self, _n: usize) {}

    /// Runs live in job objects on Windows; there are no cgroups to enable.
    pub(crate) fn enable_cgroups(&self) -> Result<std::path::PathBuf, super::NoCgroup> {
        Err(super::NoCgroup::JobObjects)
    }

    /// No orphans on Windows: a process is never handed to another parent, and a run's job
    /// object holds all of it.
    pub(crate) fn end_orphans(&self, _grace: std::time::Duration) -> Vec<u32> {
        Vec::new()
    }

    /// Nothing to remove at exit on Windows (job objects go with their last handle).
    pub(crate) fn cleanup(&self) {}
}

/// Lowers the calling thread below the loop thread: the finisher's writes then yield the CPU to
/// the loop and to runners just started when a batch of runs is due. Best effort.
pub(crate) fn background_thread() {
    use windows_sys::Win32::System::Threading::{
        GetCurrentThread, SetThreadPriority, THREAD_PRIORITY_BELOW_NORMAL,
    };
    // SAFETY: the pseudo handle of the calling thread, a documented priority.
    unsafe {
        SetThreadPriority(GetCurrentThread(), THREAD_PRIORITY_BELOW_NORMAL);
    }
}
