//! Python environments for robot jobs (`requirements = "…"` or `pyproject = "…"`): what one
//! is called, what its state file says, and how it is built.
//!
//! An environment is keyed by a hash of the source file's content, its kind and the base
//! interpreter's identity (resolved path, size and mtime: a Python upgrade replaces the binary,
//! so the key changes without running it). Jobs with the same file and interpreter share one.
//! It lives in `<state_dir>/envs/<key>/`: `venv/`, `build.log`, `state.json` (written by the
//! daemon only) and `build-info.json` (written by the build).
//!
//! The build runs as this binary's hidden `env-build` command, started by the daemon through
//! [`crate::run::spawn`] like a runner (own process group, output to `build.log`, exit reported
//! by the reaper), so the daemon never waits on a child itself. The build may use
//! `std::process` freely: it is a process of its own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Largest requirements or pyproject file the daemon reads.
pub const SOURCE_CAP: u64 = 1024 * 1024;
/// How much of the end of `build.log` a failed build's error carries.
const TAIL_BYTES: u64 = 800;

/// What a job's environment is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// `pip install -r FILE`.
    Requirements,
    /// `pip install DIR` (the project the pyproject.toml describes, with its dependencies).
    Pyproject,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Requirements => "requirements",
            SourceKind::Pyproject => "pyproject",
        }
    }
}

/// A job's environment as the config describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSpec {
    /// Absolute path of the requirements or pyproject file.
    pub source: PathBuf,
    pub kind: SourceKind,
    /// The base interpreter (`python = "…"`, else `python3`; `python` on Windows).
    pub python: String,
    /// For a job with a `user`: built where that user can read it (see `daemon::workdir`).
    pub shared: bool,
}

/// Where a build stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Building,
    Ready,
    Failed,
}

/// One environment, as `state.json` in its folder, `status.json` and the section show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvState {
    pub key: String,
    pub source: PathBuf,
    pub kind: SourceKind,
    pub python: String,
    /// Readable by jobs' users (in `<state_dir>.users/envs/`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    pub state: Phase,
    /// `uv` or `pip`, once the build said which it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The interpreter version inside the environment (`3.11.7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
    /// When the build finished (ready or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Why the build failed, with the last lines of its log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Jobs whose runs use (or wait for) it (filled by the daemon for the status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
}

/// What the build itself reports (`build-info.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildInfo {
    pub tool: String,
    #[serde(default)]
    pub python_version: Option<String>,
}

/// The venv inside an environment folder.
pub fn venv_dir(env_dir: &Path) -> PathBuf {
    env_dir.join("venv")
}

/// The folder with the venv's programs (`robot`, `python`).
pub fn bin_dir(venv: &Path) -> PathBuf {
    venv.join(if cfg!(windows) { "Scripts" } else { "bin" })
}

fn venv_python(venv: &Path) -> PathBuf {
    bin_dir(venv).join(if cfg!(windows) {
        "python.exe"
    } else {
        "python"
    })
}

/// True when the venv's interpreter is there (a ready state with its venv removed by hand is
/// built again).
pub fn venv_usable(env_dir: &Path) -> bool {
    venv_python(&venv_dir(env_dir)).exists()
}

/// Finds a program like the OS would: a path as given, a bare name on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|d| {
        let c = d.join(program);
        if c.is_file() {
            return Some(c);
        }
        let exe = d.join(format!("{program}{}", std::env::consts::EXE_SUFFIX));
        exe.is_file().then_some(exe)
    })
}

/// The interpreter's identity for the key: resolved path, size and mtime (no process is run:
/// the daemon computes keys often and must not start children it does not reap itself).
fn python_identity(python: &str) -> String {
    let Some(found) = which(python) else {
        return format!("missing:{python}");
    };
    let real = std::fs::canonicalize(&found).unwrap_or(found);
    let meta = std::fs::metadata(&real).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}:{}:{mtime}", real.display(), meta.map_or(0, |m| m.len()))
}

/// The environment key of `spec`, reading its source file (capped).
pub fn key_of(spec: &EnvSpec) -> std::io::Result<String> {
    use crate::state::file;
    let content = file::read(&spec.source, SOURCE_CAP, file::Links::Follow)?;
    let mut data = Vec::with_capacity(content.len() + 256);
    data.extend_from_slice(b"robotmk-env-1\0");
    data.extend_from_slice(spec.kind.as_str().as_bytes());
    data.push(0);
    data.extend_from_slice(if spec.shared {
        b"shared\0"
    } else {
        b"private\0"
    });
    data.extend_from_slice(python_identity(&spec.python).as_bytes());
    data.push(0);
    data.extend_from_slice(&content);
    let digest = sha256(&data);
    // 128 bits name a folder uniquely enough and keep paths short (Windows MAX_PATH).
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// True for a name [`key_of`] could have produced (only such folders are ever removed).
pub fn is_key(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The last lines of a build log (at most [`TAIL_BYTES`]), for a failed build's error.
pub fn log_tail(log: &Path) -> String {
    let Ok(mut f) = crate::state::file::open_read(log) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(TAIL_BYTES);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(TAIL_BYTES).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    // Start at a line boundary when the cut fell inside one.
    let text = match (from > 0, text.find('\n')) {
        (true, Some(i)) => &text[i + 1..],
        _ => &text[..],
    };
    text.trim().to_string()
}

/// Everything `env-build` needs.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub dir: PathBuf,
    pub source: PathBuf,
    pub kind: SourceKind,
    pub python: String,
    /// Build with uv (`uv venv` + `uv pip install`); `None`: `python -m venv` + pip.
    pub uv: Option<PathBuf>,
}

fn step(what: &str, cmd: &mut Command) -> Result<(), String> {
    println!("robotmk-daemon env-build: {what}: {cmd:?}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what} failed ({s})")),
        Err(e) => Err(format!("{what}: cannot run {:?}: {e}", cmd.get_program())),
    }
}

/// The `env-build` command: builds the venv in `plan.dir/venv`, writes `build-info.json`,
/// returns the exit code. Output (its own and the tools') goes to stdout/stderr, which the
/// daemon points at `build.log`.
pub fn build(plan: &BuildPlan) -> i32 {
    match build_steps(plan) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("robotmk-daemon env-build: {e}");
            1
        }
    }
}

fn build_steps(plan: &BuildPlan) -> Result<(), String> {
    // Readable by a job's user where the folders above let them in (shared environments);
    // a private one is still behind the 0700 state dir.
    crate::sys::set_shared_umask();
    // The install step runs in the project's folder: a relative --dir would then miss.
    let venv = venv_dir(&crate::config::absolute(&plan.dir));
    // A build interrupted before (daemon killed, timeout) may have left half a venv.
    if venv.exists() {
        // Without recursion, by handle (sys::tree): an installer shaped that tree.
        let removed = crate::sys::tree::remove_tree_fully(
            &venv,
            crate::sys::tree::Rights::Daemon,
            std::time::Duration::from_secs(300),
        );
        match removed {
            Ok(crate::sys::tree::Removal::Gone) => {}
            Ok(crate::sys::tree::Removal::More) => {
                return Err(format!(
                    "cannot remove the old {} within 5 minutes",
                    venv.display()
                ))
            }
            Err(e) => return Err(format!("cannot remove the old {}: {e}", venv.display())),
        }
    }
    let project_dir = plan
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let target: Vec<std::ffi::OsString> = match plan.kind {
        SourceKind::Requirements => vec!["-r".into(), plan.source.clone().into_os_string()],
        SourceKind::Pyproject => vec![project_dir.clone().into_os_string()],
    };
    let py = venv_python(&venv);
    let tool = match &plan.uv {
        Some(uv) => {
            step(
                "create the venv (uv)",
                Command::new(uv)
                    .args(["venv", "--python", &plan.python])
                    .arg(&venv)
                    // Never download an interpreter behind the admin's back.
                    .env("UV_PYTHON_DOWNLOADS", "never"),
            )?;
            step(
                "install (uv)",
                Command::new(uv)
                    .args(["pip", "install", "--python"])
                    .arg(&py)
                    .args(&target)
                    .current_dir(&project_dir)
                    .env("UV_PYTHON_DOWNLOADS", "never"),
            )?;
            "uv"
        }
        None => {
            step(
                "create the venv (python -m venv)",
                Command::new(&plan.python).args(["-m", "venv"]).arg(&venv),
            )?;
            step(
                "install (pip)",
                Command::new(&py)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--no-input",
                    ])
                    .args(&target)
                    .current_dir(&project_dir),
            )?;
            "pip"
        }
    };
    // Installers copy or hard-link files from their caches with the cache's modes, which the
    // daemon's umask made private: a job's user must read (not write) all of it.
    crate::sys::make_readable_tree(&venv)
        .map_err(|e| format!("cannot make {} readable: {e}", venv.display()))?;
    let version = Command::new(&py)
        .args(["-c", "import sys; print(sys.version.split()[0])"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let info = BuildInfo {
        tool: tool.into(),
        python_version: version,
    };
    crate::state::write_json(
        &plan.dir.join("build-info.json"),
        &info,
        crate::state::Durability::Sync,
    )
    .map_err(|e| e.to_string())?;
    println!("robotmk-daemon env-build: done ({tool})");
    Ok(())
}

/// SHA-256 (FIPS 180-4). Small enough to carry here rather than add a crate for one hash of
/// a small file.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_matches_the_standard_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn keys_follow_content_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        let b = dir.path().join("b.txt");
        std::fs::write(&a, "x==1\n").unwrap();
        std::fs::write(&b, "x==1\n").unwrap();
        let spec = |p: &Path, kind| EnvSpec {
            source: p.to_path_buf(),
            kind,
            python: "python3".into(),
            shared: false,
        };
        let ka = key_of(&spec(&a, SourceKind::Requirements)).unwrap();
        // Same content elsewhere: the same environment.
        assert_eq!(ka, key_of(&spec(&b, SourceKind::Requirements)).unwrap());
        assert!(is_key(&ka), "{ka}");
        assert_ne!(ka, key_of(&spec(&a, SourceKind::Pyproject)).unwrap());
        std::fs::write(&b, "x==2\n").unwrap();
        assert_ne!(ka, key_of(&spec(&b, SourceKind::Requirements)).unwrap());
    }

    #[test]
    fn the_log_tail_starts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&log, &text).unwrap();
        let tail = log_tail(&log);
        assert!(tail.starts_with("line "), "{tail}");
        assert!(tail.ends_with("line 199"), "{tail}");
        assert!(tail.len() <= TAIL_BYTES as usize);
    }
}
