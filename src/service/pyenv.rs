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

pub(crate) use crate::model::env::{EnvSpec, SourceKind};
use crate::model::user::UserInfo;
use crate::service::sys::tree::remove_whole;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the build reports, in the venv (the only folder it may write that the daemon keeps).
pub(crate) const BUILD_INFO: &str = "robotmk-build-info.json";
/// Largest [`BUILD_INFO`] the daemon reads.
const BUILD_INFO_CAP: u64 = 64 * 1024;
/// What a pyproject's folder may hold to be copied for a build as another user.
const PROJECT_CAP_BYTES: u64 = 256 * 1024 * 1024;
const PROJECT_CAP_ENTRIES: u64 = 20_000;

/// How a builder is named in the state and the status.
pub(crate) fn builder_label(u: &UserInfo) -> String {
    format!("{} (uid {})", u.name, u.uid)
}

/// The user `[daemon] build_user` names, as the builds of jobs without a `user` run: it must
/// exist and must not be root (a build as root runs whatever the requirements reach as root).
pub(crate) fn resolve_build_user(name: &str) -> Result<UserInfo, String> {
    let u = crate::service::sys::lookup_user(name).map_err(|e| {
        format!(
            "environments of jobs without a `user` are built as the unprivileged user {name:?} \
             ([daemon] build_user), never as root: {e}. Create it (the .deb does: useradd \
             --system --user-group --no-create-home --home-dir /nonexistent --shell \
             /usr/sbin/nologin {name}) or name another unprivileged user in [daemon] build_user; \
             a config reload (SIGHUP, or an edit of the config) tries again"
        )
    })?;
    if u.uid == 0 {
        return Err(format!(
            "[daemon] build_user {name:?} is root (uid 0): environments are never built as \
             root; name an unprivileged user"
        ));
    }
    Ok(u)
}

/// How long the environments' worker waits for the build user's lookup before it calls the
/// user database stuck (at most; never longer than `env_build_timeout`): the lookup is part
/// of the build, and a database that never answers must not hold the builds for ever.
pub(crate) const BUILD_USER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A lookup of the build user ([`resolve_build_user`]) on a thread of its own: NSS
/// (`getpwnam`, `getgrouplist`, LDAP, sssd) and `/etc/shadow` can block for ever, and that
/// must hold this thread, never the caller. Kept while unanswered, so that a database that
/// hangs holds one such thread, not one per look.
pub(crate) struct BuildUserLookup {
    name: String,
    since: std::time::Instant,
    rx: std::sync::mpsc::Receiver<Result<UserInfo, String>>,
    answer: Option<Result<UserInfo, String>>,
}

impl BuildUserLookup {
    pub(crate) fn start(name: &str) -> Result<BuildUserLookup, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let n = name.to_string();
        std::thread::Builder::new()
            .name("build-user".into())
            .spawn(move || {
                let _ = tx.send(resolve_build_user(&n));
            })
            .map_err(|e| format!("cannot look up the build user {name:?}: {e}"))?;
        Ok(BuildUserLookup {
            name: name.to_string(),
            since: std::time::Instant::now(),
            rx,
            answer: None,
        })
    }

    /// The user it looks up.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The answer, waiting for it up to `bound`; `None` while the database has not answered.
    pub(crate) fn wait(&mut self, bound: std::time::Duration) -> Option<Result<UserInfo, String>> {
        if self.answer.is_none() {
            self.answer = match self.rx.recv_timeout(bound) {
                Ok(r) => Some(r),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(Err(format!(
                    "the lookup of the build user {:?} ended without an answer (a bug; see daemon.log)",
                    self.name
                ))),
            };
        }
        self.answer.clone()
    }

    /// Why no environment of a job without a `user` is built while the database is silent.
    pub(crate) fn waiting_words(&self) -> String {
        build_user_waiting(&self.name, self.since.elapsed())
    }
}

/// The words for a build user's lookup the user database has not answered for `took`.
fn build_user_waiting(name: &str, took: std::time::Duration) -> String {
    format!(
        "waiting for the user database: the lookup of the build user {name:?} ([daemon] \
         build_user) has had no answer for {} (LDAP, sssd or nslcd not answering?); \
         environments it builds are not built until the database answers, and the daemon \
         looks again by itself",
        crate::model::duration::human_age(took.as_secs_f64())
    )
}

/// Who builds a job's environment: its `user`, else the build user (`build_user`, resolved
/// once per config). `None`: the daemon itself, where it cannot take another identity (it is
/// not root; Windows).
pub(crate) fn builder_for(
    job_user: Option<&UserInfo>,
    build_user: &Result<UserInfo, String>,
) -> Result<Option<UserInfo>, String> {
    if !crate::service::sys::is_root() {
        return Ok(None);
    }
    match job_user {
        Some(u) if !built_by_build_user(Some(u)) => Ok(Some(u.clone())),
        _ => build_user.clone().map(Some),
    }
}

/// Whether the build user builds the environment of a job with this `user` (when the daemon
/// is root): a job without one, and one whose user is root by uid (`root`, an alias such as
/// `toor`), whose build must not run as root either. The one rule [`builder_for`] and the
/// build user's lookup share.
pub(crate) fn built_by_build_user(job_user: Option<&UserInfo>) -> bool {
    job_user.is_none_or(|u| u.uid == 0)
}

/// What the build itself reports ([`BUILD_INFO`] in the venv).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct BuildInfo {
    pub(crate) tool: String,
    #[serde(default)]
    pub(crate) python_version: Option<String>,
}

/// Why a job's user cannot reach its environment: `closed` is the folder that stops it.
pub(crate) fn unreachable_words(
    venv: &Path,
    user: &UserInfo,
    closed: &impl std::fmt::Display,
) -> String {
    format!(
        "its Python environment {} cannot be reached by {}: {closed} stops it, and the \
         user's groups ({}) do not open it (did its primary group change? the environment \
         follows the user's group at the daemon's next look at it, at once after a reload)",
        venv.display(),
        builder_label(user),
        user.groups
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The venv inside an environment folder.
pub(crate) fn venv_dir(env_dir: &Path) -> PathBuf {
    env_dir.join("venv")
}

/// The folder with the venv's programs (`robot`, `python`).
pub(crate) fn bin_dir(venv: &Path) -> PathBuf {
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

/// Everything `env-build` needs.
#[derive(Debug, Clone)]
pub(crate) struct BuildPlan {
    pub(crate) dir: PathBuf,
    pub(crate) source: PathBuf,
    pub(crate) kind: SourceKind,
    pub(crate) python: String,
    /// Build with uv (`uv venv` + `uv pip install`); `None`: `python -m venv` + pip.
    pub(crate) uv: Option<PathBuf>,
    /// Set when the build runs as another user than the daemon's: its own folder, the HOME
    /// (and caches, and temporary files) of the installers, which then get [`build_env`]
    /// instead of this process's environment.
    pub(crate) home: Option<PathBuf>,
}

/// Why `env-build` failed: the step, the path or program, and the OS's error.
#[derive(Debug, thiserror::Error)]
enum BuildError {
    /// `verb` says what was done to `path`: create, list, read, copy, remove (the old).
    #[error("cannot {verb} {}: {source}", .path.display())]
    Io {
        verb: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make {} readable: {source}", .path.display())]
    Readable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the project folder {} is too large to copy for the build (over {} MB or \
         {PROJECT_CAP_ENTRIES} files): keep the pyproject.toml in a folder with only the \
         project",
        .0.display(),
        PROJECT_CAP_BYTES / 1024 / 1024
    )]
    ProjectTooLarge(PathBuf),
    #[error("{what} failed ({status})")]
    Failed {
        what: &'static str,
        status: std::process::ExitStatus,
    },
    #[error("{what}: cannot run {program:?}: {source}")]
    Run {
        what: &'static str,
        program: OsString,
        #[source]
        source: std::io::Error,
    },
    /// The build's own record in the venv could not be written.
    #[error("{0}")]
    Info(#[source] std::io::Error),
}

/// The error of `verb` (`create`, `list`, …) on `path`.
fn io<'a>(verb: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        verb,
        path: path.to_path_buf(),
        source,
    }
}

fn step(what: &'static str, cmd: &mut Command) -> Result<(), BuildError> {
    println!("robotmk-daemon env-build: {what}: {cmd:?}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(status) => Err(BuildError::Failed { what, status }),
        Err(source) => Err(BuildError::Run {
            what,
            program: cmd.get_program().to_os_string(),
            source,
        }),
    }
}

/// The `env-build` command: builds the venv in `plan.dir/venv`, writes [`BUILD_INFO`] into
/// it, returns the exit code. Output (its own and the tools') goes to stdout/stderr, which the
/// daemon points at `build.log`.
pub(crate) fn build(plan: &BuildPlan) -> i32 {
    match build_steps(plan) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("robotmk-daemon env-build: {e}");
            if plan.home.is_some() {
                // `USER` is the builder's in every build as another user (its environment is
                // the worker's, nothing of root's).
                let user = crate::service::sys::user_label();
                let uid = crate::service::sys::current_uid();
                eprintln!(
                    "robotmk-daemon env-build: this build ran as {user} (uid {uid}), not as root (the job's \
                     `user`, else [daemon] build_user): that user must be able to read the \
                     {} file, every file it names and the interpreter, and to write the folder \
                     of a local package that is built in place (setuptools writes *.egg-info \
                     there)",
                    plan.kind.as_str()
                );
            }
            1
        }
    }
}

/// The installers' environment in a build as another user: the daemon's locale, `PATH`, CA
/// bundles and the run tag (a timeout finds every process of the build by it); HOME, XDG
/// folders and TMPDIR in the builder's own folder; and the installer settings (proxies,
/// `PIP_*`, `UV_*`: an admin's index) of the daemon's environment for a job without a
/// `user`, of the job's `env` for one with a `user` ([`installer_setting`]). Nothing else
/// of root's: no HOME or caches of root's, no `PYTHONPATH`, no `VIRTUAL_ENV`, no credentials'
/// sockets.
pub(crate) fn build_env(home: &Path, spec: &EnvSpec) -> Vec<(OsString, OsString)> {
    build_env_from(std::env::vars_os(), home, spec.job_env.as_ref())
}

/// The `env-build` process's own environment for its installers: what the daemon gave it
/// (already [`build_env`]), its installer settings included, whoever's they are.
fn installers_env(home: &Path) -> Vec<(OsString, OsString)> {
    build_env_from(std::env::vars_os(), home, None)
}

/// Whether a variable of the daemon's environment reaches every build as another user (see
/// [`build_env`]).
fn build_env_keeps(k: &str) -> bool {
    matches!(
        k,
        "PATH"
            | "LANG"
            | "LANGUAGE"
            | "TZ"
            | "SSL_CERT_FILE"
            | "SSL_CERT_DIR"
            | "REQUESTS_CA_BUNDLE"
            | "CURL_CA_BUNDLE"
    ) || k == crate::service::run::TAG
        || k.starts_with("LC_")
}

/// An installer setting: a proxy (its URL may carry a password) or an installer's own setting
/// (`PIP_*`, `UV_*`: an index URL may carry a token), but none naming a folder (a cache, an
/// install dir: the builder has its own). Root's reach only the build user's builds (of jobs
/// without a `user`); a job with a `user` is built as that user, who must not read root's
/// secrets (SECURITY.md: a run as another user starts from nothing), and gets its job's `env`'s
/// instead.
fn installer_setting(k: &str) -> bool {
    let upper = k.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "HTTP_PROXY" | "HTTPS_PROXY" | "NO_PROXY" | "ALL_PROXY"
    ) || ((k.starts_with("PIP_") || k.starts_with("UV_")) && !k.ends_with("_DIR"))
}

/// [`build_env`] from `vars` (the daemon's environment): with `job_env` (a `user` job's), the
/// installer settings are that job's, none of `vars`.
fn build_env_from(
    vars: impl Iterator<Item = (OsString, OsString)>,
    home: &Path,
    job_env: Option<&std::collections::BTreeMap<String, String>>,
) -> Vec<(OsString, OsString)> {
    let keeps = |k: &str| build_env_keeps(k) || (job_env.is_none() && installer_setting(k));
    // An empty variable is no setting.
    let mut env: Vec<(OsString, OsString)> = vars
        .filter(|(k, v)| k.to_str().is_some_and(keeps) && !v.is_empty())
        .collect();
    env.extend(
        job_env
            .into_iter()
            .flatten()
            .filter(|(k, v)| installer_setting(k) && !v.is_empty())
            .map(|(k, v)| (k.into(), v.into())),
    );
    env.extend([
        ("HOME".into(), home.as_os_str().to_owned()),
        (
            "XDG_CACHE_HOME".into(),
            home.join(".cache").into_os_string(),
        ),
        (
            "XDG_CONFIG_HOME".into(),
            home.join(".config").into_os_string(),
        ),
        (
            "XDG_DATA_HOME".into(),
            home.join(".local/share").into_os_string(),
        ),
        ("TMPDIR".into(), home.join("tmp").into_os_string()),
    ]);
    env
}

/// A command for an installer: with [`build_env`] only when the build runs as another user.
fn tool(program: impl AsRef<std::ffi::OsStr>, env: Option<&[(OsString, OsString)]>) -> Command {
    let mut c = Command::new(program);
    if let Some(env) = env {
        c.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    c
}

/// Empties (or creates) the venv folder: the daemon hands it over empty, but a build started
/// by hand or interrupted may find something there. Only its content goes: the folder itself
/// may be in a folder this process cannot write.
fn empty_dir(dir: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let list = std::fs::read_dir(dir).map_err(io("list", dir))?;
    for e in list {
        let e = e.map_err(io("list", dir))?;
        let p = e.path();
        let gone = match e.file_type() {
            // An installer shaped that tree.
            Ok(t) if t.is_dir() => remove_whole(&p, REMOVE_LIMIT),
            _ => std::fs::remove_file(&p),
        };
        gone.map_err(io("remove the old", &p))?;
    }
    Ok(())
}

/// How long removing one tree of a build may take (the build's own timeout bounds it too).
/// Trees go the way every tree does ([`remove_whole`]): this process is the builder's when
/// another user builds, and the trees it removes are its own (a venv's content, its copy of a
/// project).
const REMOVE_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Folders a project's build never needs, left out of its copy.
fn skipped_in_copy(name: &std::ffi::OsStr) -> bool {
    let n = name.to_string_lossy();
    matches!(
        n.as_ref(),
        ".git"
            | ".hg"
            | ".svn"
            | ".venv"
            | "venv"
            | ".tox"
            | ".nox"
            | "node_modules"
            | "__pycache__"
            | ".mypy_cache"
            | ".pytest_cache"
            | ".ruff_cache"
            | "build"
            | "dist"
    ) || n.ends_with(".egg-info")
}

/// Copies a pyproject's folder to `to` for a build as another user: build backends write into
/// the project (setuptools: `*.egg-info`, `build/`), which is the admin's and not the
/// builder's to change. Links are copied as links; VCS folders, venvs and build outputs are
/// left out; a folder larger than [`PROJECT_CAP_BYTES`] is refused.
fn copy_project(from: &Path, to: &Path) -> Result<(), BuildError> {
    remove_whole(to, REMOVE_LIMIT).map_err(io("remove", to))?;
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut todo = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = todo.pop() {
        std::fs::create_dir(&dst).map_err(io("create", &dst))?;
        let list = std::fs::read_dir(&src).map_err(io("list", &src))?;
        for e in list {
            let e = e.map_err(io("list", &src))?;
            if skipped_in_copy(&e.file_name()) {
                continue;
            }
            let (s, d) = (e.path(), dst.join(e.file_name()));
            let m = std::fs::symlink_metadata(&s).map_err(io("read", &s))?;
            entries += 1;
            bytes += m.len();
            if bytes > PROJECT_CAP_BYTES || entries > PROJECT_CAP_ENTRIES {
                return Err(BuildError::ProjectTooLarge(from.to_path_buf()));
            }
            let ft = m.file_type();
            if ft.is_dir() {
                todo.push((s, d));
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&s).map_err(io("read", &s))?;
                crate::service::sys::copy_link(&target, &d).map_err(io("create", &d))?;
            } else if ft.is_file() {
                std::fs::copy(&s, &d).map_err(io("copy", &s))?;
            }
        }
    }
    Ok(())
}

/// Where the installer runs and what it installs: the requirements file, or the project —
/// as it is, or a copy a build as another user may write into (the copy is returned, to be
/// removed after the build).
fn install_target(
    plan: &BuildPlan,
) -> Result<(PathBuf, Vec<OsString>, Option<PathBuf>), BuildError> {
    let project_dir = plan
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut copied = None;
    let (work_dir, target): (PathBuf, Vec<OsString>) = match (plan.kind, &plan.home) {
        (SourceKind::Requirements, _) => (
            project_dir.clone(),
            vec!["-r".into(), plan.source.clone().into_os_string()],
        ),
        (SourceKind::Pyproject, None) => (
            project_dir.clone(),
            vec![project_dir.clone().into_os_string()],
        ),
        (SourceKind::Pyproject, Some(home)) => {
            let key = plan
                .dir
                .file_name()
                .map_or_else(|| "project".into(), |n| n.to_string_lossy().into_owned());
            let copy = home.join("tmp").join(format!("{key}-project"));
            println!(
                "robotmk-daemon env-build: copying the project {} to {} (the build may write \
                 into it)",
                project_dir.display(),
                copy.display()
            );
            copy_project(&project_dir, &copy)?;
            copied = Some(copy.clone());
            (copy.clone(), vec![copy.into_os_string()])
        }
    };
    Ok((work_dir, target, copied))
}

fn build_steps(plan: &BuildPlan) -> Result<(), BuildError> {
    // Readable by a job's user where the folders above let them in (shared environments
    // built by the daemon itself); a private one is still behind the 0700 state dir.
    crate::service::sys::set_shared_umask();
    // The install step runs in the project's folder: a relative --dir would then miss.
    let venv = venv_dir(&crate::service::config::absolute(&plan.dir));
    // A build interrupted before (daemon killed, timeout) may have left half a venv.
    empty_dir(&venv)?;
    let env = plan.home.as_deref().map(installers_env);
    let env = env.as_deref();
    if let Some(home) = &plan.home {
        let tmp = home.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
    }
    // Said plainly up front, rather than as the installer's traceback.
    crate::service::sys::file::read(
        &plan.source,
        crate::service::sys::file::cap::ENV_SOURCE,
        crate::service::sys::file::Links::Follow,
    )
    .map_err(io("read", &plan.source))?;
    let (work_dir, target, copied) = install_target(plan)?;
    let py = venv_python(&venv);
    let result = install(plan, &venv, &py, &work_dir, &target, env);
    if let Some(c) = copied {
        let _ = remove_whole(&c, REMOVE_LIMIT);
    }
    let used = result?;
    // Installers copy or hard-link files from their caches with the cache's modes, which the
    // daemon's umask made private: a job's user must read (not write) all of it. (A build as
    // another user is sealed by the daemon, which sets the modes itself.)
    if plan.home.is_none() {
        crate::service::sys::make_readable_tree(&venv).map_err(|source| BuildError::Readable {
            path: venv.clone(),
            source,
        })?;
    }
    let version = tool(&py, env)
        .args(["-c", "import sys; print(sys.version.split()[0])"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let info = BuildInfo {
        tool: used.into(),
        python_version: version,
    };
    crate::service::state::write_json(
        &venv.join(BUILD_INFO),
        &info,
        crate::service::state::Durability::Sync,
    )
    .map_err(BuildError::Info)?;
    println!("robotmk-daemon env-build: done ({used})");
    Ok(())
}

/// Creates the venv and installs into it; returns the tool used.
fn install(
    plan: &BuildPlan,
    venv: &Path,
    py: &Path,
    work_dir: &Path,
    target: &[OsString],
    env: Option<&[(OsString, OsString)]>,
) -> Result<&'static str, BuildError> {
    match &plan.uv {
        Some(uv) => {
            step(
                "create the venv (uv)",
                tool(uv, env)
                    .args(["venv", "--python", &plan.python])
                    .arg(venv)
                    // Never download an interpreter behind the admin's back.
                    .env("UV_PYTHON_DOWNLOADS", "never"),
            )?;
            step(
                "install (uv)",
                tool(uv, env)
                    .args(["pip", "install", "--python"])
                    .arg(py)
                    .args(target)
                    .current_dir(work_dir)
                    .env("UV_PYTHON_DOWNLOADS", "never"),
            )?;
            Ok("uv")
        }
        None => {
            step(
                "create the venv (python -m venv)",
                tool(&plan.python, env).args(["-m", "venv"]).arg(venv),
            )?;
            step(
                "install (pip)",
                tool(py, env)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--no-input",
                    ])
                    .args(target)
                    .current_dir(work_dir),
            )?;
            Ok("pip")
        }
    }
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

    /// F7/3: an answer is waited for up to the bound, kept once it came; no answer is words
    /// that name the database and the build user.
    #[test]
    fn a_build_user_lookup_waits_only_up_to_its_bound() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut l = BuildUserLookup {
            name: "robotmk".into(),
            since: std::time::Instant::now(),
            rx,
            answer: None,
        };
        let t0 = std::time::Instant::now();
        assert!(l.wait(std::time::Duration::from_millis(50)).is_none());
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        let w = l.waiting_words();
        assert!(
            w.contains("user database") && w.contains("\"robotmk\""),
            "{w}"
        );
        tx.send(Err("no such user".into())).unwrap();
        assert_eq!(
            l.wait(std::time::Duration::ZERO),
            Some(Err("no such user".into()))
        );
        drop(tx);
        assert_eq!(
            l.wait(std::time::Duration::ZERO),
            Some(Err("no such user".into()))
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

    // Builds as another user are Unix's (Windows builds as the daemon, with its environment).
    #[cfg(unix)]
    #[test]
    fn a_build_as_another_user_gets_nothing_of_roots_environment() {
        let vars = [
            ("HOME", "/root"),
            ("USER", "root"),
            ("XDG_CACHE_HOME", "/root/.cache"),
            ("PYTHONPATH", "/root/lib"),
            ("VIRTUAL_ENV", "/root/venv"),
            ("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.1"),
            ("UV_CACHE_DIR", "/root/.cache/uv"),
            ("PIP_CACHE_DIR", "/root/.cache/pip"),
            ("TMPDIR", "/root/tmp"),
            ("PATH", "/usr/bin:/bin"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("https_proxy", "http://proxy:3128"),
            ("PIP_INDEX_URL", "https://pypi.example/simple"),
            ("UV_INDEX_URL", "https://pypi.example/simple"),
            (crate::service::run::TAG, "/var/lib/x.users/envs/k"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = |job_env| -> std::collections::BTreeMap<String, String> {
            build_env_from(
                vars.clone().into_iter(),
                Path::new("/var/lib/x.users/build-homes/997"),
                job_env,
            )
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
        };
        let home = "/var/lib/x.users/build-homes/997";
        let job: std::collections::BTreeMap<String, String> = [
            ("HTTPS_PROXY", "http://job:proxy@p:3128"),
            ("PIP_EXTRA_INDEX_URL", "https://job.example/simple"),
            ("PIP_CACHE_DIR", "/home/job/.cache/pip"),
            ("SECRET_OF_THE_SUITE", "s"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        // The build user's (a job without `user`): root's installer settings; a `user` job's:
        // its own only.
        for (who, env, job_env) in [
            ("build user", env(None), None),
            ("job user", env(Some(&job)), Some(&job)),
        ] {
            assert_eq!(env["HOME"], home);
            assert_eq!(env["XDG_CACHE_HOME"], format!("{home}/.cache"));
            assert_eq!(env["TMPDIR"], format!("{home}/tmp"));
            for gone in [
                "USER",
                "PYTHONPATH",
                "VIRTUAL_ENV",
                "SSH_AUTH_SOCK",
                "UV_CACHE_DIR",
                "PIP_CACHE_DIR",
                "SECRET_OF_THE_SUITE",
            ] {
                assert!(!env.contains_key(gone), "{who}: {gone} leaked: {env:?}");
            }
            for kept in ["PATH", "LANG", "LC_ALL"] {
                assert!(env.contains_key(kept), "{who}: {kept} dropped: {env:?}");
            }
            let roots = ["https_proxy", "PIP_INDEX_URL", "UV_INDEX_URL"];
            let jobs = ["HTTPS_PROXY", "PIP_EXTRA_INDEX_URL"];
            let (have, lack) = if job_env.is_some() {
                (jobs, &roots[..])
            } else {
                (["https_proxy", "PIP_INDEX_URL"], &jobs[..])
            };
            for k in have {
                assert!(env.contains_key(k), "{who}: {k} dropped: {env:?}");
            }
            for k in lack {
                assert!(!env.contains_key(*k), "{who}: {k} passed: {env:?}");
            }
            assert_eq!(env[crate::service::run::TAG], "/var/lib/x.users/envs/k");
            assert!(!env.values().any(|v| v.starts_with("/root")), "{env:?}");
        }
    }

    #[test]
    fn a_copied_project_leaves_out_vcs_venvs_and_build_output() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("proj");
        for sub in [
            ".git/objects",
            "venv/bin",
            "build/lib",
            "x.egg-info",
            "src/pkg",
        ] {
            std::fs::create_dir_all(p.join(sub)).unwrap();
        }
        std::fs::write(p.join("pyproject.toml"), "[project]\n").unwrap();
        std::fs::write(p.join("src/pkg/__init__.py"), "").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", p.join("link")).unwrap();
        let to = d.path().join("copy");
        copy_project(&p, &to).unwrap();
        assert!(to.join("pyproject.toml").is_file());
        assert!(to.join("src/pkg/__init__.py").is_file());
        for gone in [".git", "venv", "build", "x.egg-info"] {
            assert!(!to.join(gone).exists(), "{gone}");
        }
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(to.join("link")).unwrap(),
            Path::new("/etc/hostname")
        );
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
