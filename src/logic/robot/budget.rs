//! The bounds on reading one run's results, whatever the run left: a size cap (a sparse file
//! of 1 TB costs no disk and would take the finisher hours), a time cap for the whole run's
//! reading (its result and every attempt's), and the daemon's stop, after which a read gets
//! at most the stop's grace. A read that runs into one stops at its next chunk (64 KiB) and
//! says why; the record then carries that as its note.

pub(crate) use crate::model::limits::Limits;
use std::cell::Cell;
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The daemon's stop as the readers see it: once begun, a read gets at most `grace` more
/// (counted from the stop or from its own start, whichever is later), so that `stop` and
/// SIGTERM end the daemon within its grace whatever a parse is doing. A stop called off (a
/// handover undone: the config names the daemon's instance again) bounds no later check.
#[derive(Debug, Default)]
pub(crate) struct Stopping {
    at: Mutex<Option<(Instant, Duration)>>,
}

impl Stopping {
    /// The daemon stops now; reads have `grace` left. Only the first call counts.
    pub(crate) fn begin(&self, grace: Duration) {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        at.get_or_insert((Instant::now(), grace));
    }

    /// The stop is called off: reads are bound by their own limits again.
    pub(crate) fn cancel(&self) {
        *self.at.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn get(&self) -> Option<(Instant, Duration)> {
        *self.at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a result was not read (the run's note says so, with the file's name).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResultError {
    /// The file is not there.
    #[error("robot wrote no result")]
    Missing,
    /// Opening it was refused: a link, not a regular file, another owner's, outside the run
    /// folder (the error names the path and the reason).
    #[error("{0}")]
    Refused(#[source] io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("result too large: {size} bytes, cap {cap}")]
    TooLarge { size: u64, cap: u64 },
    #[error("result not read: reading it took longer than {}", crate::model::duration::format(*.limit))]
    OutOfTime { limit: Duration },
    #[error("result not read: the daemon was stopping")]
    Stopping,
    /// Reading its first bytes failed.
    #[error("{0}")]
    Unreadable(#[source] io::Error),
    /// Not robot's format, or cut short: the reader's words.
    #[error("{0}")]
    Invalid(#[source] super::syntax::ParseError),
    #[error("it holds no suite")]
    NoSuite,
}

impl ResultError {
    /// The error of opening a result: absent, or refused.
    pub(crate) fn open(e: io::Error) -> ResultError {
        if e.kind() == io::ErrorKind::NotFound {
            ResultError::Missing
        } else {
            ResultError::Refused(e)
        }
    }

    /// A bound ran out (nothing was wrong with the file as far as it was read).
    pub(crate) fn is_bound(&self) -> bool {
        matches!(
            self,
            ResultError::TooLarge { .. } | ResultError::OutOfTime { .. } | ResultError::Stopping
        )
    }
}

/// The time of one run's reading, shared by its files, and what tripped it.
pub(crate) struct Clock<'a> {
    start: Instant,
    limits: Limits,
    stopping: Option<&'a Stopping>,
    tripped: Cell<Option<Trip>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trip {
    Time,
    Stop,
    Size(u64),
}

impl<'a> Clock<'a> {
    pub(crate) fn new(limits: Limits, stopping: Option<&'a Stopping>) -> Clock<'a> {
        Clock {
            start: Instant::now(),
            limits,
            stopping,
            tripped: Cell::new(None),
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    fn check(&self) -> Result<(), Trip> {
        if let Some(t) = self.tripped.get() {
            return Err(t);
        }
        let now = Instant::now();
        let trip = if now.duration_since(self.start) > self.limits.max_time {
            Some(Trip::Time)
        } else {
            match self.stopping.and_then(Stopping::get) {
                Some((at, grace)) if now.duration_since(at.max(self.start)) > grace => {
                    Some(Trip::Stop)
                }
                _ => None,
            }
        };
        match trip {
            Some(t) => {
                self.tripped.set(Some(t));
                Err(t)
            }
            None => Ok(()),
        }
    }

    /// Checks before a read starts: a clock that ran out reads nothing more.
    pub(crate) fn ready(&self) -> Result<(), ResultError> {
        self.check().map_err(|t| self.error(t))
    }

    /// What tripped, as the error a read ends with; `None` if nothing did (then the reader's
    /// own error stands).
    pub(crate) fn tripped(&self) -> Option<ResultError> {
        self.tripped.get().map(|t| self.error(t))
    }

    fn error(&self, t: Trip) -> ResultError {
        match t {
            Trip::Time => ResultError::OutOfTime {
                limit: self.limits.max_time,
            },
            Trip::Stop => ResultError::Stopping,
            Trip::Size(size) => ResultError::TooLarge {
                size,
                cap: self.limits.max_bytes,
            },
        }
    }
}

/// A reader that stops at the clock's bounds and at the size cap (a file that grows while
/// it is read).
pub(crate) struct Budget<'c, 'a, R> {
    inner: R,
    clock: &'c Clock<'a>,
    read: u64,
}

impl<'c, 'a, R: Read> Budget<'c, 'a, R> {
    pub(crate) fn new(inner: R, clock: &'c Clock<'a>) -> Self {
        Budget {
            inner,
            clock,
            read: 0,
        }
    }
}

impl<R: Read> Read for Budget<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stop = |t| io::Error::other(self.clock.error(t).to_string());
        self.clock.check().map_err(stop)?;
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.clock.limits.max_bytes {
            let t = Trip::Size(self.read);
            self.clock.tripped.set(Some(t));
            return Err(stop(t));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Endless zeros, like a sparse file's hole.
    struct Zeros;
    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            Ok(buf.len())
        }
    }

    fn drain(r: &mut impl Read) -> io::Result<u64> {
        io::copy(r, &mut io::sink())
    }

    #[test]
    fn the_size_cap_stops_a_growing_file() {
        let limits = Limits {
            max_bytes: 1 << 20,
            max_time: Duration::from_secs(60),
        };
        let clock = Clock::new(limits, None);
        assert!(drain(&mut Budget::new(Zeros, &clock)).is_err());
        assert!(matches!(
            clock.tripped(),
            Some(ResultError::TooLarge { size, cap: 1048576 }) if size > 1 << 20
        ));
        // The clock stays tripped for the run's other files.
        assert!(clock.ready().is_err());
    }

    #[test]
    fn the_time_cap_stops_an_endless_read() {
        let limits = Limits {
            max_bytes: u64::MAX,
            max_time: Duration::from_millis(50),
        };
        let clock = Clock::new(limits, None);
        let t = Instant::now();
        assert!(drain(&mut Budget::new(Zeros, &clock)).is_err());
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let e = clock.tripped().unwrap();
        assert_eq!(
            e.to_string(),
            "result not read: reading it took longer than 50ms"
        );
        assert!(e.is_bound());
    }

    #[test]
    fn a_stop_leaves_a_read_its_grace_only() {
        let stopping = Stopping::default();
        let clock = Clock::new(Limits::NONE, Some(&stopping));
        let mut r = Budget::new(Zeros, &clock);
        let mut buf = [0u8; 4096];
        assert!(r.read(&mut buf).is_ok());
        stopping.begin(Duration::from_millis(20));
        // A later stop does not move the first one.
        stopping.begin(Duration::from_secs(3600));
        let t = Instant::now();
        assert!(drain(&mut r).is_err());
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(matches!(clock.tripped(), Some(ResultError::Stopping)));
    }
}
