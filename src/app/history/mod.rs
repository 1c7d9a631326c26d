//! `history JOB` and `show JOB [RUN]`: what an admin paged at night wants to know about a
//! job's runs without opening JSON files — a table of recent runs with a strip of outcomes
//! and a sparkline of runtimes (the trend at a glance), and one run in words with the tail of
//! its output and where robot's log.html is.
//!
//! Everything here only reads: the run folders are listed, and each record and output file is
//! opened through [`crate::service::sys::file`] (no symlinks, no FIFOs, capped reads) after the config
//! and state dir passed the trust check, as in `status`. Text that came from files is cut to a
//! sane length and has its control characters escaped before it reaches the terminal.//!
//! The files: `target.rs` (the instance looked at, shared with `logs`), `runs.rs` (a job's
//! runs from the state dir), `table.rs` (`history`), `show.rs` (`show`), `words.rs` (what
//! both say of a run), `tail.rs` (a file's last lines, shared with `logs`).

mod runs;
mod show;
mod table;
mod tail;
mod target;
mod words;

pub(crate) use show::show;
pub(crate) use table::history;
pub(crate) use tail::tail_lines;
pub(crate) use target::locate;
