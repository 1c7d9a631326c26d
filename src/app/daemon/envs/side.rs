//! The loop's side of the environment worker: the channel to it, what it last reported, the
//! environment of each run in flight, and the builds the loop ends when it exits.

use crate::model::env::{EnvSpec, EnvState};
use crate::model::user::UserInfo;
use crate::service::run::ExitInfo;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a job's runs get.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JobEnv {
    /// Its environment is being built and it has none ready: runs wait.
    Waiting,
    Ready {
        key: String,
        venv: PathBuf,
    },
    /// The build failed (or the file cannot be read): runs are recorded as `error`.
    Failed(String),
}

/// The worker's news for the loop.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Update {
    pub(crate) envs: Vec<EnvState>,
    pub(crate) jobs: BTreeMap<String, JobEnv>,
    /// Counts the updates: the loop echoes the last it has seen (see [`Msg::InUse`]).
    pub(crate) seq: u64,
}

pub(crate) enum Msg {
    Config {
        /// Each job with an environment, with its `user` (who builds it, when the daemon is
        /// root).
        jobs: Vec<(String, EnvSpec, Option<UserInfo>)>,
        timeout: Duration,
        uv: Option<PathBuf>,
        /// `[daemon] build_user`, looked up by the worker (never on the loop).
        build_user: String,
    },
    /// Keys of the runs in flight (never removed under them); `None` while runs adopted after
    /// a restart are in flight (their environment is unknown): remove nothing. With the last
    /// update the loop had seen when it sent this: an environment no job uses any more is
    /// removed only once the loop has seen that (a run it started just before would be in
    /// these keys then), never while a start with it may be on its way.
    InUse(Option<BTreeSet<String>>, u64),
    Exited {
        key: String,
        exit: ExitInfo,
    },
    /// Something the daemon watches changed (an environment's source file among them): look
    /// at the sources' stamps.
    Look,
}

/// Builds in flight, by key: process group and folder (the loop ends them when it exits).
pub(crate) type Builds = Arc<Mutex<BTreeMap<String, (u32, String)>>>;

/// The loop's side: the worker's handle and what it last reported.
#[derive(Default)]
pub(crate) struct Side {
    pub(crate) tx: Option<Sender<Msg>>,
    pub(crate) builds: Builds,
    pub(crate) jobs: BTreeMap<String, JobEnv>,
    pub(crate) views: Vec<EnvState>,
    /// The environment key of each run in flight, by PID.
    pub(crate) runs: HashMap<u32, String>,
    pub(crate) sent_in_use: Option<(Option<BTreeSet<String>>, u64)>,
    /// The last update seen.
    pub(crate) seen: u64,
    /// No scheduled run starts before this (`start_delay` after boot).
    pub(crate) hold_until: Option<Instant>,
}
