//! ctrl's part of the liveness protocol (see `logic::liveness`): before it beats, it judges
//! the daemon that holds the lock and, past `hang_timeout`, ends it — after one last look,
//! by a kill to a PID that `sys::is_instance_daemon` verified, under `start.lock` so racing
//! ctrls end it one at a time. `stop --now` ends a daemon that did not answer its own beat
//! the same way ([`end_unanswering`]).

use crate::logic::liveness::{utc, ANSWER_GRACE};
use crate::model::status::DaemonInfo;
use crate::service::report::{read_status, unanswered};
use crate::service::state::{self, StateDir};
use crate::service::{lock, sys};
use std::time::{Duration, Instant, SystemTime};

/// How long ctrl waits for the daemon it ended to be gone.
const RELEASE_PATIENCE: Duration = Duration::from_secs(3);
/// The last look before a daemon is ended: a daemon that was only slow answers within it.
const CONFIRM: Duration = Duration::from_secs(2);
/// What ctrl found before its beat, and what it did about it.
#[derive(Debug)]
pub(crate) enum Judgement {
    /// Answered, no daemon, or nothing to judge: ctrl beats and goes on as usual.
    Answering,
    /// The previous beat is unanswered: ctrl does not beat. With a note for ctrl's section
    /// once the grace is over.
    Silent(Option<String>),
    /// Past `hang_timeout` the daemon was ended; ctrl beats and starts a new one. Why.
    Ended(String),
}

/// Judges the daemon before this ctrl's beat and, past `hang_timeout` (`None`: never, or the
/// config is unreadable), ends it.
pub(crate) fn judge(st: &StateDir, hang_timeout: Option<Duration>) -> Judgement {
    if !lock::is_held(&st.lock_file()).unwrap_or(false) {
        return Judgement::Answering;
    }
    let Some(status) = read_status(st) else {
        return Judgement::Answering;
    };
    let d = &status.daemon;
    let state_error = d.state_error.is_some() || state::read_alert(st).is_some();
    let Some((beat, age)) = unanswered(st, d, state_error) else {
        return Judgement::Answering;
    };
    if age <= ANSWER_GRACE {
        return Judgement::Silent(None);
    }
    let since = utc(beat).map_or_else(|| "an absurd time".into(), crate::model::record::ts);
    let silent = format!(
        "the daemon (pid {}) has not answered the heartbeat of {since} for {}",
        d.pid,
        crate::model::duration::human_age(age.as_secs_f64())
    );
    let Some(limit) = hang_timeout else {
        return Judgement::Silent(Some(format!(
            "{silent}; it is not ended (hang_timeout = \"0\" or no valid config)"
        )));
    };
    let limit_text = crate::model::duration::format(limit);
    if age < limit {
        return Judgement::Silent(Some(format!(
            "{silent}; ctrl ends it after {limit_text} (hang_timeout)"
        )));
    }
    match end(st, d, beat) {
        Ok(Ending::Answered | Ending::Gone) => Judgement::Answering,
        Ok(Ending::Ended) => {
            let why = format!(
                "the daemon (pid {}) did not answer the heartbeat of {since} for {} (hang_timeout {limit_text}); ctrl ended it",
                d.pid,
                crate::model::duration::human_age(age.as_secs_f64())
            );
            // For the next daemon's log: the one that was ended could not write it.
            let _ = state::write_atomic(
                &st.restart_note_file(),
                why.as_bytes(),
                state::Durability::NoSync,
            );
            Judgement::Ended(why)
        }
        Err(e) => Judgement::Silent(Some(format!("{silent}; past hang_timeout, but {e}"))),
    }
}

/// What [`end`] found or did.
pub(crate) enum Ending {
    /// It answered at the last look and lives on.
    Answered,
    /// A ctrl racing this one ended it first; the next daemon is started as usual.
    Gone,
    /// Ended by this ctrl, and gone with its lock.
    Ended,
}

/// Why a daemon that did not answer was not ended.
#[derive(Debug, thiserror::Error)]
enum EndError {
    #[error("cannot take {}: {source}", .path.display())]
    Lock {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another ctrl holds start.lock; not ended")]
    Busy,
    #[error(
        "pid {0} is not verified as this instance's daemon (start time, program, lock); not ended"
    )]
    NotVerified(u32),
    #[error("ending pid {pid} failed: {source}")]
    Kill {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("pid {pid} was sent the kill and still runs or holds the lock after {secs}s")]
    Lingers { pid: u32, secs: u64 },
}

/// `stop --now` past its timeout: ends the daemon `d` that left `beat` (the stop's own)
/// unanswered, with the same last look, `start.lock` and verified kill as ctrl.
pub(crate) fn end_unanswering(
    st: &StateDir,
    d: &DaemonInfo,
    beat: SystemTime,
) -> Result<Ending, String> {
    end(st, d, beat).map_err(|e| e.to_string())
}

/// Ends the daemon `d` that leaves `beat` unanswered.
fn end(st: &StateDir, d: &DaemonInfo, beat: SystemTime) -> Result<Ending, EndError> {
    if poll(CONFIRM, || st.heartbeat_ack() == Some(beat)) {
        return Ok(Ending::Answered);
    }
    // One ctrl at a time, so that racing ctrls do not all end (and report) the same daemon:
    // the others find it gone. Released before the launch, which takes it again.
    let patience = CONFIRM + RELEASE_PATIENCE + Duration::from_secs(1);
    let guard =
        lock::acquire_within(&st.start_lock_file(), patience).map_err(|source| EndError::Lock {
            path: st.start_lock_file(),
            source,
        })?;
    if guard.is_none() {
        return Err(EndError::Busy);
    }
    let old = sys::ProcessId {
        pid: d.pid,
        start: d.pid_start,
    };
    if !old.is_alive() {
        return Ok(Ending::Gone);
    }
    if st.heartbeat_ack() == Some(beat) {
        return Ok(Ending::Answered);
    }
    if !sys::is_instance_daemon(d.pid, d.pid_start, &st.lock_file()) {
        return Err(EndError::NotVerified(d.pid));
    }
    sys::kill_process(d.pid, d.pid_start)
        .map_err(|source| EndError::Kill { pid: d.pid, source })?;
    // Gone, and its lock free: the leader of a multi-threaded process is a zombie while
    // its other threads still hold the files. start.lock, held here, keeps any other ctrl
    // from starting the next daemon meanwhile, so a held lock is still the old one's.
    let gone = || !old.is_alive() && !lock::is_held(&st.lock_file()).unwrap_or(true);
    if !poll(RELEASE_PATIENCE, gone) {
        return Err(EndError::Lingers {
            pid: d.pid,
            secs: RELEASE_PATIENCE.as_secs(),
        });
    }
    Ok(Ending::Ended)
}

/// Polls `cond` every 20 ms until it holds (true) or `within` passes (false).
fn poll(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
