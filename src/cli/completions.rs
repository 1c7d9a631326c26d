//! Shell completions (bash, zsh, fish, PowerShell, elvish) and the man page, generated from
//! the clap definitions in [`crate::cli`], so they never drift from the real options. The
//! packages (scripts/package.sh) run the built binary to produce them; a user without the
//! package can do the same (`robotmk-daemon completions bash > …`).

use clap::CommandFactory;
use std::io::{self, Write};
use std::path::Path;

/// The commands an admin types: the internal ones (`daemon`, `env-build`, …, hidden from
/// `--help`) are left out, which clap's generators would list.
fn visible() -> clap::Command {
    let full = super::args::Cli::command();
    let mut cmd = clap::Command::new("robotmk-daemon").version(crate::model::BUILD_ID);
    for a in full.get_arguments() {
        cmd = cmd.arg(a.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

/// The commands whose positional arguments are job names.
const JOB_COMMANDS: &str = "history show run-once pause resume";

/// Completes job names from the config (`robotmk-daemon [--config X] complete-jobs`).
fn job_snippet(shell: clap_complete::Shell) -> String {
    use clap_complete::Shell;
    match shell {
        Shell::Bash => format!(
            r#"
# Job names from the config, for {JOB_COMMANDS}.
_robotmk_daemon_jobs() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" i sub="" n=0 cfg=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --config) cfg=(--config "${{COMP_WORDS[i+1]}}"); ((i++)) ;;
            --config=*) cfg=("${{COMP_WORDS[i]}}") ;;
            -n|--lines|--for|--warn-after|--timeout) ((i++)) ;;
            -*) ;;
            *) if [[ -z $sub ]]; then sub="${{COMP_WORDS[i]}}"; else ((n++)); fi ;;
        esac
    done
    if [[ $cur != -* ]]; then
        case "$sub" in
            history|show|run-once) if [[ $n -eq 0 ]]; then
                COMPREPLY=($(compgen -W "$(robotmk-daemon "${{cfg[@]}}" complete-jobs 2>/dev/null)" -- "$cur"))
                return 0
            fi ;;
            pause|resume)
                COMPREPLY=($(compgen -W "$(robotmk-daemon "${{cfg[@]}}" complete-jobs 2>/dev/null)" -- "$cur"))
                return 0 ;;
        esac
    fi
    _robotmk__daemon "$@"
}}
complete -F _robotmk_daemon_jobs -o bashdefault -o default robotmk-daemon
"#
        ),
        Shell::Zsh => r#"
# Job names from the config.
_robotmk_daemon_jobs() {
    local -a jobs
    jobs=(${(f)"$(robotmk-daemon complete-jobs 2>/dev/null)"})
    _describe 'job' jobs
}
"#
        .to_string(),
        Shell::Fish => format!(
            "\n# Job names from the config.\ncomplete -c robotmk-daemon -n \"__fish_seen_subcommand_from {JOB_COMMANDS}\" -f -a \"(robotmk-daemon complete-jobs 2>/dev/null)\"\n"
        ),
        _ => String::new(),
    }
}

/// Prints the completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = visible();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "robotmk-daemon", &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == clap_complete::Shell::Zsh {
        // The job arguments complete with the function of the snippet, defined before
        // zsh's `compdef` line runs the generated one.
        script = script
            .replace(
                ":job -- The job'\\''s name:_default'",
                ":job -- The job'\\''s name:_robotmk_daemon_jobs'",
            )
            .replace(
                "none\\: all jobs of the instance:_default'",
                "none\\: all jobs of the instance:_robotmk_daemon_jobs'",
            )
            .replace(
                "none\\: every pause ends:_default'",
                "none\\: every pause ends:_robotmk_daemon_jobs'",
            );
    }
    // zsh runs an autoloaded file as the function itself: the helper must be defined before
    // the generated code's last lines call it.
    match script.rfind("\nif [ \"$funcstack[1]\"") {
        Some(at) if shell == clap_complete::Shell::Zsh => {
            script.insert_str(at, &job_snippet(shell));
        }
        _ => script.push_str(&job_snippet(shell)),
    }
    let mut out = io::stdout().lock();
    match out.write_all(script.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            1
        }
    }
}

/// Prints the man page (roff, section 1), or with `dir` writes one page per visible command
/// into it (`robotmk-daemon.1`, `robotmk-daemon-history.1`, …: the main page refers to them).
pub(crate) fn man(dir: Option<&Path>) -> i32 {
    // `help` is clap's, not ours: no page for it.
    let cmd = super::args::Cli::command().disable_help_subcommand(true);
    let result = match dir {
        Some(d) => clap_mangen::generate_to(cmd, d)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", d.display()))),
        None => {
            let mut out = io::stdout().lock();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .and_then(|_| out.flush())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("robotmk-daemon: {e}");
            1
        }
    }
}

/// `complete-jobs`: the job names of the config at `path`, one a line; nothing (and exit 0)
/// when it cannot be read: a completion must never print an error into the command line.
pub(crate) fn job_names(path: &Path) -> i32 {
    if let Ok(cfg) = crate::service::config::load_with(path, crate::model::config::Users::NamesOnly)
    {
        for j in &cfg.jobs {
            println!("{}", j.name);
        }
    }
    0
}
