//! Windows side of [`crate::service::sys`]: the same names as `unix.rs`, one concern a file.
//! `process.rs`: process identity by PID and creation time, ending a process, the image it
//! runs, handle hygiene for a freshly detached daemon. `stop.rs`: the named stop events `stop`
//! sets. `files.rs`: opening files without following reparse points, and what std cannot tell
//! of a file here. `acl.rs`: the ACL half of the path trust check. `host.rs`: the host's
//! places and the Unix knobs that have one fixed answer here. `handle.rs`: UTF-16 strings and
//! owned handles, shared by the others (and by `watch_windows.rs`). This file only lists them.

mod acl;
mod files;
mod handle;
mod host;
mod process;
mod stop;

pub(crate) use acl::{check_instance_path_trust, check_path_trust};
pub(crate) use files::{
    change_stamp, is_plain_file, plain_file_len, resolved_dir, same_file, same_file_at,
    set_open_flags,
};
pub(crate) use handle::{wide, ObjectSecurity, OwnedHandle};
pub(crate) use host::{
    default_state_base, exit_signal, give_to, is_root, lookup_user, make_readable_tree,
    may_write_state_dir, mode_executable, only_mine, others_may_read, private_dir, private_file,
    public_dir, rename_denied_is_transient, self_exe, set_private_umask, set_shared_umask,
    stop_flag, uptime, CONSOLE_ALWAYS_UTF8, DEFAULT_CONFIG_DIR, TEMP_DIRS, USER_DATABASE,
};
pub(crate) use process::{
    close_inherited_fds, find_run_by_env, handle_start_time, is_instance_daemon, kill_process,
    process_program, process_start_time, runs_my_file, same_program,
};
pub(crate) use stop::{forward_control_signals, signal_requests, signal_stop, signal_stop_now};
