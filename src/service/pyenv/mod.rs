//! Python environments for robot jobs (`requirements = "…"` or `pyproject = "…"`): what one
//! is called, what its state file says, who builds it, and how it is built.
//!
//! An environment is keyed by a hash of the source file's content, its kind, the base
//! interpreter's identity (resolved path, size and mtime: a Python upgrade replaces the binary,
//! so the key changes without running it) and the user that builds it. Jobs with the same
//! file, interpreter and builder share one. It lives in `<key>/` with `venv/`, `build.log` and
//! `state.json` (written by the daemon only); the build writes [`BUILD_INFO`] into the venv.
//!
//! The build never runs as root (issue 20): a requirements file can reach code of anyone's
//! (`-r`, `-e`, local paths, build backends), and checking every path it names is a losing
//! game. A daemon that is root builds as the job's `user`, else as the unprivileged
//! `[daemon] build_user` ([`builder_for`]), in a venv folder handed to that user, with a HOME
//! (and so pip's and uv's caches) of its own and an environment that carries nothing of
//! root's ([`build_env`]); the daemon then seals what it built into a tree of its own (see
//! `daemon::envs`). A daemon that is not root (and Windows) builds as itself, in place.
//!
//! The build runs as this binary's hidden `env-build` command, started by the daemon's
//! [`crate::service::run::Spawner`] like a runner (own process group, output to `build.log`, exit
//! reported by the reaper), so the daemon never waits on a child itself. The build may use
//! `std::process` freely: it is a process of its own.
//!
//! What an environment is called and what its files say are here; who builds it is in
//! `builder.rs`, how it is built (the `env-build` command) in `build.rs`.

mod build;
mod builder;

pub(crate) use crate::model::env::{EnvSpec, SourceKind};
pub(crate) use build::{build, build_env, BuildPlan};
pub(crate) use builder::{
    builder_for, builder_label, built_by_build_user, resolve_build_user, unreachable_words,
    BuildUserLookup, BUILD_USER_WAIT,
};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What the build reports, in the venv (the only folder it may write that the daemon keeps).
pub(crate) const BUILD_INFO: &str = "robotmk-build-info.json";
/// Largest [`BUILD_INFO`] the daemon reads.
const BUILD_INFO_CAP: u64 = 64 * 1024;

/// What the build itself reports ([`BUILD_INFO`] in the venv).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct BuildInfo {
    pub(crate) tool: String,
    #[serde(default)]
    pub(crate) python_version: Option<String>,
}

/// The venv inside an environment folder.
pub(crate) fn venv_dir(env_dir: &Path) -> PathBuf {
    env_dir.join("venv")
}

/// The folder with the venv's programs (`robot`, `python`).
pub(crate) fn bin_dir(venv: &Path) -> PathBuf {
    venv.join(if cfg!(windows) { "Scripts" } else { "bin" })
}

pub(super) fn venv_python(venv: &Path) -> PathBuf {
    bin_dir(venv).join(if cfg!(windows) {
        "python.exe"
    } else {
        "python"
    })
}

/// True when the venv's interpreter is there (a ready state with its venv removed by hand is
/// built again).
pub(crate) fn venv_usable(env_dir: &Path) -> bool {
    venv_python(&venv_dir(env_dir)).exists()
}

/// The interpreter's identity for the key: resolved path, size and mtime (no process is run:
/// the daemon computes keys often and must not start children it does not reap itself).
fn python_identity(python: &str) -> String {
    let Some(found) = crate::service::sys::which(python) else {
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

/// The environment key of `spec` built by `builder` (a uid; `None`: the daemon itself),
/// reading its source file (capped). Builders never share an environment: one user's build
/// is no other user's to run.
pub(crate) fn key_of(spec: &EnvSpec, builder: Option<u32>) -> std::io::Result<String> {
    use crate::service::sys::file;
    let content = file::read(&spec.source, file::cap::ENV_SOURCE, file::Links::Follow)?;
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
    // Keys of builds by the daemon itself stay what they were before builders existed.
    if let Some(uid) = builder {
        data.extend_from_slice(format!("builder:{uid}").as_bytes());
        data.push(0);
    }
    data.extend_from_slice(&content);
    let digest = sha256(&data);
    // 128 bits name a folder uniquely enough and keep paths short (Windows MAX_PATH).
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// True for a name [`key_of`] could have produced (only such folders are ever removed).
pub(crate) fn is_key(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The last `bytes` of a build log, from a line boundary, for a failed build's error (see
/// `logic::build_error`).
pub(crate) fn log_end(log: &Path, bytes: u64) -> String {
    let Ok(mut f) = crate::service::sys::file::open_read(log) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(bytes);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(bytes).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    // Start at a line boundary when the cut fell inside one.
    let text = match (from > 0, text.find('\n')) {
        (true, Some(i)) => &text[i + 1..],
        _ => &text[..],
    };
    text.trim().to_string()
}

/// Reads what the build reported from a venv (capped, no link followed: in a sealed venv the
/// daemon's own file, in a venv the daemon built as itself its own).
///
/// A build as another user writes this file as that user (and may swap it while the daemon
/// seals the venv), so what it says is the builder's word: only known values are taken
/// ([`checked_build_info`]); they reach status.json, the section and the admin's terminal.
pub(crate) fn read_build_info(venv: &Path) -> Option<BuildInfo> {
    use crate::service::sys::file;
    let data = file::read(&venv.join(BUILD_INFO), BUILD_INFO_CAP, file::Links::Refuse).ok()?;
    checked_build_info(serde_json::from_slice(&data).ok()?)
}

/// `info` with only what a build can have written: `tool` is `pip` or `uv` (else the whole
/// file is not the build's: `None`, and the daemon keeps the tool it chose), `python_version`
/// the shape of one (`3.11.7`, `3.13.0rc1`, `3.14.0+`; else left out).
fn checked_build_info(info: BuildInfo) -> Option<BuildInfo> {
    if !matches!(info.tool.as_str(), "pip" | "uv") {
        return None;
    }
    let version_like = |v: &str| {
        v.len() <= 32
            && v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '+')
    };
    Some(BuildInfo {
        python_version: info.python_version.filter(|v| version_like(v)),
        ..info
    })
}

/// SHA-256 of `data` (the RustCrypto `sha2` crate).
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
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

    /// F7/2: the builder's file names a tool and a version; anything else (escape sequences,
    /// line breaks) is not taken.
    #[test]
    fn only_known_tools_and_version_shapes_are_taken_from_the_builders_file() {
        let info = |tool: &str, v: Option<&str>| BuildInfo {
            tool: tool.into(),
            python_version: v.map(str::to_string),
        };
        for tool in ["pip", "uv"] {
            for v in ["3.11.7", "3.13.0rc1", "3.14.0+"] {
                let got = checked_build_info(info(tool, Some(v))).expect(tool);
                assert_eq!(
                    (got.tool.as_str(), got.python_version.as_deref()),
                    (tool, Some(v))
                );
            }
            for v in [
                "3.11\u{1b}[2J",
                "3.11\nFORGED",
                "",
                "x3.11",
                &"3".repeat(33),
            ] {
                let got = checked_build_info(info(tool, Some(v))).expect(tool);
                assert_eq!(got.python_version, None, "{v:?}");
            }
        }
        for tool in ["pip\u{1b}]0;t\u{7}\nFORGED LINE", "conda", "", "PIP"] {
            assert!(
                checked_build_info(info(tool, Some("3.11.7"))).is_none(),
                "{tool:?}"
            );
        }
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
            job_env: None,
        };
        let ka = key_of(&spec(&a, SourceKind::Requirements), None).unwrap();
        // Same content elsewhere: the same environment.
        assert_eq!(
            ka,
            key_of(&spec(&b, SourceKind::Requirements), None).unwrap()
        );
        assert!(is_key(&ka), "{ka}");
        assert_ne!(ka, key_of(&spec(&a, SourceKind::Pyproject), None).unwrap());
        std::fs::write(&b, "x==2\n").unwrap();
        assert_ne!(
            ka,
            key_of(&spec(&b, SourceKind::Requirements), None).unwrap()
        );
    }

    #[test]
    fn builders_never_share_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        std::fs::write(&a, "x==1\n").unwrap();
        let spec = EnvSpec {
            source: a,
            kind: SourceKind::Requirements,
            python: "python3".into(),
            shared: false,
            job_env: None,
        };
        let own = key_of(&spec, None).unwrap();
        let one = key_of(&spec, Some(1000)).unwrap();
        let two = key_of(&spec, Some(1001)).unwrap();
        assert!(own != one && one != two && own != two);
        assert_eq!(one, key_of(&spec, Some(1000)).unwrap());
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
        let tail = log_end(&log, 800);
        assert!(tail.starts_with("line "), "{tail}");
        assert!(tail.ends_with("line 199"), "{tail}");
        assert!(tail.len() <= 800);
    }
}
