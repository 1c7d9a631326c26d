//! A command whose reader goes away (`check-config | head -1`) ends quietly, as `cat` and `ls`
//! do, instead of panicking with `failed printing to stdout: Broken pipe`.
//!
//! Unix: SIGPIPE back to its default action, so the process ends by the signal at the first
//! write to the closed pipe (the shell shows exit status 141 = 128 + 13). Windows has no such
//! signal: a write to a closed pipe fails, and `println!` panics on it; a panic hook ends the
//! process there with the same 141, silently. Only for the commands an admin runs: the daemon,
//! the helpers it starts, ctrl and `run-once` keep Rust's default (SIGPIPE ignored) and handle
//! a failed write themselves.

/// Makes a write to a closed stdout end this process quietly (exit status 141).
pub(crate) fn end_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    #[cfg(not(unix))]
    {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if text.starts_with("failed printing to stdout") {
                std::process::exit(141);
            }
            default(info);
        }));
    }
}
