//! Builds: one started for a key (its folder, its command, the builder it runs as), ended when
//! it outlives `env_build_timeout`, and finished when it exits (sealed, judged, its
//! `state.json` written). Starts and ends processes through the daemon's spawner; what one
//! build does on the host is `service::env_build`.

use super::{Build, Worker};
use crate::app::daemon::envs::side::Msg;
use crate::logic::env_upkeep::{self, Deadline};
use crate::model::env::{EnvSpec, EnvState, Phase};
use crate::model::user::UserInfo;
use crate::service::env_build;
use crate::service::pyenv::{self};
use crate::service::run::{ExitInfo, RunSpec};
use crate::service::state::{self};
use chrono::Utc;
use std::path::PathBuf;
use std::time::Instant;
use tracing::{info, warn};

impl Worker {
    pub(super) fn start_build(&mut self, key: &str, spec: &EnvSpec, builder: Option<&UserInfo>) {
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
        let (argv, env) =
            env_build::command(&dir_s, spec, self.uv.as_deref(), builder, home.as_deref());
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
            Some(u) => {
                self.spawner
                    .spawn_as(spec_run, crate::app::daemon::folder::run_as(u), on_exit)
            }
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
                        deadline: Deadline::new(Instant::now() + self.timeout),
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
        let root = &self.state.root;
        let home = env_build::prepare(&dir, builder, || {
            crate::app::daemon::workdir::public_dirs(root, &["build-homes"], false)
                .map_err(|e| format!("cannot prepare {}: {e}", root.display()))
        })?;
        Ok((dir, home))
    }

    pub(super) fn enforce_timeouts(&mut self) {
        let now = Instant::now();
        for (key, b) in self.builds.iter_mut() {
            if b.deadline.expire(now) {
                warn!(env = %key, "environment build timed out; ending its process tree");
                self.spawner.kill_tree(b.pgid, &b.dir.display().to_string());
            }
        }
    }

    pub(super) fn finish(&mut self, key: &str, exit: ExitInfo) {
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
        let mut outcome =
            env_upkeep::outcome(b.deadline.passed(), self.timeout, exit.code, exit.signal);
        let mut seal_failed = false;
        if let (Ok(()), Some((uid, gid))) = (&outcome, b.builder) {
            outcome = env_build::seal(&dir, uid, b.shared.then_some(gid))
                .map_err(|e| format!("the built environment could not be sealed: {e}"));
            seal_failed = outcome.is_err();
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
                let error = env_build::failure(&dir, &why, seal_failed);
                warn!(env = %key, "environment build failed: {why}");
                st.state = Phase::Failed;
                st.error = Some(error);
            }
        }
        self.save(&dir, &st);
        self.envs.insert(key.to_string(), st);
    }
}
