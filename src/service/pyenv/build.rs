//! The `env-build` command, a process of its own started by the daemon like a runner: the
//! steps of one build (the venv, the installs, the project copied for a build as another
//! user), the installers' environment, which carries nothing of root's ([`build_env`]), and
//! the errors that name the step, the path and the fix. It may use `std::process` freely.

use super::{venv_dir, venv_python, BuildInfo, EnvSpec, SourceKind, BUILD_INFO};
use crate::service::sys::tree::remove_whole;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a pyproject's folder may hold to be copied for a build as another user.
const PROJECT_CAP_BYTES: u64 = 256 * 1024 * 1024;
const PROJECT_CAP_ENTRIES: u64 = 20_000;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
