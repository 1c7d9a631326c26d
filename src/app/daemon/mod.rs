//! The daemon: one per instance, detached from the agent. It holds the instance lock for its
//! whole life, starts runs on each job's schedule, bounds them, records them, and exits by
//! itself when asked to stop, when the heartbeat goes stale, or when its run flag disappears.
//!
//! [`start`] starts it (config, lock, recovery, the first plan); [`shell`] owns the state
//! and the loop, and asks the pure scheduler (`logic::scheduler`) what is due; [`changes`]
//! holds the named changes of what the status shows, each owing the status write;
//! [`event`] is what reaches the loop from its helper threads; each other file adds one
//! concern: [`control`] (what the daemon watches and its looks, with [`watch`] the state
//! they keep, and [`reload`] the config loaded again off the loop, by [`config_load`]), [`runs`] (starting and ending runs, with [`table`] the run table — queued, in
//! flight with their deadlines, being written, lingering — and [`folder`] their folders and
//! records), [`finish`] (completing and writing records off the loop), [`recover`] (what a
//! previous daemon left), [`envs`] (Python environments), [`jobs`] (each job's state),
//! [`workdir`] (run folders' neighbours and their removal), [`drain`] (a drain's start, the schedule
//! while draining, a handover called off; its state in [`drained`]), [`backlog`] (whether the daemon
//! keeps up with its schedule) and [`lifecycle`] (starts and crashes).

mod backlog;
mod changes;
mod config_load;
mod control;
mod drain;
mod drained;
mod envs;
mod event;
mod extras;
mod finish;
mod folder;
mod jobs;
mod lifecycle;
mod recover;
mod reload;
mod runs;
mod shell;
mod start;
mod table;
mod watch;
mod workdir;

pub(crate) use start::{run, run_oneshot, OneShot, Options, SetupError};
