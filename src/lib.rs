//! robotmk-daemon runs Robot Framework suites (or any command) on their own schedules,
//! detached from the Checkmk agent that watches them.
//!
//! Three kinds of process (see SPEC.md): **ctrl** ([`app::ctrl`]) is what the agent runs; it
//! returns in milliseconds after making sure one **daemon** ([`app::daemon`]) runs per
//! instance, which starts the **runners** ([`service::run`]) on schedule
//! ([`logic::schedule`]) and records every run ([`service::state`]). The binary in `main.rs`
//! only parses the command line ([`cli`]). The folders are the layers, bottom up: [`model`],
//! [`logic`], [`service`], [`app`], [`cli`] (docs/ARCHITECTURE.md; `tests/layers.rs` holds
//! them). Only what the binary and the integration tests use is `pub`.

pub mod app;
pub mod cli;
pub mod logic;
pub mod model;
pub mod service;
