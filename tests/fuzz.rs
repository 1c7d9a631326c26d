//! Bad input never panics (issue 6): the config, duration and cron parsers, and the Robot
//! Framework result readers (issue 11), get arbitrary and mutated input (proptest;
//! `PROPTEST_CASES=10000 cargo test --test fuzz` for a longer run), and absurd sizes.

use proptest::prelude::*;
use robotmk_daemon::logic::robot::{json, xml};
use robotmk_daemon::logic::schedule::parse_cron;
use robotmk_daemon::model::duration;
use robotmk_daemon::service::config;
use std::path::Path;
use std::time::{Duration, Instant};

const VALID: &str = "[daemon]\ninstance = \"system\"\nstate_dir = \"/tmp/x\"\nheartbeat_timeout = \"5m\"\nmax_parallel = 4\n\n[[job]]\nname = \"web-login\"\ncommand = [\"robot\", \"--outputdir\", \"{run_dir}\", \"/s\"]\nevery = \"5m\"\ntimeout = \"4m\"\noverlap = \"skip\"\nenv = { LANG = \"C.UTF-8\" }\n\n[[job]]\nname = \"nightly\"\nkind = \"robot\"\nsuite = \"/s\"\ncron = \"30 2 * * 1-5\"\n";

const RESULT_XML: &str = "<?xml version=\"1.0\"?><robot><suite name=\"S &amp; T\"><test name=\"A\"><tag>x</tag><status status=\"FAIL\" elapsed=\"0.1\">m&lt;1&gt;\nl2</status></test><status status=\"FAIL\" elapsed=\"0.2\"/></suite><statistics><total><stat pass=\"0\" fail=\"1\" skip=\"0\">All</stat></total></statistics></robot>";
const RESULT_JSON: &str = "{\"suite\":{\"tests\":[{\"name\":\"A\",\"tags\":[\"x\"],\"status\":\"FAIL\",\"message\":\"m\\u00e9\\nl2\",\"elapsed_time\":0.1}],\"name\":\"S\",\"status\":\"FAIL\",\"elapsed_time\":0.2},\"statistics\":{\"total\":{\"pass\":0,\"fail\":1,\"skip\":0}}}";

/// Applies byte edits (insert, remove, replace) to `base`.
fn mutate(base: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = base.as_bytes().to_vec();
    for &(pos, byte, op) in edits {
        let pos = pos % (b.len() + 1);
        match op {
            0 => b.insert(pos, byte),
            1 if pos < b.len() => {
                b.remove(pos);
            }
            _ if pos < b.len() => b[pos] = byte,
            _ => {}
        }
    }
    b
}

fn check_error_location(text: &str, e: &robotmk_daemon::model::config::ConfigError) {
    if let (Some(line), Some(col)) = (e.line, e.column) {
        let lines = text.split('\n').count();
        assert!(line >= 1 && line <= lines, "line {line} of {lines}: {e}");
        assert!(col >= 1, "{e}");
    }
    assert!(!e.message.is_empty());
}

proptest! {
    #[test]
    fn durations_never_panic(s in ".{0,40}") {
        let _ = duration::parse(&s);
    }

    #[test]
    fn duration_like_strings_never_panic(s in "[0-9hmsd ]{0,20}") {
        if let Ok(d) = duration::parse(&s) {
            prop_assert!(d <= Duration::from_secs(10 * 365 * 86400));
        }
    }

    #[test]
    fn cron_never_panics(s in "[0-9*/,\\- LW#?A-Za-z@]{0,40}") {
        let _ = parse_cron(&s);
    }

    #[test]
    fn arbitrary_configs_never_panic(s in "\\PC{0,300}") {
        if let Err(e) = config::parse(Path::new("/c.toml"), &s) {
            check_error_location(&s, &e);
        }
    }

    #[test]
    fn mutated_valid_configs_never_panic(
        edits in prop::collection::vec((0usize..2000, any::<char>(), 0u8..3), 1..8)
    ) {
        let mut text: Vec<char> = VALID.chars().collect();
        for (pos, c, op) in edits {
            let pos = pos % (text.len() + 1);
            match op {
                0 => text.insert(pos, c),
                1 if pos < text.len() => { text.remove(pos); }
                _ if pos < text.len() => text[pos] = c,
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        if let Err(e) = config::parse(Path::new("/c.toml"), &text) {
            check_error_location(&text, &e);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_results_never_panic(b in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = xml::read(&b[..]);
        let _ = json::read(&b[..]);
    }

    #[test]
    fn mutated_results_never_panic(
        edits in prop::collection::vec((0usize..600, any::<u8>(), 0u8..3), 1..8)
    ) {
        let _ = xml::read(&mutate(RESULT_XML, &edits)[..]);
        let _ = json::read(&mutate(RESULT_JSON, &edits)[..]);
    }
}

proptest! {
    /// The readers size their buffers to the file (`read_sized`): a result reads the same
    /// whatever the size given, down to buffers far smaller than the file.
    #[test]
    fn a_results_buffer_size_changes_nothing(
        edits in prop::collection::vec((0usize..600, any::<u8>(), 0u8..3), 0..4),
        size in 0u64..3000,
    ) {
        // Many tests: files of a few KiB, read through buffers of 512 bytes up.
        let t = "<test name=\"A\"><tag>x</tag><status status=\"FAIL\" elapsed=\"0.1\">m&lt;1&gt;\nl2</status></test>";
        let big = RESULT_XML.replacen(t, &t.repeat(60), 1);
        prop_assert!(big.len() > 4000);
        let x = mutate(&big, &edits);
        prop_assert_eq!(format!("{:?}", xml::read(&x[..])), format!("{:?}", xml::read_sized(&x[..], size)));
        let t = "{\"name\":\"A\",\"tags\":[\"x\"],\"status\":\"FAIL\",\"message\":\"m\\u00e9\\nl2\",\"elapsed_time\":0.1}";
        let big = RESULT_JSON.replacen(t, &[t; 60].join(","), 1);
        prop_assert!(big.len() > 4000);
        let j = mutate(&big, &edits);
        prop_assert_eq!(format!("{:?}", json::read(&j[..])), format!("{:?}", json::read_sized(&j[..], size)));
    }
}

#[test]
fn the_result_fixtures_read() {
    let x = xml::read(RESULT_XML.as_bytes()).unwrap().unwrap();
    let j = json::read(RESULT_JSON.as_bytes()).unwrap().unwrap();
    assert_eq!((x.failed, j.failed), (1, 1));
    assert_eq!(x.results[0].message.as_deref(), Some("m<1>"));
    assert_eq!(j.results[0].message.as_deref(), Some("mé"));
}

#[test]
fn ten_thousand_jobs_parse_in_reasonable_time() {
    let mut text = String::from("[daemon]\nstate_dir = \"/tmp/x\"\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[job]]\nname = \"job{i}\"\ncommand = [\"true\"]\nevery = \"1h\"\n"
        ));
    }
    let t = Instant::now();
    let c = config::parse(Path::new("/c.toml"), &text).unwrap();
    eprintln!(
        "10000 jobs ({} KB) parsed in {:?}",
        text.len() / 1024,
        t.elapsed()
    );
    assert_eq!(c.jobs.len(), 10_000);
}

#[test]
fn a_ten_megabyte_config_is_an_error_not_a_hang() {
    let text = format!(
        "[daemon]\nstate_dir = \"/tmp/x\"\n# {}\nbogus = 1\n",
        "x".repeat(10 << 20)
    );
    let t = Instant::now();
    let e = config::parse(Path::new("/c.toml"), &text).unwrap_err();
    eprintln!("10 MB config rejected in {:?}: {e}", t.elapsed());
    assert_eq!(e.line, Some(4));
}

// ---- state files (issue 10): what the daemon and ctrl read back from disk -------------------

use robotmk_daemon::logic::agent;
use robotmk_daemon::model::record::RunRecord;
use robotmk_daemon::model::report::ConfigView;
use robotmk_daemon::model::request::{RunRequest, StopRequest};
use robotmk_daemon::model::status::Status;
use robotmk_daemon::service::report;

const STATUS: &str = r#"{"version":1,"instance":"t","updated":"2026-01-01T00:00:00Z","daemon":{"pid":4711,"pid_start":5,"started":"2026-01-01T00:00:00Z","build":"0.1.0","config":"/c","config_stamp":"1:2:3","route":"fork","phase":"running","reason":"r","state_error":"e","heartbeat_timeout_s":60.0},"jobs":[{"name":"j","schedule":"every 1m","interval_s":60.0,"timeout_s":30.0,"next_due":"2026-01-01T00:01:00Z","running":[{"run_id":"20260101T000000Z-1","due":"2026-01-01T00:00:00Z","started":null,"pid":7}],"queued":1,"last":{"run_id":"x-1","due":"2026-01-01T00:00:00Z","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:00:01Z","duration_s":1.5,"exit_code":0,"outcome":"success","tests":{"passed":1,"failed":0,"skipped":0},"note":"n"},"skipped_total":3}]}"#;
const RECORD: &str = r#"{"version":1,"job":"j","run_id":"20260101T000000Z-1","due":"2026-01-01T00:00:00Z","trigger":"schedule","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:00:01Z","duration_s":1.0,"exit_code":1,"signal":null,"outcome":"failure","run_dir":"/r","pid":7,"pid_start":9,"timeout_s":30.0,"note":"n","request":"1-2"}"#;

/// What ctrl does with a status file it read: build the report and print the sections.
fn print_status(s: Status) -> String {
    let r = report::build_from(
        "/c".into(),
        ConfigView::VouchedByDaemon,
        Some(("t".into(), "/nonexistent/rmkd-fuzz".into())),
        true,
        Some(s),
    );
    agent::render(&r)
}

proptest! {
    #[test]
    fn mutated_status_files_never_panic_ctrl(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..24)
    ) {
        let bytes = mutate(STATUS, &edits);
        if let Ok(s) = serde_json::from_slice::<Status>(&bytes) {
            let out = print_status(s);
            prop_assert!(out.starts_with(agent::SECTION_HEADER));
        }
    }

    #[test]
    fn mutated_records_and_requests_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..24)
    ) {
        let bytes = mutate(RECORD, &edits);
        if let Ok(r) = serde_json::from_slice::<RunRecord>(&bytes) {
            let _ = r.timeout();
            let mut s: Status = serde_json::from_str(STATUS).unwrap();
            s.jobs[0].last = Some((&r).into());
            let _ = print_status(s);
        }
        let _ = serde_json::from_slice::<StopRequest>(&bytes);
        let _ = serde_json::from_slice::<RunRequest>(&bytes);
    }

    /// Any number where a file holds one: timeouts, durations, intervals, dates far off.
    #[test]
    fn absurd_numbers_in_state_files_never_panic(
        timeout in any::<f64>(), duration in any::<f64>(), interval in any::<f64>(),
        secs in -8_000_000_000_000i64..8_000_000_000_000, pid in any::<u32>(),
    ) {
        let mut r: RunRecord = serde_json::from_str(RECORD).unwrap();
        r.timeout_s = timeout;
        r.duration_s = Some(duration);
        let t = r.timeout();
        prop_assert!(t <= Duration::from_secs(366 * 86400));
        if let Some(d) = chrono::DateTime::from_timestamp(secs, 0) {
            r.due = d;
            r.finished = Some(d);
            r.started = Some(d);
        }
        let mut s: Status = serde_json::from_str(STATUS).unwrap();
        s.daemon.pid = pid;
        s.daemon.started = r.due;
        s.jobs[0].interval_s = interval;
        s.jobs[0].timeout_s = timeout;
        s.jobs[0].next_due = Some(r.due);
        s.jobs[0].last = Some((&r).into());
        let _ = print_status(s);
    }
}
