//! robotmk-daemon runs Robot Framework suites (or any command) on their own schedules,
//! detached from the Checkmk agent that watches them.
//!
//! Three kinds of process (see SPEC.md): **ctrl** ([`ctrl`]) is what the agent runs; it
//! returns in milliseconds after making sure one **daemon** ([`daemon`]) runs per instance,
//! which starts the **runners** ([`run`]) on schedule ([`schedule`]) and records every run
//! ([`state`]). The binary in `main.rs` only parses the command line ([`cli`]).

pub mod app;
pub mod cli;
pub mod logic;
pub mod model;
pub mod service;
