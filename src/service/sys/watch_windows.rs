//! Windows side of [`Watcher`]: a change notification (`FindFirstChangeNotificationW`) per
//! watched directory, and one thread in `WaitForMultipleObjects` on them plus an event that
//! hands it a new set. Change notifications carry no names, so a watched directory wakes the
//! daemon on any change of its kind in it, the daemon's own writes in the state dir included
//! (one look each, which writes nothing unless something changed: no cascade).
//! A directory's own ACL or name change is reported by its parent, so an ancestor is watched
//! for security and name changes of its entries.
//!
//! The wall clock is not watched: the daemon caps its sleeps instead
//! ([`Watcher::sees_clock_changes`] is false).

use super::platform::OwnedHandle;
use super::Watch;
use std::io;
use std::sync::{Arc, Mutex};
use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0};
use windows_sys::Win32::Storage::FileSystem::{
    FindCloseChangeNotification, FindFirstChangeNotificationW, FindNextChangeNotification,
    FILE_NOTIFY_CHANGE, FILE_NOTIFY_CHANGE_ATTRIBUTES, FILE_NOTIFY_CHANGE_DIR_NAME,
    FILE_NOTIFY_CHANGE_FILE_NAME, FILE_NOTIFY_CHANGE_LAST_WRITE, FILE_NOTIFY_CHANGE_SECURITY,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, SetEvent, WaitForMultipleObjects, INFINITE,
};

/// WaitForMultipleObjects takes at most 64 handles; one is the re-arm event.
const MAX_DIRS: usize = 63;

/// A change notification handle, closed on drop.
struct Change(HANDLE);

// SAFETY: a kernel handle, usable from any thread; only the watching thread waits on it.
unsafe impl Send for Change {}

impl Drop for Change {
    fn drop(&mut self) {
        // SAFETY: a handle from FindFirstChangeNotificationW, closed exactly once.
        unsafe {
            FindCloseChangeNotification(self.0);
        }
    }
}

struct Inner {
    rearm: OwnedHandle,
    next: Mutex<Option<Vec<Change>>>,
}

/// Watches directories and calls back on changes in them.
pub(crate) struct Watcher {
    inner: Arc<Inner>,
}

impl Watcher {
    /// Starts the watching thread; `wake` is called from it on each change. Nothing is
    /// watched until [`Watcher::arm`].
    pub(crate) fn start(wake: impl Fn() + Send + 'static) -> io::Result<Watcher> {
        // SAFETY: an unnamed auto-reset event, not signalled.
        let ev = unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) };
        let Some(rearm) = OwnedHandle::new(ev) else {
            return Err(io::Error::last_os_error());
        };
        let inner = Arc::new(Inner {
            rearm,
            next: Mutex::new(None),
        });
        let t = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("watcher".into())
            .stack_size(64 * 1024)
            .spawn(move || watch_forever(&t, wake))?;
        Ok(Watcher { inner })
    }

    /// Whether a set wall clock wakes the daemon: not on Windows.
    pub(crate) fn sees_clock_changes(&self) -> bool {
        false
    }

    /// Watches exactly `watches` from now on. Returns what could not be watched, with why.
    pub(crate) fn arm(&self, watches: &[Watch]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut dirs: Vec<(&std::path::Path, FILE_NOTIFY_CHANGE)> = Vec::new();
        for w in watches {
            let mut filter = FILE_NOTIFY_CHANGE_SECURITY | FILE_NOTIFY_CHANGE_DIR_NAME;
            if !w.children.is_empty() || w.new_json {
                filter |= FILE_NOTIFY_CHANGE_FILE_NAME
                    | FILE_NOTIFY_CHANGE_LAST_WRITE
                    | FILE_NOTIFY_CHANGE_ATTRIBUTES;
            }
            match dirs.iter_mut().find(|(d, _)| *d == w.dir.as_path()) {
                Some((_, f)) => *f |= filter,
                None => dirs.push((&w.dir, filter)),
            }
        }
        if dirs.len() > MAX_DIRS {
            problems.push(format!(
                "{} directories to watch, at most {MAX_DIRS} can be",
                dirs.len()
            ));
            dirs.truncate(MAX_DIRS);
        }
        let mut handles = Vec::new();
        for (dir, filter) in dirs {
            let w = super::platform::wide(dir);
            // SAFETY: a NUL-terminated path; not the subtree.
            let h = unsafe { FindFirstChangeNotificationW(w.as_ptr(), 0, filter) };
            if h == INVALID_HANDLE_VALUE || h.is_null() {
                let e = io::Error::last_os_error();
                problems.push(format!("cannot watch {}: {e}", dir.display()));
                continue;
            }
            handles.push(Change(h));
        }
        *self.inner.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(handles);
        // SAFETY: our own event handle.
        unsafe {
            SetEvent(self.inner.rearm.0);
        }
        problems
    }
}

fn watch_forever(inner: &Inner, wake: impl Fn()) {
    let mut changes: Vec<Change> = Vec::new();
    loop {
        let mut wait: Vec<HANDLE> = vec![inner.rearm.0];
        wait.extend(changes.iter().map(|c| c.0));
        // SAFETY: valid handles, at most 64 of them.
        let r = unsafe { WaitForMultipleObjects(wait.len() as u32, wait.as_ptr(), 0, INFINITE) };
        let i = r.wrapping_sub(WAIT_OBJECT_0) as usize;
        if i == 0 {
            if let Some(next) = inner.next.lock().unwrap_or_else(|e| e.into_inner()).take() {
                changes = next;
            }
        } else if let Some(c) = changes.get(i - 1) {
            // SAFETY: a change handle of ours; asks for the next change.
            unsafe {
                FindNextChangeNotification(c.0);
            }
            wake();
        } else {
            // WAIT_FAILED: not expected with valid handles; avoid spinning on it.
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
