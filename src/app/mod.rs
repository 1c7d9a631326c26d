//! What the program does (layer 4): the daemon, ctrl and every command an admin runs
//! (`start`, `stop`, `status`, `check-config`, `run-once`, `history`, `logs`, `pause`), and
//! the retry wrapper of robot jobs. Imports the layers below; only [`crate::cli`] imports it
//! (see docs/ARCHITECTURE.md).

pub(crate) mod attempts;
pub(crate) mod check_config;
pub(crate) mod ctrl;
pub(crate) mod daemon;
pub(crate) mod findings;
pub(crate) mod hang;
pub(crate) mod history;
pub(crate) mod logs;
pub(crate) mod once;
pub(crate) mod pause;
pub(crate) mod start_stop;
pub(crate) mod status;
pub(crate) mod term;
pub(crate) mod test_crash;

/// The config at `path`, or the exit code after its error was printed: what a command that
/// needs a valid config does first.
pub(crate) fn load_or_report(path: &std::path::Path) -> Result<crate::model::config::Config, i32> {
    crate::service::config::load(path).map_err(|e| {
        eprintln!("robotmk-daemon: config error: {e}");
        2
    })
}
