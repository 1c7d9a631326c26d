//! A job's runs as their folders and records tell: the most recent ones, newest first. Reads
//! the state dir's run folders and records (by handle, capped); changes nothing.

use crate::model::record::RunRecord;
use crate::service::state::record::{self};
use crate::service::state::StateDir;
use std::io;
use std::path::PathBuf;

/// One run folder as listed: its id, folder, and its record or why it cannot be read.
pub(crate) struct Run {
    pub(crate) run_id: String,
    pub(crate) run_dir: PathBuf,
    pub(crate) record: Result<RunRecord, String>,
}

pub(super) fn load_run(run_id: String, run_dir: PathBuf) -> Run {
    let record = match record::read_record(&run_dir) {
        Ok(Some(mut r)) => {
            r.clip();
            Ok(r)
        }
        Ok(None) => Err("no record.json".to_string()),
        Err(e) => Err(e.to_string()),
    };
    Run {
        run_id,
        run_dir,
        record,
    }
}

/// The newest `n` runs of `job`, newest first, and how many folders there are in all.
pub(crate) fn recent_runs(st: &StateDir, job: &str, n: usize) -> io::Result<(Vec<Run>, usize)> {
    let all = record::list_runs(st, job)?;
    let total = all.len();
    let runs = all
        .into_iter()
        .rev()
        .take(n)
        .map(|(id, dir)| load_run(id, dir))
        .collect();
    Ok((runs, total))
}
