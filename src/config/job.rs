//! One `[[job]]` table: its raw form, the `kind = "robot"` shorthand, and every rule a job
//! must satisfy (name, exactly one schedule, command or suite, timeout, environment).

use super::duration::Dur;
use super::{absolute, check_name, CatchUp, ConfigError, Job, Locator, Overlap, Services, Users};
use crate::robot::attempts::Retry;
use crate::schedule::{self, Schedule};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The kind of runner a job describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Command,
    Robot,
    /// A Nagios-compatible plugin: exit code → state, output → summary, details, metrics.
    Plugin,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    name: Spanned<String>,
    kind: Option<Kind>,
    command: Option<Spanned<Vec<String>>>,
    suite: Option<Spanned<PathBuf>>,
    #[serde(default)]
    robot_args: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    robot: Option<PathBuf>,
    python: Option<PathBuf>,
    every: Option<Spanned<Dur>>,
    offset: Option<Spanned<Dur>>,
    cron: Option<Spanned<String>>,
    timeout: Option<Spanned<Dur>>,
    overlap: Option<Overlap>,
    catch_up: Option<CatchUp>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    working_dir: Option<PathBuf>,
    result: Option<Spanned<String>>,
    attempts: Option<Spanned<u32>>,
    retry: Option<Retry>,
    services: Option<Services>,
    test_runtime_warn: Option<Dur>,
    test_runtime_crit: Option<Dur>,
    host: Option<Spanned<String>>,
    runtime_warn: Option<Spanned<Dur>>,
    runtime_crit: Option<Spanned<Dur>>,
    requirements: Option<Spanned<PathBuf>>,
    pyproject: Option<Spanned<PathBuf>>,
    user: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    timeout_state: Option<Spanned<String>>,
}

/// Whether a result template stays inside the runner's `{run_dir}`: below it, or relative
/// (to the working directory, which is `{run_dir}` unless `working_dir` is set), and no `..`.
fn inside_run_dir(r: &str, has_working_dir: bool) -> bool {
    let rest = match r.strip_prefix("{run_dir}") {
        Some(rest) => match rest.strip_prefix(['/', '\\']) {
            Some(rest) => rest,
            None => return false,
        },
        None if has_working_dir || r.contains("{run_dir}") => return false,
        None => r,
    };
    let p = Path::new(rest);
    !rest.is_empty()
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

/// robot options that would send its results somewhere the daemon does not look, with the
/// shortest prefix rejected for each (robot takes unambiguous prefixes of long options;
/// `--outp` is ambiguous to robot too, but says more as a config error than as exit 252).
const RESULT_OPTIONS: &[(&str, usize, char)] = &[
    ("output", 4, 'o'),
    ("outputdir", 7, 'd'),
    ("log", 3, 'l'),
    ("report", 6, 'r'),
    ("xunit", 2, 'x'),
];

/// The result option `arg` sets, if any (`--output`, `--outputd=x`, `-d`, `-ofile`), and
/// the value it was given inline.
fn result_option(arg: &str) -> Option<(&'static str, Option<&str>)> {
    if let Some(long) = arg.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (long, None),
        };
        let name = name.to_ascii_lowercase();
        return RESULT_OPTIONS
            .iter()
            .find(|(full, min, _)| name.len() >= *min && full.starts_with(name.as_str()))
            .map(|(full, _, _)| (*full, value));
    }
    let short = arg.strip_prefix('-')?;
    let c = short.chars().next()?;
    RESULT_OPTIONS
        .iter()
        .find(|(_, _, s)| *s == c)
        .map(|(full, _, _)| (*full, Some(&short[1..]).filter(|v| !v.is_empty())))
}
/// Where a command job that runs robot itself (`robot …`, `python -m robot …`) writes its
/// result, read from its options as robot reads them (the last one wins; relative to
/// `--outputdir`, which is relative to the working directory). `None` for other commands
/// and for `--output NONE`.
fn robot_result_of(argv: &[String]) -> Option<String> {
    let stem = |a: &String| {
        Path::new(a)
            .file_stem()
            .map(|s| s.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let program = argv.first()?;
    let args = if stem(program) == "robot" {
        &argv[1..]
    } else if stem(program).starts_with("python") {
        let m = argv
            .windows(2)
            .position(|w| w[0] == "-m" && w[1] == "robot")?;
        &argv[m + 2..]
    } else {
        return None;
    };
    let (mut dir, mut out) = (None::<String>, "output.xml".to_string());
    let mut i = 0;
    while i < args.len() {
        if let Some((opt, inline)) = result_option(&args[i]) {
            let value = match inline {
                Some(v) => Some(v.to_string()),
                None => {
                    i += 1;
                    args.get(i).cloned()
                }
            };
            match (opt, value) {
                ("output", Some(v)) => out = v,
                ("outputdir", Some(v)) => dir = Some(v),
                _ => {}
            }
        }
        i += 1;
    }
    if out.eq_ignore_ascii_case("NONE") {
        return None;
    }
    Some(match dir {
        Some(d) if !Path::new(&out).is_absolute() => format!("{d}/{out}"),
        _ => out,
    })
}

/// Resolves and validates the `index`th job.
pub(super) fn resolve(
    loc: &Locator,
    index: usize,
    raw: Spanned<RawJob>,
    base: &Path,
    users: Users,
) -> Result<Job, ConfigError> {
    let job_start = raw.span().start;
    let raw = raw.into_inner();
    let field = |f: &str| Some(format!("job[{index}].{f}"));
    let name = raw.name.get_ref().clone();
    check_name(&name).map_err(|m| loc.at(raw.name.span().start, field("name"), m))?;
    let named = |m: String| format!("job {name:?}: {m}");
    let (host, runtime_warn, runtime_crit) = checkmk_settings(loc, index, &name, &raw)?;

    let schedule = match (&raw.every, &raw.cron) {
        (Some(_), Some(c)) => {
            return Err(loc.at(
                c.span().start,
                field("cron"),
                named("set either `every` or `cron`, not both".into()),
            ))
        }
        (None, None) => {
            return Err(loc.at(
                job_start,
                field("every"),
                named("needs a schedule: `every = \"5m\"` or `cron = \"*/5 * * * *\"`".into()),
            ))
        }
        (Some(every), None) => {
            let interval = every.get_ref().0;
            if interval < Duration::from_secs(1) {
                return Err(loc.at(
                    every.span().start,
                    field("every"),
                    named("must be at least 1s".into()),
                ));
            }
            if interval.subsec_millis() != 0 {
                return Err(loc.at(
                    every.span().start,
                    field("every"),
                    named("must be whole seconds".into()),
                ));
            }
            let offset = raw
                .offset
                .as_ref()
                .map_or(Duration::ZERO, |o| o.get_ref().0);
            if offset >= interval {
                let at = raw
                    .offset
                    .as_ref()
                    .map_or(every.span().start, |o| o.span().start);
                return Err(loc.at(
                    at,
                    field("offset"),
                    named("must be shorter than `every`".into()),
                ));
            }
            Schedule::Every { interval, offset }
        }
        (None, Some(c)) => {
            if let Some(o) = &raw.offset {
                return Err(loc.at(
                    o.span().start,
                    field("offset"),
                    named("`offset` only applies to `every` schedules".into()),
                ));
            }
            let cron = schedule::parse_cron(c.get_ref())
                .map_err(|m| loc.at(c.span().start, field("cron"), named(m)))?;
            Schedule::Cron {
                text: c.get_ref().trim().to_string(),
                cron: Box::new(cron),
            }
        }
    };

    let user = match &raw.user {
        None => None,
        Some(u) => {
            let at = |m: String| loc.at(u.span().start, field("user"), named(m));
            let info = match users {
                Users::LookUp => {
                    Some(crate::sys::lookup_user(u.get_ref()).map_err(|e| at(e.to_string()))?)
                }
                Users::NamesOnly => None,
            };
            if !crate::sys::is_root() {
                return Err(at(format!(
                    "running a job as {:?} needs the daemon to run as root",
                    u.get_ref()
                )));
            }
            info
        }
    };
    let pyenv = python_env(loc, index, &name, &raw, base, raw.user.is_some())?;
    let mut argument_file = None;
    let kind = raw.kind.unwrap_or(if raw.suite.is_some() {
        Kind::Robot
    } else {
        Kind::Command
    });
    let plugin = plugin_spec(loc, index, &name, &raw, kind)?;
    let command = match kind {
        Kind::Command | Kind::Plugin => {
            let Some(cmd) = raw.command else {
                return Err(loc.at(
                    job_start,
                    field("command"),
                    named("needs `command = [\"program\", \"arg\", …]` (or `kind = \"robot\"` with `suite`)".into()),
                ));
            };
            if cmd.get_ref().is_empty() || cmd.get_ref()[0].trim().is_empty() {
                return Err(loc.at(
                    cmd.span().start,
                    field("command"),
                    named("must name a program as its first element".into()),
                ));
            }
            for (f, present) in [
                ("suite", raw.suite.is_some()),
                ("robot_args", !raw.robot_args.is_empty()),
                ("variables", !raw.variables.is_empty()),
                ("robot", raw.robot.is_some()),
                ("python", raw.python.is_some()),
                ("requirements", raw.requirements.is_some()),
                ("pyproject", raw.pyproject.is_some()),
            ] {
                if present {
                    return Err(loc.at(
                        cmd.span().start,
                        field(f),
                        named(format!("`{f}` only applies to `kind = \"robot\"` jobs")),
                    ));
                }
            }
            if kind == Kind::Plugin {
                for (f, present) in [
                    ("result", raw.result.is_some()),
                    ("services", raw.services.is_some()),
                    ("attempts", raw.attempts.is_some()),
                ] {
                    if present {
                        return Err(loc.at(
                            cmd.span().start,
                            field(f),
                            named(format!("`{f}` does not apply to `kind = \"plugin\"` jobs")),
                        ));
                    }
                }
            }
            cmd.into_inner()
        }
        Kind::Robot => {
            if let Some(cmd) = &raw.command {
                return Err(loc.at(
                    cmd.span().start,
                    field("command"),
                    named(
                        "a `kind = \"robot\"` job builds its command from `suite`; drop `command`"
                            .into(),
                    ),
                ));
            }
            let Some(suite) = raw.suite else {
                return Err(loc.at(
                    job_start,
                    field("suite"),
                    named("a `kind = \"robot\"` job needs `suite = \"/path/to/suite\"`".into()),
                ));
            };
            if raw.robot.is_some() && raw.python.is_some() {
                return Err(loc.at(
                    suite.span().start,
                    field("python"),
                    named("set either `robot` or `python`, not both".into()),
                ));
            }
            // A bare name is looked up on PATH; a path is relative to the config file.
            let exe = |p: &PathBuf| {
                if p.components().count() > 1 {
                    absolute(&base.join(p)).display().to_string()
                } else {
                    p.display().to_string()
                }
            };
            // With an environment, `python` is only its base interpreter: the runs find
            // `robot` and `rebot` in the environment (its bin folder leads their PATH).
            let (py_cmd, robot_cmd) = match pyenv {
                Some(_) => (None, None),
                None => (raw.python.clone(), raw.robot.clone()),
            };
            let mut cmd: Vec<String> = match (&py_cmd, &robot_cmd) {
                (Some(py), _) => vec![exe(py), "-m".into(), "robot".into()],
                (None, Some(r)) => vec![exe(r)],
                (None, None) => vec!["robot".into()],
            };
            cmd.extend(["--outputdir".into(), "{run_dir}".into()]);
            // Console colours and markers only clutter the captured stdout.
            cmd.extend(["--consolecolors".into(), "off".into()]);
            // Variables often hold secrets (passwords): argv is visible to every local user
            // in `ps`, so they go to a 0600 argument file in the run folder instead.
            if !raw.variables.is_empty() {
                let mut text = String::new();
                for (k, v) in &raw.variables {
                    variable_line(k, v, &mut text)
                        .map_err(|m| loc.at(job_start, field("variables"), named(m)))?;
                }
                argument_file = Some(text);
                cmd.push("--argumentfile".into());
                cmd.push(format!("{{run_dir}}/{}", super::VARIABLES_FILE));
            }
            for (i, arg) in raw.robot_args.iter().enumerate() {
                let Some((opt, inline)) = result_option(arg) else {
                    continue;
                };
                let value = inline.or(raw.robot_args.get(i + 1).map(String::as_str));
                // Not writing a log, report or xunit file sends nothing elsewhere.
                if opt != "output"
                    && opt != "outputdir"
                    && value.is_some_and(|v| v.eq_ignore_ascii_case("NONE"))
                {
                    continue;
                }
                return Err(loc.at(
                    suite.span().start,
                    field("robot_args"),
                    named(format!(
                        "`{arg}` (robot's --{opt}) would send results where the daemon does not read them; a `kind = \"robot\"` job writes them to its run folder ({{run_dir}}/output.xml, log.html, report.html). Use a `command` job with `result = \"…\"` to place them yourself"
                    )),
                ));
            }
            cmd.extend(raw.robot_args.iter().cloned());
            cmd.push(absolute(&base.join(suite.get_ref())).display().to_string());
            let attempts = raw.attempts.as_ref().map_or(1, |a| *a.get_ref());
            if attempts > 1 {
                // The retry wrapper (this very build, see `sys::self_exe`) runs robot and
                // rebot; see robot::attempts.
                let rebot: Vec<String> = match (&py_cmd, &robot_cmd) {
                    (Some(py), _) => vec![exe(py), "-m".into(), "robot.rebot".into()],
                    (None, Some(r)) if r.components().count() > 1 => {
                        let r = PathBuf::from(exe(r));
                        vec![r
                            .with_file_name(format!("rebot{}", std::env::consts::EXE_SUFFIX))
                            .display()
                            .to_string()]
                    }
                    _ => vec!["rebot".into()],
                };
                let me = crate::sys::self_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "robotmk-daemon".into());
                let mut wrapped = vec![
                    me,
                    "robot-attempts".into(),
                    "--run-dir".into(),
                    "{run_dir}".into(),
                    "--attempts".into(),
                    attempts.to_string(),
                    "--retry".into(),
                    raw.retry.unwrap_or(Retry::Failed).as_str().into(),
                    "--rebot-json".into(),
                    serde_json::to_string(&rebot).unwrap_or_default(),
                    "--".into(),
                ];
                wrapped.extend(cmd);
                cmd = wrapped;
            }
            cmd
        }
    };

    if let Some(a) = &raw.attempts {
        if kind != Kind::Robot {
            return Err(loc.at(
                a.span().start,
                field("attempts"),
                named("`attempts` only applies to `kind = \"robot\"` jobs".into()),
            ));
        }
        if !(1..=10).contains(a.get_ref()) {
            return Err(loc.at(
                a.span().start,
                field("attempts"),
                named("must be between 1 and 10".into()),
            ));
        }
    }
    if raw.retry.is_some() && raw.attempts.is_none() {
        return Err(loc.at(
            job_start,
            field("retry"),
            named("`retry` needs `attempts = N` (N > 1)".into()),
        ));
    }
    let result = match (kind, &raw.result) {
        (Kind::Robot, Some(r)) => {
            return Err(loc.at(
                r.span().start,
                field("result"),
                named("a `kind = \"robot\"` job always writes {run_dir}/output.xml; `result` is for `command` jobs".into()),
            ))
        }
        (Kind::Robot, None) => Some("{run_dir}/output.xml".to_string()),
        (Kind::Command, Some(r)) if r.get_ref().trim().is_empty() => {
            return Err(loc.at(r.span().start, field("result"), named("must not be empty".into())))
        }
        (Kind::Command, Some(r)) => Some(r.get_ref().clone()),
        (Kind::Command, None) => robot_result_of(&command),
        (Kind::Plugin, _) => None,
    };
    // The daemon reads a `user` job's results only inside that user's {run_dir}: anywhere
    // else the user could point root at any file (see `robot::RunFolder`).
    if let (Some(_), Some(r)) = (&user, &result) {
        if !inside_run_dir(r, raw.working_dir.is_some()) {
            let at = raw.result.as_ref().map_or(job_start, |r| r.span().start);
            let which = if raw.result.is_some() {
                "result"
            } else {
                "command"
            };
            return Err(loc.at(
                at,
                field(which),
                named(format!(
                    "the result {r:?} is outside {{run_dir}}: a job with `user` must write its result inside its run folder (e.g. \"{{run_dir}}/output.xml\"); the daemon reads nothing else the user writes"
                )),
            ));
        }
    }
    if let (Some(w), Some(c)) = (&raw.test_runtime_warn, &raw.test_runtime_crit) {
        if w.0 > c.0 {
            return Err(loc.at(
                job_start,
                field("test_runtime_warn"),
                named("must not be longer than `test_runtime_crit`".into()),
            ));
        }
    }

    let timeout = match &raw.timeout {
        Some(t) if t.get_ref().0.is_zero() => {
            return Err(loc.at(
                t.span().start,
                field("timeout"),
                named("must be longer than 0".into()),
            ))
        }
        Some(t) => t.get_ref().0,
        // Without a timeout a hanging runner would block its job forever; the interval is the
        // natural bound since a run longer than it is already late for the next one.
        None => schedule.nominal_interval(chrono::Utc::now()),
    };

    for key in raw.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(loc.at(
                job_start,
                field("env"),
                named(format!("invalid environment variable name {key:?}")),
            ));
        }
    }

    Ok(Job {
        name,
        command,
        robot: kind == Kind::Robot,
        schedule,
        timeout,
        overlap: raw.overlap.unwrap_or(Overlap::Skip),
        catch_up: raw.catch_up.unwrap_or(CatchUp::Once),
        env: raw.env,
        working_dir: raw
            .working_dir
            .map(|w| absolute(&base.join(w)).into_boxed_path()),
        argument_file,
        result,
        attempts: raw.attempts.map_or(1, |a| a.into_inner()),
        services: raw.services.unwrap_or(Services::Job),
        test_runtime_warn: raw.test_runtime_warn.map(|d| d.0),
        test_runtime_crit: raw.test_runtime_crit.map(|d| d.0),
        host,
        runtime_warn,
        runtime_crit,
        pyenv: pyenv.map(Box::new),
        user: user.map(Box::new),
        user_deferred: raw.user.is_some() && users == Users::NamesOnly,
        plugin,
    })
}

/// Longest `service` name.
const MAX_SERVICE_LEN: usize = 200;

/// The plugin settings of a `kind = "plugin"` job (`service`, `timeout_state`); both keys
/// are an error on other jobs.
fn plugin_spec(
    loc: &Locator,
    index: usize,
    name: &str,
    raw: &RawJob,
    kind: Kind,
) -> Result<Option<Box<super::PluginSpec>>, ConfigError> {
    let field = |f: &str| Some(format!("job[{index}].{f}"));
    let named = |m: String| format!("job {name:?}: {m}");
    if kind != Kind::Plugin {
        for (f, v) in [
            ("service", &raw.service),
            ("timeout_state", &raw.timeout_state),
        ] {
            if let Some(v) = v {
                return Err(loc.at(
                    v.span().start,
                    field(f),
                    named(format!("`{f}` only applies to `kind = \"plugin\"` jobs")),
                ));
            }
        }
        return Ok(None);
    }
    let service = match &raw.service {
        None => None,
        Some(s) => {
            check_service(s.get_ref())
                .map_err(|m| loc.at(s.span().start, field("service"), named(m)))?;
            Some(s.get_ref().clone())
        }
    };
    let timeout_state = match &raw.timeout_state {
        None => 2,
        Some(t) => match t.get_ref().to_ascii_lowercase().as_str() {
            "ok" => 0,
            "warn" | "warning" => 1,
            "crit" | "critical" => 2,
            "unknown" => 3,
            _ => {
                return Err(loc.at(
                    t.span().start,
                    field("timeout_state"),
                    named(format!(
                        "{:?} is not a state; use \"ok\", \"warn\", \"crit\" or \"unknown\"",
                        t.get_ref()
                    )),
                ))
            }
        },
    };
    Ok(Some(Box::new(super::PluginSpec {
        service,
        timeout_state,
    })))
}

/// A service name goes between the quotes of a local check line: Checkmk's parser takes no
/// `"` or `'` there, and nothing may break the line.
pub fn check_service(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("`service` must not be empty".into());
    }
    if s.trim() != s {
        return Err(format!("`service` {s:?} starts or ends with a space"));
    }
    if s.chars().count() > MAX_SERVICE_LEN {
        return Err(format!(
            "`service` is longer than {MAX_SERVICE_LEN} characters"
        ));
    }
    if let Some(c) = s.chars().find(|c| {
        matches!(c, '"' | '\'' | '\\') || c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
    }) {
        return Err(format!(
            "`service` {s:?} contains {c:?}, which a Checkmk service name of a local check cannot carry"
        ));
    }
    Ok(())
}

/// The Python environment of a robot job (`requirements` or `pyproject`), checked: the file
/// must be readable now (a typo is a config error, not a failed build at 3 am), and `robot`
/// cannot name another runner.
fn python_env(
    loc: &Locator,
    index: usize,
    name: &str,
    raw: &RawJob,
    base: &Path,
    shared: bool,
) -> Result<Option<crate::pyenv::EnvSpec>, ConfigError> {
    use crate::pyenv::{EnvSpec, SourceKind};
    let field = |f: &str| Some(format!("job[{index}].{f}"));
    let named = |m: String| format!("job {name:?}: {m}");
    let (file, kind, key) = match (&raw.requirements, &raw.pyproject) {
        (None, None) => return Ok(None),
        (Some(_), Some(p)) => {
            return Err(loc.at(
                p.span().start,
                field("pyproject"),
                named("set either `requirements` or `pyproject`, not both".into()),
            ))
        }
        (Some(r), None) => (r, SourceKind::Requirements, "requirements"),
        (None, Some(p)) => (p, SourceKind::Pyproject, "pyproject"),
    };
    if raw.robot.is_some() {
        return Err(loc.at(
            file.span().start,
            field("robot"),
            named(format!(
                "`robot` cannot be combined with `{key}`: the job runs the environment's robot (`python` names the interpreter the environment is built from)"
            )),
        ));
    }
    let source = absolute(&base.join(file.get_ref()));
    if let Err(e) = crate::state::file::read(
        &source,
        crate::pyenv::SOURCE_CAP,
        crate::state::file::Links::Follow,
    ) {
        return Err(loc.at(
            file.span().start,
            field(key),
            named(format!("cannot read {}: {e}", source.display())),
        ));
    }
    let python = match &raw.python {
        Some(p) if p.components().count() > 1 => absolute(&base.join(p)).display().to_string(),
        Some(p) => p.display().to_string(),
        None if cfg!(windows) => "python".into(),
        None => "python3".into(),
    };
    Ok(Some(EnvSpec {
        source,
        kind,
        python,
        shared,
    }))
}

/// Longest piggyback host name (a DNS name's limit).
const MAX_HOST_LEN: usize = 253;

/// The Checkmk side of a job: its piggyback host and runtime levels.
#[allow(clippy::type_complexity)]
fn checkmk_settings(
    loc: &Locator,
    index: usize,
    name: &str,
    raw: &RawJob,
) -> Result<(Option<String>, Option<Duration>, Option<Duration>), ConfigError> {
    let field = |f: &str| Some(format!("job[{index}].{f}"));
    let named = |m: String| format!("job {name:?}: {m}");
    let host = match &raw.host {
        Some(h) => {
            let v = h.get_ref();
            check_host(v).map_err(|m| loc.at(h.span().start, field("host"), named(m)))?;
            Some(v.clone())
        }
        None => None,
    };
    let level = |l: &Option<Spanned<Dur>>, f: &str| match l {
        Some(d) if d.get_ref().0.is_zero() => Err(loc.at(
            d.span().start,
            field(f),
            named("must be longer than 0".into()),
        )),
        Some(d) => Ok(Some(d.get_ref().0)),
        None => Ok(None),
    };
    let warn = level(&raw.runtime_warn, "runtime_warn")?;
    let crit = level(&raw.runtime_crit, "runtime_crit")?;
    if let (Some(w), Some(c), Some(at)) = (warn, crit, &raw.runtime_crit) {
        if w > c {
            return Err(loc.at(
                at.span().start,
                field("runtime_crit"),
                named("must not be shorter than `runtime_warn`".into()),
            ));
        }
    }
    Ok((host, warn, crit))
}

/// A piggyback host name goes verbatim into `<<<<NAME>>>>`: Checkmk's host name characters
/// only, so that no value can end the marker early or inject a section.
pub fn check_host(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("`host` must not be empty (leave it out for the agent's own host)".into());
    }
    if h.len() > MAX_HOST_LEN {
        return Err(format!("`host` is longer than {MAX_HOST_LEN} characters"));
    }
    if let Some(c) = h
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "`host` {h:?} contains {c:?}; a Checkmk host name has only letters, digits, '_', '.' and '-'"
        ));
    }
    if h.starts_with(['.', '-']) {
        return Err(format!(
            "`host` {h:?} must start with a letter, digit or '_'"
        ));
    }
    Ok(())
}

/// One `--variable NAME:value` line of robot's argument file. Robot reads such a file line
/// by line and strips each value, so a value with a line break or surrounding spaces could not
/// arrive as written: that is a config error rather than a silently changed value.
fn variable_line(name: &str, value: &str, out: &mut String) -> Result<(), String> {
    if name.is_empty() || name.contains([':', '\n', '\r']) || name.trim() != name {
        return Err(format!("invalid variable name {name:?}"));
    }
    if value.contains(['\n', '\r']) || value.trim() != value {
        return Err(format!(
            "variable {name:?}: a value cannot contain line breaks or start or end with spaces (robot's argument file strips them)"
        ));
    }
    out.push_str("--variable ");
    out.push_str(name);
    out.push(':');
    out.push_str(value);
    out.push('\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::inside_run_dir;

    #[test]
    fn a_result_inside_run_dir_is_told_from_one_outside() {
        for (r, wd, inside) in [
            ("{run_dir}/output.xml", false, true),
            ("{run_dir}/out/./o.json", true, true),
            ("{run_dir}\\o.xml", false, true),
            ("output.xml", false, true),
            // Relative to a working directory that is not the run folder.
            ("output.xml", true, false),
            ("{run_dir}/../x.xml", false, false),
            ("{run_dir}", false, false),
            ("{run_dir}x/o.xml", false, false),
            ("/abs/o.xml", false, false),
            ("../o.xml", false, false),
            ("/x/{run_dir}/o.xml", false, false),
        ] {
            assert_eq!(inside_run_dir(r, wd), inside, "{r} (working_dir: {wd})");
        }
    }
}
