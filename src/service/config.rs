//! The config file from the host's side: where it is found, reading it, its stamp, and the
//! preparation step that does what parsing leaves to the host (see `logic::config::Need`):
//! looking the jobs' users up, finding uv, reading the environment files, this program's path
//! and the default state dir.

use crate::logic::config::{self as parsing, Draft, Need};
use crate::model::config::{Config, ConfigError, Users, CONFIG_ENV, CONFIG_FILE_NAME};
use crate::service::sys::{self, UserInfo};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the config is looked for, in order, when `--config` is not given.
pub(crate) fn discover() -> PathBuf {
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("MK_CONFDIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join(CONFIG_FILE_NAME);
    }
    default_config_dir().join(CONFIG_FILE_NAME)
}

fn default_config_dir() -> PathBuf {
    PathBuf::from(crate::service::sys::DEFAULT_CONFIG_DIR)
}

/// `$MK_VARDIR` is relative, so the default state dir would depend on the working directory.
#[derive(Debug, thiserror::Error)]
#[error("the environment variable MK_VARDIR={0:?} is a relative path; set it to an absolute path, or set daemon.state_dir")]
pub(crate) struct RelativeVarDir(std::ffi::OsString);

/// The state dir used when the config names none: `$MK_VARDIR/robotmk-daemon/<instance>`, else
/// the agent's var dir if the agent is installed, else an OS default.
///
/// A relative `$MK_VARDIR` is an error: ctrl and the daemon it launches run in different
/// working directories and would resolve it to different state dirs.
pub(crate) fn default_state_dir(instance: &str) -> Result<PathBuf, RelativeVarDir> {
    let base = match std::env::var_os("MK_VARDIR").filter(|p| !p.is_empty()) {
        Some(v) if !Path::new(&v).is_absolute() => return Err(RelativeVarDir(v)),
        Some(v) => PathBuf::from(v),
        None => crate::service::sys::default_state_base(),
    };
    Ok(base.join("robotmk-daemon").join(instance))
}

/// Makes `path` absolute and drops `.`/`..` lexically (no symlinks are resolved), so paths in
/// messages and records read as the admin expects.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    parsing::lexical(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// Reads and validates the config at `path`, looking up its jobs' users.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, Users::LookUp)
}

/// [`load`] for the long-lived daemon: read and parsed on a thread of its own, the jobs
/// then copied on this one, the parse's own memory dropped with that thread's.
///
/// Parsing 10,000 jobs takes some 38 MB of transient memory (the TOML document, the raw
/// tables), and the jobs, made while it is there, end up spread over all of it: freed, it left
/// 4.8 MB of the daemon's kept memory scattered over 13 MB of pages that stay the process's
/// for good (issue 25; glibc hands back only whole free pages). On a thread of its own the
/// parse fills the heap that threads share (`sys::memory::tune_allocator`: two in all), and
/// the copies made here fill this thread's heap compactly; what the parse used is then free
/// in whole pages, and goes back to the system ([`sys::memory::release_free`]: glibc keeps
/// a freed heap's pages while small freed blocks wait in its lists). Where no thread can be
/// started, it parses here.
pub(crate) fn load_compact(path: &Path) -> Result<Config, ConfigError> {
    apart(|| load(path)).map(compact)
}

/// `parse()`, run on a thread of its own (see [`load_compact`]), or here where no thread can
/// be started. For a parse of which little is kept: its transients then fill the other heap.
pub(crate) fn apart<T: Send>(parse: impl FnOnce() -> T + Send) -> T {
    let mut parse = Some(parse);
    let parsed = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("config".into())
            .spawn_scoped(s, || parse.take().map(|p| p()))
            .map(|t| t.join())
    });
    match (parsed, parse) {
        (Ok(Ok(Some(done))), _) => done,
        (Ok(Err(panic)), _) => std::panic::resume_unwind(panic),
        // No thread could be started: the parse is still here.
        (_, Some(p)) => p(),
        (Ok(Ok(None)), None) | (Err(_), None) => unreachable!("a parse taken and not run"),
    }
}

/// The half of [`load_compact`] done on the thread that keeps the config: its jobs copied
/// there, the parse's memory handed back.
pub(crate) fn compact(parsed: Config) -> Config {
    let kept = parsed.copied();
    drop(parsed);
    sys::memory::release_free();
    kept
}

/// [`load`], with or without looking up the jobs' users.
pub(crate) fn load_with(path: &Path, users: Users) -> Result<Config, ConfigError> {
    let path = absolute(path);
    let text = read(&path)?;
    parse_with(&path, &text, users)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    use sys::file;
    // Follows a symlink (an admin may link the config), but never blocks on a FIFO and never
    // reads more than the cap.
    let bytes = file::read(path, file::cap::CONFIG, file::Links::Follow).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "; pass --config PATH, set ${CONFIG_ENV}, or create it (see examples/ for one to copy)"
            )
        } else {
            String::new()
        };
        parsing::plain(path, format!("cannot read config: {e}{hint}"))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        parsing::plain(
            path,
            format!(
                "config is not valid UTF-8 (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Parses and validates config text, looking up its jobs' users; `path` is used for messages
/// and relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(path, text, Users::LookUp)
}

/// [`parse`], with or without looking up the jobs' users.
pub(crate) fn parse_with(path: &Path, text: &str, users: Users) -> Result<Config, ConfigError> {
    let base = absolute(path.parent().unwrap_or(Path::new(".")));
    let draft = parsing::parse(path, &base, text, chrono::Utc::now())?;
    prepare(draft, users)
}

/// Does what the parse left to the host, in the order of the file (see [`Need`]); a failure
/// is reported at the place that asked for it.
pub(crate) fn prepare(draft: Draft, users: Users) -> Result<Config, ConfigError> {
    let Draft { mut config, needs } = draft;
    not_text(&config.path).map_or(Ok(()), |why| {
        Err(parsing::plain(
            &config.path,
            format!(
                "the config file's path {why}; move it, or link it, to a path that is UTF-8 and name that (--config, ${CONFIG_ENV} or $MK_CONFDIR)"
            ),
        ))
    })?;
    // One lookup per user, not per job: with LDAP or sssd behind NSS each can take
    // milliseconds to seconds, and 300 jobs of one user took 300 (10 s on a large user
    // database, the daemon's loop blocked at a reload).
    let mut looked_up: HashMap<String, UserInfo> = HashMap::new();
    // Likewise why a user is held ([`Users::LookUpOrHold`]).
    let mut held: HashMap<String, std::sync::Arc<str>> = HashMap::new();
    // The build user's uid, looked up once where a job's user is (see `Need::User`).
    let mut build_uid: Option<Option<u32>> = None;
    for need in needs {
        match need {
            Need::DefaultStateDir => {
                let d = &mut config.daemon;
                d.state_dir = default_state_dir(&d.instance).map_err(|m| ConfigError {
                    field: Some("daemon.state_dir".into()),
                    ..parsing::plain(&config.path, m.to_string())
                })?;
                if let Some(why) = not_text(&d.state_dir) {
                    return Err(ConfigError {
                        field: Some("daemon.state_dir".into()),
                        ..parsing::plain(
                            &config.path,
                            format!(
                                "the default state dir {} {why}; set the environment variable MK_VARDIR to a folder whose path is UTF-8, or set daemon.state_dir",
                                d.state_dir.display()
                            ),
                        )
                    });
                }
            }
            Need::Uv { named: None } => config.daemon.uv = sys::which("uv"),
            Need::Uv {
                named: Some((p, place)),
            } => {
                let found = sys::which(&p.display().to_string()).ok_or_else(|| {
                    place.error(format!(
                        "{} not found; name the uv program, or \"off\" to build with pip",
                        p.display()
                    ))
                })?;
                config.daemon.uv = Some(found);
            }
            Need::User { job, name, place } => {
                // The build user builds the environments of root's jobs: a process of a job's
                // user who is that user could put code into what root then runs (a `.pth` in
                // the environment while it is built). Never the same user.
                if name == config.daemon.build_user {
                    return Err(place.error(format!(
                        "{name:?} is the build_user, which builds the Python environments of the jobs that run as root: a job running as that user could put code into them, which root would run; give the job another user, or set [daemon] build_user to a user of its own"
                    )));
                }
                let info = match (users, looked_up.get(&name)) {
                    (Users::NamesOnly, _) => None,
                    (_, Some(known)) => Some(known.clone()),
                    (_, None) => {
                        let found = match held.get(&name) {
                            Some(why) => Err(why.clone()),
                            // An expired account is no mistake in the config: its jobs are
                            // held at every load (the daemon's start too), the others run.
                            // A user not there is one, until the daemon runs the config.
                            None => match sys::lookup_user(&name) {
                                Err(e) if users == Users::LookUp && !e.holds_its_jobs() => {
                                    return Err(place.error(e))
                                }
                                found => found.map_err(|e| e.to_string().into()),
                            },
                        };
                        match found {
                            Ok(info) => {
                                looked_up.insert(name.clone(), info.clone());
                                Some(info)
                            }
                            // Held: `user_deferred` stays set, `user` empty, and the job says
                            // why (the user gone, the account expired).
                            Err(why) => {
                                held.insert(name.clone(), std::sync::Arc::clone(&why));
                                let job_name = config.jobs[job].name.clone();
                                config.users_held.insert(job_name, why);
                                None
                            }
                        }
                    }
                };
                if !sys::is_root() {
                    return Err(place.error(format!(
                        "running a job as {name:?} needs the daemon to run as root"
                    )));
                }
                if let Some(info) = info {
                    // Another name for the build user's uid is that user (`useradd -o`, an
                    // alias in LDAP): the same reason as above.
                    let builder = *build_uid.get_or_insert_with(|| {
                        sys::lookup_user(&config.daemon.build_user)
                            .ok()
                            .map(|u| u.uid)
                    });
                    if builder == Some(info.uid) {
                        return Err(place.error(format!(
                            "{name:?} has uid {}, the uid of the build_user {:?}, which builds the Python environments of the jobs that run as root: a job running as that uid could put code into them, which root would run; give the job a user of its own, or set [daemon] build_user to a user of its own",
                            info.uid, config.daemon.build_user
                        )));
                    }
                    let j = job_mut(&mut config, job);
                    j.user = Some(Box::new(info));
                    j.user_deferred = false;
                }
            }
            Need::EnvSource { job, place } => {
                let Some(env) = &config.jobs[job].pyenv else {
                    continue;
                };
                let source = &env.source;
                if let Err(e) =
                    sys::file::read(source, sys::file::cap::ENV_SOURCE, sys::file::Links::Follow)
                {
                    return Err(place.error(format!("cannot read {}: {e}", source.display())));
                }
            }
            Need::SelfExe { job } => {
                if let Ok(me) = sys::self_exe() {
                    let j = job_mut(&mut config, job);
                    j.command = j.command.with_program(&me.display().to_string());
                }
            }
        }
    }
    Ok(config)
}

/// Why `path` cannot be one of the daemon's own paths, `None` when it can. The daemon writes
/// its config's path and its state dir's (and every path below it) into JSON files — run
/// records, `status.json`, the ctrl view — and JSON holds Unicode text only: a path that is
/// not UTF-8 (a Latin-1 folder name) passed the checks and then no record or status could ever
/// be written. Refused here, when the config is loaded (`check-config`, `start`, ctrl, a
/// reload), the one place every path of the daemon's own passes; a state dir reached through
/// a link is checked again where the daemon resolves it (`app/daemon/start.rs`).
pub(crate) fn not_text(path: &Path) -> Option<String> {
    path.to_str().is_none().then(|| {
        "is not valid UTF-8: the daemon writes it into its JSON state files, which hold text only"
            .to_string()
    })
}

/// The `i`th job, to be completed: no one else holds it before the config is handed out.
fn job_mut(config: &mut Config, i: usize) -> &mut crate::model::config::Job {
    std::sync::Arc::make_mut(&mut config.jobs[i])
}

/// What a cheap `stat` tells about the config file: `<mtime ns>:<size>:<identity>`, where the
/// identity (inode and ctime on Unix) changes when the file is replaced or re-permissioned,
/// even by an `mv` that keeps the mtime. The daemon records the stamp of the file it
/// validated; ctrl compares it with the file's.
pub(crate) fn stamp(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "{}:{}:{}",
        t.as_nanos(),
        m.len(),
        sys::change_stamp(&m)
    ))
}

/// The stamps of the host's user database files ([`sys::USER_DATABASE`]) when `cfg` runs a
/// job as another user, else `None`: a change there (`userdel`, `usermod -u`, a group added,
/// `chage -E`) changes who those users are or whether their accounts are still valid, and
/// the daemon loads its config again to follow it. Today's date (UTC, as shadow counts
/// days) is part of it: an account whose expiry date comes is followed without a change to
/// any file.
pub(crate) fn users_stamp(cfg: &Config) -> Option<String> {
    if !cfg.jobs.iter().any(|j| j.user.is_some() || j.user_deferred) {
        return None;
    }
    let mut parts: Vec<String> = sys::USER_DATABASE
        .iter()
        .map(|p| stamp(Path::new(p)).unwrap_or_default())
        .collect();
    parts.push(chrono::Utc::now().date_naive().to_string());
    Some(parts.join("|"))
}

fn read_text(path: &Path) -> Option<String> {
    use sys::file;
    file::read_string(path, file::cap::CONFIG, file::Links::Follow).ok()
}

/// The config's text as ctrl reads it on every agent call, once for both quick lookups below
/// (`None`: unreadable; ctrl then takes its full path, which says why).
pub(crate) fn read_quick(path: &Path) -> Option<String> {
    read_text(path)
}

/// `[daemon] other_instances` of the config `text` read from `path`, from its `[daemon]` table
/// only (ctrl, on every agent call; relative entries are taken from the config's folder).
pub(crate) fn other_instances_in(path: &Path, text: &str) -> Vec<PathBuf> {
    // Most configs name none: no parse on every agent call for them.
    if !text.contains("other_instances") {
        return Vec::new();
    }
    let Ok(table) = toml::from_str::<toml::Table>(parsing::daemon_block(text)) else {
        return Vec::new();
    };
    let base = absolute(path.parent().unwrap_or(Path::new(".")));
    parsing::other_instances(&table, &base)
}

/// The instance and state dir from the `[daemon]` table alone of the config `text` read from
/// `path`, without parsing the jobs: ctrl's fast path, taken only when the running daemon
/// vouches for the whole file.
pub(crate) fn locate_daemon_in(path: &Path, text: &str) -> Option<(String, PathBuf)> {
    let section = parsing::daemon_block(text);
    if section.is_empty() {
        return None;
    }
    let table: toml::Table = toml::from_str(section).ok()?;
    daemon_location(path, &table)
}

/// The instance and state dir of a config that may be broken elsewhere, so that ctrl can
/// still find the daemon (and keep its heartbeat) while the admin fixes a typo in a job.
pub(crate) fn locate_daemon(path: &Path) -> Option<(String, PathBuf)> {
    let path = absolute(path);
    let text = read_text(&path)?;
    let table = parsing::daemon_table(&text);
    let located = daemon_location(&path, &table)?;
    // Nothing in it names an instance (see `parsing::EMPTY`): the default one's daemon is
    // looked for where its state dir exists (the default deployment, caught mid-write), and
    // none is made for it.
    if parsing::is_empty(&text) && !located.1.is_dir() {
        return None;
    }
    Some(located)
}

fn daemon_location(path: &Path, table: &toml::Table) -> Option<(String, PathBuf)> {
    let base = absolute(path.parent().unwrap_or(Path::new(".")));
    let (instance, state_dir) = parsing::location(table, &base)?;
    let state_dir = match state_dir {
        Some(d) => d,
        None => default_state_dir(&instance).ok()?,
    };
    Some((instance, state_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{Overlap, DEFAULT_RESULT_MAX_BYTES, DEFAULT_RESULT_PARSE_TIMEOUT};
    use parsing::daemon_block;
    use std::time::Duration;

    /// The parse runs on a thread of its own (so its transients land in the other heap),
    /// and what it returns, or a panic of it, comes back here.
    #[test]
    fn a_parse_apart_runs_on_its_own_thread_and_hands_back_its_result() {
        let on = apart(|| std::thread::current().name().map(String::from));
        assert_eq!(on.as_deref(), Some("config"));
        let panicked = std::panic::catch_unwind(|| apart(|| -> u8 { panic!("bad config") }));
        assert!(panicked.is_err());
    }

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/t.toml"), text)
    }

    /// 10,000 jobs on a handful of crontab expressions hold each expression once, not once
    /// per job (issue 25: about 80 bytes a job for the daemon's life).
    #[test]
    fn a_job_may_not_run_as_the_build_user() {
        for (daemon, user) in [("build_user = \"builder\"\n", "builder"), ("", "robotmk")] {
            let e = parse_with(
                Path::new("/etc/c.toml"),
                &format!(
                    "[daemon]\nstate_dir = \"/tmp/x\"\n{daemon}[[job]]\nname = \"j\"\ncommand = [\"true\"]\nevery = \"1m\"\nuser = \"{user}\"\n"
                ),
                Users::NamesOnly,
            )
            .expect_err("a job as the build user");
            assert!(
                e.to_string().contains("is the build_user")
                    && e.to_string().contains("job[0].user"),
                "{e}"
            );
        }
    }

    #[test]
    fn jobs_on_one_cron_expression_share_it() {
        use crate::model::schedule::Schedule;
        let job = |name: &str, cron: &str| {
            format!("[[job]]\nname = \"{name}\"\ncommand = [\"true\"]\ncron = \"{cron}\"\n")
        };
        let text = format!(
            "[daemon]\nstate_dir = \"/s\"\n{}{}{}",
            job("a", "*/5 * * * *"),
            job("b", " */5 * * * *"),
            job("c", "0 * * * *")
        );
        let c = p(&text).unwrap();
        let cron = |i: usize| match &c.jobs[i].schedule {
            Schedule::Cron { text, cron } => (text.clone(), cron.clone()),
            Schedule::Every { .. } => panic!("job {i} has no cron schedule"),
        };
        let ((ta, ca), (tb, cb), (tc, cc)) = (cron(0), cron(1), cron(2));
        assert!(std::sync::Arc::ptr_eq(&ta, &tb) && std::sync::Arc::ptr_eq(&ca, &cb));
        assert!(!std::sync::Arc::ptr_eq(&ta, &tc) && !std::sync::Arc::ptr_eq(&ca, &cc));
        assert_eq!((&*ta, &*tc), ("*/5 * * * *", "0 * * * *"));
    }

    #[test]
    fn other_instances_are_paths_from_the_configs_folder() {
        let c =
            p("[daemon]\nother_instances = [\"/home/u/robotmk.toml\", \"desk/state\"]\n").unwrap();
        assert_eq!(
            c.daemon.other_instances,
            [
                absolute(Path::new("/home/u/robotmk.toml")),
                absolute(Path::new("/etc/desk/state"))
            ]
        );
        assert!(p("[daemon]\nother_instances = [\"\"]\n").is_err());
        assert!(p("[daemon]\nother_instances = \"/x\"\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[daemon]\nother_instances = [\"u/state\"]\n\n[[job]]\nname = \"x\"\n",
        )
        .unwrap();
        assert_eq!(
            other_instances_in(&path, &std::fs::read_to_string(&path).unwrap()),
            [absolute(&dir.path().join("u/state"))]
        );
    }

    #[test]
    fn an_empty_config_is_an_error_that_names_no_instance() {
        for text in [
            "",
            "\n  \n",
            "\u{feff}# only a comment\r\n\t# and another\n",
        ] {
            let e = p(text).unwrap_err().to_string();
            assert!(e.contains("the config is empty"), "{text:?}: {e}");
        }
        // The packaged starter config and the example are configs.
        assert!(p("[daemon]\n").is_ok());
        for starter in [
            include_str!("../../packaging/robotmk-daemon.toml"),
            include_str!("../../examples/robotmk-daemon.toml"),
        ] {
            assert!(!parsing::is_empty(starter));
        }
        // ctrl's fast path finds no daemon in it (the full path, only an existing default
        // state dir: tests/drain.rs).
        assert_eq!(
            locate_daemon_in(Path::new("/etc/c.toml"), "# emptied\n"),
            None
        );
    }

    #[test]
    fn the_quick_path_reads_the_daemon_table_alone() {
        let b = daemon_block;
        let first = "[daemon] # here\r\ninstance = \"a\"\r\n\r\n[[job]]\nname = \"x\"\n";
        assert_eq!(b(first), "[daemon] # here\r\ninstance = \"a\"\r\n\r\n");
        let later = "# c\n[[job]]\nname = \"x\"\n[ daemon ]\nstate_dir = \"/s\"";
        assert_eq!(b(later), "[ daemon ]\nstate_dir = \"/s\"");
        assert_eq!(b("[[job]]\nname = \"x\"\n"), "");
        assert_eq!(
            b("daemon.instance = \"a\"\n"),
            "",
            "dotted keys: the full path"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("{GOOD}\n[[job]]\nname = \"late\"\n")).unwrap();
        // As the full parse has it (on Windows `/tmp/x` is on the config's drive).
        let full = parse(&path, GOOD).unwrap();
        assert_eq!(full.daemon.instance, "system");
        assert_eq!(
            locate_daemon_in(&path, &std::fs::read_to_string(&path).unwrap()),
            Some((full.daemon.instance, full.daemon.state_dir))
        );
    }

    const GOOD: &str = r#"
[daemon]
instance = "system"
state_dir = "/tmp/x"
max_parallel = 2

[[job]]
name = "web"
command = ["robot", "--outputdir", "{run_dir}", "/s"]
every = "5m"
timeout = "4m"

[[job]]
name = "nightly"
command = ["true"]
cron = "0 3 * * *"
"#;

    #[test]
    fn good_config_resolves_with_defaults() {
        let c = p(GOOD).unwrap();
        assert_eq!(c.daemon.instance, "system");
        // absolute(): on Windows "/tmp/x" resolves against the current drive.
        assert_eq!(c.daemon.state_dir, absolute(Path::new("/tmp/x")));
        assert_eq!(c.daemon.heartbeat_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.daemon.hang_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.daemon.max_parallel, 2);
        assert_eq!(c.daemon.keep_runs, 20);
        assert_eq!(c.daemon.stop_grace, Duration::from_secs(10));
        assert_eq!(c.jobs.len(), 2);
        assert_eq!(c.jobs[0].timeout, Duration::from_secs(240));
        assert_eq!(c.jobs[0].overlap, Overlap::Skip);
        assert_eq!(c.jobs[1].timeout, Duration::from_secs(86400));
    }

    #[test]
    fn errors_carry_line_column_and_field() {
        let e = p("[daemon]\ninstance = \"a\"\nbogus = 1\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(1)), "{e}");
        assert!(e.message.contains("unknown key `bogus`"), "{e}");

        let e = p("[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5x\"\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.field.as_deref(), Some("every"), "{e}");
        assert!(e.to_string().contains("/etc/t.toml:4:"), "{e}");
        assert!(e.message.contains("unknown unit"), "{e}");

        let e = p("[daemon\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    /// No program can be passed a NUL: a command or a robot option holding one is refused,
    /// naming the job and the argument, before any run could fail on it.
    #[test]
    fn an_argument_with_a_nul_is_a_config_error() {
        for job in [
            "command = [\"echo\", \"a\\u0000b\"]\nevery = \"5m\"",
            "kind = \"robot\"\nsuite = \"/s\"\nrobot_args = [\"--x\\u0000\"]\nevery = \"5m\"",
        ] {
            let e = p(&format!("[[job]]\nname = \"nul\"\n{job}\n")).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("job[0].command"), "{e}");
            assert!(e.message.contains("NUL character"), "{e}");
            assert!(e.to_string().contains("nul"), "{e}");
        }
        let ok = p("[[job]]\nname = \"ok\"\ncommand = [\"echo\", \"\", \"a b\"]\nevery = \"5m\"\n");
        assert_eq!(ok.unwrap().jobs[0].command.to_vec(), ["echo", "", "a b"]);
    }

    #[test]
    fn hang_timeout_is_off_at_zero_and_never_shorter_than_the_answer_window() {
        let c = |v: &str| p(&format!("[daemon]\nhang_timeout = \"{v}\"\n"));
        assert_eq!(c("0").unwrap().daemon.hang_timeout, None);
        assert_eq!(
            c("10s").unwrap().daemon.hang_timeout,
            Some(Duration::from_secs(10))
        );
        let e = c("5s").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("daemon.hang_timeout"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("at least 10s"), "{e}");
        assert!(c("5x").unwrap_err().to_string().contains(":2:"));
    }

    #[test]
    fn duplicate_names_point_at_the_second() {
        let text = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5s\"\n\n[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5s\"\n";
        let e = p(text).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.message.contains("duplicate job name"), "{e}");
    }

    #[test]
    fn schedule_rules() {
        let both =
            "[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5s\"\ncron = \"* * * * *\"\n";
        assert!(p(both).unwrap_err().message.contains("not both"));
        let none = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\n";
        assert!(p(none).unwrap_err().message.contains("needs a schedule"));
        let off = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\nevery = \"5s\"\noffset = \"5s\"\n";
        assert!(p(off).unwrap_err().message.contains("shorter"));
        let cron = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\ncron = \"* * *\"\n";
        let e = p(cron).unwrap_err();
        assert_eq!(e.line, Some(4));
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in ["a/b", "..", "a\0b", "", &"x".repeat(65), "a b"] {
            let text = format!("[[job]]\nname = {bad:?}\ncommand = [\"x\"]\nevery = \"5s\"\n");
            assert!(p(&text).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn robot_jobs_build_their_command() {
        let text = "[[job]]\nname = \"r\"\nsuite = \"suites/a.robot\"\nevery = \"1m\"\nvariables = { HOST = \"x\" }\nrobot_args = [\"--loglevel\", \"DEBUG\"]\n";
        let c = p(text).unwrap();
        let cmd = c.jobs[0].command.to_vec();
        assert_eq!(cmd[0], "robot");
        assert!(cmd.windows(2).any(|w| w == ["--outputdir", "{run_dir}"]));
        // Secrets stay off the command line: they are in the 0600 argument file.
        assert!(!cmd.iter().any(|a| a.contains("HOST")), "{cmd:?}");
        assert!(cmd
            .windows(2)
            .any(|w| w == ["--argumentfile", "{run_dir}/robotmk-variables.args"]));
        assert_eq!(c.jobs[0].argument_file(), Some("--variable HOST:x\n"));
        let bad = text.replace("\"x\"", "\"a\\nb\"");
        assert!(p(&bad).unwrap_err().message.contains("line breaks"));
        let suite = absolute(Path::new("/etc/suites/a.robot"));
        assert_eq!(cmd.last().unwrap(), &suite.display().to_string());
        assert!(c.jobs[0].robot);
    }

    #[test]
    fn robot_result_options_and_retry_keys() {
        let robot = |extra: &str| {
            p(&format!(
                "[[job]]\nname = \"r\"\nsuite = \"s.robot\"\nevery = \"1m\"\n{extra}\n"
            ))
        };
        for bad in [
            "[\"--output\", \"x.xml\"]",
            "[\"--outp\", \"x.xml\"]",
            "[\"--OUTPUTDIR=/x\"]",
            "[\"-o\", \"x.xml\"]",
            "[\"-d/x\"]",
            "[\"--xu\", \"x.xml\"]",
            "[\"--report\", \"r.html\"]",
        ] {
            let e = robot(&format!("robot_args = {bad}")).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("job[0].robot_args"), "{bad}: {e}");
        }
        for good in [
            "[\"--loglevel\", \"DEBUG\"]",
            "[\"-L\", \"TRACE\"]",
            "[\"--log\", \"NONE\", \"-r\", \"none\"]",
            "[\"--nostatusrc\", \"--exclude\", \"wip\"]",
        ] {
            assert!(robot(&format!("robot_args = {good}")).is_ok(), "{good}");
        }
        let c = robot("attempts = 3\nretry = \"all\"").unwrap();
        assert_eq!(c.jobs[0].attempts, 3);
        let cmd = c.jobs[0].command.to_vec();
        assert_eq!(cmd[1], "robot-attempts");
        assert!(cmd.windows(2).any(|w| w == ["--rebot-json", "[\"rebot\"]"]));
        assert_eq!(c.jobs[0].result.as_deref(), Some("{run_dir}/output.xml"));
        assert!(robot("attempts = 0").is_err());
        assert!(robot("retry = \"failed\"").is_err());
        assert!(robot("result = \"x.xml\"").is_err());
        assert!(robot("test_runtime_warn = \"2s\"\ntest_runtime_crit = \"1s\"").is_err());
        // A command job running robot itself: its result is found from its options.
        for (argv, result) in [
            ("\"robot\", \"s\"", Some("output.xml")),
            (
                "\"/v/bin/robot\", \"--outputdir\", \"{run_dir}/o\", \"-o\", \"x.json\", \"s\"",
                Some("{run_dir}/o/x.json"),
            ),
            (
                // An absolute path is one on this OS.
                if cfg!(windows) {
                    "\"python3\", \"-m\", \"robot\", \"--output=C:/abs/o.xml\", \"-d\", \"d\", \"s\""
                } else {
                    "\"python3\", \"-m\", \"robot\", \"--output=/abs/o.xml\", \"-d\", \"d\", \"s\""
                },
                Some(if cfg!(windows) {
                    "C:/abs/o.xml"
                } else {
                    "/abs/o.xml"
                }),
            ),
            ("\"robot\", \"--output\", \"NONE\", \"s\"", None),
            ("\"sh\", \"-c\", \"robot s\"", None),
        ] {
            let c = p(&format!(
                "[[job]]\nname = \"c\"\ncommand = [{argv}]\nevery = \"1m\"\n"
            ))
            .unwrap();
            assert_eq!(c.jobs[0].result.as_deref(), result, "{argv}");
        }
        let cmd = p("[[job]]\nname = \"c\"\ncommand = [\"x\"]\nevery = \"1m\"\nresult = \"{run_dir}/o.json\"\n").unwrap();
        assert_eq!(cmd.jobs[0].result.as_deref(), Some("{run_dir}/o.json"));
        assert!(
            p("[[job]]\nname = \"c\"\ncommand = [\"x\"]\nevery = \"1m\"\nattempts = 2\n").is_err()
        );
    }

    #[test]
    fn environment_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("req.txt"), "robotframework\n").unwrap();
        let path = dir.path().join("c.toml");
        let job = |extra: &str| {
            parse(
                &path,
                &format!("[[job]]\nname = \"r\"\nsuite = \"s.robot\"\nevery = \"1m\"\n{extra}\n"),
            )
        };
        let c = job("requirements = \"req.txt\"\npython = \"/usr/bin/python3\"").unwrap();
        let e = c.jobs[0].pyenv.as_ref().unwrap();
        assert_eq!(e.source, dir.path().join("req.txt"));
        // Resolved as the config resolves paths: joined to its folder, on purpose (on Windows
        // a rooted path then takes that folder's drive).
        #[allow(clippy::join_absolute_paths)]
        let want = absolute(&dir.path().join("/usr/bin/python3"));
        assert_eq!(e.python, want.display().to_string());
        // The environment's robot, found on the run's PATH.
        assert_eq!(c.jobs[0].command.get(0), Some("robot"));
        let e = job("requirements = \"missing.txt\"").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("job[0].requirements"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");
        let e = job("requirements = \"req.txt\"\nrobot = \"/x/robot\"").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("job[0].robot"), "{e}");
        let e = job("requirements = \"req.txt\"\npyproject = \"req.txt\"").unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        let cmd = parse(
            &path,
            "[[job]]\nname = \"c\"\ncommand = [\"x\"]\nevery = \"1m\"\nrequirements = \"req.txt\"\n",
        )
        .unwrap_err();
        assert_eq!(cmd.field.as_deref(), Some("job[0].requirements"), "{cmd}");
        let d = |extra: &str| parse(&path, &format!("[daemon]\n{extra}\n"));
        assert!(d("env_build_timeout = \"0s\"").is_err());
        assert!(d("uv = \"/no/such/uv\"").is_err());
        assert!(d("result_parse_timeout = \"0s\"").is_err());
        let e = d("result_max_size = \"1TB\"").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("daemon.result_max_size"), "{e}");
        let c =
            d("uv = \"off\"\nresult_max_size = \"2GB\"\nresult_parse_timeout = \"10s\"").unwrap();
        assert_eq!(c.daemon.result_limits.max_bytes, 2 << 30);
        assert_eq!(c.daemon.result_limits.max_time, Duration::from_secs(10));
        let c = d("uv = \"off\"\nstart_delay = \"2m\"").unwrap();
        assert_eq!(c.daemon.result_limits.max_bytes, DEFAULT_RESULT_MAX_BYTES);
        assert_eq!(
            c.daemon.result_limits.max_time,
            DEFAULT_RESULT_PARSE_TIMEOUT
        );
        assert_eq!(c.daemon.uv, None);
        assert_eq!(c.daemon.start_delay, Duration::from_secs(120));
        assert_eq!(c.daemon.env_build_timeout, Duration::from_secs(600));
        assert_eq!(c.daemon.build_user, "robotmk");
        assert_eq!(
            d("build_user = \"robot-builder\"")
                .unwrap()
                .daemon
                .build_user,
            "robot-builder"
        );
        for bad in ["\"root\"", "\"\"", "\" \""] {
            let e = d(&format!("build_user = {bad}")).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("daemon.build_user"), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_config_read_without_user_lookups_names_no_user_and_marks_the_job() {
        let text = "[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"1m\"\nuser = \"robotmk-no-such-user-cfg\"\n";
        let path = Path::new("/etc/x.toml");
        if !crate::service::sys::is_root() {
            // Not root: `user` is refused either way (only root runs jobs as others).
            assert!(parse_with(path, text, Users::NamesOnly).is_err());
            return;
        }
        let c = parse_with(path, text, Users::NamesOnly).expect("no lookup, no error");
        assert!(c.jobs[0].user.is_none() && c.jobs[0].user_deferred);
        let e = parse(path, text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("job[0].user"));
        assert!(e.message.contains("robotmk-no-such-user-cfg"), "{e}");
    }

    #[test]
    fn locate_daemon_survives_a_broken_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[daemon]\ninstance = \"u1\"\nstate_dir = \"st\"\n\n[[job]]\nname = \"a\"\nevery = \"5x\n",
        )
        .unwrap();
        let (inst, sd) = locate_daemon(&path).unwrap();
        assert_eq!(inst, "u1");
        assert_eq!(sd, dir.path().join("st"));
    }
}
