//! A run's folder and record outside the loop's state: the folder and journal prepared ahead
//! of the due time, the runner's spec, the end marked on the record, the record completed
//! from what the run left, and the final write with the job's latest result.

use crate::logic::run_env;
use crate::model::config::Job;
use crate::model::record::{Outcome, RunRecord, Trigger, STDERR_FILE, STDOUT_FILE};
use crate::service::run::{self, ExitInfo, RunAs, RunSpec};
use crate::service::state::private_file_options;
use crate::service::state::record;
use chrono::{DateTime, Utc};
use std::time::Duration;

pub(super) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A fresh, not yet finished record for a run of `job` due at `due`.
pub(super) fn new_record(
    job: &Job,
    run_id: String,
    run_dir: std::path::PathBuf,
    due: DateTime<Utc>,
    trigger: Trigger,
) -> RunRecord {
    let mut rec = RunRecord::journal(&job.name, run_id, run_dir, due, trigger, secs(job.timeout));
    let dir = runner_dir(job, &rec.run_dir).display().to_string();
    rec.result = job.result.as_ref().map(|r| {
        let r = run::expand_one(r, &dir, &job.name, &rec.run_id);
        // A relative result is where the runner writes it: in its working directory.
        let wd = job.working_dir().map_or_else(
            || runner_dir(job, &rec.run_dir),
            std::path::Path::to_path_buf,
        );
        wd.join(r)
    });
    rec
}

/// The runner's `{run_dir}`: the run folder, or for a job with a `user` that user's folder
/// beside the state dir (see `workdir`).
pub(super) fn runner_dir(job: &Job, run_dir: &std::path::Path) -> std::path::PathBuf {
    match &job.user {
        Some(_) => super::workdir::work_dir_of(run_dir).unwrap_or_else(|| run_dir.to_path_buf()),
        None => run_dir.to_path_buf(),
    }
}

/// Why a run was not started: its folder or record could not be made, or its user is unknown.
#[derive(Debug, thiserror::Error)]
pub(super) enum NotStarted {
    #[error("job {job}: run due {} not started: {source}", crate::model::record::ts(*.due))]
    NoFolder {
        job: String,
        due: DateTime<Utc>,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "job {job}: run due {} not started, its record could not be written: {source}",
        crate::model::record::ts(*.due)
    )]
    NoRecord {
        job: String,
        due: DateTime<Utc>,
        #[source]
        source: std::io::Error,
    },
    #[error("job {0}: its user was not looked up, or is no longer in the user database (see the daemon's line); not run")]
    UserDeferred(String),
    /// Its user was looked up and is held: gone since, or the account expired.
    #[error("job {job}: its user is held ({why}; see the daemon's line); not run")]
    UserHeld { job: String, why: String },
}

impl NotStarted {
    /// Whether the daemon had no descriptor left for the run's folder or record (noted for
    /// the daemon's line, see `sys::descriptors`).
    pub(super) fn out_of_descriptors(&self) -> bool {
        match self {
            NotStarted::NoFolder { source, .. } | NotStarted::NoRecord { source, .. } => {
                crate::service::sys::descriptors::mark(source)
            }
            _ => false,
        }
    }
}

/// The record of a run that was due but could not be given a folder: failed to start, its
/// note says why (`why`), written (and its folder made) with the other final records.
pub(super) fn not_started(
    st: &crate::service::state::StateDir,
    job: &Job,
    due: DateTime<Utc>,
    trigger: Trigger,
    why: String,
) -> RunRecord {
    let (run_id, run_dir) = record::unused_run_dir(st, &job.name, due);
    let mut rec = new_record(job, run_id, run_dir, due, trigger);
    rec.note = Some(why);
    rec
}

/// Creates the run folder and writes the journal record: the slow, file-system part of a
/// start, which the daemon does ahead of the due time.
pub(super) fn prepare_folder(
    st: &crate::service::state::StateDir,
    job: &Job,
    due: DateTime<Utc>,
    trigger: Trigger,
) -> Result<RunRecord, NotStarted> {
    let (run_id, run_dir) =
        record::allocate_run_dir(st, &job.name, due).map_err(|source| NotStarted::NoFolder {
            job: job.name.to_string(),
            due,
            source,
        })?;
    let mut rec = new_record(job, run_id, run_dir.clone(), due, trigger);
    // The output files too: creating a file costs far more than opening one, and this runs
    // ahead of the due time.
    let made = (|| {
        private_file_options().open(run_dir.join(STDOUT_FILE))?;
        private_file_options().open(run_dir.join(STDERR_FILE))?;
        if let Some(user) = &job.user {
            super::workdir::prepare(&run_dir, &job.name, user, job.argument_file())?;
        } else {
            super::workdir::make_tmp(&run_dir)?;
            if let Some(text) = job.argument_file() {
                use std::io::Write;
                crate::service::sys::file::create_new(
                    &run_dir.join(crate::model::config::VARIABLES_FILE),
                )?
                .write_all(text.as_bytes())?;
            }
        }
        Ok::<_, std::io::Error>(())
    })();
    // A short name for the run's temp folder (`sys::tmp_link`): sockets below TMPDIR must
    // fit 107 bytes. Taken once the folders it names are there, and kept in the journal,
    // which removes a link of the run's own with the folder. Without one, the folder is
    // named directly. Taken before the journal, so the journal is written once: each
    // rewrite is a new inode and a deleted one, and at hundreds of runs a second an ext4
    // allocation scans past every inode deleted in the last minute (perf: inode allocation
    // was half the loop thread's time at 600 runs/s). A daemon that dies before the journal
    // is written leaves the folder without one (recorded as not started).
    if made.is_ok() {
        let tmp = runner_dir(job, &run_dir).join(super::workdir::TMP_DIR);
        rec.tmp = crate::service::sys::tmp_link::short(&tmp);
    }
    if let Err(source) = made.and_then(|()| rec.save()) {
        if let Some(link) = rec.tmp.take() {
            let _ = crate::service::sys::tmp_link::remove(&link);
        }
        let _ = record::discard(st, &job.name, &run_dir);
        return Err(NotStarted::NoRecord {
            job: job.name.to_string(),
            due,
            source,
        });
    }
    Ok(rec)
}

/// Builds the command line, environment and output paths of a prepared run; `held`: why the
/// job's user is held, if it is (see `Config::users_held`).
pub(super) fn open_spec(
    job: &Job,
    rec: &RunRecord,
    held: Option<&str>,
) -> Result<RunSpec, NotStarted> {
    // A config loaded without looking its users up (ctrl's) never runs a job: the run would
    // otherwise start as root.
    if job.user_deferred {
        return Err(match held {
            Some(why) => NotStarted::UserHeld {
                job: job.name.to_string(),
                why: why.to_string(),
            },
            None => NotStarted::UserDeferred(job.name.to_string()),
        });
    }
    let run_dir = &runner_dir(job, &rec.run_dir);
    // Output files stay in the record's folder: root's, opened before a `user` is taken.
    let (stdout, stderr) = (rec.run_dir.join(STDOUT_FILE), rec.run_dir.join(STDERR_FILE));
    let run_dir_s = run_dir.display().to_string();
    // The run's own temp folder (by its short name), unless the job names its own.
    let tmp = rec
        .tmp
        .clone()
        .unwrap_or_else(|| run_dir.join(super::workdir::TMP_DIR))
        .display()
        .to_string();
    let run_dir_tag = rec.run_dir.display().to_string();
    let vars = run_env::RunVars {
        run_dir: &run_dir_tag,
        job: &job.name,
        run_id: &rec.run_id,
        tmp: &tmp,
    };
    // A run as another user starts from an environment of its own, never the daemon's (the
    // spawner adds nothing to it): of the daemon's only the locale and time zone are read.
    let user = job.user.as_deref().map(|u| (u, std::env::vars_os()));
    let env = run_env::run_env(job.env(), vars, user);
    Ok(RunSpec {
        argv: run::expand(job.command.iter(), &run_dir_s, &job.name, &rec.run_id),
        env,
        working_dir: job
            .working_dir()
            .map_or_else(|| run_dir.clone(), std::path::Path::to_path_buf),
        stdout,
        stderr,
    })
}

/// The identity a run of a job with `user` takes.
pub(super) fn run_as(u: &crate::model::user::UserInfo) -> RunAs {
    RunAs {
        uid: u.uid,
        gid: u.gid,
        groups: u.groups.clone(),
    }
}

/// The state-error cause of one record: it clears only when that record is written.
pub(super) fn record_cause(rec: &RunRecord) -> String {
    format!("record:{}/{}", rec.job, rec.run_id)
}

/// Writes a final record and the job's latest result. `rec` is the caller's: what is learnt
/// on the way (the run folder was gone) goes into the record the loop then publishes.
pub(super) fn write_final(
    st: &crate::service::state::StateDir,
    rec: &mut RunRecord,
) -> std::io::Result<()> {
    crate::logic::stopped::mark(rec);
    if let Err(e) = rec.save() {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e);
        }
        // The runner removed its own run folder: make a new one, so the record (at least)
        // is kept, and say what happened.
        crate::service::state::create_state_subdirs(
            &st.root,
            &["jobs", &rec.job, "runs", &rec.run_id],
        )?;
        // A run that never started had no output to lose (its folder may never have been
        // made: see `not_started`).
        if !rec.output_lost && rec.started.is_some() {
            rec.output_lost = true;
            let note =
                "the run folder had disappeared (removed by the runner?); its output is lost";
            rec.note = Some(match rec.note.take() {
                Some(n) => format!("{n}; {note}"),
                None => note.to_string(),
            });
        }
        rec.save()?;
        return write_latest(st, rec);
    }
    write_latest(st, rec)
}

/// The job's latest result after `rec`: a skipped run is none, and a run an admin stopped
/// leaves the last complete result in place (see `logic::stopped`).
fn write_latest(st: &crate::service::state::StateDir, rec: &RunRecord) -> std::io::Result<()> {
    use crate::service::state;
    match rec.outcome {
        Some(Outcome::Skipped) => Ok(()),
        Some(Outcome::Killed) => {
            let previous = state::read_json::<RunRecord>(&st.latest_file(&rec.job))
                .ok()
                .flatten();
            let latest = crate::logic::stopped::latest_after(previous, rec);
            // Written in place of the previous one (same finish time): update_latest keeps
            // a newer one only.
            state::write_json(&st.latest_file(&rec.job), &latest, state::Durability::Sync)
        }
        // The record was just saved, final: the latest result is that file.
        _ => record::link_latest(st, rec),
    }
}

/// Completes a record: end time, duration, exit, outcome, test statistics.
/// Marks a record ended now: end time, duration, exit, outcome. Done when the loop learns of
/// the end, so the times are the run's own, not when the finisher got to it.
pub(super) fn mark_ended(rec: &mut RunRecord, outcome: Outcome, exit: Option<ExitInfo>) {
    let now = Utc::now();
    rec.finished = Some(now);
    rec.duration_s = rec
        .started
        .map(|s| ((now - s).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0));
    if let Some(exit) = exit {
        rec.exit_code = exit.code;
        rec.signal = exit.signal;
    }
    rec.outcome = Some(outcome);
}

/// What the finisher adds to an ended record: robot's result, read as `how` says (which may
/// turn the outcome into a failure), then the caps on its texts.
pub(super) fn complete(rec: &mut RunRecord, how: &crate::logic::robot::Reading) {
    crate::logic::robot::annotate(rec, how);
    rec.clip();
}
