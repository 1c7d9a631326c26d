//! Where a job's Robot Framework result is: `{run_dir}/output.xml` for a robot job, what
//! `result` (or robot's own options on a command job's command line) says for the others, and
//! the robot options that would send it elsewhere. Pure: strings in, strings out.

use super::raw::{At, Kind, RawJob};
use crate::model::config::ConfigError;
use std::path::Path;

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
pub(super) fn result_option(arg: &str) -> Option<(&'static str, Option<&str>)> {
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

/// Where the run's Robot Framework result is: `{run_dir}/output.xml` for robot jobs, what
/// `result` says (or robot's own options say) for command jobs; inside `{run_dir}` for a job
/// with a `user`.
pub(super) fn result_of(
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
