//! The environment worker thread: the daemon's use of its Python environments (which each job
//! wants and uses, when a build starts and ends, what goes) and the news it sends the loop;
//! see the parent module for what it does and why it runs off the loop. The build of one
//! environment on the host is `service::env_build`; the bookkeeping decisions (deadlines,
//! a build's exit, what is kept, when an unused one goes) are `logic::env_upkeep`.
//!
//! The files: this one holds the worker's state, its loop and its news; `jobs.rs` what each job
//! wants and uses, `builds.rs` starting, timing out and finishing builds, `garbage.rs` removing
//! what no job uses.

mod builds;
mod garbage;
mod jobs;

use super::side::{Builds, Msg, Update};
use crate::app::daemon::event::Event;
use crate::logic::env_upkeep::{self, Deadline, Retired};
use crate::model::env::{EnvSpec, EnvState};
use crate::model::user::UserInfo;
use crate::service::pyenv::{self};
use crate::service::run;
use crate::service::state::{self, Durability, StateDir};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use tracing::warn;

/// How often the worker looks at the source files' stamps by itself: rarely, as a safety
/// net; the loop's watches send it a [`Msg::Look`] when one changes.
const WATCH: Duration = Duration::from_secs(600);

/// One environment the worker tracks.
struct Tracked {
    spec: EnvSpec,
    /// The job's `user`.
    user: Option<UserInfo>,
    /// Who builds it (`None`: the daemon itself), or why no one can.
    builder: Result<Option<UserInfo>, String>,
    stamp: Option<String>,
    key: Option<Result<String, String>>,
    /// The environment its runs use now (kept until the next one is ready).
    in_use: Option<String>,
}

impl Tracked {
    /// Lives in the users' tree: readable by jobs' users, or built by another user.
    fn public(&self) -> bool {
        self.spec.shared || matches!(self.builder, Ok(Some(_)))
    }

    fn builder_label(&self) -> Option<String> {
        match &self.builder {
            Ok(Some(u)) => Some(pyenv::builder_label(u)),
            _ => None,
        }
    }
}

struct Build {
    dir: PathBuf,
    pgid: u32,
    deadline: Deadline,
    /// The uid (and group) it runs as, when not the daemon's: what it built is sealed
    /// before use.
    builder: Option<(u32, u32)>,
    /// Readable by jobs' users once sealed.
    shared: bool,
}

struct Worker {
    root: PathBuf,
    state: StateDir,
    events: Sender<Event>,
    me: Sender<Msg>,
    jobs: BTreeMap<String, Tracked>,
    envs: BTreeMap<String, EnvState>,
    builds: BTreeMap<String, Build>,
    shared: Builds,
    timeout: Duration,
    uv: Option<PathBuf>,
    runs_use: Option<BTreeSet<String>>,
    last: Option<Update>,
    /// Updates sent, and the last the loop has seen.
    seq: u64,
    loop_seen: u64,
    /// Environments no job uses, by the first update that said so.
    retired: Retired,
    /// The daemon's: builds are its children like runs.
    spawner: run::Spawner,
    /// The build user's lookup the user database has not answered yet, with the config's
    /// jobs and `build_user`, configured again once it answers.
    lookup: Option<crate::service::pyenv::BuildUserLookup>,
    configured: (Vec<(String, EnvSpec, Option<UserInfo>)>, String),
}

pub(super) fn start_worker(
    state: StateDir,
    events: Sender<Event>,
    shared: Builds,
    spawner: run::Spawner,
) -> std::io::Result<Sender<Msg>> {
    let (tx, rx) = mpsc::channel();
    let mut w = Worker {
        root: state.root.join("envs"),
        state,
        events,
        me: tx.clone(),
        jobs: BTreeMap::new(),
        envs: BTreeMap::new(),
        builds: BTreeMap::new(),
        shared,
        timeout: Duration::from_secs(600),
        uv: None,
        runs_use: None,
        last: None,
        seq: 0,
        loop_seen: 0,
        retired: Retired::default(),
        spawner,
        lookup: None,
        configured: Default::default(),
    };
    std::thread::Builder::new()
        .name("envs".into())
        .spawn(move || w.serve(rx))?;
    Ok(tx)
}

impl Worker {
    fn serve(&mut self, rx: Receiver<Msg>) {
        let mut configured = false;
        loop {
            let now = Instant::now();
            let wait = env_upkeep::wait(self.builds.values().map(|b| &b.deadline), now, WATCH);
            // An unanswered lookup of the build user is looked at every second.
            let wait = if self.lookup.is_some() {
                wait.min(Duration::from_secs(1))
            } else {
                wait
            };
            match rx.recv_timeout(wait) {
                Ok(Msg::Config {
                    jobs,
                    timeout,
                    uv,
                    build_user,
                }) => {
                    self.timeout = timeout;
                    self.configure(jobs, &build_user);
                    self.uv = uv;
                    configured = true;
                }
                Ok(Msg::InUse(keys, seen)) => {
                    self.runs_use = keys;
                    self.loop_seen = seen;
                }
                Ok(Msg::Exited { key, exit }) => self.finish(&key, exit),
                Ok(Msg::Look) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self
                .lookup
                .as_mut()
                .is_some_and(|l| l.wait(Duration::ZERO).is_some())
            {
                let (jobs, build_user) = self.configured.clone();
                self.configure(jobs, &build_user);
            }
            self.enforce_timeouts();
            if configured {
                self.refresh();
                self.collect_garbage();
                if !self.publish() {
                    return;
                }
            }
        }
    }

    fn save(&self, dir: &std::path::Path, st: &EnvState) {
        if let Err(e) = state::write_json(&dir.join("state.json"), st, Durability::Sync) {
            warn!(env = %st.key, "cannot write the environment's state: {e}");
        }
    }

    /// Sends the news to the loop if anything changed; false once the loop is gone.
    fn publish(&mut self) -> bool {
        let jobs = self.job_states();
        let mut envs: Vec<EnvState> = self.envs.values().cloned().collect();
        for e in &mut envs {
            e.jobs = self
                .jobs
                .iter()
                .filter(|(_, t)| {
                    matches!(&t.key, Some(Ok(k)) if *k == e.key)
                        || t.in_use.as_deref() == Some(&e.key)
                })
                .map(|(n, _)| n.clone())
                .collect();
        }
        let mut u = Update {
            envs,
            jobs,
            seq: self.seq,
        };
        if self.last.as_ref() == Some(&u) {
            return true;
        }
        self.seq += 1;
        u.seq = self.seq;
        self.last = Some(u.clone());
        self.events.send(Event::Envs(Box::new(u))).is_ok()
    }
}
