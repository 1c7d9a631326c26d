//! Small OS services the rest of the program needs, one implementation per OS with the same
//! names: process identity (PID + start time), asking a daemon to stop, and process hygiene
//! for a freshly detached daemon.

mod beneath;
#[cfg(unix)]
pub(crate) mod children;
pub(crate) mod copy;
pub(crate) mod descriptors;
pub(crate) mod dir;
pub(crate) mod fatal;
pub(crate) mod file;
pub(crate) mod memory;
pub(crate) mod pipe;
pub(crate) mod public;
pub(crate) mod tmp_link;
pub mod tree;
pub(crate) mod trust;
mod who;

pub(crate) use beneath::{open_beneath, Beneath};
pub(crate) use who::user_label;

#[cfg(unix)]
#[path = "unix.rs"]
mod platform;
#[cfg(windows)]
#[path = "windows/mod.rs"]
mod platform;

pub(crate) use platform::*;

#[cfg(unix)]
mod users;
#[cfg(unix)]
pub(crate) use users::lookup_user;

#[cfg(unix)]
#[path = "zone_unix.rs"]
pub(crate) mod zone;
#[cfg(windows)]
#[path = "zone_windows.rs"]
pub(crate) mod zone;

#[cfg(unix)]
#[path = "watch_linux.rs"]
mod watch;
#[cfg(windows)]
#[path = "watch_windows.rs"]
mod watch;

pub(crate) use watch::Watcher;

#[cfg(unix)]
#[path = "config_lock_unix.rs"]
pub(crate) mod config_lock;
#[cfg(windows)]
#[path = "config_lock_windows.rs"]
pub(crate) mod config_lock;

/// What taking a config's lock got (`config_lock::take`; `L`: its `ConfigLock`, named here
/// without a use of that file, which uses this one).
#[derive(Debug)]
pub(crate) enum TookConfig<L> {
    /// Held for the daemon's life.
    Locked(L),
    /// Another daemon of this config held it all the patience long.
    Held,
    /// There is no place for the lock that only this user can write (Linux: the lock folder
    /// belongs to another user, others may write it, or it is a symlink): the words say which
    /// and the fix. A lock there would be anyone's to take or plant, and one kept elsewhere
    /// would not be found by a second daemon of the config: the daemon does not run.
    #[cfg_attr(windows, allow(dead_code))]
    Nowhere(String),
}

#[cfg(unix)]
#[path = "program_unix.rs"]
mod program;
#[cfg(unix)]
pub(crate) use program::{process_program, runs_my_file, same_program};

#[cfg(unix)]
#[path = "build_tree_unix.rs"]
mod build_tree;
#[cfg(windows)]
#[path = "build_tree_windows.rs"]
mod build_tree;

pub(crate) use crate::model::user::UserInfo;

pub(crate) use build_tree::{
    check_passable, copy_link, current_uid, hand_dir, seal_copy, seal_dir_mode,
};

/// A process identified by PID *and* start time, so a recycled PID is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessId {
    pub(crate) pid: u32,
    pub(crate) start: Option<u64>,
}

impl ProcessId {
    /// The current process.
    pub(crate) fn current() -> ProcessId {
        let pid = std::process::id();
        ProcessId {
            pid,
            start: process_start_time(pid),
        }
    }

    /// True if a process with this PID exists and (when known) started at the same time.
    pub(crate) fn is_alive(&self) -> bool {
        match (process_start_time(self.pid), self.start) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// The program file a process runs, as the OS tells it ([`process_program`]): ctrl compares
/// the daemon's with its own to tell a daemon whose program was replaced under it (an upgrade,
/// a downgrade or a rebuild renamed over the file) from one started from another copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Program {
    /// The path it was started from, as the OS names it now (Linux: without the
    /// `" (deleted)"` that `/proc/PID/exe` adds once the file lost that name).
    pub(crate) path: std::path::PathBuf,
    /// The file no longer has that name: deleted, or another file renamed over it.
    pub(crate) deleted: bool,
    /// The file's identity (device, inode) where the OS tells it (Unix), whether or not it
    /// still has a name.
    pub(crate) file: Option<(u64, u64)>,
    /// The path it was started as (its `argv[0]`, if absolute; Unix): where ctrl launched
    /// it from, even after that file or its folder was moved aside (`path` follows a move).
    pub(crate) launched: Option<std::path::PathBuf>,
}

/// A request that reaches the daemon from outside its own loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlSignal {
    /// SIGTERM/SIGINT (Unix), the stop event (Windows): read the stop request and stop.
    Stop,
    /// SIGUSR2 (Unix), the stop-now event (Windows): stop, ending the runs in flight, with
    /// or without a stop request (`stop --now` when the request cannot be written).
    StopNow,
    /// SIGHUP: re-read the config now (Unix only; Windows has no such signal, its daemon
    /// sees the config and the requests change through its watcher).
    #[cfg_attr(windows, allow(dead_code))]
    Reload,
    /// SIGUSR1: a `run-once` request waits in the state dir (Unix only, as `Reload`).
    #[cfg_attr(windows, allow(dead_code))]
    Requests,
    /// Something a [`Watcher`] watches changed, or the wall clock was set: look again.
    Changed,
}

/// One directory a [`Watcher`] watches, and which of its changes wake the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watch {
    pub(crate) dir: std::path::PathBuf,
    /// Changes of the directory itself: its mode or owner, moved, deleted.
    pub(crate) itself: bool,
    /// Entries of the directory whose changes wake, by name.
    pub(crate) children: Vec<(std::ffi::OsString, Child)>,
    /// New `*.json` files (by rename or a finished write) wake; names starting with `.` (the
    /// daemon's own claims and temporary files) do not.
    pub(crate) new_json: bool,
}

/// What changes of a named entry wake the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Child {
    /// Written, replaced, its mode, owner or mtime changed, created or removed (the config).
    Content,
    /// Its mtime, mode or owner set, replaced, created or removed (the heartbeat: one beat,
    /// one wake; its content is only ever replaced by rename).
    Meta,
    /// Created, removed or renamed only (the lock file, the stop request, which is written by
    /// rename, a symlink on a watched path).
    Entry,
    /// Removed or renamed away only (what the daemon itself publishes by rename: its own
    /// writes do not wake it, a cleaner's removal does).
    Gone,
}

impl Watch {
    pub(crate) fn itself(dir: impl Into<std::path::PathBuf>) -> Watch {
        Watch {
            dir: dir.into(),
            itself: true,
            children: Vec::new(),
            new_json: false,
        }
    }

    pub(crate) fn child(
        dir: impl Into<std::path::PathBuf>,
        name: impl Into<std::ffi::OsString>,
        how: Child,
    ) -> Watch {
        Watch {
            dir: dir.into(),
            itself: false,
            children: vec![(name.into(), how)],
            new_json: false,
        }
    }
}

/// The watches that see every change that can alter what `path` is: the file (or directory)
/// itself by name in its directory, every directory on the way (its mode, owner, a move), and
/// every symlink on the way by name in its directory (re-pointed or replaced). Symlinks are
/// resolved one component at a time, as the trust check does. `how` is the filter for the
/// last component. A part of the path that does not exist is watched for by name in the
/// deepest directory that does. Returns false if the path cannot be followed (a symlink loop,
/// a directory that cannot be read).
pub(crate) fn path_watches(path: &std::path::Path, how: Child, out: &mut Vec<Watch>) -> bool {
    use std::path::{Component, PathBuf};
    let mut resolved = PathBuf::new();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    let push_rest =
        |rest: &mut Vec<std::ffi::OsString>, resolved: &mut PathBuf, p: &std::path::Path| {
            let mut parts = Vec::new();
            let mut after_prefix = false;
            for c in p.components() {
                match c {
                    // An absolute target starts again from its root. On Windows that is a
                    // drive (`C:`) and then its root (`\`): the root joins the drive, else
                    // `C:\rmk\x` would be watched as `\rmk\x`, on whatever the current
                    // drive is (Wine showed the run flag's folder never watched).
                    Component::RootDir if after_prefix => {
                        resolved.push(c.as_os_str());
                        parts.clear();
                    }
                    Component::Prefix(_) | Component::RootDir => {
                        *resolved = PathBuf::new();
                        resolved.push(c.as_os_str());
                        parts.clear();
                    }
                    Component::CurDir => {}
                    other => parts.push(other.as_os_str().to_os_string()),
                }
                after_prefix = matches!(c, Component::Prefix(_));
            }
            rest.extend(parts.into_iter().rev());
        };
    push_rest(&mut rest, &mut resolved, path);
    if !resolved.as_os_str().is_empty() {
        out.push(Watch::itself(resolved.clone()));
    }
    let mut hops = 0;
    while let Some(name) = rest.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let last = rest.is_empty();
        let next = resolved.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                out.push(Watch::child(resolved.clone(), name, Child::Entry));
                hops += 1;
                let Some(target) = std::fs::read_link(&next).ok().filter(|_| hops <= 40) else {
                    return false;
                };
                push_rest(&mut rest, &mut resolved, &target);
            }
            Ok(_) if last => out.push(Watch::child(resolved.clone(), name, how)),
            Ok(_) => {
                resolved = next;
                out.push(Watch::itself(resolved.clone()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Watched by name in the deepest directory that exists: its creation wakes,
                // and the next arming goes deeper.
                out.push(Watch::child(resolved.clone(), name, how));
                return true;
            }
            Err(_) => return false,
        }
    }
    true
}

/// Why a job's user could not be looked up. Each names the user; the config reports it as
/// the error of the job's `user` field.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UserLookupError {
    /// No such user where this build looks (`looked` says where).
    #[cfg(unix)]
    #[error("no user {name:?} on this host (looked up in {looked})")]
    NotFound { name: String, looked: String },
    /// The name cannot be a user's.
    #[cfg(unix)]
    #[error("{name:?} is not a user name: {why}")]
    InvalidName { name: String, why: &'static str },
    /// The lookup itself failed (the user database did not answer).
    #[cfg(unix)]
    #[error("cannot look up user {name:?} in {looked}: {source}")]
    Failed {
        name: String,
        looked: String,
        #[source]
        source: std::io::Error,
    },
    /// The account is there but expired (shadow's `sp_expire` is today or earlier: `chage -E`,
    /// `usermod --expiredate`): cron's PAM refuses it, and so does the daemon.
    #[cfg(unix)]
    #[error("account {name} expired on {on}")]
    Expired { name: String, on: String },
    /// Not on this OS.
    #[cfg(windows)]
    #[error("`user = {name:?}` is not supported on Windows: run a second instance as that user, started at logon by the Task Scheduler (see docs/WINDOWS.md, \"Suites on a user's desktop\")")]
    Unsupported { name: String },
}

impl UserLookupError {
    /// An account that is there but may not run now (expired): its jobs are held, while
    /// the rest of the config stands (cron skips such a user's jobs, not the others').
    pub(crate) fn holds_its_jobs(&self) -> bool {
        #[cfg(unix)]
        return matches!(self, UserLookupError::Expired { .. });
        #[cfg(windows)]
        return false;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A process is found by the tag in its environment, but only within the first 64 KiB
    /// read of it: another user's thousands of processes with environments of megabytes must
    /// not make one scan read gigabytes.
    #[test]
    fn an_environment_is_read_only_up_to_its_cap() {
        let tag = std::process::id().to_string();
        // std passes the variables sorted by name: the padding comes before the tag.
        let spawn = |padding_vars: usize| {
            let mut c = std::process::Command::new("sleep");
            c.arg("30").env_clear().env("ROBOTMK_TEST_TAG", &tag);
            for i in 0..padding_vars {
                c.env(format!("AAA_PADDING_{i}"), "x".repeat(60 * 1024));
            }
            c.spawn().unwrap()
        };
        let mut near = spawn(0);
        let mut far = spawn(4);
        let found = processes_with_env("ROBOTMK_TEST_TAG", &tag);
        let _ = (near.kill(), far.kill(), near.wait(), far.wait());
        assert!(found.contains(&near.id()), "{found:?}");
        assert!(!found.contains(&far.id()), "read past the cap: {found:?}");
    }

    /// A process names itself (its program's file name, or `prctl(PR_SET_NAME)`): one whose
    /// name is not UTF-8 and holds parentheses is still alive to the daemon, so it is ended
    /// at its run's end like any other.
    #[test]
    fn a_process_with_a_name_that_is_not_text_is_still_seen() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"\xff) 1 2 (\xfe");
        let prog = t.path().join(name);
        symlink(which("sleep"), &prog).unwrap();
        let mut child = std::process::Command::new(&prog).arg("30").spawn().unwrap();
        let pid = child.id();
        // The kernel names the process late in its exec, after the close-on-exec that tells
        // `spawn` the exec went through: wait for the name (a deadline, not a sleep).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut comm = Vec::new();
        while !comm.starts_with(b"\xff") && std::time::Instant::now() < deadline {
            comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap();
            std::thread::yield_now();
        }
        let seen = (
            process_start_time(pid),
            process_group(pid),
            parent_process(pid),
        );
        let _ = (child.kill(), child.wait());
        assert!(comm.starts_with(b"\xff) 1 2 ("), "{comm:?}");
        assert!(seen.0.is_some_and(|t| t > 0), "{seen:?}");
        assert_eq!(
            seen.1,
            rustix::process::getpgrp()
                .as_raw_nonzero()
                .get()
                .try_into()
                .ok()
        );
        assert_eq!(seen.2, Some(std::process::id()));
    }

    fn which(prog: &str) -> std::path::PathBuf {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(prog))
            .find(|p| p.exists())
            .unwrap()
    }

    #[test]
    fn every_directory_and_symlink_hop_on_a_path_is_watched() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("real/etc")).unwrap();
        std::fs::write(root.join("real/etc/target.toml"), "").unwrap();
        // root/link -> real; root/real/etc/config.toml -> target.toml (relative hops)
        symlink("real", root.join("link")).unwrap();
        symlink("target.toml", root.join("real/etc/config.toml")).unwrap();
        let mut w = Vec::new();
        assert!(path_watches(
            &root.join("link/etc/config.toml"),
            Child::Content,
            &mut w
        ));
        let has = |dir: &std::path::Path, name: Option<&str>, how: Child| {
            w.iter().any(|x| {
                x.dir == dir
                    && match name {
                        None => x.itself,
                        Some(n) => x.children.iter().any(|(c, h)| c == n && *h == how),
                    }
            })
        };
        assert!(has(std::path::Path::new("/"), None, Child::Entry), "{w:?}");
        assert!(has(&root, None, Child::Entry), "{w:?}");
        assert!(
            has(&root, Some("link"), Child::Entry),
            "the hop, by name: {w:?}"
        );
        assert!(has(&root.join("real"), None, Child::Entry), "{w:?}");
        assert!(has(&root.join("real/etc"), None, Child::Entry), "{w:?}");
        assert!(
            has(&root.join("real/etc"), Some("config.toml"), Child::Entry),
            "the link itself: {w:?}"
        );
        assert!(
            has(&root.join("real/etc"), Some("target.toml"), Child::Content),
            "the file it names: {w:?}"
        );
        // Never the link's own path as a directory (that would follow it).
        assert!(!w.iter().any(|x| x.dir == root.join("link")), "{w:?}");

        // A part that does not exist yet is watched for by name where the path stops.
        let mut w = Vec::new();
        assert!(path_watches(
            &root.join("new/dir/x.toml"),
            Child::Content,
            &mut w
        ));
        assert!(w
            .iter()
            .any(|x| x.dir == root && x.children.iter().any(|(c, _)| c == "new")));

        // A loop is reported, not followed forever.
        symlink("loop", root.join("loop")).unwrap();
        assert!(!path_watches(
            &root.join("loop/x"),
            Child::Content,
            &mut Vec::new()
        ));
    }
}

#[cfg(all(test, windows))]
mod windows_tests {
    use super::*;
    use std::path::{Component, PathBuf};

    /// A folder right under the drive: no symlink of the test host on the way.
    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            // The test's own small folder (std's remover is for tests only: clippy.toml).
            #[allow(clippy::disallowed_methods)]
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_path_on_a_drive_is_watched_on_that_drive() {
        let dir = Dir(PathBuf::from(format!(
            "C:\\rmkd-watch-test-{}",
            std::process::id()
        )));
        std::fs::create_dir_all(&dir.0).unwrap();
        let flag = dir.0.join("run.flag");
        std::fs::write(&flag, "").unwrap();
        let mut w = Vec::new();
        assert!(path_watches(&flag, Child::Content, &mut w));
        for watch in &w {
            assert!(
                matches!(watch.dir.components().next(), Some(Component::Prefix(_))),
                "watched without its drive: {} in {w:?}",
                watch.dir.display()
            );
        }
        assert!(
            w.iter()
                .any(|x| x.dir == std::path::Path::new("C:\\") && x.itself),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|x| x.dir == dir.0 && x.children.iter().any(|(n, _)| n == "run.flag")),
            "the flag's folder is not watched: {w:?}"
        );
    }
}

/// Finds a program like the OS would: a path as given, a bare name on `PATH`.
pub(crate) fn which(program: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(program);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|d| {
        let c = d.join(program);
        if c.is_file() {
            return Some(c);
        }
        let exe = d.join(format!("{program}{}", std::env::consts::EXE_SUFFIX));
        exe.is_file().then_some(exe)
    })
}
