//! The environment variables a run gets, decided from values (the job's `env`, the run's own
//! names, the job's user and the daemon's environment): one function, [`run_env`], for the
//! daemon's runs and `run-once`'s alike (both start runs with `app/daemon`'s code).
//!
//! - **A run as the daemon's own user** (no `user`) gets what [`run_env`] returns *over the
//!   daemon's environment* (the spawner adds it): the job's `env`, then the run's variables.
//! - **A run as another user** (`user = "…"`, a root daemon) gets what [`run_env`] returns and
//!   nothing else (the spawner clears the rest): an environment built for that user, as `su -`
//!   and cron build one. The daemon's environment is root's — credentials in variables, an
//!   agent's socket (`SSH_AUTH_SOCK`), proxies with passwords, `PYTHONPATH` and `PATH` that
//!   steer what the user's runner loads — and none of it is the user's business. What reaches
//!   such a run, in this order (each over the one before):
//!   1. `HOME`, `USER`, `LOGNAME`, `SHELL` from the user database (an empty shell field is
//!      `/bin/sh`, as login takes it); `PATH` = [`DEFAULT_PATH`];
//!   2. of the daemon's environment only the locale and the time zone ([`passes_to_user`]:
//!      `LANG`, `LANGUAGE`, `LC_*`, `TZ`): no secrets, and robot's output (dates, sorting,
//!      decoding) depends on them;
//!   3. the job's `env` table (the admin's choice wins: a `HOME` for a user without one, a
//!      `PATH`, a proxy);
//!   4. the run's own variables (below).
//!
//! Every run, either way, gets the run's tag [`TAG`] (`ROBOTMK_RUN_DIR`, the record's folder:
//! it finds the run's processes), `ROBOTMK_JOB` and `ROBOTMK_RUN_ID`, which the job's `env`
//! cannot change, and `TMPDIR`, `TEMP`, `TMP` naming the run's temp folder unless the job's
//! `env` sets them. A job with a Python environment also gets `VIRTUAL_ENV` and that
//! environment's `bin` in front of this `PATH` (`app/daemon/envs`).

use crate::model::user::UserInfo;
use std::collections::BTreeMap;
use std::ffi::OsString;

/// The variable that tags every process of a run: the record's folder.
pub(crate) const TAG: &str = "ROBOTMK_RUN_DIR";

/// The variables that name a run's temp folder (POSIX, Windows, both), unless the job's `env`
/// sets them.
pub(crate) const TMP_VARS: [&str; 3] = ["TMPDIR", "TEMP", "TMP"];

/// `PATH` of a run as another user (unless the job's `env` sets one): login's `ENV_PATH`
/// (`/etc/login.defs`) without the games folders. cron gives `/usr/bin:/bin`; this adds
/// `/usr/local/bin`, where an admin's own `robot`, `uv` or browser driver usually is. The
/// same list the spawner searches for a program when a run has no `PATH` at all.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// `SHELL` for a user whose entry names none (passwd(5)).
pub(crate) const DEFAULT_SHELL: &str = "/bin/sh";

/// What of a run that the daemon names: its tag, job, run id and temp folder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunVars<'a> {
    /// The record's folder ([`TAG`]).
    pub(crate) run_dir: &'a str,
    pub(crate) job: &'a str,
    pub(crate) run_id: &'a str,
    /// The run's temp folder (for [`TMP_VARS`]).
    pub(crate) tmp: &'a str,
}

/// Whether a variable of the daemon's environment reaches a run as another user: the locale
/// and the time zone, nothing else.
pub(crate) fn passes_to_user(name: &str) -> bool {
    matches!(name, "LANG" | "LANGUAGE" | "TZ") || name.starts_with("LC_")
}

/// The `PATH` a run's program is looked up on when it is a bare name, as [`run_env`] sets it:
/// the job's `env`'s, else [`DEFAULT_PATH`] for a run as another user; `None`: the daemon's.
pub(crate) fn run_path(job_env: &BTreeMap<String, String>, as_user: bool) -> Option<&str> {
    job_env
        .get("PATH")
        .map(String::as_str)
        .or(as_user.then_some(DEFAULT_PATH))
}

/// The environment of one run (see the module doc): `user` is the job's user with the
/// daemon's environment (read only for such a run), `None` for a run as the daemon's own
/// user, whose result goes over the daemon's environment.
pub(crate) fn run_env<I>(
    job_env: &BTreeMap<String, String>,
    run: RunVars<'_>,
    user: Option<(&UserInfo, I)>,
) -> BTreeMap<String, OsString>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut env = match user {
        Some((u, daemon)) => user_base(u, daemon),
        None => BTreeMap::new(),
    };
    env.extend(job_env.iter().map(|(k, v)| (k.clone(), v.into())));
    env.insert(TAG.into(), run.run_dir.into());
    for var in TMP_VARS {
        env.entry(var.into()).or_insert_with(|| run.tmp.into());
    }
    env.insert("ROBOTMK_JOB".into(), run.job.into());
    env.insert("ROBOTMK_RUN_ID".into(), run.run_id.into());
    env
}

/// Steps 1 and 2 of a run as `u` (see the module doc).
fn user_base(
    u: &UserInfo,
    daemon: impl IntoIterator<Item = (OsString, OsString)>,
) -> BTreeMap<String, OsString> {
    let shell = if u.shell.is_empty() {
        DEFAULT_SHELL.into()
    } else {
        u.shell.clone()
    };
    // HOME and SHELL as the user database has them, byte for byte: a home whose path is not
    // UTF-8 is still that user's home (made text, it named a folder that does not exist).
    let mut env: BTreeMap<String, OsString> = [
        ("HOME", u.home.clone().into_os_string()),
        ("USER", u.name.clone().into()),
        ("LOGNAME", u.name.clone().into()),
        ("SHELL", shell),
        ("PATH", DEFAULT_PATH.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Set, text values only: a run's environment is text (the job's `env` is), and an empty
    // locale variable sets nothing.
    env.extend(daemon.into_iter().filter_map(|(k, v)| {
        let (k, v) = (k.into_string().ok()?, v.into_string().ok()?);
        (passes_to_user(&k) && !v.is_empty()).then_some((k, v.into()))
    }));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robot() -> UserInfo {
        UserInfo {
            name: "robot".into(),
            uid: 1001,
            gid: 1001,
            home: "/home/robot".into(),
            shell: "/bin/bash".into(),
            groups: vec![1001],
        }
    }

    const RUN: RunVars<'static> = RunVars {
        run_dir: "/var/lib/rmkd/jobs/web/runs/R1",
        job: "web",
        run_id: "R1",
        tmp: "/tmp/rmkd-abc/R1/tmp",
    };

    /// A root daemon's environment, as an admin's shell or a service manager leaves it.
    fn roots() -> Vec<(OsString, OsString)> {
        [
            ("HOME", "/root"),
            ("USER", "root"),
            ("LOGNAME", "root"),
            ("SHELL", "/bin/bash"),
            ("PATH", "/root/.local/bin:/usr/sbin:/usr/bin"),
            ("PYTHONPATH", "/root/lib"),
            ("VIRTUAL_ENV", "/root/venv"),
            ("ROOT_SECRET_TOKEN", "s3cr3t"),
            ("https_proxy", "http://admin:pw@proxy:3128"),
            ("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.1"),
            ("XDG_RUNTIME_DIR", "/run/user/0"),
            ("TMPDIR", "/root/tmp"),
            ("ROBOTMK_DAEMON_LOG", "debug"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_TIME", "en_DK.UTF-8"),
            ("LC_ALL", ""),
            ("TZ", "Europe/Berlin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, OsString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect()
    }

    #[test]
    fn a_run_as_another_user_gets_an_environment_of_its_own_and_nothing_of_roots() {
        let u = robot();
        let env = run_env(&BTreeMap::new(), RUN, Some((&u, roots())));
        let tmp = RUN.tmp;
        assert_eq!(
            env,
            env_of(&[
                ("HOME", "/home/robot"),
                ("USER", "robot"),
                ("LOGNAME", "robot"),
                ("SHELL", "/bin/bash"),
                ("PATH", DEFAULT_PATH),
                ("LANG", "de_DE.UTF-8"),
                ("LC_TIME", "en_DK.UTF-8"),
                ("TZ", "Europe/Berlin"),
                ("ROBOTMK_RUN_DIR", RUN.run_dir),
                ("ROBOTMK_JOB", "web"),
                ("ROBOTMK_RUN_ID", "R1"),
                ("TMPDIR", tmp),
                ("TEMP", tmp),
                ("TMP", tmp),
            ])
        );
    }

    #[test]
    fn the_jobs_env_goes_over_the_users_and_the_run_names_go_over_the_jobs() {
        let mut u = robot();
        u.shell = OsString::new();
        let job = map(&[
            ("HOME", "/var/lib/robot"),
            ("PATH", "/opt/robot/bin:/usr/bin:/bin"),
            ("LANG", "C.UTF-8"),
            ("https_proxy", "http://proxy:3128"),
            ("TMPDIR", "/var/tmp/web"),
            ("ROBOTMK_RUN_DIR", "/elsewhere"),
            ("ROBOTMK_JOB", "other"),
        ]);
        let env = run_env(&job, RUN, Some((&u, roots())));
        assert_eq!(
            env["SHELL"], DEFAULT_SHELL,
            "an empty shell field is /bin/sh"
        );
        for (k, v) in [
            ("HOME", "/var/lib/robot"),
            ("PATH", "/opt/robot/bin:/usr/bin:/bin"),
            ("LANG", "C.UTF-8"),
            ("https_proxy", "http://proxy:3128"),
            ("TMPDIR", "/var/tmp/web"),
            ("TEMP", RUN.tmp),
            ("TMP", RUN.tmp),
            ("USER", "robot"),
            ("ROBOTMK_RUN_DIR", RUN.run_dir),
            ("ROBOTMK_JOB", "web"),
        ] {
            assert_eq!(env[k], v, "{k}");
        }
    }

    #[test]
    fn a_run_as_the_daemons_user_gets_the_jobs_env_and_the_run_names_only() {
        // The daemon's environment is under it (the spawner's), so none of it is here.
        let job = map(&[("LANG", "C.UTF-8"), ("TEMP", "/var/tmp/x")]);
        let env = run_env(&job, RUN, None::<(&UserInfo, Vec<_>)>);
        assert_eq!(
            env,
            env_of(&[
                ("LANG", "C.UTF-8"),
                ("ROBOTMK_RUN_DIR", RUN.run_dir),
                ("ROBOTMK_JOB", "web"),
                ("ROBOTMK_RUN_ID", "R1"),
                ("TMPDIR", RUN.tmp),
                ("TEMP", "/var/tmp/x"),
                ("TMP", RUN.tmp),
            ])
        );
    }

    #[test]
    fn the_path_a_program_is_found_on_is_the_one_the_run_gets() {
        let u = robot();
        let none = BTreeMap::new();
        let own = map(&[("PATH", "/opt/bin")]);
        for (job, as_user) in [(&none, true), (&own, true), (&own, false)] {
            let env = run_env(job, RUN, as_user.then(|| (&u, roots())));
            assert_eq!(run_path(job, as_user), env["PATH"].to_str());
        }
        assert_eq!(run_path(&none, false), None, "the daemon's own");
    }

    #[cfg(unix)]
    #[test]
    fn a_locale_that_is_no_text_does_not_pass() {
        use std::os::unix::ffi::OsStringExt;
        let u = robot();
        let daemon = vec![(
            OsString::from("LC_CTYPE"),
            OsString::from_vec(b"de_DE.\xff".to_vec()),
        )];
        let env = run_env(&BTreeMap::new(), RUN, Some((&u, daemon)));
        assert!(!env.contains_key("LC_CTYPE"), "{env:?}");
    }

    /// HOME and SHELL are the user database's bytes: made text, a home whose path is not
    /// UTF-8 (`/home/caf\xe9`) became `/home/caf\u{fffd}`, a folder that does not exist.
    #[cfg(unix)]
    #[test]
    fn a_home_and_shell_that_are_not_utf8_reach_the_run_byte_for_byte() {
        use std::os::unix::ffi::OsStringExt;
        let mut u = robot();
        u.home = OsString::from_vec(b"/home/caf\xe9".to_vec()).into();
        u.shell = OsString::from_vec(b"/opt/sh\xe9ll".to_vec());
        let env = run_env(&BTreeMap::new(), RUN, Some((&u, roots())));
        assert_eq!(env["HOME"].clone().into_vec(), b"/home/caf\xe9");
        assert_eq!(env["SHELL"].clone().into_vec(), b"/opt/sh\xe9ll");
    }
}
