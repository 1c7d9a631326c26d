//! Start-up recovery: finish the story of runs a previous daemon left in flight, and learn
//! each job's last due time so that no due time is ever started twice.
//!
//! For every run folder without a final outcome: if its runner still runs (same PID *and*
//! same start time) it is adopted and watched to its end (its timeout still applies);
//! otherwise it is recorded `interrupted`. Corrupt records and results are moved aside with a
//! warning naming the file, and the daemon carries on.

use super::shell::Daemon;
use super::table::ActiveRun;
use crate::model::record::{Outcome, RunRecord, Trigger, RECORD_VERSION};
use crate::service::state::record::{self};
use crate::service::state::{self, quarantine};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::Instant;
use tracing::{info, warn};

/// Longest reading of an interrupted run's results at start-up (see `finish_recovered`).
const RECOVERY_READ_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// True once the run's due time has come (a folder prepared for a later one never ran).
fn due_passed(rec: &RunRecord) -> bool {
    rec.due <= Utc::now()
}

/// Per job: (latest due time found on disk, latest finished result).
pub(crate) type Recovered = HashMap<String, (Option<DateTime<Utc>>, Option<RunRecord>)>;

impl Daemon {
    pub(super) fn recover(&mut self) -> Recovered {
        let mut out = Recovered::new();
        let Ok(entries) = std::fs::read_dir(self.state.jobs_dir()) else {
            return out;
        };
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if crate::logic::config::check_name(&name).is_err() || !e.path().is_dir() {
                continue;
            }
            let runs = match record::list_runs(&self.state, &name) {
                Ok(r) => r,
                Err(err) => {
                    warn!(job = %name, "cannot list runs: {err}");
                    continue;
                }
            };
            let mut last_due = None;
            for (id, dir) in &runs {
                if self.recover_run(&name, id, dir) {
                    last_due = last_due.max(crate::model::record::due_of_run_id(id));
                }
            }
            let latest = self.recover_latest(&name, &runs);
            out.insert(name, (last_due, latest));
        }
        out
    }

    /// Finishes the story of one run folder; false if the folder was removed (prepared for a
    /// due time that has not come, so it takes no due time).
    fn recover_run(&mut self, job: &str, id: &str, dir: &Path) -> bool {
        let Some(rec) = self.unfinished_record(job, id, dir) else {
            return true;
        };
        if rec.pid.is_none() && rec.started.is_none() && rec.due > Utc::now() {
            // Prepared ahead by the previous daemon for a due time that has not come. Moved
            // into the job's `removing` folder; the finisher removes it from there.
            if let Err(e) = record::discard(&self.state, job, dir) {
                warn!(
                    job,
                    "cannot remove the prepared run folder {}: {e}",
                    dir.display()
                );
            }
            return false;
        }
        let Some(mut rec) = self.adopt_unjournalled(job, rec) else {
            return true;
        };
        let alive = rec.pid.is_some_and(|pid| {
            rec.pid_start.is_some()
                && crate::service::sys::ProcessId {
                    pid,
                    start: rec.pid_start,
                }
                .is_alive()
        });
        if alive {
            let pid = rec.pid.unwrap_or_default();
            info!(job, run_id = %rec.run_id, pid, "adopting a run still in flight from the previous daemon");
            self.adopt(rec, pid);
            return true;
        }
        let note = if rec.pid.is_none() {
            "the daemon died while starting this run; the runner may not have started"
        } else {
            "the daemon died while this run was in flight and the runner is gone; its end was not observed"
        };
        rec.note = Some(note.into());
        info!(job, run_id = %rec.run_id, "recording a run the previous daemon left in flight as interrupted");
        self.finish_recovered(rec, Outcome::Interrupted);
        true
    }

    /// The record of a run folder that has no final outcome; `None` when there is nothing
    /// more to do with it (finished, or recorded here as interrupted: no journal, or a
    /// corrupt one moved aside).
    fn unfinished_record(&mut self, job: &str, id: &str, dir: &Path) -> Option<RunRecord> {
        match record::read_record(dir) {
            Ok(Some(r)) if r.is_finished() => None,
            Ok(Some(r)) => Some(r),
            Ok(None) => {
                // Crash between creating the folder and writing the journal: the runner was
                // never started.
                self.recovered_orphan_folder(
                    job,
                    id,
                    dir,
                    "the daemon died while preparing this run; the runner was not started".into(),
                );
                None
            }
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                let file = dir.join(crate::model::record::RECORD_FILE);
                let aside = quarantine(&file)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "(could not move it)".into());
                warn!(
                    job,
                    "corrupt run record {}: {err}; moved to {aside}",
                    file.display()
                );
                self.recovered_orphan_folder(
                    job,
                    id,
                    dir,
                    format!("the record was corrupt and was moved to {aside}"),
                );
                None
            }
            Err(err) => {
                warn!(job, "cannot read run record in {}: {err}", dir.display());
                None
            }
        }
    }

    /// A run whose PID never reached the journal (the previous daemon died right after the
    /// spawn) is looked for by its run folder, and adopted if found (`None`: it was);
    /// otherwise the record comes back as it was.
    fn adopt_unjournalled(&mut self, job: &str, mut rec: RunRecord) -> Option<RunRecord> {
        if rec.pid.is_none() && due_passed(&rec) {
            // Spawned, maybe, but the PID never reached the journal: look for the runner.
            let run_dir = rec.run_dir.display().to_string();
            if let Some((pgid, start)) =
                crate::service::sys::find_run_by_env("ROBOTMK_RUN_DIR", &run_dir)
            {
                info!(job, run_id = %rec.run_id, pgid, "found a run the previous daemon started but did not journal");
                rec.pid = Some(pgid);
                rec.pid_start = start;
                // It started at its due time (runs are prepared ahead): bound it from there.
                rec.started = Some(rec.due);
                rec.note = Some("the previous daemon died right after starting this run; it was found by its run folder".into());
                self.adopt(rec, pgid);
                return None;
            }
        }
        Some(rec)
    }

    /// Watches a run the previous daemon left running; its timeout counts from its start.
    fn adopt(&mut self, rec: RunRecord, pgid: u32) {
        if !self.spawner.adopt(pgid, rec.pid_start) {
            let mut rec = rec;
            rec.note = Some("the daemon died while this run was in flight and the runner is gone; its end was not observed".into());
            self.finish_recovered(rec, Outcome::Interrupted);
            return;
        }
        let timeout = rec.timeout();
        let elapsed = rec
            .started
            .and_then(|s| (Utc::now() - s).to_std().ok())
            .unwrap_or_default();
        self.table.adopt(
            pgid,
            ActiveRun {
                pgid,
                deadline: Instant::now() + timeout.saturating_sub(elapsed),
                kill_at: None,
                give_up_at: None,
                ended_by: None,
                adopted: true,
                record: rec,
            },
        );
    }

    fn recovered_orphan_folder(&mut self, job: &str, id: &str, dir: &Path, note: String) {
        let Some(due) = crate::model::record::due_of_run_id(id) else {
            return;
        };
        let mut rec = RunRecord::journal(
            job,
            id.to_string(),
            dir.to_path_buf(),
            due,
            Trigger::Schedule,
            0.0,
        );
        rec.note = Some(note);
        self.finish_recovered(rec, Outcome::Interrupted);
    }

    fn finish_recovered(&mut self, mut rec: RunRecord, outcome: Outcome) {
        rec.finished = Some(Utc::now());
        rec.outcome = Some(outcome);
        let read = super::finish::ReadSpec {
            attempts: self
                .cfg
                .jobs
                .iter()
                .find(|j| *j.name == *rec.job)
                .map_or(1, |j| j.attempts),
            // Read on the loop thread before the first due time: a short bound (the run
            // was cut short anyway, its result most likely with it).
            limits: crate::model::limits::Limits {
                max_time: self
                    .cfg
                    .daemon
                    .result_limits
                    .max_time
                    .min(RECOVERY_READ_TIME),
                ..self.cfg.daemon.result_limits
            },
            extras: super::extras::Extras::of(&self.cfg, &rec.job),
        };
        let stopping = self.finisher.as_ref().map(|f| f.stopping());
        super::finish::complete(&mut rec, read, stopping);
        if let Err(e) = rec
            .save()
            .and_then(|_| record::update_latest(&self.state, &rec))
        {
            self.state_failure(
                super::folder::record_cause(&rec),
                format!(
                    "cannot record recovered run {} of {}: {e}",
                    rec.run_id, rec.job
                ),
            );
            self.unsaved.push(rec);
        }
    }

    /// The job's latest result; rebuilt from the run records if the file is corrupt.
    fn recover_latest(
        &mut self,
        job: &str,
        runs: &[(String, std::path::PathBuf)],
    ) -> Option<RunRecord> {
        let path = self.state.latest_file(job);
        match state::read_json::<RunRecord>(&path) {
            Ok(Some(r)) if r.version == RECORD_VERSION => return Some(r),
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => {
                let aside = quarantine(&path)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "(could not move it)".into());
                warn!(job, "corrupt latest result {}; moved to {aside}; rebuilding it from the run records", path.display());
            }
        }
        let latest = runs
            .iter()
            .rev()
            .filter_map(|(_, dir)| record::read_record(dir).ok().flatten())
            .find(|r| r.is_finished() && r.outcome != Some(Outcome::Skipped))?;
        if let Err(e) = record::update_latest(&self.state, &latest) {
            warn!(job, "cannot rewrite {}: {e}", path.display());
        }
        Some(latest)
    }
}
