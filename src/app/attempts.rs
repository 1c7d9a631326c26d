//! Retries (`attempts = N`): a hidden subcommand of this binary that the daemon runs as the
//! job's runner. It runs robot up to N times in the run folder (`attempt-<k>/`), the later
//! attempts on the failed tests only (`--rerunfailed`) or on everything, merges the attempts
//! with `rebot --merge` into the run folder's output.xml, log.html and report.html, and
//! records each attempt in `attempts.json` for the daemon's finishing step.
//!
//! Why a process of its own rather than the daemon running attempts one by one: the run
//! stays one process group (one job object on Windows), so the job's timeout, `stop --now`
//! and crash recovery bound and find all attempts and the merge exactly as they do a single
//! robot run, and the daemon's loop gains no new state. On SIGTERM (sent to the whole group,
//! so robot gets it at the same time, once) it starts no further attempt and merges what
//! exists, within the grace period the daemon allows before SIGKILL.

use crate::model::config::Retry;
use crate::model::record::ATTEMPTS_FILE;
use crate::model::record::{Attempt, AttemptOutcome, Ran};
use crate::service::sys;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;

/// What the subcommand is told.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) run_dir: PathBuf,
    pub(crate) attempts: u32,
    pub(crate) retry: Retry,
    /// argv of rebot (e.g. `["/venv/bin/rebot"]` or `["/venv/bin/python", "-m", "robot.rebot"]`).
    pub(crate) rebot: Vec<String>,
    /// robot's argv; its last element is the suite, options go before it.
    pub(crate) robot: Vec<String>,
}

fn say(msg: &str) {
    println!("==> robotmk-daemon: {msg}");
}

/// Runs the plan; returns the process exit code (rebot's for the merged result, else the
/// last robot's).
pub(crate) fn run(plan: &Plan) -> i32 {
    // The signal reaches robot through the process group: here it only ends the loop.
    let stop = sys::stop_flag();
    let Some((suite, opts)) = plan.robot.split_last() else {
        eprintln!("robotmk-daemon: no robot command to run");
        return 252;
    };
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut last_code = 252;
    for k in 1..=plan.attempts.max(1) {
        if stop.load(Ordering::SeqCst) {
            say("stop requested: no further attempt");
            break;
        }
        let dir = plan.run_dir.join(format!("attempt-{k}"));
        let prev = attempts.last();
        // A rerun of the failed tests needs the last attempt's result; without one, run all.
        let rerun_from = prev
            .filter(|_| plan.retry == Retry::Failed)
            .map(|p| p.output.clone())
            .filter(|o| crate::service::results::read_result(o).is_ok());
        let ran = if rerun_from.is_some() {
            Ran::Failed
        } else {
            Ran::All
        };
        say(&format!(
            "attempt {k} of {} ({} tests)",
            plan.attempts,
            ran.as_str()
        ));
        let mut cmd = Command::new(&opts[0]);
        cmd.args(&opts[1..]);
        // Later options win in robot: these override the job's --outputdir.
        cmd.arg("--outputdir").arg(&dir);
        if let Some(from) = &rerun_from {
            cmd.arg("--rerunfailed").arg(from);
        }
        cmd.arg(suite);
        let status = cmd.status();
        let (code, signal) = match status {
            Ok(s) => (s.code(), sys::exit_signal(&s)),
            Err(e) => {
                // In robot's own form, so the run's note quotes it (robot::first_error_line).
                eprintln!("[ ERROR ] robotmk-daemon: cannot start {:?}: {e}", opts[0]);
                (None, None)
            }
        };
        last_code = code.unwrap_or(253);
        let output = dir.join("output.xml");
        let log = Some(dir.join("log.html")).filter(|l| l.is_file());
        attempts.push(Attempt {
            attempt: k,
            ran,
            exit_code: code,
            signal,
            outcome: AttemptOutcome::Unknown,
            output: output.clone(),
            log,
            ..Default::default()
        });
        write_attempts(&plan.run_dir, &attempts);
        let result = crate::service::results::read_result(&output);
        if result.as_ref().is_ok_and(|t| t.failed == 0) {
            break;
        }
        // Invalid data or options, or help printed: another attempt would say the same.
        if matches!(code, Some(251 | 252)) || status_failed_to_start(code, signal) {
            break;
        }
    }
    merge(plan, &attempts).unwrap_or(last_code)
}

fn status_failed_to_start(code: Option<i32>, signal: Option<i32>) -> bool {
    code.is_none() && signal.is_none()
}

/// Merges the attempts that left a result into the run folder; rebot's exit code.
fn merge(plan: &Plan, attempts: &[Attempt]) -> Option<i32> {
    let inputs: Vec<&Path> = attempts
        .iter()
        .map(|a| a.output.as_path())
        .filter(|o| crate::service::results::read_result(o).is_ok())
        .collect();
    if inputs.is_empty() {
        say("no attempt left a result; nothing to merge");
        return None;
    }
    let (prog, args) = plan.rebot.split_first()?;
    say(&format!("merging {} attempt(s) with rebot", inputs.len()));
    let status = Command::new(prog)
        .args(args)
        .arg("--merge")
        .arg("--outputdir")
        .arg(&plan.run_dir)
        .args(["--output", "output.xml", "--log", "log.html"])
        .args(["--report", "report.html"])
        .args(&inputs)
        .status();
    match status {
        Ok(s) => s.code(),
        Err(e) => {
            eprintln!("[ ERROR ] robotmk-daemon: cannot start rebot {prog:?}: {e}; the attempts' own results are in attempt-*/");
            None
        }
    }
}

fn write_attempts(run_dir: &Path, attempts: &[Attempt]) {
    let path = run_dir.join(ATTEMPTS_FILE);
    match serde_json::to_vec_pretty(attempts) {
        Ok(bytes) => {
            if let Err(e) = crate::service::state::write_atomic(
                &path,
                &bytes,
                crate::service::state::Durability::NoSync,
            ) {
                eprintln!("robotmk-daemon: cannot write {}: {e}", path.display());
            }
        }
        Err(e) => eprintln!("robotmk-daemon: cannot encode the attempts: {e}"),
    }
}
