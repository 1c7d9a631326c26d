//! The admin's commands at the terminal: `history` (table columns, JSON shape, the ASCII
//! fallback and the UTF-8/colour path), `show` (a run in words, output tails, escapes),
//! `logs` (tail across rotated files, `-f` following a rotation), the warnings under
//! `status`, `stop`'s progress line, and the generated completions and man page.
//!
//! Runs are real: `run-once` runs real commands and records them. Tests run with piped output,
//! so they see the ASCII path by default; `ROBOTMK_DAEMON_TTY=1` (src/app/term.rs) makes stdout
//! and stderr count as a terminal to check the other path.
#![cfg(unix)]

mod common;

use common::{text, wait_for, Instance};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A command with a fixed locale and time zone and no terminal overrides, so what it prints
/// depends only on what the test sets.
fn cmd(inst: &Instance, args: &[&str]) -> Command {
    let mut c = inst.cmd();
    c.args(args)
        .env("TZ", "UTC")
        .env("LANG", "C")
        .env_remove("LC_ALL")
        .env_remove("LC_CTYPE")
        .env_remove("NO_COLOR")
        .env_remove("ROBOTMK_DAEMON_TTY");
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run robotmk-daemon")
}

/// A job whose outcome the test chooses: it fails while `fail` exists in the temp dir.
fn flaky() -> Instance {
    let inst = Instance::new("", "");
    let fail = inst.dir.path().join("fail");
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"flaky\"\ncommand = [\"sh\", \"-c\", \"echo run; test ! -e '{}'\"]\nevery = \"1h\"\ntimeout = \"30s\"\n",
            fail.display()
        ),
    );
    inst
}

fn run_once(inst: &Instance, job: &str, fail: bool) {
    let f = inst.dir.path().join("fail");
    if fail {
        std::fs::write(&f, "").unwrap();
    } else {
        let _ = std::fs::remove_file(&f);
    }
    let out = inst.run(&["run-once", job]);
    assert_eq!(out.status.code(), Some(i32::from(fail)), "{out:?}");
}

/// Three runs: success, failure, success.
fn three_runs() -> Instance {
    let inst = flaky();
    run_once(&inst, "flaky", false);
    run_once(&inst, "flaky", true);
    run_once(&inst, "flaky", false);
    inst
}

fn run_ids(inst: &Instance, job: &str) -> Vec<String> {
    inst.records(job)
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn history_is_a_newest_first_table_with_a_trend_in_plain_ascii_when_piped() {
    let inst = three_runs();
    let ids = run_ids(&inst, "flaky");
    assert_eq!(ids.len(), 3);
    let out = run(&mut cmd(&inst, &["history", "flaky"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let t = text(&out.stdout);
    assert!(t.is_ascii(), "piped output must be ASCII:\n{t}");
    assert!(!t.contains('\x1b'), "no colour when piped:\n{t}");
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].contains("job flaky of instance t: 3 of 3 run(s) kept"),
        "{t}"
    );
    let header = lines
        .iter()
        .position(|l| l.starts_with("DUE"))
        .expect("header");
    let cols: Vec<&str> = lines[header]
        .split("  ")
        .filter(|c| !c.is_empty())
        .collect();
    let cols: Vec<&str> = cols.iter().map(|c| c.trim()).collect();
    assert_eq!(
        cols,
        [
            "DUE",
            "STARTED",
            "OUTCOME",
            "RUNTIME",
            "TESTS P/F/S",
            "ATTEMPTS",
            "RUN ID"
        ]
    );
    let rows = &lines[header + 1..header + 4];
    for (row, (id, outcome)) in rows
        .iter()
        .zip(ids.iter().rev().zip(["success", "failure", "success"]))
    {
        let f: Vec<&str> = row.split_whitespace().collect();
        // due (date, time), started, outcome, runtime, tests, attempts, run id
        assert_eq!(f.len(), 8, "{row}");
        assert_eq!(f[3], outcome, "{row}");
        assert!(f[4].ends_with('s'), "runtime {row}");
        assert_eq!(f[5], "-", "no tests for a command job: {row}");
        assert_eq!(f[6], "1", "attempts {row}");
        assert_eq!(f[7], id, "{row}");
    }
    assert!(
        t.contains("outcomes (oldest -> newest): .F.   (. success, F failure)"),
        "{t}"
    );
    let spark = lines
        .iter()
        .find(|l| l.starts_with("runtimes (oldest -> newest): "))
        .expect("sparkline");
    let bars: String = spark["runtimes (oldest -> newest): ".len()..]
        .chars()
        .take(3)
        .collect();
    assert!(
        bars.chars().all(|c| "_.,-~=*#".contains(c)),
        "one ASCII bar per run: {spark}"
    );

    let out = run(&mut cmd(&inst, &["history", "flaky", "-n", "2"]));
    let t = text(&out.stdout);
    assert!(t.contains("2 of 3 run(s)"), "{t}");
    assert!(t.contains(&ids[2]) && t.contains(&ids[1]) && !t.contains(&ids[0]));
    assert!(t.contains("newest): F."), "{t}");

    let out = run(&mut cmd(&inst, &["history", "nope"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no job \"nope\""));
}

#[test]
fn history_on_a_utf8_terminal_has_symbols_and_colour_unless_no_color() {
    let inst = three_runs();
    let tty = |c: &mut Command| {
        c.env("ROBOTMK_DAEMON_TTY", "1");
    };
    let mut c = cmd(&inst, &["history", "flaky"]);
    tty(&mut c);
    c.env("LC_ALL", "C.UTF-8");
    let t = text(&run(&mut c).stdout);
    assert!(
        t.contains("\x1b[32m✔\x1b[0m\x1b[31m✘\x1b[0m\x1b[32m✔\x1b[0m"),
        "{t:?}"
    );
    assert!(t.contains("oldest → newest"), "{t}");
    assert!(
        t.contains("\x1b[31mfailure"),
        "coloured outcome column: {t:?}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with("runtimes") && l.chars().any(|c| ('▁'..='█').contains(&c))),
        "{t}"
    );

    let mut c = cmd(&inst, &["history", "flaky"]);
    tty(&mut c);
    c.env("LANG", "de_DE.UTF-8").env("NO_COLOR", "1");
    let t = text(&run(&mut c).stdout);
    assert!(t.contains("✔✘✔"), "{t}");
    assert!(!t.contains('\x1b'), "NO_COLOR: {t:?}");

    // A terminal whose locale is not UTF-8: colour, but ASCII.
    let mut c = cmd(&inst, &["history", "flaky"]);
    tty(&mut c);
    let t = text(&run(&mut c).stdout);
    assert!(t.contains("\x1b[31mF\x1b[0m"), "{t:?}");
    assert!(!t.contains('✔'), "{t}");
}

#[test]
fn history_json_lists_the_records_newest_first() {
    let inst = three_runs();
    let ids = run_ids(&inst, "flaky");
    // A folder whose record is damaged is listed with the reason, not dropped.
    let bad = inst
        .state
        .join("jobs/flaky/runs")
        .join("20200101T000000Z-1");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("record.json"), "{broken").unwrap();
    let out = run(&mut cmd(&inst, &["history", "flaky", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["job"], "flaky");
    assert_eq!(v["instance"], "t");
    assert_eq!(v["runs_kept"], 4);
    assert_eq!(v["state_dir"], inst.state.display().to_string());
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let got: Vec<&str> = runs[..3]
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(got, want);
    for (r, outcome) in runs.iter().zip(["success", "failure", "success"]) {
        assert_eq!(r["outcome"], outcome);
        assert_eq!(r["job"], "flaky");
        assert!(r["duration_s"].as_f64().is_some(), "{r}");
        for k in [
            "due",
            "started",
            "finished",
            "exit_code",
            "run_dir",
            "trigger",
        ] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
    }
    assert_eq!(runs[3]["run_id"], "20200101T000000Z-1");
    assert!(
        runs[3]["error"]
            .as_str()
            .unwrap()
            .contains("not a valid document"),
        "{}",
        runs[3]
    );
}

#[test]
fn show_tells_one_run_in_words_with_the_tail_of_its_output() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"noisy\"\ncommand = [\"sh\", \"-c\", \"for i in $(seq 1 30); do echo line $i; done; printf 'evil \\\\033]0;pwned\\\\007\\\\n'; echo oops >&2; echo x > \\\"$ROBOTMK_RUN_DIR/log.html\\\"; exit 3\"]\nevery = \"1h\"\ntimeout = \"30s\"\n",
    );
    let out = inst.run(&["run-once", "noisy"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let id = run_ids(&inst, "noisy").pop().unwrap();
    let run_dir = inst.state.join("jobs/noisy/runs").join(&id);

    let out = run(&mut cmd(&inst, &["show", "noisy"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let t = text(&out.stdout);
    assert!(t.starts_with(&format!("job noisy, run {id}\n")), "{t}");
    assert!(t.contains("outcome:   failure, exit code 3\n"), "{t}");
    assert!(t.contains("trigger:   run_once\n"), "{t}");
    assert!(
        t.contains("runtime:   ") && t.contains("(timeout 30s)"),
        "{t}"
    );
    assert!(
        t.contains(&format!("run dir:   {}\n", run_dir.display())),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "log:       {}\n",
            run_dir.join("log.html").display()
        )),
        "{t}"
    );
    // The last 10 lines of stdout: lines 22..30 and the escape line, escaped.
    assert!(t.contains("stdout.log (last 10 line(s)):"), "{t}");
    assert!(
        t.contains("  line 22\n") && t.contains("  line 30\n"),
        "{t}"
    );
    assert!(!t.contains("line 21\n"), "{t}");
    assert!(t.contains("evil \\x1b]0;pwned\\x07"), "{t}");
    assert!(
        !t.contains('\x1b'),
        "a runner's escapes reach the terminal: {t:?}"
    );
    assert!(t.contains("stderr.log (all 1 line(s)):\n  oops\n"), "{t}");

    let out = run(&mut cmd(&inst, &["show", "noisy", &id[..10], "-n", "2"]));
    assert_eq!(out.status.code(), Some(0), "a unique prefix: {out:?}");
    let t = text(&out.stdout);
    assert!(
        t.contains("stdout.log (last 2 line(s)):\n  line 30\n  evil"),
        "{t}"
    );

    let out = run(&mut cmd(&inst, &["show", "noisy", "20200101"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("recent runs: {id}")),
        "{out:?}"
    );
    let out = run(&mut cmd(&inst, &["show", "../noisy"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn logs_prints_the_tail_across_a_rotation() {
    let inst = Instance::new("", "");
    std::fs::create_dir(&inst.state).unwrap();
    let log = inst.state.join("daemon.log");
    std::fs::write(inst.state.join("daemon.log.1"), "old 1\nold 2\n").unwrap();
    std::fs::write(&log, "new 1\n").unwrap();
    let out = run(&mut cmd(&inst, &["logs", "-n", "2"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "old 2\nnew 1\n");
}

/// A `logs -f` follower whose stdout lines arrive on a channel; killed by PID on drop.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Follower {
    fn start(inst: &Instance) -> Follower {
        Follower::start_with(inst, &["logs", "-f", "-n", "1"])
    }

    fn start_with(inst: &Instance, args: &[&str]) -> Follower {
        let mut child = cmd(inst, args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn logs -f");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Follower {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn saw(&mut self, want: &str) -> bool {
        wait_for(Duration::from_secs(10), || {
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            self.seen.iter().any(|l| l == want)
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        common::kill9(self.child.id());
        let _ = self.child.wait();
    }
}

fn append(path: &std::path::Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

#[test]
fn logs_follow_keeps_printing_after_the_log_is_rotated() {
    let inst = Instance::new("", "");
    std::fs::create_dir(&inst.state).unwrap();
    let log = inst.state.join("daemon.log");
    append(&log, "before the follower");
    let mut f = Follower::start(&inst);
    assert!(f.saw("before the follower"), "{:?}", f.seen);
    append(&log, "appended");
    assert!(f.saw("appended"), "{:?}", f.seen);
    // As the daemon rotates: the last line to the old file, rename, then a new file.
    append(&log, "last before rotation");
    std::fs::rename(&log, inst.state.join("daemon.log.1")).unwrap();
    append(&log, "first after rotation");
    assert!(f.saw("last before rotation"), "{:?}", f.seen);
    assert!(f.saw("first after rotation"), "{:?}", f.seen);
    append(&log, "second after rotation");
    assert!(f.saw("second after rotation"), "{:?}", f.seen);
    let n = f.seen.len();
    assert_eq!(
        f.seen,
        [
            "before the follower",
            "appended",
            "last before rotation",
            "first after rotation",
            "second after rotation"
        ],
        "each line once, in order ({n})"
    );
}

/// The lines of the daemon's log files, oldest first (`.3`, `.2`, `.1`, the current one).
fn all_log_lines(inst: &Instance) -> Vec<String> {
    let mut lines = Vec::new();
    for name in ["daemon.log.3", "daemon.log.2", "daemon.log.1", "daemon.log"] {
        let t = std::fs::read_to_string(inst.state.join(name)).unwrap_or_default();
        lines.extend(t.lines().map(str::to_string));
    }
    lines
}

fn inode(p: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

#[test]
fn logs_follow_misses_no_line_of_a_real_daemon_rotating_its_log() {
    // A 4 KB log (the smallest allowed) and four jobs every second: a rotation every few
    // seconds, slow enough for a follower that polls five times a second even on a busy host.
    let jobs: String = (0..4)
        .map(|i| format!("[[job]]\nname = \"tick{i}\"\ncommand = [\"true\"]\nevery = \"1s\"\n"))
        .collect();
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"\nlog_max_size = \"4KB\"\nmax_parallel = 0",
        &jobs,
    );
    assert_eq!(inst.run(&["start"]).status.code(), Some(0));
    let log = inst.state.join("daemon.log");
    assert!(wait_for(Duration::from_secs(10), || log.exists()));
    let mut f = Follower::start_with(&inst, &["logs", "-f", "-n", "0"]);
    // Two rotations while the follower runs.
    let mut seen_inodes = vec![inode(&log)];
    assert!(
        wait_for(Duration::from_secs(40), || {
            let i = inode(&log);
            if i.is_some() && !seen_inodes.contains(&i) {
                seen_inodes.push(i);
            }
            seen_inodes.len() >= 3
        }),
        "the daemon did not rotate its log twice"
    );
    assert_eq!(inst.run(&["stop", "--now"]).status.code(), Some(0));
    // Its last line is written before it exits: read the files once it is gone.
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
    let all = all_log_lines(&inst);
    let last = all.last().expect("log lines").clone();
    assert!(
        f.saw(&last),
        "the follower missed the end: {:?}",
        f.seen.last()
    );
    let first = &f.seen[0];
    let start = all
        .iter()
        .position(|l| l == first)
        .expect("the follower's first line is in the log");
    assert_eq!(
        f.seen,
        all[start..],
        "the follower's lines are the log's, each once, in order, across two rotations"
    );
}

#[test]
fn status_shows_the_last_warnings_and_errors_of_the_log() {
    let inst = flaky();
    std::fs::create_dir(&inst.state).unwrap();
    let mut lines = String::new();
    for i in 0..8 {
        lines.push_str(&format!(
            "2026-11-29T10:00:0{i}.000000Z  WARN warning number {i}\n"
        ));
        lines.push_str("2026-11-29T10:00:09.000000Z  INFO routine\n");
    }
    lines.push_str("2026-11-29T10:00:10.000000Z ERROR cannot write \x1b[2J status\n");
    std::fs::write(inst.state.join("daemon.log"), lines).unwrap();
    let out = run(&mut cmd(&inst, &["status"]));
    assert_eq!(out.status.code(), Some(3), "not running: {out:?}");
    let t = text(&out.stdout);
    let block: Vec<&str> = t
        .lines()
        .skip_while(|l| !l.starts_with("recent warnings and errors"))
        .collect();
    assert_eq!(block.len(), 6, "a heading and the last five: {t}");
    assert!(block[1].ends_with("warning number 4"), "{t}");
    assert!(block[4].ends_with("warning number 7"), "{t}");
    assert!(
        block[5].contains("ERROR cannot write \\x1b[2J status"),
        "{t}"
    );
    assert!(!t.contains("routine"), "{t}");

    // A quiet log adds nothing.
    std::fs::write(inst.state.join("daemon.log"), "t  INFO fine\n").unwrap();
    let t = text(&run(&mut cmd(&inst, &["status"])).stdout);
    assert!(!t.contains("recent warnings"), "{t}");
}

#[test]
fn stop_shows_runs_in_flight_on_a_terminal_only() {
    let inst = Instance::new(
        "heartbeat_timeout = \"0\"",
        "[[job]]\nname = \"long\"\ncommand = [\"sleep\", \"60\"]\nevery = \"1s\"\ntimeout = \"2m\"\n",
    );
    assert_eq!(inst.run(&["start"]).status.code(), Some(0));
    assert!(
        wait_for(Duration::from_secs(10), || {
            inst.status_json()["jobs"][0]["running"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        }),
        "no run in flight: {}",
        inst.status_json()
    );
    let out = run(&mut cmd(&inst, &["stop", "--timeout", "1s"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let e = text(&out.stderr);
    assert!(!e.contains("waiting for"), "no progress when piped: {e}");
    let mut c = cmd(&inst, &["stop", "--timeout", "1s"]);
    c.env("ROBOTMK_DAEMON_TTY", "1");
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let e = text(&out.stderr);
    assert!(
        e.contains("\rwaiting for the daemon of instance t to stop: 1 run(s) in flight ("),
        "{e:?}"
    );
    assert!(
        e.contains("still running after 1s (1 run(s) in flight)"),
        "{e}"
    );
    assert_eq!(inst.run(&["stop", "--now"]).status.code(), Some(0));
}

#[test]
fn completions_and_the_man_page_come_from_the_clap_definitions() {
    let inst = Instance::new("", "");
    for (shell, marker) in [
        ("bash", "complete -F _robotmk__daemon"),
        ("zsh", "#compdef robotmk-daemon"),
        ("fish", "complete -c robotmk-daemon"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = run(&mut cmd(&inst, &["completions", shell]));
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        let t = text(&out.stdout);
        assert!(t.contains(marker), "{shell}: {t}");
        assert!(t.contains("history") && t.contains("logs"), "{shell}");
    }
    let out = run(&mut cmd(&inst, &["man"]));
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    assert!(t.contains(".TH robotmk-daemon 1"), "{t}");
    assert!(t.contains("history") && t.contains("check\\-config"), "{t}");
    // One page per command, as the main page's SUBCOMMANDS section refers to them.
    let dir = inst.dir.path().join("man");
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(
        run(&mut cmd(&inst, &["man", "--dir", dir.to_str().unwrap()]))
            .status
            .code(),
        Some(0)
    );
    for page in [
        "robotmk-daemon.1",
        "robotmk-daemon-history.1",
        "robotmk-daemon-logs.1",
    ] {
        let t = std::fs::read_to_string(dir.join(page)).unwrap_or_default();
        assert!(t.contains(".TH "), "{page}: {t}");
    }
    assert!(
        !dir.join("robotmk-daemon-daemon.1").exists(),
        "hidden commands get no page"
    );
    assert!(!dir.join("robotmk-daemon-help.1").exists());
}

#[test]
fn the_read_only_commands_check_trust_and_survive_a_broken_config() {
    use std::os::unix::fs::PermissionsExt;
    let inst = three_runs();
    // A broken config: the state dir is still found (as by `status`), the job by its folder.
    let good = std::fs::read_to_string(&inst.config).unwrap();
    inst.write_raw_config(&format!("{good}\n[[job]]\nname = "));
    let out = run(&mut cmd(&inst, &["history", "flaky"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stderr).contains("config error"), "{out:?}");
    assert!(text(&out.stdout).contains("3 of 3 run(s)"), "{out:?}");
    assert_eq!(
        run(&mut cmd(&inst, &["show", "nosuchjob"])).status.code(),
        Some(2)
    );
    // A job removed from the config: its runs are still there to see.
    inst.write_config("", "");
    let out = run(&mut cmd(&inst, &["history", "flaky"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stderr).contains("not in the config any more"),
        "{out:?}"
    );
    assert_eq!(
        run(&mut cmd(&inst, &["history", "other"])).status.code(),
        Some(2)
    );
    inst.write_raw_config(&good);
    // A state dir others may write could hold planted records: refused, as by `status`.
    std::fs::set_permissions(&inst.state, std::fs::Permissions::from_mode(0o777)).unwrap();
    for args in [&["history", "flaky"][..], &["show", "flaky"], &["logs"]] {
        let out = run(&mut cmd(&inst, args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(text(&out.stderr).contains("writable"), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    std::fs::set_permissions(&inst.state, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Robot Framework from `$ROBOTMK_TEST_ROBOT` or the project's `.venv` (scripts/test.sh).
fn robot() -> Option<std::path::PathBuf> {
    let p = common::test_robot();
    common::require_tool(
        p.is_some(),
        "Robot Framework (.venv/bin/robot or $ROBOTMK_TEST_ROBOT)",
    )
    .then_some(p)
    .flatten()
}

#[test]
fn a_robot_run_shows_its_tests_attempts_and_log_html() {
    let Some(robot) = robot() else { return };
    let inst = Instance::new("", "");
    let suite = inst.dir.path().join("shop.robot");
    std::fs::write(
        &suite,
        "*** Test Cases ***\nLogin Works\n    Log    fine\nCheckout Works\n    Should Be Equal    1    2\n",
    )
    .unwrap();
    inst.write_config(
        "",
        &format!(
            "[[job]]\nname = \"shop\"\nkind = \"robot\"\nrobot = \"{}\"\nsuite = \"{}\"\nevery = \"1h\"\ntimeout = \"2m\"\nattempts = 2\nretry = \"failed\"\n",
            robot.display(),
            suite.display()
        ),
    );
    let out = inst.run(&["run-once", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let id = run_ids(&inst, "shop").pop().unwrap();
    let run_dir = inst.state.join("jobs/shop/runs").join(&id);

    let t = text(&run(&mut cmd(&inst, &["history", "shop"])).stdout);
    let row = t.lines().find(|l| l.ends_with(&id)).expect("the run's row");
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&f[3..], ["failure", f[4], "1/1/0", "2", id.as_str()], "{t}");

    let t = text(&run(&mut cmd(&inst, &["show", "shop"])).stdout);
    assert!(
        t.contains("tests:     1 passed, 1 failed, 0 skipped; suite Shop: FAIL; robot's own time "),
        "{t}"
    );
    // The merged result's message (rebot's "re-executed" text) quoting robot's own.
    let fail = t
        .lines()
        .find(|l| l.starts_with("  FAIL Shop.Checkout Works: "))
        .expect("the failed test");
    assert!(fail.contains("1 != 2"), "{t}");
    assert!(
        !t.contains("Login Works"),
        "only failed tests are listed: {t}"
    );
    assert!(
        t.contains("attempt 1: ran all: failed (1 passed, 1 failed, 0 skipped)"),
        "{t}"
    );
    assert!(
        t.contains("attempt 2: ran failed: failed (0 passed, 1 failed, 0 skipped)"),
        "{t}"
    );
    for (key, file) in [("log:       ", "log.html"), ("report:    ", "report.html")] {
        let p = run_dir.join(file);
        assert!(
            t.contains(&format!("{key}{}\n", p.display())),
            "{file}: {t}"
        );
        assert!(p.is_file(), "{}", p.display());
    }
}
