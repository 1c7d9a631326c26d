//! The test-only crash hook, for the tests of crash reporting (tests/crash.rs): with
//! `ROBOTMK_DAEMON_TEST_CRASH=<point>:<how>` in its environment, the process dies at `point`
//! (`ctrl`: ctrl before it reads the config; `ctrl-piggyback`: ctrl right after it printed
//! the first piggyback block's opening line; `reload`: the daemon when it reloads its config),
//! by `how`: `panic`, `abort`, `segv` (the signal) or `overflow` (a real stack overflow).
//!
//! Only in builds with debug assertions (`cargo build`, and the binary `cargo test` runs):
//! the release binary the agent runs has no such variable to read, whatever its environment
//! holds. There [`at`] does nothing and [`in_piggyback`] hands back its writer as it is.

use std::io::Write;

/// The hook's environment variable.
#[cfg(debug_assertions)]
const TEST_CRASH_ENV: &str = "ROBOTMK_DAEMON_TEST_CRASH";

/// Dies at `point` when the hook names it (see the module doc).
#[cfg(debug_assertions)]
pub(crate) fn at(point: &str) {
    let Ok(want) = std::env::var(TEST_CRASH_ENV) else {
        return;
    };
    let Some((at, how)) = want.split_once(':') else {
        return;
    };
    if at != point {
        return;
    }
    match how {
        "panic" => panic!("test crash at {point} ({TEST_CRASH_ENV})"),
        "abort" => std::process::abort(),
        "segv" => crate::service::sys::fatal::raise_segv(),
        "overflow" => {
            #[allow(unconditional_recursion)]
            fn deeper(n: u64) -> u64 {
                let frame = [n; 64];
                std::hint::black_box(&frame);
                deeper(n + 1).wrapping_add(frame[7])
            }
            std::hint::black_box(deeper(0));
        }
        _ => {}
    }
}

/// No hook in a release build.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn at(_point: &str) {}

/// ctrl's stdout, which dies at `ctrl-piggyback` when the hook names it.
#[cfg(debug_assertions)]
pub(crate) fn in_piggyback<W: Write>(inner: W) -> impl Write {
    let armed = std::env::var_os(TEST_CRASH_ENV)
        .is_some_and(|v| v.to_string_lossy().starts_with("ctrl-piggyback:"));
    CrashInPiggyback { inner, armed }
}

/// ctrl's stdout as it is: no hook in a release build.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn in_piggyback<W: Write>(inner: W) -> impl Write {
    inner
}

/// Passes everything through, and dies right after the first piggyback block's opening line
/// when armed, as a crash in the middle of ctrl's output would.
#[cfg(debug_assertions)]
struct CrashInPiggyback<W: Write> {
    inner: W,
    armed: bool,
}

#[cfg(debug_assertions)]
impl<W: Write> Write for CrashInPiggyback<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.armed {
            let opening = buf
                .windows(5)
                .position(|w| w.starts_with(b"\n<<<<") && w[5 - 1] != b'>')
                .and_then(|at| Some(at + 1 + buf[at + 1..].iter().position(|&b| b == b'\n')?));
            if let Some(end) = opening {
                self.inner.write_all(&buf[..=end])?;
                self.inner.flush()?;
                at("ctrl-piggyback");
            }
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
