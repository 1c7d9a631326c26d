//! Bad input never panics (issue 6): the config, duration and cron parsers, and the Robot
//! Framework result readers (issue 11), get arbitrary and mutated input (proptest;
//! `PROPTEST_CASES=10000 cargo test --test fuzz` for a longer run), and absurd sizes.

use proptest::prelude::*;
use robotmk_daemon::config::{self, duration};
use robotmk_daemon::robot::{json, xml};
use robotmk_daemon::schedule::parse_cron;
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

fn check_error_location(text: &str, e: &config::ConfigError) {
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
