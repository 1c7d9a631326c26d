//! Python environments in the daemon (see [`crate::service::pyenv`] for what one is).
//!
//! One worker thread (`envs`) does all the file and process work, so the loop never waits for
//! it: it hashes the jobs' requirements files (and looks at their stamps whenever the daemon's watches see a change, so an
//! edited file is noticed without a config reload), starts a build for every key that has no
//! ready environment, ends a build that outlives `env_build_timeout` (its whole tree, like a
//! run), writes each environment's `state.json`, and removes environments that no job and no
//! run in flight uses. It tells the loop what each job's runs use as [`super::event::Event::Envs`].
//!
//! A daemon that is root never builds as root (see [`crate::service::pyenv`]): the build runs as the
//! job's `user` or the build user, in `<state_dir>.users/envs/<key>/venv` handed to that user
//! (`<key>/` itself stays root's), with a HOME of its own in `<state_dir>.users/build-homes/`.
//! When it exits, its whole tree is ended, and the worker seals the venv: renamed aside (only
//! root can, in `<key>/`), copied by handle into a new tree of root's, which is renamed into
//! place before the environment is called ready; the built tree is removed. A process of the
//! builder that escaped the kill holds only the discarded tree.
//!
//! A job switches environments atomically: its runs keep the environment they have until the
//! new one is ready, then every later run takes the new one. Runs of a job whose first
//! environment is still building wait in the queue; if its build failed they are recorded as
//! `error` with the build's last lines.

pub(super) mod side;
mod worker;

pub(super) use side::{JobEnv, Update};

use super::shell::Daemon;
use crate::model::env::EnvSpec;
use crate::model::user::UserInfo;
use crate::service::pyenv::{self};
use crate::service::run::RunSpec;
use side::Msg;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

impl Daemon {
    /// Tells the worker the jobs' environments (at start and after every reload), starting it
    /// on first use.
    pub(super) fn envs_configure(&mut self) {
        if self.envs.hold_until.is_none() {
            let up = crate::service::sys::uptime().unwrap_or(Duration::MAX);
            let left = self.cfg.daemon.start_delay.saturating_sub(up);
            self.envs.hold_until = Some(Instant::now() + left);
            if !left.is_zero() {
                info!(
                    start_delay_s = self.cfg.daemon.start_delay.as_secs(),
                    "the system booted recently: no scheduled run starts for {}s",
                    left.as_secs()
                );
            }
        }
        let jobs: Vec<(String, EnvSpec, Option<UserInfo>)> = self
            .cfg
            .jobs
            .iter()
            // A held job (its user not there, its account expired: `user_deferred` with no
            // `user`) asks for no environment: none is built for it by another builder, and
            // it is bound to none; once its user is back, a reload gives it that user's.
            .filter(|j| !j.user_deferred)
            .filter_map(|j| {
                j.pyenv
                    .as_deref()
                    .map(|e| (j.name.to_string(), e.clone(), j.user.as_deref().cloned()))
            })
            .collect();
        if jobs.is_empty() && self.envs.tx.is_none() {
            return;
        }
        if self.envs.tx.is_none() {
            match worker::start_worker(
                self.state.clone(),
                self.tx.clone(),
                Arc::clone(&self.envs.builds),
                self.spawner.clone(),
            ) {
                Ok(tx) => self.envs.tx = Some(tx),
                Err(e) => {
                    let msg = format!("cannot start the environment thread: {e}");
                    warn!("{msg}");
                    for (name, _, _) in &jobs {
                        self.envs
                            .jobs
                            .insert(name.clone(), JobEnv::Failed(msg.clone()));
                    }
                    return;
                }
            }
        }
        // Until the worker answers, runs of jobs with an environment wait.
        for (name, _, _) in &jobs {
            self.envs
                .jobs
                .entry(name.clone())
                .or_insert(JobEnv::Waiting);
        }
        self.envs
            .jobs
            .retain(|n, _| jobs.iter().any(|(j, _, _)| j == n));
        self.envs_send(Msg::Config {
            jobs,
            timeout: self.cfg.daemon.env_build_timeout,
            uv: self.cfg.daemon.uv.clone(),
            build_user: self.cfg.daemon.build_user.clone(),
        });
        self.envs_runs_changed();
    }

    /// Passes a look on to the worker (it watches no file itself).
    pub(super) fn envs_look(&mut self) {
        self.envs_send(Msg::Look);
    }

    /// The environments' source files, for the watches.
    pub(super) fn envs_sources(&self) -> impl Iterator<Item = &std::path::Path> {
        self.cfg
            .jobs
            .iter()
            .filter_map(|j| j.pyenv.as_ref().map(|e| e.source.as_path()))
    }

    fn envs_send(&mut self, msg: Msg) {
        if let Some(tx) = &self.envs.tx {
            if tx.send(msg).is_err() {
                warn!("the environment thread is gone");
                self.envs.tx = None;
            }
        }
    }

    pub(super) fn on_envs(&mut self, u: Update) {
        let mut failed = Vec::new();
        for (name, now) in &u.jobs {
            if self.envs.jobs.get(name) != Some(now) {
                match now {
                    JobEnv::Ready { key, .. } => {
                        info!(job = %name, env = %key, "environment ready")
                    }
                    JobEnv::Failed(e) => {
                        warn!(job = %name, "environment failed: {e}");
                        failed.push((name.clone(), e.clone()));
                    }
                    JobEnv::Waiting => info!(job = %name, "waiting for its environment"),
                }
            }
        }
        // Jobs the worker does not know yet (just configured) keep waiting.
        for (name, state) in u.jobs {
            if self
                .jobs
                .get(&name)
                .is_some_and(|js| js.job.pyenv.is_some())
            {
                self.envs.jobs.insert(name, state);
            }
        }
        self.envs.seen = u.seq;
        self.set_env_views(u.envs);
        self.envs_runs_changed();
        for (name, why) in failed {
            self.record_env_failure(&name, &why);
        }
    }

    /// A failed build is a result of its job at once, not at the job's next due time (a
    /// day away for a daily job): an `error` run, recorded now, that says why. Once per
    /// failure: not again when the job's latest result already says the same.
    fn record_env_failure(&mut self, name: &str, why: &str) {
        if self.oneshot {
            return;
        }
        let Some(js) = self.jobs.get(name) else {
            return;
        };
        // Compared by a head: the record's note is capped.
        let head: String = why.chars().take(200).collect();
        if js.job.pyenv.is_none()
            || js
                .last
                .as_ref()
                .and_then(|l| l.note())
                .is_some_and(|n| n.starts_with(&head))
        {
            return;
        }
        let job = js.job.clone();
        let trigger = crate::model::record::Trigger::Schedule;
        match super::folder::prepare_folder(&self.state, &job, chrono::Utc::now(), trigger) {
            Ok(mut rec) => {
                rec.note = Some(why.to_string());
                self.finish(rec, crate::model::record::Outcome::Error, None);
            }
            Err(msg) => self.state_failure(format!("prepare:{name}"), msg.to_string()),
        }
    }

    /// True while a run of `job` must wait: for its environment, or for `start_delay`.
    pub(super) fn must_wait(&self, p: &super::table::Pending) -> bool {
        let held = p.request.is_none() && self.envs.hold_until.is_some_and(|h| Instant::now() < h);
        // A held job has no environment to wait for: its run is recorded as held.
        held || (p.job.pyenv.is_some()
            && !p.job.user_deferred
            && !matches!(
                self.envs.jobs.get(&*p.job.name),
                Some(JobEnv::Ready { .. } | JobEnv::Failed(_))
            ))
    }

    /// Puts the job's environment in front of the runner's PATH. `Err`: the run cannot start
    /// (its note says why).
    pub(super) fn apply_env(
        &self,
        job: &crate::model::config::Job,
        spec: &mut RunSpec,
    ) -> Result<Option<String>, String> {
        if job.pyenv.is_none() {
            return Ok(None);
        }
        match self.envs.jobs.get(&*job.name) {
            Some(JobEnv::Ready { key, venv }) => {
                let bin = pyenv::bin_dir(venv);
                // Said plainly, not as the exec's "Permission denied".
                if let Some(u) = job.user.as_deref().filter(|u| u.uid != 0) {
                    crate::service::sys::check_passable(&bin.join("python"), u.uid, &u.groups)
                        .map_err(|closed| pyenv::unreachable_words(venv, u, &closed))?;
                }
                let mut paths = vec![bin];
                let inherited = spec
                    .env
                    .get("PATH")
                    .cloned()
                    .or_else(|| std::env::var_os("PATH"));
                if let Some(p) = inherited {
                    paths.extend(std::env::split_paths(&p));
                }
                let path = std::env::join_paths(paths)
                    .map_err(|e| format!("cannot put the environment on PATH: {e}"))?;
                // As the OS has them: a PATH entry that is not UTF-8 is still a folder.
                spec.env.insert("PATH".into(), path);
                spec.env
                    .insert("VIRTUAL_ENV".into(), venv.clone().into_os_string());
                // robot and rebot are the environment's, found on PATH: a bare name resolved
                // with the run's own PATH.
                Ok(Some(key.clone()))
            }
            Some(JobEnv::Failed(e)) => Err(e.clone()),
            _ => Err("its Python environment is not ready".into()),
        }
    }

    pub(super) fn env_run_started(&mut self, pid: u32, key: Option<String>) {
        if let Some(k) = key {
            self.envs.runs.insert(pid, k);
            self.envs_runs_changed();
        }
    }

    pub(super) fn env_run_ended(&mut self, pid: u32) {
        if self.envs.runs.remove(&pid).is_some() {
            self.envs_runs_changed();
        }
    }

    fn envs_runs_changed(&mut self) {
        let adopted = self.table.any_adopted();
        let keys = (!adopted).then(|| self.envs.runs.values().cloned().collect::<BTreeSet<_>>());
        let now = (keys, self.envs.seen);
        if self.envs.sent_in_use.as_ref() != Some(&now) {
            self.envs.sent_in_use = Some(now.clone());
            self.envs_send(Msg::InUse(now.0, now.1));
        }
    }

    /// Ends the builds in flight when the daemon exits: a next daemon builds again.
    pub(super) fn envs_stop(&mut self) {
        let builds =
            std::mem::take(&mut *self.envs.builds.lock().unwrap_or_else(|e| e.into_inner()));
        for (key, (pgid, dir)) in builds {
            info!(env = %key, "ending the environment build in flight");
            self.spawner.kill_tree(pgid, &dir);
        }
    }
}
