//! Garbage: environments that no job uses (now or until its next one is ready) and no run in
//! flight runs in are removed, once the loop has seen an update without them. Removes
//! environments' folders (through `service::env_build`); nothing else.

use super::Worker;
use crate::logic::env_upkeep::{self};
use crate::service::env_build;
use crate::service::pyenv::{self};
use crate::service::sys::tree::Removal;
use tracing::{info, warn};

impl Worker {
    /// Removes environments that no job uses (now or until its next one is ready) and no run
    /// in flight runs in.
    pub(super) fn collect_garbage(&mut self) {
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
        let keep = env_upkeep::kept(
            runs,
            self.jobs.values().map(|t| {
                let current = match &t.key {
                    Some(Ok(k)) => Some(k.as_str()),
                    _ => None,
                };
                (current, t.in_use.as_deref())
            }),
            self.builds.keys(),
        );
        self.envs.retain(|k, _| keep.contains(k));
        self.retired.keep(&keep);
        let roots = [self.dir_of("", false), self.dir_of("", true)];
        for e in roots
            .iter()
            .filter_map(|r| std::fs::read_dir(r).ok())
            .flat_map(|d| d.flatten())
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if pyenv::is_key(&name) && !keep.contains(&name) {
                // The next update is the first without it: wait until the loop has seen it.
                let verdict = self.retired.judge(&name, self.seq, self.loop_seen);
                if verdict.publish {
                    self.last = None; // publish that update even if nothing else changed
                }
                if !verdict.remove {
                    continue;
                }
                // Its builds' tree (installers and a project's build ran in it).
                match env_build::remove(&e.path()) {
                    Ok(Removal::Gone) => info!(env = %name, "removed an environment no job uses"),
                    Ok(Removal::More) => {
                        warn!(env = %name, "an unused environment is not removed yet (too big for a minute)")
                    }
                    Err(err) => warn!(env = %name, "cannot remove an unused environment: {err}"),
                }
            }
        }
    }
}
