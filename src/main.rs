//! The `robotmk-daemon` binary: parse the command line, run, map to an exit code.

use clap::Parser;
use robotmk_daemon::cli::{self, invoked_as_ctrl};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = if args.len() == 1 && invoked_as_ctrl(&args[0]) {
        cli::Cli {
            config: None,
            command: cli::Command::Ctrl,
        }
    } else {
        cli::Cli::parse_from(args)
    };
    ExitCode::from(cli::dispatch(cli).clamp(0, 255) as u8)
}
