//! What each job wants and uses: the jobs' environments taken from the config (a reload
//! keeps what it can), each job's key from its source file's content, the build of every key
//! with no ready environment, and which environment each job's runs use now. Reads the
//! environments' folders and the source files' stamps; builds are started through `builds.rs`.

use super::{Tracked, Worker};
use crate::app::daemon::envs::side::JobEnv;
use crate::model::env::{EnvSpec, EnvState, Phase};
use crate::model::user::UserInfo;
use crate::service::pyenv::{self};
use crate::service::state::{self};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tracing::warn;

impl Worker {
    pub(super) fn configure(
        &mut self,
        jobs: Vec<(String, EnvSpec, Option<UserInfo>)>,
        build_user: &str,
    ) {
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
    pub(super) fn dir_of(&self, key: &str, public: bool) -> PathBuf {
        if public {
            crate::app::daemon::workdir::users_root(&self.state.root)
                .join("envs")
                .join(key)
        } else {
            self.root.join(key)
        }
    }

    /// A ready environment's state from its folder, if it is usable.
    pub(super) fn load(&self, key: &str, public: bool) -> Option<EnvState> {
        let dir = self.dir_of(key, public);
        let st: EnvState = state::read_json(&dir.join("state.json")).ok().flatten()?;
        (st.state == Phase::Ready && st.key == key && pyenv::venv_usable(&dir)).then_some(st)
    }

    pub(super) fn refresh(&mut self) {
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

    /// What each job's runs use now, switching to a job's current key once it is ready.
    pub(super) fn job_states(&mut self) -> BTreeMap<String, JobEnv> {
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
}
