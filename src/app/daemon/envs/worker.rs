//! The environment worker thread: hashing, builds, timeouts, state files, garbage; see the
//! parent module for what it does and why it runs off the loop.

use super::side::{Builds, JobEnv, Msg, Update};
use crate::app::daemon::event::Event;
use crate::model::env::{EnvSpec, EnvState, Phase};
use crate::model::user::UserInfo;
use crate::service::pyenv::{self};
use crate::service::run::{self, ExitInfo, RunSpec};
use crate::service::state::{self, Durability, StateDir};
use crate::service::sys::tree::{remove_tree_fully, remove_whole, Removal, RemoveError, Rights};
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use tracing::{info, warn};

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
    deadline: Instant,
    timed_out: bool,
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
    retired: BTreeMap<String, u64>,
    /// The daemon's: builds are its children like runs.
    spawner: run::Spawner,
    /// The build user's lookup the user database has not answered yet, with the config's
    /// jobs and `build_user`, configured again once it answers.
    lookup: Option<pyenv::BuildUserLookup>,
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
        retired: BTreeMap::new(),
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
            let wait = self
                .builds
                .values()
                .filter(|b| !b.timed_out)
                .map(|b| b.deadline.saturating_duration_since(now))
                .fold(WATCH, Duration::min);
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

    fn configure(&mut self, jobs: Vec<(String, EnvSpec, Option<UserInfo>)>, build_user: &str) {
        // Looked up once per config, and only when some build needs it (every reload looks
        // again: an admin who created the user reloads).
        let needed = crate::service::sys::is_root()
            && jobs
                .iter()
                .any(|(_, _, u)| pyenv::built_by_build_user(u.as_ref()));
        self.configured = (jobs.clone(), build_user.to_string());
        let build_user = if needed {
            self.resolve_build_user(build_user)
        } else {
            Err(format!("no build needs the build user {build_user:?}"))
        };
        if let (true, Err(e)) = (needed, &build_user) {
            warn!("{e}");
        }
        let mut next = BTreeMap::new();
        for (name, spec, user) in jobs {
            let builder = pyenv::builder_for(user.as_ref(), &build_user);
            let t = match self.jobs.remove(&name) {
                Some(mut t) if t.spec == spec && t.user == user => {
                    t.builder = builder;
                    // A reload retries a failed build (the admin may have fixed the index).
                    if let Some(Ok(k)) = &t.key {
                        if self.envs.get(k).is_some_and(|e| e.state == Phase::Failed) {
                            self.envs.remove(k);
                        }
                    }
                    t.stamp = None;
                    t
                }
                old => {
                    let mut t = Tracked {
                        spec,
                        user,
                        builder,
                        stamp: None,
                        key: None,
                        in_use: None,
                    };
                    // Kept only from the same builder: an environment another user built
                    // is not this builder's to run (its folder is that user's group's).
                    t.in_use = old
                        .filter(|o| o.builder == t.builder)
                        .and_then(|o| o.in_use)
                        .or_else(|| self.previous_ready(&t));
                    t
                }
            };
            next.insert(name, t);
        }
        self.jobs = next;
    }

    /// The build user, looked up on a thread of its own and waited for at most
    /// `env_build_timeout` (and [`pyenv::BUILD_USER_WAIT`]): a user database that does not
    /// answer fails the builds it holds, saying so, instead of stalling every build for ever;
    /// its answer, when it comes, configures the jobs again (see `serve`).
    fn resolve_build_user(&mut self, name: &str) -> Result<UserInfo, String> {
        let mut l = match self.lookup.take() {
            Some(l) if l.name() == name => l,
            _ => pyenv::BuildUserLookup::start(name)?,
        };
        match l.wait(self.timeout.min(pyenv::BUILD_USER_WAIT)) {
            Some(answer) => answer,
            None => {
                let why = l.waiting_words();
                self.lookup = Some(l);
                Err(why)
            }
        }
    }

    /// A ready environment built from the same file and interpreter by the same builder (the
    /// newest): what the job used before a restart, used again until the current content's
    /// one is ready. (One built by root before builders existed is never taken up again.)
    fn previous_ready(&self, t: &Tracked) -> Option<String> {
        let spec = &t.spec;
        let builder = t.builder_label();
        let parent = self.dir_of("", t.public());
        let dir = std::fs::read_dir(&parent).ok()?;
        dir.flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| pyenv::is_key(n))
            .filter_map(|n| self.load(&n, t.public()))
            .filter(|s| s.source == spec.source && s.python == spec.python && s.kind == spec.kind)
            .filter(|s| s.builder == builder)
            .max_by_key(|s| s.built)
            .map(|s| s.key)
    }

    /// Where the environment `key` lives: behind the state dir, or in the users' tree
    /// (`public`: jobs' users read it, or another user builds it; see `workdir`).
    fn dir_of(&self, key: &str, public: bool) -> PathBuf {
        if public {
            crate::app::daemon::workdir::users_root(&self.state.root)
                .join("envs")
                .join(key)
        } else {
            self.root.join(key)
        }
    }

    /// A ready environment's state from its folder, if it is usable.
    fn load(&self, key: &str, public: bool) -> Option<EnvState> {
        let dir = self.dir_of(key, public);
        let st: EnvState = state::read_json(&dir.join("state.json")).ok().flatten()?;
        (st.state == Phase::Ready && st.key == key && pyenv::venv_usable(&dir)).then_some(st)
    }

    fn refresh(&mut self) {
        let mut wanted: Vec<(String, EnvSpec, Option<UserInfo>)> = Vec::new();
        let mut touched = Vec::new();
        for t in self.jobs.values_mut() {
            let stamp = crate::service::config::stamp(&t.spec.source);
            if t.key.is_none() || stamp != t.stamp {
                let seen_before = t.key.is_some();
                t.stamp = stamp;
                t.key = Some(t.builder.clone().and_then(|b| {
                    pyenv::key_of(&t.spec, b.map(|u| u.uid))
                        .map_err(|e| format!("cannot read {}: {e}", t.spec.source.display()))
                }));
                if let (true, Some(Ok(k))) = (seen_before, &t.key) {
                    touched.push(k.clone());
                }
            }
            if let (Some(Ok(k)), Ok(b)) = (&t.key, &t.builder) {
                wanted.push((k.clone(), t.spec.clone(), b.clone()));
            }
        }
        // A touched file (its owner or mode fixed, the same content saved again) retries a
        // failed build.
        for k in touched {
            if self.envs.get(&k).is_some_and(|e| e.state == Phase::Failed) {
                self.envs.remove(&k);
            }
        }
        for (key, spec, builder) in wanted {
            if self.envs.contains_key(&key) {
                continue;
            }
            match self.load(&key, spec.shared || builder.is_some()) {
                Some(st) => {
                    self.envs.insert(key, st);
                }
                None => self.start_build(&key, &spec, builder.as_ref()),
            }
        }
        self.regroup();
    }

    /// Opens each ready environment of a `user` job to the group its user has now: `<key>/`
    /// is 0750 root:<the user's group>, and a changed primary group (`usermod -g`) locked the
    /// job out of its own environment for good (the key holds the builder's uid only) and
    /// left it open to the old group's members.
    fn regroup(&self) {
        for t in self.jobs.values() {
            let (true, Ok(Some(u))) = (t.spec.shared, &t.builder) else {
                continue;
            };
            let keys = [
                t.key.as_ref().and_then(|k| k.as_ref().ok()),
                t.in_use.as_ref(),
            ];
            for k in keys.into_iter().flatten() {
                if self.envs.get(k).is_some_and(|e| e.state == Phase::Ready) {
                    let dir = self.dir_of(k, true);
                    if let Err(e) = crate::service::sys::seal_dir_mode(&dir, Some(u.gid)) {
                        warn!(env = %k, "cannot open the environment to the group of {}: {e}", u.name);
                    }
                }
            }
        }
    }

    fn start_build(&mut self, key: &str, spec: &EnvSpec, builder: Option<&UserInfo>) {
        let mut st = self.building(key, spec, builder);
        if let Err(e) = crate::service::security::check_env_source(&spec.source) {
            warn!(env = %key, "not building: {e}");
            st.state = Phase::Failed;
            st.error = Some(format!("not built: {e}"));
            self.envs.insert(key.to_string(), st);
            return;
        }
        let (dir, home) = match self.build_folder(key, spec, builder) {
            Ok(d) => d,
            Err(e) => {
                warn!(env = %key, "not building: {e}");
                st.state = Phase::Failed;
                st.error = Some(e);
                self.envs.insert(key.to_string(), st);
                return;
            }
        };
        let log = dir.join("build.log");
        // A new build, a new log (an older failed build's log went into its error).
        for f in ["build.log", "build-info.json"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        self.save(&dir, &st);
        let dir_s = dir.display().to_string();
        // A build a killed daemon left may still run in this folder (an orphan, its tag
        // this folder's): it would write beside the new one.
        if self.spawner.end_leftovers(&dir_s) {
            warn!(env = %key, "ended what an earlier build (of a daemon that died) left running");
        }
        let (argv, env) = self.build_command(&dir_s, spec, builder, home.as_deref());
        let spec_run = RunSpec {
            argv,
            env,
            // A folder the builder may enter (it drops root before the chdir).
            working_dir: home.clone().unwrap_or_else(|| dir.clone()),
            stdout: log.clone(),
            stderr: log,
        };
        let tx = self.me.clone();
        let k = key.to_string();
        let on_exit = move |_, exit| {
            let _ = tx.send(Msg::Exited { key: k, exit });
        };
        let spawned = match builder {
            Some(u) => self
                .spawner
                .spawn_as(spec_run, super::super::folder::run_as(u), on_exit),
            None => self.spawner.spawn(spec_run, on_exit),
        };
        match spawned {
            Ok(pgid) => {
                info!(env = %key, source = %spec.source.display(), tool = st.tool.as_deref(), builder = st.builder.as_deref(), "building a Python environment");
                self.builds.insert(
                    key.to_string(),
                    Build {
                        dir: dir.clone(),
                        pgid,
                        deadline: Instant::now() + self.timeout,
                        timed_out: false,
                        builder: builder.map(|u| (u.uid, u.gid)),
                        shared: spec.shared,
                    },
                );
                self.shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.to_string(), (pgid, dir_s));
            }
            Err(e) => {
                st.state = Phase::Failed;
                st.error = Some(format!("cannot start the build: {e}"));
                self.save(&dir, &st);
            }
        }
        self.envs.insert(key.to_string(), st);
    }

    /// The state of an environment whose build starts now.
    fn building(&self, key: &str, spec: &EnvSpec, builder: Option<&UserInfo>) -> EnvState {
        EnvState {
            key: key.to_string(),
            source: spec.source.clone(),
            kind: spec.kind,
            python: spec.python.clone(),
            shared: spec.shared,
            builder: builder.map(pyenv::builder_label),
            state: Phase::Building,
            tool: Some(if self.uv.is_some() { "uv" } else { "pip" }.into()),
            python_version: None,
            started: Some(Utc::now()),
            built: None,
            duration_s: None,
            error: None,
            jobs: Vec::new(),
        }
    }

    /// The environment's folder (and the builder's home, when another user builds).
    fn build_folder(
        &self,
        key: &str,
        spec: &EnvSpec,
        builder: Option<&UserInfo>,
    ) -> Result<(PathBuf, Option<PathBuf>), String> {
        // Built by another user: below the users' tree, which it can pass through, in a
        // `<key>/` of root's whose group is the builder's (the job's user, who runs it):
        // theirs to pass through and list, no one else's, during the build and after the
        // seal (see `seal`); closed again when only root runs it.
        let made = if spec.shared || builder.is_some() {
            crate::app::daemon::workdir::public_dirs(&self.state.root, &["envs", key], false)
        } else {
            state::create_state_subdirs(&self.state.root, &["envs", key])
        };
        let dir = made.map_err(|e| format!("cannot create the environment folder: {e}"))?;
        if let (true, Some(u)) = (spec.shared, builder) {
            crate::service::sys::seal_dir_mode(&dir, Some(u.gid))
                .map_err(|e| format!("cannot open the environment folder to its user: {e}"))?;
        }
        let home = prepare_build(&self.state.root, &dir, builder)?;
        Ok((dir, home))
    }

    /// The command line and environment of `robotmk-daemon env-build` for one build.
    fn build_command(
        &self,
        dir_s: &str,
        spec: &EnvSpec,
        builder: Option<&UserInfo>,
        home: Option<&std::path::Path>,
    ) -> (Vec<String>, BTreeMap<String, String>) {
        let me = crate::service::sys::self_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "robotmk-daemon".into());
        let mut argv = vec![
            me,
            "env-build".into(),
            "--dir".into(),
            dir_s.to_string(),
            "--source".into(),
            spec.source.display().to_string(),
            "--kind".into(),
            spec.kind.as_str().into(),
            "--python".into(),
            spec.python.clone(),
        ];
        if let Some(uv) = &self.uv {
            argv.extend(["--uv".into(), uv.display().to_string()]);
        }
        let mut env = BTreeMap::new();
        if let (Some(u), Some(h)) = (builder, home) {
            argv.extend(["--home".into(), h.display().to_string()]);
            // Started as the builder, it gets this environment and nothing of the daemon's
            // (`spawn_as`): what the installers get (`pyenv::build_env`: the daemon's locale,
            // PATH and CA bundles, proxies and installer settings of the daemon's or, for a
            // `user` job, of its `env`; HOME, XDG folders and TMPDIR in the builder's
            // folder), with the builder's names.
            env.extend(
                pyenv::build_env(h, spec)
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            );
            env.insert("USER".into(), u.name.clone());
            env.insert("LOGNAME".into(), u.name.clone());
        }
        // The run tag: a timeout ends every process of the build, also those that left its
        // process group.
        env.insert(run::TAG.to_string(), dir_s.to_string());
        (argv, env)
    }

    fn enforce_timeouts(&mut self) {
        let now = Instant::now();
        for (key, b) in self.builds.iter_mut() {
            if !b.timed_out && now >= b.deadline {
                warn!(env = %key, "environment build timed out; ending its process tree");
                b.timed_out = true;
                self.spawner.kill_tree(b.pgid, &b.dir.display().to_string());
            }
        }
    }

    fn finish(&mut self, key: &str, exit: ExitInfo) {
        let Some(b) = self.builds.remove(key) else {
            return;
        };
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let dir = b.dir.clone();
        let dir_s = dir.display().to_string();
        // Whatever of the build is left goes before its venv is looked at (what escapes the
        // kill keeps only the tree the seal discards).
        if self.spawner.tree_alive(b.pgid, &dir_s) {
            self.spawner.kill_tree(b.pgid, &dir_s);
        }
        let Some(mut st) = self.envs.remove(key) else {
            return;
        };
        let mut outcome = if b.timed_out {
            Err(format!(
                "the build did not finish within env_build_timeout ({})",
                crate::model::duration::format(self.timeout)
            ))
        } else if !exit.success() {
            Err(match (exit.code, exit.signal) {
                (Some(c), _) => format!("the build failed (exit code {c})"),
                (None, Some(s)) => format!("the build was ended by signal {s}"),
                _ => "the build failed".into(),
            })
        } else {
            Ok(())
        };
        if let (Ok(()), Some((uid, gid))) = (&outcome, b.builder) {
            outcome = seal(&dir, uid, b.shared.then_some(gid))
                .map_err(|e| format!("the built environment could not be sealed: {e}"));
        }
        if outcome.is_ok() && !pyenv::venv_usable(&dir) {
            outcome = Err(format!(
                "the build left no interpreter in {}",
                pyenv::venv_dir(&dir).display()
            ));
        }
        // Built (ready or failed) once sealed: the seal is part of what a job waits for.
        let now = Utc::now();
        st.built = Some(now);
        st.duration_s = st
            .started
            .map(|s| ((now - s).num_milliseconds() as f64 / 1e3).max(0.0));
        match outcome {
            Ok(()) => {
                if let Some(bi) = pyenv::read_build_info(&pyenv::venv_dir(&dir)) {
                    st.tool = Some(bi.tool);
                    st.python_version = bi.python_version;
                }
                st.state = Phase::Ready;
                info!(env = %key, duration_s = st.duration_s, tool = st.tool.as_deref(), "environment built");
            }
            Err(why) => {
                // The tool's own error lines first, no progress output (see `build_error`).
                let log = dir.join("build.log");
                let summary =
                    crate::logic::build_error::summarize(&pyenv::log_end(&log, 64 * 1024));
                let error = if summary.is_empty() {
                    format!("{why}; log {}", log.display())
                } else {
                    format!("{summary} ({why}; log {})", log.display())
                };
                warn!(env = %key, "environment build failed: {why}");
                st.state = Phase::Failed;
                st.error = Some(error);
            }
        }
        self.save(&dir, &st);
        self.envs.insert(key.to_string(), st);
    }

    fn save(&self, dir: &std::path::Path, st: &EnvState) {
        if let Err(e) = state::write_json(&dir.join("state.json"), st, Durability::Sync) {
            warn!(env = %st.key, "cannot write the environment's state: {e}");
        }
    }

    /// What each job's runs use now, switching to a job's current key once it is ready.
    fn job_states(&mut self) -> BTreeMap<String, JobEnv> {
        let mut out = BTreeMap::new();
        for (name, t) in self.jobs.iter_mut() {
            let ready = |k: &str| {
                let e = self.envs.get(k).filter(|e| e.state == Phase::Ready)?;
                let dir = if e.in_users_tree() {
                    crate::app::daemon::workdir::users_root(&self.state.root)
                        .join("envs")
                        .join(k)
                } else {
                    self.root.join(k)
                };
                Some(JobEnv::Ready {
                    key: k.to_string(),
                    venv: pyenv::venv_dir(&dir),
                })
            };
            let state = match &t.key {
                None => JobEnv::Waiting,
                Some(Err(e)) => {
                    t.in_use = None;
                    JobEnv::Failed(e.clone())
                }
                Some(Ok(k)) => match self.envs.get(k).map(|e| e.state) {
                    Some(Phase::Ready) => {
                        t.in_use = Some(k.clone());
                        ready(k).unwrap_or(JobEnv::Waiting)
                    }
                    Some(Phase::Failed) => {
                        t.in_use = None;
                        let err = self
                            .envs
                            .get(k)
                            .and_then(|e| e.error.clone())
                            .unwrap_or_default();
                        JobEnv::Failed(format!(
                            "its Python environment {k} could not be built: {err}"
                        ))
                    }
                    _ => t
                        .in_use
                        .as_deref()
                        .and_then(|old| {
                            // The old one may have been loaded at start only by key.
                            if !self.envs.contains_key(old) {
                                return None;
                            }
                            ready(old)
                        })
                        .unwrap_or(JobEnv::Waiting),
                },
            };
            out.insert(name.clone(), state);
        }
        out
    }

    /// Removes environments that no job uses (now or until its next one is ready) and no run
    /// in flight runs in.
    fn collect_garbage(&mut self) {
        // An environment a job used before a restart is tracked again while in use.
        let olds: Vec<(String, bool)> = self
            .jobs
            .values()
            .filter_map(|t| t.in_use.clone().map(|k| (k, t.public())))
            .collect();
        for (k, public) in olds {
            if !self.envs.contains_key(&k) {
                if let Some(st) = self.load(&k, public) {
                    self.envs.insert(k, st);
                }
            }
        }
        let _ = self.job_states();
        let Some(runs) = &self.runs_use else {
            return;
        };
        let mut keep: BTreeSet<String> = runs.clone();
        for t in self.jobs.values() {
            if let Some(Ok(k)) = &t.key {
                keep.insert(k.clone());
            }
            if let Some(k) = &t.in_use {
                keep.insert(k.clone());
            }
        }
        keep.extend(self.builds.keys().cloned());
        self.envs.retain(|k, _| keep.contains(k));
        self.retired.retain(|k, _| !keep.contains(k));
        let roots = [self.dir_of("", false), self.dir_of("", true)];
        for e in roots
            .iter()
            .filter_map(|r| std::fs::read_dir(r).ok())
            .flat_map(|d| d.flatten())
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if pyenv::is_key(&name) && !keep.contains(&name) {
                // The next update is the first without it: wait until the loop has seen it.
                let next = self.seq + 1;
                let since = *self.retired.entry(name.clone()).or_insert(next);
                if since == next {
                    self.last = None; // publish that update even if nothing else changed
                }
                if self.loop_seen < since {
                    continue;
                }
                self.retired.remove(&name);
                // Its builds' tree (installers and a project's build ran in it).
                match remove_env_folder(&e.path()) {
                    Ok(Removal::Gone) => info!(env = %name, "removed an environment no job uses"),
                    Ok(Removal::More) => {
                        warn!(env = %name, "an unused environment is not removed yet (too big for a minute)")
                    }
                    Err(err) => warn!(env = %name, "cannot remove an unused environment: {err}"),
                }
            }
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

/// Makes `<key>/venv` ready for a build: whatever an earlier build left there goes (see
/// [`remove_whole`]: a failed build's `venv/` is still its builder's, who may have filled
/// it since); for a build as another user the venv folder is handed to it, and so is its HOME
/// (`<state_dir>.users/build-homes/<uid>/`, kept for its caches), which is returned.
fn prepare_build(
    state_root: &std::path::Path,
    dir: &std::path::Path,
    builder: Option<&UserInfo>,
) -> Result<Option<PathBuf>, String> {
    let at = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| format!("cannot prepare {}: {e}", p.display())
    };
    for old in [VENV_BUILT, VENV_SEALING, "venv"] {
        let p = dir.join(old);
        remove_whole(&p, CLEAN_UP).map_err(|e| format!("cannot prepare {}: {e}", p.display()))?;
    }
    let Some(u) = builder else {
        return Ok(None);
    };
    let venv = pyenv::venv_dir(dir);
    crate::service::sys::hand_dir(&venv, u.uid, u.gid).map_err(at(&venv))?;
    let homes = crate::app::daemon::workdir::public_dirs(state_root, &["build-homes"], false)
        .map_err(at(state_root))?;
    let home = homes.join(u.uid.to_string());
    crate::service::sys::hand_dir(&home, u.uid, u.gid).map_err(at(&home))?;
    for p in [&venv, &home] {
        crate::service::sys::check_passable(p, u.uid, &u.groups).map_err(|closed| {
            format!(
                "not built: the build runs as {}, which cannot pass through {closed} on the \
                 way to {}; let other users pass through that folder (chmod o+x: nothing in \
                 it becomes listable or readable), or put state_dir below folders they can",
                pyenv::builder_label(u),
                p.display()
            )
        })?;
    }
    Ok(Some(home))
}

/// Where a finished build's venv goes while it is copied (only root can rename in `<key>/`).
const VENV_BUILT: &str = "venv.built";
/// The sealed copy until it is renamed into place.
const VENV_SEALING: &str = "venv.sealing";

/// Turns what `builder` built in `<key>/venv` into a tree of the daemon's: the venv is renamed
/// aside, copied by handle into a new folder of root's (see [`crate::service::sys::seal_copy`]: links
/// not followed, every entry the builder's, no inode shared), which is renamed into place;
/// then the built tree goes. `<key>/` is opened to jobs' users (`shared`) or closed to all
/// but root. The venv keeps its path: its scripts name their interpreter by it.
fn seal(dir: &std::path::Path, builder: u32, readers: Option<u32>) -> Result<(), String> {
    let venv = pyenv::venv_dir(dir);
    let built = dir.join(VENV_BUILT);
    let sealing = dir.join(VENV_SEALING);
    for p in [&built, &sealing] {
        remove_whole(p, CLEAN_UP).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    std::fs::rename(&venv, &built).map_err(|e| format!("{}: {e}", venv.display()))?;
    let t0 = Instant::now();
    let copied =
        crate::service::sys::seal_copy(&built, &sealing, builder).map_err(|e| e.to_string())?;
    info!(
        files = copied.entries,
        bytes = copied.bytes,
        ms = t0.elapsed().as_millis() as u64,
        "sealed the built environment {}",
        venv.display()
    );
    std::fs::rename(&sealing, &venv).map_err(|e| format!("{}: {e}", sealing.display()))?;
    // A process of the builder's that escaped may still write in it: it is no one's now and
    // goes with the next build or the environment, if not now.
    if let Err(e) = remove_whole(&built, CLEAN_UP) {
        warn!("cannot remove the built tree {}: {e}", built.display());
    }
    crate::service::sys::seal_dir_mode(dir, readers).map_err(|e| format!("{}: {e}", dir.display()))
}

/// How long one removal on the worker thread may take: it holds up builds' timeouts and the
/// news to the loop meanwhile. What is left goes at the next attempt (all that was removed
/// stays removed).
const CLEAN_UP: Duration = Duration::from_secs(60);

/// Removes an environment's folder `<key>/` within [`CLEAN_UP`]: each entry with its own
/// owner's rights first (`<key>/` is root's, but a failed build's `venv/` is its builder's,
/// and a walk takes the rights of its tree's top for the whole tree), then the emptied folder.
fn remove_env_folder(dir: &std::path::Path) -> Result<Removal, RemoveError> {
    let end = Instant::now() + CLEAN_UP;
    let left = || end.saturating_duration_since(Instant::now());
    if let Ok(list) = std::fs::read_dir(dir) {
        for e in list.flatten() {
            if remove_tree_fully(&e.path(), Rights::Owner, left())? == Removal::More {
                return Ok(Removal::More);
            }
        }
    }
    remove_tree_fully(dir, Rights::Owner, left())
}
