//! A job's command line: a `command` job's argv, a `kind = "robot"` job's argv built from its
//! suite and options (with its variables in an argument file, and the retry wrapper around it
//! when it has `attempts`). Pure: what needs the host (this program's path) is a `Need`.

use super::raw::{At, RawJob};
use super::result::result_option;
use crate::logic::config::base::{lexical, Need, ValueError, SELF_EXE_FALLBACK};
use crate::model::config::{ConfigError, Retry, VARIABLES_FILE};
use std::path::{Path, PathBuf};

/// A `command` job's argv, and no robot-only key beside it.
pub(super) fn command_of(at: &At, raw: &RawJob) -> Result<Vec<String>, ConfigError> {
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
pub(super) fn program(p: &Path, base: &Path) -> String {
    if p.components().count() > 1 {
        lexical(&base.join(p)).display().to_string()
    } else {
        p.display().to_string()
    }
}

/// A `kind = "robot"` job's argv built from `suite` and its options, and the content of its
/// variables file; wrapped in the retry wrapper when it has `attempts`.
pub(super) fn robot_command(
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
