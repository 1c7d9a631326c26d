//! One `[[job]]` table: its raw form, the `kind = "robot"` shorthand, and every rule a job
//! must satisfy (name, exactly one schedule, command or suite, timeout, environment).

use super::base::{
    check_name, lexical, Locator, Need, Place, ValueError, MAX_HOST_LEN, MAX_SERVICE_LEN,
    SELF_EXE_FALLBACK,
};
use crate::logic::schedule;
use crate::model::config::{
    CatchUp, CheckmkSettings, ConfigError, Job, Overlap, PluginSpec, Retry, RunSetup, Services,
    VARIABLES_FILE,
};
use crate::model::duration::Dur;
use crate::model::env::{EnvSpec, SourceKind};
use crate::model::schedule::Schedule;
use chrono::{DateTime, Utc};
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

/// One job's place in the file, so each check reports its line, field and job.
struct At<'a> {
    loc: &'a Locator<'a>,
    index: usize,
    name: &'a str,
    /// Where the job's table starts (for a missing key).
    start: usize,
}

impl At<'_> {
    fn field(&self, f: &str) -> Option<String> {
        Some(format!("job[{}].{f}", self.index))
    }

    /// The error at `offset`, in field `f`, naming the job.
    fn err(&self, offset: usize, f: &str, message: impl std::fmt::Display) -> ConfigError {
        let message = format!("job {:?}: {message}", self.name);
        self.loc.at(offset, self.field(f), message)
    }

    /// Where the preparation step reports a failure of what is at `offset` in field `f`.
    fn place(&self, offset: usize, f: &str) -> Place {
        Place(self.err(offset, f, ""))
    }
}

/// `timeout`, or the schedule's interval when it is not set.
fn timeout_of(
    at: &At,
    raw: &RawJob,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Duration, ConfigError> {
    match &raw.timeout {
        Some(t) if t.get_ref().0.is_zero() => {
            Err(at.err(t.span().start, "timeout", "must be longer than 0"))
        }
        Some(t) => Ok(t.get_ref().0),
        // Without a timeout a hanging runner would block its job forever; the interval is the
        // natural bound since a run longer than it is already late for the next one.
        None => Ok(schedule.nominal_interval(now)),
    }
}

/// The names of `env`: what a process environment can hold.
fn check_env_names(at: &At, raw: &RawJob) -> Result<(), ConfigError> {
    for key in raw.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            let m = format!("invalid environment variable name {key:?}");
            return Err(at.err(at.start, "env", m));
        }
    }
    Ok(())
}

/// Resolves and validates the `index`th job; what needs the host (its user, its environment
/// file, this program's path) is added to `needs` as job number `index`.
pub(super) fn resolve(
    loc: &Locator,
    index: usize,
    raw: Spanned<RawJob>,
    base: &Path,
    now: DateTime<Utc>,
    needs: &mut Vec<Need>,
) -> Result<Job, ConfigError> {
    let start = raw.span().start;
    let raw = raw.into_inner();
    let name = raw.name.get_ref().clone();
    check_name(&name)
        .map_err(|m| loc.at(raw.name.span().start, Some(format!("job[{index}].name")), m))?;
    let at = At {
        loc,
        index,
        name: &name,
        start,
    };
    let (host, runtime_warn, runtime_crit) = checkmk_settings(&at, &raw)?;
    let schedule = schedule_of(&at, &raw)?;
    if let Some(u) = &raw.user {
        needs.push(Need::User {
            job: index,
            name: u.get_ref().clone(),
            place: at.place(u.span().start, "user"),
        });
    }
    let pyenv = python_env(&at, &raw, base, needs)?;
    let kind = raw.kind.unwrap_or(if raw.suite.is_some() {
        Kind::Robot
    } else {
        Kind::Command
    });
    let plugin = plugin_spec(&at, &raw, kind)?;
    let (command, argument_file) = command_by_kind(&at, &raw, kind, base, pyenv.is_some(), needs)?;
    check_attempts(&at, &raw, kind)?;
    let result = result_of(&at, &raw, kind, &command)?;
    check_levels(&at, &raw)?;
    let timeout = timeout_of(&at, &raw, &schedule, now)?;
    check_env_names(&at, &raw)?;
    Ok(Job {
        name: name.into_boxed_str(),
        command: command.into(),
        robot: kind == Kind::Robot,
        schedule,
        timeout,
        overlap: raw.overlap.unwrap_or(Overlap::Skip),
        catch_up: raw.catch_up.unwrap_or(CatchUp::Once),
        setup: RunSetup {
            env: raw.env,
            working_dir: raw.working_dir.map(|w| lexical(&base.join(w))),
            argument_file,
        }
        .boxed(),
        result: result.map(String::into_boxed_str),
        attempts: raw.attempts.map_or(1, |a| a.into_inner()),
        services: raw.services.unwrap_or(Services::Job),
        checkmk: CheckmkSettings {
            host,
            runtime_warn,
            runtime_crit,
            test_runtime_warn: raw.test_runtime_warn.map(|d| d.0),
            test_runtime_crit: raw.test_runtime_crit.map(|d| d.0),
        }
        .boxed(),
        pyenv: pyenv.map(Box::new),
        // Looked up by the preparation step (see `Need::User`).
        user: None,
        user_deferred: raw.user.is_some(),
        plugin,
    })
}

/// The job's command line (and a robot job's argument file), as its kind builds it.
fn command_by_kind(
    at: &At,
    raw: &RawJob,
    kind: Kind,
    base: &Path,
    has_env: bool,
    needs: &mut Vec<Need>,
) -> Result<(Vec<String>, Option<String>), ConfigError> {
    Ok(match kind {
        Kind::Command => (command_of(at, raw)?, None),
        Kind::Plugin => {
            let command = command_of(at, raw)?;
            plugin_excludes(at, raw)?;
            (command, None)
        }
        Kind::Robot => robot_command(at, raw, base, has_env, needs)?,
    })
}

/// What a plugin job cannot have: a result file, per-test services, retries.
fn plugin_excludes(at: &At, raw: &RawJob) -> Result<(), ConfigError> {
    let start = raw.command.as_ref().map_or(at.start, |c| c.span().start);
    for (f, present) in [
        ("result", raw.result.is_some()),
        ("services", raw.services.is_some()),
        ("attempts", raw.attempts.is_some()),
    ] {
        if present {
            let m = format!("`{f}` does not apply to `kind = \"plugin\"` jobs");
            return Err(at.err(start, f, m));
        }
    }
    Ok(())
}

/// The plugin settings of a `kind = "plugin"` job (`service`, `timeout_state`); both keys
/// are an error on other jobs.
fn plugin_spec(at: &At, raw: &RawJob, kind: Kind) -> Result<Option<Box<PluginSpec>>, ConfigError> {
    if kind != Kind::Plugin {
        for (f, v) in [
            ("service", &raw.service),
            ("timeout_state", &raw.timeout_state),
        ] {
            if let Some(v) = v {
                let m = format!("`{f}` only applies to `kind = \"plugin\"` jobs");
                return Err(at.err(v.span().start, f, m));
            }
        }
        return Ok(None);
    }
    let service = match &raw.service {
        None => None,
        Some(s) => {
            check_service(s.get_ref()).map_err(|m| at.err(s.span().start, "service", m))?;
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
                let m = format!(
                    "{:?} is not a state; use \"ok\", \"warn\", \"crit\" or \"unknown\"",
                    t.get_ref()
                );
                return Err(at.err(t.span().start, "timeout_state", m));
            }
        },
    };
    Ok(Some(Box::new(PluginSpec {
        service,
        timeout_state,
    })))
}

/// A service name goes between the quotes of a local check line: Checkmk's parser takes no
/// `"` or `'` there, and nothing may break the line.
pub(crate) fn check_service(s: &str) -> Result<(), ValueError> {
    if s.trim().is_empty() {
        return Err(ValueError::ServiceEmpty);
    }
    if s.trim() != s {
        return Err(ValueError::ServiceSpace(s.to_string()));
    }
    if s.chars().count() > MAX_SERVICE_LEN {
        return Err(ValueError::ServiceTooLong);
    }
    if let Some(c) = s.chars().find(|c| {
        matches!(c, '"' | '\'' | '\\') || c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
    }) {
        return Err(ValueError::ServiceChar(s.to_string(), c));
    }
    // As the core keeps it: `Robotmk;` is `Robotmk` there. A name of the daemon's own could
    // hide its daemon line, another job's check, a test's (which no config names) or another
    // instance's, and Checkmk keeps the later of two lines with one name.
    let key = crate::logic::checkmk_names::core_key(s);
    if key.starts_with("Robotmk ") {
        return Err(ValueError::ServiceReserved(s.to_string()));
    }
    // `;` or `? !` would be a service without a name, which Checkmk cannot keep.
    if key.is_empty() {
        return Err(ValueError::ServiceNothingLeft(s.to_string()));
    }
    Ok(())
}

/// `every` (with its `offset`) or `cron`: exactly one.
fn schedule_of(at: &At, raw: &RawJob) -> Result<Schedule, ConfigError> {
    match (&raw.every, &raw.cron) {
        (Some(_), Some(c)) => Err(at.err(
            c.span().start,
            "cron",
            "set either `every` or `cron`, not both",
        )),
        (None, None) => Err(at.err(
            at.start,
            "every",
            "needs a schedule: `every = \"5m\"` or `cron = \"*/5 * * * *\"`",
        )),
        (Some(every), None) => {
            let interval = every.get_ref().0;
            if interval < Duration::from_secs(1) {
                return Err(at.err(every.span().start, "every", "must be at least 1s"));
            }
            if interval.subsec_millis() != 0 {
                return Err(at.err(every.span().start, "every", "must be whole seconds"));
            }
            let offset = raw
                .offset
                .as_ref()
                .map_or(Duration::ZERO, |o| o.get_ref().0);
            if offset >= interval {
                let pos = raw
                    .offset
                    .as_ref()
                    .map_or(every.span().start, |o| o.span().start);
                return Err(at.err(pos, "offset", "must be shorter than `every`"));
            }
            Ok(Schedule::Every { interval, offset })
        }
        (None, Some(c)) => {
            if let Some(o) = &raw.offset {
                let m = "`offset` only applies to `every` schedules";
                return Err(at.err(o.span().start, "offset", m));
            }
            let cron =
                schedule::parse_cron(c.get_ref()).map_err(|m| at.err(c.span().start, "cron", m))?;
            Ok(Schedule::Cron {
                text: c.get_ref().trim().into(),
                cron: std::sync::Arc::new(cron),
            })
        }
    }
}

/// A `command` job's argv, and no robot-only key beside it.
fn command_of(at: &At, raw: &RawJob) -> Result<Vec<String>, ConfigError> {
    let Some(cmd) = &raw.command else {
        return Err(at.err(
            at.start,
            "command",
            "needs `command = [\"program\", \"arg\", …]` (or `kind = \"robot\"` with `suite`)",
        ));
    };
    if cmd.get_ref().is_empty() || cmd.get_ref()[0].trim().is_empty() {
        let m = "must name a program as its first element";
        return Err(at.err(cmd.span().start, "command", m));
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
            let m = format!("`{f}` only applies to `kind = \"robot\"` jobs");
            return Err(at.err(cmd.span().start, f, m));
        }
    }
    Ok(cmd.get_ref().clone())
}

/// A program named in the config: a bare name is looked up on PATH (by the runner), a path is
/// relative to the config file.
fn program(p: &Path, base: &Path) -> String {
    if p.components().count() > 1 {
        lexical(&base.join(p)).display().to_string()
    } else {
        p.display().to_string()
    }
}

/// A `kind = "robot"` job's argv built from `suite` and its options, and the content of its
/// variables file; wrapped in the retry wrapper when it has `attempts`.
fn robot_command(
    at: &At,
    raw: &RawJob,
    base: &Path,
    has_env: bool,
    needs: &mut Vec<Need>,
) -> Result<(Vec<String>, Option<String>), ConfigError> {
    if let Some(cmd) = &raw.command {
        let m = "a `kind = \"robot\"` job builds its command from `suite`; drop `command`";
        return Err(at.err(cmd.span().start, "command", m));
    }
    let Some(suite) = &raw.suite else {
        let m = "a `kind = \"robot\"` job needs `suite = \"/path/to/suite\"`";
        return Err(at.err(at.start, "suite", m));
    };
    if raw.robot.is_some() && raw.python.is_some() {
        let m = "set either `robot` or `python`, not both";
        return Err(at.err(suite.span().start, "python", m));
    }
    // With an environment, `python` is only its base interpreter: the runs find `robot` and
    // `rebot` in the environment (its bin folder leads their PATH).
    let (py, robot) = match has_env {
        true => (None, None),
        false => (raw.python.as_deref(), raw.robot.as_deref()),
    };
    let mut cmd: Vec<String> = match (py, robot) {
        (Some(py), _) => vec![program(py, base), "-m".into(), "robot".into()],
        (None, Some(r)) => vec![program(r, base)],
        (None, None) => vec!["robot".into()],
    };
    cmd.extend(["--outputdir".into(), "{run_dir}".into()]);
    // Console colours and markers only clutter the captured stdout.
    cmd.extend(["--consolecolors".into(), "off".into()]);
    let argument_file = variables_file(at, raw, &mut cmd)?;
    check_robot_args(at, raw, suite.span().start)?;
    cmd.extend(raw.robot_args.iter().cloned());
    cmd.push(lexical(&base.join(suite.get_ref())).display().to_string());
    let attempts = raw.attempts.as_ref().map_or(1, |a| *a.get_ref());
    if attempts > 1 {
        cmd = retry_wrapper(raw, attempts, py, robot, base, cmd);
        needs.push(Need::SelfExe { job: at.index });
    }
    Ok((cmd, argument_file))
}

/// Variables often hold secrets (passwords): argv is visible to every local user in `ps`, so
/// they go to a 0600 argument file in the run folder instead.
fn variables_file(
    at: &At,
    raw: &RawJob,
    cmd: &mut Vec<String>,
) -> Result<Option<String>, ConfigError> {
    if raw.variables.is_empty() {
        return Ok(None);
    }
    let mut text = String::new();
    for (k, v) in &raw.variables {
        variable_line(k, v, &mut text).map_err(|m| at.err(at.start, "variables", m))?;
    }
    cmd.push("--argumentfile".into());
    cmd.push(format!("{{run_dir}}/{VARIABLES_FILE}"));
    Ok(Some(text))
}

/// No robot option in `robot_args` that would send results where the daemon does not look.
fn check_robot_args(at: &At, raw: &RawJob, suite_at: usize) -> Result<(), ConfigError> {
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
        return Err(at.err(
            suite_at,
            "robot_args",
            format!(
                "`{arg}` (robot's --{opt}) would send results where the daemon does not read them; a `kind = \"robot\"` job writes them to its run folder ({{run_dir}}/output.xml, log.html, report.html). Use a `command` job with `result = \"…\"` to place them yourself"
            ),
        ));
    }
    Ok(())
}

/// The retry wrapper around robot's argv: this very build (its path is the preparation
/// step's, see `Need::SelfExe`; until then the name it falls back to) runs robot and rebot;
/// see `app::attempts`.
fn retry_wrapper(
    raw: &RawJob,
    attempts: u32,
    py: Option<&Path>,
    robot: Option<&Path>,
    base: &Path,
    cmd: Vec<String>,
) -> Vec<String> {
    let rebot: Vec<String> = match (py, robot) {
        (Some(py), _) => vec![program(py, base), "-m".into(), "robot.rebot".into()],
        (None, Some(r)) if r.components().count() > 1 => {
            let r = PathBuf::from(program(r, base));
            vec![r
                .with_file_name(format!("rebot{}", std::env::consts::EXE_SUFFIX))
                .display()
                .to_string()]
        }
        _ => vec!["rebot".into()],
    };
    let mut wrapped = vec![
        SELF_EXE_FALLBACK.to_string(),
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
    wrapped
}

/// `attempts` only for robot jobs, 1 to 10; `retry` only with `attempts`.
fn check_attempts(at: &At, raw: &RawJob, kind: Kind) -> Result<(), ConfigError> {
    if let Some(a) = &raw.attempts {
        if kind != Kind::Robot {
            let m = "`attempts` only applies to `kind = \"robot\"` jobs";
            return Err(at.err(a.span().start, "attempts", m));
        }
        if !(1..=10).contains(a.get_ref()) {
            return Err(at.err(a.span().start, "attempts", "must be between 1 and 10"));
        }
    }
    if raw.retry.is_some() && raw.attempts.is_none() {
        let m = "`retry` needs `attempts = N` (N > 1)";
        return Err(at.err(at.start, "retry", m));
    }
    Ok(())
}

/// Where the run's Robot Framework result is: `{run_dir}/output.xml` for robot jobs, what
/// `result` says (or robot's own options say) for command jobs; inside `{run_dir}` for a job
/// with a `user`.
fn result_of(
    at: &At,
    raw: &RawJob,
    kind: Kind,
    command: &[String],
) -> Result<Option<String>, ConfigError> {
    let result = match (kind, &raw.result) {
        (Kind::Robot, Some(r)) => {
            return Err(at.err(
                r.span().start,
                "result",
                "a `kind = \"robot\"` job always writes {run_dir}/output.xml; `result` is for `command` jobs",
            ))
        }
        (Kind::Robot, None) => Some("{run_dir}/output.xml".to_string()),
        (Kind::Command, Some(r)) if r.get_ref().trim().is_empty() => {
            return Err(at.err(r.span().start, "result", "must not be empty"))
        }
        (Kind::Command, Some(r)) => Some(r.get_ref().clone()),
        (Kind::Command, None) => robot_result_of(command),
        (Kind::Plugin, _) => None,
    };
    // The daemon reads a `user` job's results only inside that user's {run_dir}: anywhere
    // else the user could point root at any file (see `logic::robot::RunFolder`).
    if let (Some(_), Some(r)) = (&raw.user, &result) {
        if !inside_run_dir(r, raw.working_dir.is_some()) {
            let pos = raw.result.as_ref().map_or(at.start, |r| r.span().start);
            let which = if raw.result.is_some() {
                "result"
            } else {
                "command"
            };
            return Err(at.err(
                pos,
                which,
                format!(
                    "the result {r:?} is outside {{run_dir}}: a job with `user` must write its result inside its run folder (e.g. \"{{run_dir}}/output.xml\"); the daemon reads nothing else the user writes"
                ),
            ));
        }
    }
    Ok(result)
}

/// The per-test runtime levels: WARN not above CRIT.
fn check_levels(at: &At, raw: &RawJob) -> Result<(), ConfigError> {
    if let (Some(w), Some(c)) = (&raw.test_runtime_warn, &raw.test_runtime_crit) {
        if w.0 > c.0 {
            let m = "must not be longer than `test_runtime_crit`";
            return Err(at.err(at.start, "test_runtime_warn", m));
        }
    }
    Ok(())
}

/// The Python environment of a robot job (`requirements` or `pyproject`), checked: `robot`
/// cannot name another runner, and the file must be readable now (a typo is a config error,
/// not a failed build at 3 am: the preparation step reads it, see `Need::EnvSource`).
fn python_env(
    at: &At,
    raw: &RawJob,
    base: &Path,
    needs: &mut Vec<Need>,
) -> Result<Option<EnvSpec>, ConfigError> {
    let (file, kind, key) = match (&raw.requirements, &raw.pyproject) {
        (None, None) => return Ok(None),
        (Some(_), Some(p)) => {
            let m = "set either `requirements` or `pyproject`, not both";
            return Err(at.err(p.span().start, "pyproject", m));
        }
        (Some(r), None) => (r, SourceKind::Requirements, "requirements"),
        (None, Some(p)) => (p, SourceKind::Pyproject, "pyproject"),
    };
    if raw.robot.is_some() {
        return Err(at.err(
            file.span().start,
            "robot",
            format!(
                "`robot` cannot be combined with `{key}`: the job runs the environment's robot (`python` names the interpreter the environment is built from)"
            ),
        ));
    }
    needs.push(Need::EnvSource {
        job: at.index,
        place: at.place(file.span().start, key),
    });
    let python = match &raw.python {
        Some(p) => program(p, base),
        None if cfg!(windows) => "python".into(),
        None => "python3".into(),
    };
    Ok(Some(EnvSpec {
        source: lexical(&base.join(file.get_ref())),
        kind,
        python,
        shared: raw.user.is_some(),
        job_env: raw.user.is_some().then(|| raw.env.clone()),
    }))
}

/// The Checkmk side of a job: its piggyback host and runtime levels.
#[allow(clippy::type_complexity)]
fn checkmk_settings(
    at: &At,
    raw: &RawJob,
) -> Result<(Option<String>, Option<Duration>, Option<Duration>), ConfigError> {
    let host = match &raw.host {
        Some(h) => {
            let v = h.get_ref();
            check_host(v).map_err(|m| at.err(h.span().start, "host", m))?;
            Some(v.clone())
        }
        None => None,
    };
    let level = |l: &Option<Spanned<Dur>>, f: &str| match l {
        Some(d) if d.get_ref().0.is_zero() => {
            Err(at.err(d.span().start, f, "must be longer than 0"))
        }
        Some(d) => Ok(Some(d.get_ref().0)),
        None => Ok(None),
    };
    let warn = level(&raw.runtime_warn, "runtime_warn")?;
    let crit = level(&raw.runtime_crit, "runtime_crit")?;
    if let (Some(w), Some(c), Some(a)) = (warn, crit, &raw.runtime_crit) {
        if w > c {
            let m = "must not be shorter than `runtime_warn`";
            return Err(at.err(a.span().start, "runtime_crit", m));
        }
    }
    Ok((host, warn, crit))
}

/// A piggyback host name goes verbatim into `<<<<NAME>>>>`: Checkmk's host name characters
/// only, so that no value can end the marker early or inject a section.
pub(crate) fn check_host(h: &str) -> Result<(), ValueError> {
    if h.is_empty() {
        return Err(ValueError::HostEmpty);
    }
    if h.len() > MAX_HOST_LEN {
        return Err(ValueError::HostTooLong);
    }
    if let Some(c) = h
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(ValueError::HostChar(h.to_string(), c));
    }
    if h.starts_with(['.', '-']) {
        return Err(ValueError::HostStart(h.to_string()));
    }
    Ok(())
}

/// One `--variable NAME:value` line of robot's argument file. Robot reads such a file line
/// by line and strips each value, so a value with a line break or surrounding spaces could not
/// arrive as written: that is a config error rather than a silently changed value.
fn variable_line(name: &str, value: &str, out: &mut String) -> Result<(), ValueError> {
    if name.is_empty() || name.contains([':', '\n', '\r']) || name.trim() != name {
        return Err(ValueError::VariableName(name.to_string()));
    }
    if value.contains(['\n', '\r']) || value.trim() != value {
        return Err(ValueError::VariableValue(name.to_string()));
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
