//! `run-once JOB`: run one job now and show its output live.
//!
//! One supervisor, one writer: the run is never started here on the side. With a daemon
//! running, the command leaves a request in `requests/` (and wakes the daemon with SIGUSR1);
//! the daemon runs it like any due run and records it. With no daemon, this process takes the
//! instance lock and becomes a one-shot daemon for that single run ([`daemon::run_oneshot`]),
//! with the daemon's own run code. Either way the command finds its run by the request id in
//! the run records, streams the run's stdout and stderr while it runs (the files stay in the
//! run folder), and ends with the outcome line.

use crate::app::daemon;
use crate::model::config::Config;
use crate::model::record::{Outcome, RunRecord};
use crate::model::request::RunRequest;
use crate::service::state::record::{self};
use crate::service::state::{self, Durability, StateDir};
use crate::service::sys::file::{self, Links};
use crate::service::{lock, sys};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the command looks for its run and for new output.
const POLL: Duration = Duration::from_millis(50);
/// A daemon looks at its requests at least this often; a request not taken by then (and no
/// run for it) means the daemon is not serving requests.
const PICKUP_PATIENCE: Duration = Duration::from_secs(10);
/// How long a record that does not parse may stay so after its run ended before run-once
/// gives up on it (the daemon's finisher writes the final one within milliseconds).
const FINAL_RECORD_PATIENCE: Duration = Duration::from_secs(5);

/// Runs `job` once; returns the exit code (0 success, 1 failure, 3 timeout, 4 could not run).
pub(crate) fn run(cfg: &Config, job: &str, config_path: &Path) -> i32 {
    let st = StateDir::new(&cfg.daemon.state_dir);
    if let Err(e) = st.ensure() {
        eprintln!("robotmk-daemon: {e}");
        return 4;
    }
    let id = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let daemon_runs = lock::is_held(&st.lock_file()).unwrap_or(true);
    if daemon_runs {
        return through_daemon(&st, job, &id);
    }
    // No daemon: be one, for this run only. The follower prints while this thread supervises.
    let follower = {
        let st = st.clone();
        let (job, id) = (job.to_string(), id.clone());
        std::thread::spawn(move || follow(&st, &job, &id, None))
    };
    let opts = daemon::Options {
        config: config_path.to_path_buf(),
        route: crate::model::status::Route::RunOnce,
        run_flag: None,
        foreground: true,
        oneshot: Some(daemon::OneShot {
            job: job.to_string(),
            request: id.clone(),
        }),
    };
    match daemon::run_oneshot(opts) {
        Ok(Some(_)) => follower.join().unwrap_or(4),
        Ok(None) => {
            eprintln!(
                "robotmk-daemon: the run was not recorded; see {}",
                st.log_file().display()
            );
            4
        }
        // A daemon took the instance meanwhile: it serves the request instead.
        Err(daemon::SetupError::LockTaken) => {
            let code = through_daemon(&st, job, &id);
            let _ = follower.join();
            code
        }
        Err(daemon::SetupError::Exit(code)) => code,
    }
}

/// Hands the run to the running daemon and follows it.
fn through_daemon(st: &StateDir, job: &str, id: &str) -> i32 {
    let dir = st.requests_dir();
    let req = RunRequest {
        id: id.to_string(),
        job: job.to_string(),
        requested: chrono::Utc::now(),
    };
    let written = state::create_state_subdirs(&st.root, &["requests"])
        .and_then(|_| state::write_json(&dir.join(format!("{id}.json")), &req, Durability::NoSync));
    if let Err(e) = written {
        eprintln!("robotmk-daemon: cannot hand the run to the daemon: {e}");
        return 4;
    }
    if let Some(d) = crate::service::report::read_status(st).map(|s| s.daemon) {
        if sys::is_instance_daemon(d.pid, d.pid_start, &st.lock_file()) {
            sys::signal_requests(d.pid);
        }
    }
    follow(st, job, id, Some(&dir))
}

/// Waits for the run answering request `id`, streams its output, prints the outcome line and
/// returns the exit code. `requests`: where a daemon would reject the request (None for a
/// one-shot in this process).
fn follow(st: &StateDir, job: &str, id: &str, requests: Option<&Path>) -> i32 {
    let t0 = Instant::now();
    // On a terminal, a line says what the run waits for, then that it runs (with the time).
    let mut progress = crate::app::term::Progress::stderr();
    let rec = loop {
        if let Some(dir) = requests {
            let rejected = dir.join(format!("{id}.rejected"));
            if let Ok(why) = file::read_string(&rejected, file::cap::SMALL, Links::Refuse) {
                let _ = std::fs::remove_file(&rejected);
                eprintln!("robotmk-daemon: the daemon declined the run: {why}");
                return 4;
            }
            let pending = dir.join(format!("{id}.json"));
            if t0.elapsed() > PICKUP_PATIENCE && file::plain_metadata(&pending).is_some() {
                let _ = std::fs::remove_file(&pending);
                eprintln!(
                    "robotmk-daemon: the daemon did not take the request within {}s; is it stopping? see {}",
                    PICKUP_PATIENCE.as_secs(),
                    st.log_file().display()
                );
                return 4;
            }
            if !lock::is_held(&st.lock_file()).unwrap_or(true) {
                if let Some(r) = find_run(st, job, id) {
                    break r;
                }
                eprintln!("robotmk-daemon: the daemon stopped before it ran the job");
                return 4;
            }
        }
        if let Some(r) = find_run(st, job, id) {
            break r;
        }
        if progress.due() {
            progress.draw(&waiting_for(st, job));
        }
        std::thread::sleep(POLL);
    };
    progress.finish();
    // Written, not println!: a reader gone away must not end a run this process may hold
    // (see `sys::pipe`: run-once keeps SIGPIPE ignored).
    let _ = writeln!(
        std::io::stdout(),
        "running job {job} (run {}) in {}",
        rec.run_id,
        rec.run_dir.display()
    );
    let mut out = Tail::new(rec.run_dir.join(crate::model::record::STDOUT_FILE));
    let mut err = Tail::new(rec.run_dir.join(crate::model::record::STDERR_FILE));
    let running = format!("job {job} runs");
    let mut unreadable_since: Option<Instant> = None;
    let finished = loop {
        if out.pending() || err.pending() {
            progress.finish();
        }
        out.copy_to(&mut std::io::stdout());
        err.copy_to(&mut std::io::stderr());
        if progress.due() {
            progress.draw(&running);
        }
        match record::read_record(&rec.run_dir) {
            Ok(Some(r)) if r.is_finished() => break r,
            // Records are replaced whole (written aside, renamed): one that does not parse is
            // no write in progress. While the run goes on its final record may still replace
            // it (a `user` job's runner can write into its run folder); once the daemon no
            // longer lists the run, none will: say so rather than wait forever. The finisher
            // writes the final record just after the run leaves the list, so only a record
            // still unreadable a while later is taken as final.
            Err(e)
                if e.kind() == std::io::ErrorKind::InvalidData
                    && requests.is_some()
                    && !still_running(st, job, &rec.run_id) =>
            {
                let since = *unreadable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > FINAL_RECORD_PATIENCE {
                    progress.finish();
                    eprintln!("robotmk-daemon: the run ended but its record cannot be read: {e}");
                    return 4;
                }
            }
            _ => unreadable_since = None,
        }
        // The supervisor is gone and the run never finished: say so rather than wait forever.
        if requests.is_some() && !lock::is_held(&st.lock_file()).unwrap_or(true) {
            match record::read_record(&rec.run_dir) {
                Ok(Some(r)) if r.is_finished() => break r,
                _ => {
                    eprintln!("robotmk-daemon: the daemon stopped before the run finished; the next daemon records it");
                    return 4;
                }
            }
        }
        std::thread::sleep(POLL);
    };
    progress.finish();
    out.finish(&mut std::io::stdout());
    err.finish(&mut std::io::stderr());
    if requests.is_some() {
        await_published(st, job, &finished.run_id);
    }
    report(&finished)
}

/// How long run-once waits for the daemon to publish the run it printed (see
/// [`await_published`]).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(5);

/// Waits (at most [`PUBLISH_PATIENCE`]) until the daemon's status shows run `run_id` as the
/// job's latest: the daemon writes the record first and its status (and ctrl's view) after,
/// so an admin's `ctrl` right after `run-once` returned showed the run before (a re-verifier
/// saw that 11 times in 20, and for 1-2 s with a 30 MB view). A run that never becomes the
/// latest (a newer one finished first) costs the whole wait, which is rare and bounded.
///
/// And until ctrl's view shows that status or a later one (or there is none): the view is
/// written after `status.json`, and ctrl prints it unless `status.json` is newer by its
/// modification time, which a file system keeps in clock ticks of some milliseconds: a
/// ctrl between the two writes, within one tick of the view before, printed that view,
/// without the run (seen once in CI beside a soak, `tests/run_once.rs`).
fn await_published(st: &StateDir, job: &str, run_id: &str) {
    let t0 = Instant::now();
    // The `updated` of the first status that lists the run as the job's latest.
    let mut shown_at = None;
    while t0.elapsed() < PUBLISH_PATIENCE && lock::is_held(&st.lock_file()).unwrap_or(false) {
        if shown_at.is_none() {
            shown_at = crate::service::report::read_status(st)
                .filter(|s| {
                    s.jobs
                        .iter()
                        .filter(|j| j.name == job)
                        .any(|j| j.last.as_ref().is_some_and(|l| l.run_id == run_id))
                })
                .map(|s| s.updated);
        }
        if let Some(at) = shown_at {
            match crate::service::view::rendered_from(&st.ctrl_view_file()) {
                Some(view) if view < at => {}
                _ => return,
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Whether the daemon's status still lists run `run_id` of `job` as running (or cannot be
/// read, which is no proof that it ended).
fn still_running(st: &StateDir, job: &str, run_id: &str) -> bool {
    let Some(s) = crate::service::report::read_status(st) else {
        return true;
    };
    s.jobs
        .iter()
        .filter(|j| j.name == job)
        .any(|j| j.running.iter().any(|r| r.run_id == run_id))
}

/// What a requested run waits for, from the daemon's status: its Python environment being
/// built, a free slot (`max_parallel`), or the daemon's next look.
fn waiting_for(st: &StateDir, job: &str) -> String {
    let Some(s) = crate::service::report::read_status(st) else {
        return format!("waiting for the daemon to start job {job}");
    };
    let building = s
        .envs
        .iter()
        .any(|e| e.state == crate::model::env::Phase::Building && e.jobs.iter().any(|j| j == job));
    if building {
        return format!("waiting for the Python environment of job {job} to be built");
    }
    if s.jobs.iter().any(|j| j.name == job && j.queued > 0) {
        return format!("job {job} is queued: waiting for a free run slot (max_parallel)");
    }
    format!("waiting for the daemon to start job {job}")
}

/// The run that answers request `id`, once its folder and record exist.
fn find_run(st: &StateDir, job: &str, id: &str) -> Option<RunRecord> {
    let runs = record::list_runs(st, job).ok()?;
    runs.iter()
        .rev()
        .take(64)
        .filter_map(|(_, dir)| record::read_record(dir).ok().flatten())
        .find(|r| r.request.as_deref() == Some(id))
}

/// Prints the outcome line and maps the outcome to the exit code.
fn report(rec: &RunRecord) -> i32 {
    let outcome = rec.outcome.unwrap_or(Outcome::Interrupted);
    let _ = writeln!(
        std::io::stdout(),
        "{}: {}{}{}",
        rec.run_id,
        outcome.as_str(),
        rec.exit_code
            .map_or(String::new(), |c| format!(", exit code {c}")),
        rec.note
            .as_ref()
            .map_or(String::new(), |n| format!(" ({n})"))
    );
    let _ = writeln!(std::io::stdout(), "output: {}", rec.run_dir.display());
    match outcome {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::Timeout => 3,
        _ => 4,
    }
}

/// The most of one output file a run-once passes on: a runner that writes (or `truncate`s
/// its file to) a terabyte must not keep the admin's command reading for hours.
const STREAM_CAP: u64 = 64 * 1024 * 1024;
/// A line longer than this is passed on in pieces.
const LINE_PIECE: usize = 64 * 1024;

/// An output file of the run (the runner appends to it), followed from its start and passed
/// on as it grows, line by line and with its control
/// characters shown, not executed (`term::sanitize`, as `show` and `logs` do): the runner's
/// bytes are the job user's, and an escape sequence must not rewrite the admin's screen,
/// title bar or clipboard, nor a line be made to look like this command's own.
struct Tail {
    path: PathBuf,
    file: Option<std::fs::File>,
    pos: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
    /// The most passed on ([`STREAM_CAP`]; less in tests).
    cap: u64,
    /// Past `cap`: said so once, nothing more passed on.
    capped: bool,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            file: None,
            pos: 0,
            partial: Vec::new(),
            cap: STREAM_CAP,
            capped: false,
        }
    }

    /// Whether the file holds more than was copied (a progress line is cleared first).
    fn pending(&self) -> bool {
        !self.capped && file::plain_metadata(&self.path).is_some_and(|m| m.len() > self.pos)
    }

    /// Passes on the complete lines appended since the last call.
    fn copy_to(&mut self, to: &mut impl Write) {
        if self.capped {
            return;
        }
        if self.file.is_none() {
            self.file = file::open_read(&self.path).ok();
        }
        let Some(f) = self.file.as_mut() else { return };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.pos >= self.cap {
                self.capped = true;
                if !self.partial.is_empty() {
                    Self::line(to, &std::mem::take(&mut self.partial));
                }
                let _ = writeln!(
                    to,
                    "robotmk-daemon: more than {} MiB of output; the rest is in {}",
                    self.cap >> 20,
                    self.path.display()
                );
                break;
            }
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.pos += n as u64;
                    self.partial.extend_from_slice(&buf[..n]);
                    // Lines and long pieces are written from where the last one ended, and
                    // what is passed on leaves the buffer once: a chunk of thousands of short
                    // lines costs its length, not its length times its lines.
                    let mut start = 0;
                    loop {
                        let rest = &self.partial[start..];
                        match rest.iter().position(|b| *b == b'\n') {
                            Some(i) if i <= LINE_PIECE => {
                                Self::line(to, &rest[..i]);
                                start += i + 1;
                            }
                            _ if rest.len() > LINE_PIECE => {
                                Self::line(to, &rest[..LINE_PIECE]);
                                start += LINE_PIECE;
                            }
                            _ => break,
                        }
                    }
                    self.partial.drain(..start);
                }
            }
        }
        let _ = to.flush();
    }

    /// Passes on what is left, once the run has ended: a last line without its line break.
    fn finish(&mut self, to: &mut impl Write) {
        self.copy_to(to);
        if !self.partial.is_empty() {
            Self::line(to, &std::mem::take(&mut self.partial));
            let _ = to.flush();
        }
    }

    fn line(to: &mut impl Write, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let _ = writeln!(to, "{}", crate::app::term::sanitize(text));
    }
}

/// `run-once JOB` as the command line calls it: checks the config and the job, then [`run`].
pub(crate) fn command(path: &Path, name: &str) -> i32 {
    let cfg = match super::load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(job) = cfg.jobs.iter().find(|j| *j.name == *name) else {
        let names: Vec<&str> = cfg.jobs.iter().map(|j| &*j.name).collect();
        eprintln!(
            "robotmk-daemon: no job {name:?} in {}; jobs: {}",
            cfg.path.display(),
            names.join(", ")
        );
        return 2;
    };
    // Runs the config's command as this (root) user: the same check as the daemon's.
    if let Err(e) = crate::service::security::check(&cfg) {
        eprintln!("robotmk-daemon: {e}");
        return 2;
    }
    sys::set_private_umask();
    // With no daemon running, this process becomes a one-shot daemon, with the daemon's
    // spawner (the reaper of what the run leaves behind, too).
    run(&cfg, &job.name, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a runner writes reaches the admin's terminal as text: escape sequences shown,
    /// not executed, lines whole, the last one without its line break too.
    #[test]
    fn a_runners_output_is_passed_on_as_text_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"one\x1b]52;c;aGk=\x07\r\ntw").unwrap();
        let mut tail = Tail::new(path.clone());
        let mut out = Vec::new();
        tail.copy_to(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), "one\\x1b]52;c;aGk=\\x07\n");
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"o\x1b[2J").unwrap();
        tail.finish(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "one\\x1b]52;c;aGk=\\x07\ntwo\\x1b[2J\n"
        );
    }

    /// A file made huge (a sparse terabyte) is passed on up to the cap, then named.
    #[cfg(unix)] // Windows allocates a file's clusters when it is extended.
    #[test]
    fn a_huge_output_file_is_passed_on_up_to_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr.log");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        let mut tail = Tail::new(path.clone());
        tail.cap = 1 << 20;
        let mut out = Vec::new();
        tail.finish(&mut out);
        assert!(out.len() < 5 << 20, "{}", out.len());
        let text = String::from_utf8_lossy(&out);
        assert!(text.ends_with(&format!("the rest is in {}\n", path.display())));
        assert!(!tail.pending());
    }
}
