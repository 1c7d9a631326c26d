//! Windows launch: start the daemon outside the job object the Checkmk agent puts every plugin
//! in (it terminates that job when the plugin is done, killing everything inside).
//!
//! Routes, tried in this order, reported in ctrl's section and passed to the daemon as
//! `--route`:
//! - `no-job`: ctrl is in no job; a plain detached start suffices.
//! - `breakaway`: `CREATE_BREAKAWAY_FROM_JOB`, where the job allows it.
//! - `parent-process`: the job forbids breakaway (the agent's case): the daemon is created
//!   with `PROC_THREAD_ATTRIBUTE_PARENT_PROCESS` naming ctrl's nearest ancestor outside the
//!   job (the agent itself), so it takes its job membership (none) from that process. This
//!   installs nothing; security products may notice the parent substitution (docs/WINDOWS.md).
//!
//! Always `CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW`, no handle inheritance, and ctrl's own
//! std handles are made non-inheritable first, so the agent reading ctrl's stdout sees EOF as
//! soon as ctrl exits. If no route leaves the job, the launch fails loudly and names the fix:
//! run the daemon as an agent extension (`start --run-flag`).
//!
//! [`daemon_exe`] gives the daemon a copy of the binary to run from, so that the plugin's .exe
//! stays replaceable while the daemon runs.

use super::{LaunchError, Launched};
use crate::model::status::Route;
use crate::service::sys::{handle_start_time, wide, OwnedHandle};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use windows_sys::Win32::Foundation::{
    SetHandleInformation, ERROR_ACCESS_DENIED, HANDLE, HANDLE_FLAG_INHERIT,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::JobObjects::{
    IsProcessInJob, JobObjectBasicProcessIdList, QueryInformationJobObject,
};
use windows_sys::Win32::System::Threading::{
    CreateProcessW, DeleteProcThreadAttributeList, GetCurrentProcess,
    InitializeProcThreadAttributeList, OpenProcess, TerminateProcess, UpdateProcThreadAttribute,
    CREATE_BREAKAWAY_FROM_JOB, CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW,
    EXTENDED_STARTUPINFO_PRESENT, LPPROC_THREAD_ATTRIBUTE_LIST, PROCESS_CREATE_PROCESS,
    PROCESS_INFORMATION, PROCESS_QUERY_LIMITED_INFORMATION, PROC_THREAD_ATTRIBUTE_PARENT_PROCESS,
    STARTF_USESTDHANDLES, STARTUPINFOEXW, STARTUPINFOW,
};

/// Starts `exe args… --route <route>` detached and outside ctrl's job object.
pub(crate) fn launch(
    exe: &Path,
    args: &[OsString],
    _instance: &str,
) -> Result<Launched, LaunchError> {
    clear_std_inherit();
    let base = CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW;
    if !in_any_job(current_process()) {
        create(exe, args, "no-job", base, None)?;
        return Ok(launched(Route::NoJob, None));
    }
    let breakaway_err = match create(
        exe,
        args,
        "breakaway",
        base | CREATE_BREAKAWAY_FROM_JOB,
        None,
    ) {
        Ok(_) => return Ok(launched(Route::Breakaway, None)),
        Err(e) => e,
    };
    match start_under_ancestor(exe, args, base) {
        Ok(ancestor) => Ok(launched(
            Route::ParentProcess,
            Some(format!(
                "the job forbids breakaway ({breakaway_err}); started under pid {ancestor} instead"
            )),
        )),
        Err(e) => Err(LaunchError::InJob {
            breakaway: Box::new(breakaway_err),
            ancestor: Box::new(e),
        }),
    }
}

/// The executable the daemon runs from: a copy of ctrl's own in `<state_dir>\bin`, because a
/// running .exe cannot be overwritten on Windows and a daemon running the plugin's .exe would
/// block the plugin's update. The copy's name carries the source's version, size and mtime: a
/// new build gets a new copy, an unchanged one is reused. Older copies are deleted where no
/// process runs them (deleting a running .exe fails and is left for a later launch).
pub(crate) fn daemon_exe(exe: &Path, state_dir: &Path) -> Result<PathBuf, LaunchError> {
    let m = std::fs::metadata(exe).map_err(|source| LaunchError::Io {
        path: exe.to_path_buf(),
        source,
    })?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let name = format!(
        "robotmk-daemon-{}-{}-{mtime}.exe",
        crate::model::BUILD_ID,
        m.len()
    );
    let dir = state_dir.join("bin");
    let dst = dir.join(&name);
    if !dst.metadata().is_ok_and(|d| d.len() == m.len()) {
        std::fs::create_dir_all(&dir).map_err(|source| LaunchError::Io {
            path: dir.clone(),
            source,
        })?;
        let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
        std::fs::copy(exe, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &dst))
            .map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                LaunchError::Copy {
                    from: exe.to_path_buf(),
                    to: dst.clone(),
                    source,
                }
            })?;
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with("robotmk-daemon-") && n != name {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(dst)
}

fn launched(route: Route, note: Option<String>) -> Launched {
    Launched {
        route,
        already_running: false,
        note,
    }
}

fn current_process() -> HANDLE {
    // SAFETY: returns a pseudo handle that needs no closing.
    unsafe { GetCurrentProcess() }
}

/// ctrl's stdin/stdout/stderr must not reach the daemon (the agent waits for EOF on them).
fn clear_std_inherit() {
    for which in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: GetStdHandle has no preconditions; SetHandleInformation fails harmlessly on
        // NULL or invalid handles.
        unsafe {
            let h = GetStdHandle(which);
            if !h.is_null() && h as isize != -1 {
                SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
            }
        }
    }
}

fn in_any_job(process: HANDLE) -> bool {
    let mut r = 0;
    // SAFETY: a valid process handle (needs PROCESS_QUERY_LIMITED_INFORMATION), NULL for "any
    // job", a valid out pointer.
    let ok = unsafe { IsProcessInJob(process, std::ptr::null_mut(), &mut r) };
    ok != 0 && r != 0
}

/// The PIDs in ctrl's own job, where Windows tells (`QueryInformationJobObject(NULL, …)`; Wine
/// refuses it with error 6). Without it, "outside the job" means "in no job at all".
fn my_job_pids() -> Option<Vec<u32>> {
    // Header: two u32 counts (8 bytes), then ULONG_PTR ids.
    let first = 8 / std::mem::size_of::<usize>();
    let mut buf = vec![0usize; first + 4096];
    // SAFETY: NULL = the caller's job; the buffer is writable and its size is passed.
    let ok = unsafe {
        QueryInformationJobObject(
            std::ptr::null_mut(),
            JobObjectBasicProcessIdList,
            buf.as_mut_ptr().cast(),
            (buf.len() * std::mem::size_of::<usize>()) as u32,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return None;
    }
    // SAFETY: the buffer starts with JOBOBJECT_BASIC_PROCESS_ID_LIST's two u32 fields.
    let listed = unsafe { *(buf.as_ptr().cast::<u32>().add(1)) } as usize;
    Some(
        buf[first..]
            .iter()
            .take(listed)
            .map(|&p| p as u32)
            .collect(),
    )
}

/// True if `process` (with PID `pid`) shares ctrl's job, as far as the OS lets us tell.
fn in_my_job(pid: u32, process: HANDLE, my_job: &Option<Vec<u32>>) -> bool {
    match my_job {
        Some(pids) => pids.contains(&pid),
        None => in_any_job(process),
    }
}

/// PID → (parent PID) for every process.
fn parents() -> Result<HashMap<u32, u32>, LaunchError> {
    // SAFETY: a process snapshot; the result is checked and owned.
    let snap = OwnedHandle::new(unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) })
        .ok_or_else(|| LaunchError::Os {
            what: "no process snapshot",
            source: std::io::Error::last_os_error(),
        })?;
    // SAFETY: zero is a valid bit pattern for this plain-data struct.
    let mut pe: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    pe.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    let mut map = HashMap::new();
    // SAFETY: a valid snapshot handle and an entry with dwSize set.
    let mut more = unsafe { Process32FirstW(snap.0, &mut pe) } != 0;
    while more {
        map.insert(pe.th32ProcessID, pe.th32ParentProcessID);
        // SAFETY: as above.
        more = unsafe { Process32NextW(snap.0, &mut pe) } != 0;
    }
    Ok(map)
}

/// Creates the daemon with its parent set to ctrl's nearest ancestor outside ctrl's job;
/// returns that ancestor's PID.
fn start_under_ancestor(exe: &Path, args: &[OsString], flags: u32) -> Result<u32, LaunchError> {
    let my_job = my_job_pids();
    let parents = parents()?;
    let mut pid = std::process::id();
    let mut child_start = handle_start_time(current_process()).unwrap_or(u64::MAX);
    for _ in 0..64 {
        let Some(&ppid) = parents.get(&pid) else {
            break;
        };
        if ppid == 0 || ppid == pid {
            break;
        }
        // SAFETY: OpenProcess by PID; the result is checked and owned.
        let Some(p) = OwnedHandle::new(unsafe {
            OpenProcess(
                PROCESS_CREATE_PROCESS | PROCESS_QUERY_LIMITED_INFORMATION,
                0,
                ppid,
            )
        }) else {
            return Err(LaunchError::Ancestor {
                pid: ppid,
                source: std::io::Error::last_os_error(),
            });
        };
        // A parent PID that was reused by a younger process is not our ancestor.
        let Some(start) = handle_start_time(p.0).filter(|s| *s <= child_start) else {
            return Err(LaunchError::AncestorGone(ppid));
        };
        if !in_my_job(ppid, p.0, &my_job) {
            let child = create(exe, args, "parent-process", flags, Some(p.0))?;
            if in_my_job(child.1, child.0 .0, &my_job) {
                // SAFETY: a process handle we just created with full access.
                unsafe {
                    TerminateProcess(child.0 .0, 1);
                }
                return Err(LaunchError::StillInJob(ppid));
            }
            return Ok(ppid);
        }
        pid = ppid;
        child_start = start;
    }
    Err(LaunchError::NoAncestor)
}

/// Appends `arg` to a command line, quoted the way `CommandLineToArgvW` and the MSVC runtime
/// split it again.
fn push_arg(cmd: &mut Vec<u16>, arg: &OsStr) {
    use std::os::windows::ffi::OsStrExt;
    let a: Vec<u16> = arg.encode_wide().collect();
    if !cmd.is_empty() {
        cmd.push(b' ' as u16);
    }
    let needs_quotes = a.is_empty()
        || a.iter()
            .any(|&c| c == b' ' as u16 || c == b'\t' as u16 || c == b'"' as u16);
    if !needs_quotes {
        cmd.extend(a);
        return;
    }
    cmd.push(b'"' as u16);
    let mut backslashes = 0;
    for c in a {
        if c == b'\\' as u16 {
            backslashes += 1;
        } else {
            if c == b'"' as u16 {
                cmd.extend(std::iter::repeat_n(b'\\' as u16, backslashes + 1));
            }
            backslashes = 0;
        }
        cmd.push(c);
    }
    cmd.extend(std::iter::repeat_n(b'\\' as u16, backslashes));
    cmd.push(b'"' as u16);
}

/// `CreateProcessW(exe args… --route route)` without handle inheritance, optionally under
/// another parent. Returns the new process's handle and PID.
fn create(
    exe: &Path,
    args: &[OsString],
    route: &str,
    flags: u32,
    parent: Option<HANDLE>,
) -> Result<(OwnedHandle, u32), LaunchError> {
    let mut cmdline = command_line(exe, args, route);
    let app = wide(exe.as_os_str());
    // A folder the daemon may keep open for its life without getting in anyone's way.
    let cwd = exe.parent().map(|d| wide(d.as_os_str()));

    // SAFETY: zero is a valid bit pattern for these plain-data structs.
    let mut si: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    // Explicit NULL std handles: without STARTF_USESTDHANDLES the child is handed the
    // creator's std handles (Wine duplicates them even without inheritance: measured, the
    // agent's pipe then stayed open until the daemon exited).
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    // The attribute list is an opaque, pointer-aligned buffer; keep it alive until created.
    let mut attr_buf: Vec<usize> = Vec::new();
    let mut flags = flags;
    if let Some(parent) = &parent {
        // `parent` lives on this function's stack frame until after CreateProcessW.
        let list = parent_attribute(parent, &mut attr_buf)?;
        si.lpAttributeList = list;
        si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
        flags |= EXTENDED_STARTUPINFO_PRESENT;
    } else {
        si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
    }
    // SAFETY: zero is a valid bit pattern for this plain-data struct.
    let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated application name, a mutable NUL-terminated command line, no
    // handle inheritance, the caller's environment, a startup info whose cb matches its type,
    // and a valid out pointer.
    let ok = unsafe {
        CreateProcessW(
            app.as_ptr(),
            cmdline.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            0,
            flags,
            std::ptr::null(),
            cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            &si.StartupInfo,
            &mut pi,
        )
    };
    let err = std::io::Error::last_os_error();
    if !si.lpAttributeList.is_null() {
        // SAFETY: an initialized list, deleted once, after its last use.
        unsafe { DeleteProcThreadAttributeList(si.lpAttributeList) };
    }
    drop(attr_buf);
    if ok == 0 {
        return Err(if err.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
            LaunchError::AccessDenied
        } else {
            LaunchError::Start {
                exe: exe.to_path_buf(),
                source: err,
            }
        });
    }
    let _thread = OwnedHandle(pi.hThread);
    Ok((OwnedHandle(pi.hProcess), pi.dwProcessId))
}

/// The command line `exe args… --route route`, quoted as CreateProcessW's parser reads it.
fn command_line(exe: &Path, args: &[OsString], route: &str) -> Vec<u16> {
    let mut cmdline = Vec::new();
    push_arg(&mut cmdline, exe.as_os_str());
    for a in args {
        push_arg(&mut cmdline, a);
    }
    push_arg(&mut cmdline, OsStr::new("--route"));
    push_arg(&mut cmdline, OsStr::new(route));
    cmdline.push(0);
    cmdline
}

/// An attribute list in `attr_buf` naming `parent` as the new process's parent. `parent`
/// must stay valid (and `attr_buf` alive) until CreateProcessW returns; the caller deletes
/// the list after it.
fn parent_attribute(
    parent: &HANDLE,
    attr_buf: &mut Vec<usize>,
) -> Result<LPPROC_THREAD_ATTRIBUTE_LIST, LaunchError> {
    let mut size = 0usize;
    // SAFETY: a size query with a NULL list is the documented first call; it "fails" with
    // ERROR_INSUFFICIENT_BUFFER and fills size.
    unsafe {
        InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size);
    }
    *attr_buf = vec![0usize; size.div_ceil(std::mem::size_of::<usize>()).max(1)];
    let list: LPPROC_THREAD_ATTRIBUTE_LIST = attr_buf.as_mut_ptr().cast();
    // SAFETY: the buffer is at least `size` bytes and pointer-aligned.
    if unsafe { InitializeProcThreadAttributeList(list, 1, 0, &mut size) } == 0 {
        return Err(LaunchError::Os {
            what: "cannot build the attribute list",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: an initialized list; the value is a HANDLE living until after CreateProcessW.
    let ok = unsafe {
        UpdateProcThreadAttribute(
            list,
            0,
            PROC_THREAD_ATTRIBUTE_PARENT_PROCESS as usize,
            (parent as *const HANDLE).cast(),
            std::mem::size_of::<HANDLE>(),
            std::ptr::null_mut(),
            std::ptr::null(),
        )
    };
    if ok == 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: an initialized list, deleted once.
        unsafe { DeleteProcThreadAttributeList(list) };
        return Err(LaunchError::Os {
            what: "cannot set the parent-process attribute",
            source: e,
        });
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> String {
        let mut v = Vec::new();
        for a in args {
            push_arg(&mut v, OsStr::new(a));
        }
        String::from_utf16(&v).unwrap()
    }

    #[test]
    fn arguments_are_quoted_for_the_msvc_runtime() {
        assert_eq!(line(&["a", "b c", ""]), r#"a "b c" """#);
        assert_eq!(line(&[r"C:\x y\"]), r#""C:\x y\\""#);
        assert_eq!(line(&[r#"say "hi""#]), r#""say \"hi\"""#);
        assert_eq!(line(&[r"C:\plain\path"]), r"C:\plain\path");
    }
}
