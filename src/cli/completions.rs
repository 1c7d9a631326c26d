//! Shell completions (bash, zsh, fish, PowerShell, elvish) and the man page, generated from
//! the clap definitions in [`crate::cli`], so they never drift from the real options. The
//! packages (scripts/package.sh) run the built binary to produce them; a user without the
//! package can do the same (`robotmk-daemon completions bash > …`).

use clap::CommandFactory;
use std::io::{self, Write};
use std::path::Path;

/// Prints the completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = super::args::Cli::command();
    let mut out = io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "robotmk-daemon", &mut out);
    match out.flush() {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            1
        }
    }
}

/// Prints the man page (roff, section 1), or with `dir` writes one page per visible command
/// into it (`robotmk-daemon.1`, `robotmk-daemon-history.1`, …: the main page refers to them).
pub(crate) fn man(dir: Option<&Path>) -> i32 {
    // `help` is clap's, not ours: no page for it.
    let cmd = super::args::Cli::command().disable_help_subcommand(true);
    let result = match dir {
        Some(d) => clap_mangen::generate_to(cmd, d)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", d.display()))),
        None => {
            let mut out = io::stdout().lock();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .and_then(|_| out.flush())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            1
        }
    }
}
