//! Issue 23 end to end, with real parts: a failed robot run's log published to a folder that a
//! real nginx serves, opened by a real headless Chromium from the URL in ctrl's output; and
//! real Nagios plugins (Debian's monitoring-plugins-basic: check_disk, check_http against that
//! nginx, check_procs) plus a hanging one as `kind = "plugin"` jobs, whose checks are compared
//! with what each plugin printed in that very run (its stdout.log), parsed here on its own.
//!
//! Tools missing on a developer's machine skip the test with the reason; under `CI=true` they
//! fail it (scripts/test.sh installs them).
#![cfg(unix)]

mod common;

use common::checkmk::{parse_ok, LocalCheck};
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PLUGINS: &str = "/usr/lib/nagios/plugins";

fn nginx_bin() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A free port on 127.0.0.1 (bound and let go; nginx takes it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// nginx serving `root` on a local port, a child of this test with its own config and prefix
/// in a temp dir; ended by PID (its process group: master and workers) when dropped, panics
/// included.
struct Nginx {
    child: Child,
    port: u16,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    fn start(bin: &Path, root: &Path) -> Nginx {
        let prefix = tempfile::Builder::new()
            .prefix("rmkd-nginx-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let p = prefix.path().to_path_buf();
        let p = p.as_path();
        // Workers run as `nobody` (nginx's default when started as root): they read only
        // what the daemon made world-readable.
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  \
             fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
             types {{ text/html html; image/png png; }}\n  default_type application/octet-stream;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n",
            p = p.display(),
            root = root.display()
        );
        std::fs::write(p.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(p)
            .arg("-c")
            .arg(p.join("nginx.conf"))
            .arg("-e")
            .arg(p.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start nginx");
        let n = Nginx {
            child,
            port,
            _prefix: prefix,
        };
        let up = wait_for(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let log = std::fs::read_to_string(p.join("error.log")).unwrap_or_default();
        assert!(up, "nginx did not come up on port {port}: {log}");
        n
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling the process group of the nginx this test started.
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        let gone = wait_for(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !gone {
            // SAFETY: as above.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
        // Workers that outlived their master.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// A plain HTTP/1.0 GET: (status code, body).
fn http_get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP header");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf[split + 4..].to_vec())
}

/// The instance's temp dir opened for nginx's `nobody` workers to pass through (the state dir
/// inside stays 0700).
fn open_for_web(inst: &Instance) {
    std::fs::set_permissions(inst.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn ctrl_output(inst: &Instance) -> String {
    let out = inst.ctrl();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The check named `name` once ctrl shows a result for it (a daemon ctrl started takes
/// run-once's record up within its tick).
fn check_with_result(inst: &Instance, name: &str) -> (LocalCheck, String) {
    let mut found = None;
    let ok = wait_for(Duration::from_secs(30), || {
        let out = ctrl_output(inst);
        let agent = parse_ok(&out);
        found = agent
            .local(None)
            .into_iter()
            .find(|c| c.name == name)
            .filter(|c| !c.text.contains("no result yet"))
            .map(|c| (c, out));
        found.is_some()
    });
    assert!(ok, "no result for {name}: {}", ctrl_output(inst));
    found.unwrap()
}

// --- Part 1: the published log ----------------------------------------------------------

/// A suite whose second test fails in a keyword that has written a screenshot beside the log
/// and embedded it in the log, as SeleniumLibrary's `Capture Page Screenshot` on failure does
/// (the test venv has no SeleniumLibrary; the file and the log entry are the same).
fn failing_suite(dir: &Path) -> PathBuf {
    let lib = dir.join("Shots.py");
    std::fs::write(
        &lib,
        r#"import os, struct, zlib
from robot.libraries.BuiltIn import BuiltIn
from robot.api import logger

def _png():
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

def capture_page_screenshot():
    out = BuiltIn().get_variable_value("${OUTPUT DIR}")
    name = "selenium-screenshot-1.png"
    with open(os.path.join(out, name), "wb") as f:
        f.write(_png())
    logger.info('<a href="%s"><img src="%s" width="800px"></a>' % (name, name), html=True)

def pay_for_order():
    # As SeleniumLibrary's run-on-failure does: the screenshot goes into the failing keyword.
    capture_page_screenshot()
    raise AssertionError("payment page shows an error")
"#,
    )
    .unwrap();
    let suite = dir.join("shop.robot");
    std::fs::write(
        &suite,
        format!(
            "*** Settings ***\nLibrary    {}\n\n*** Test Cases ***\nOpen Shop\n    Log    fine\n\n\
             Checkout Pays\n    Pay For Order\n",
            lib.display()
        ),
    )
    .unwrap();
    suite
}

/// The first `http://…` in `text`, ended as Checkmk ends a link (whitespace, quotes, `>`,
/// `,`: `format_plugin_output` in cmk/gui/view_utils.py).
fn first_url(text: &str) -> Option<String> {
    let at = text.find("http://")?;
    Some(
        text[at..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '>' | ','))
            .collect(),
    )
}

/// Chromium, headless, opens `url` and prints the page's DOM once its scripts ran.
fn chromium_dom(url: &str, profile: &Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_failed_runs_log_is_published_linked_from_the_check_and_opens_in_a_browser() {
    let Some(robot) = test_robot() else {
        require_tool(false, "Robot Framework ($ROBOTMK_TEST_ROBOT or .venv)");
        return;
    };
    let Some(nginx) = nginx_bin() else {
        require_tool(false, "nginx (apt-get install nginx)");
        return;
    };
    if !require_tool(have_tool("chromium"), "chromium (apt-get install chromium)") {
        return;
    }
    let inst = Instance::new("", "");
    open_for_web(&inst);
    let www = inst.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755)).unwrap();
    let web = Nginx::start(&nginx, &www);
    let publish = www.join("robot");
    let suite = failing_suite(inst.dir.path());
    inst.write_config(
        &format!(
            "publish_dir = \"{}\"\npublish_url = \"http://127.0.0.1:{}/robot\"\nkeep_runs = 2",
            publish.display(),
            web.port
        ),
        &format!(
            "[[job]]\nname = \"shop\"\nkind = \"robot\"\nrobot = \"{}\"\nsuite = \"{}\"\n\
             every = \"1h\"\ntimeout = \"120s\"\nservices = \"per-test\"\n",
            robot.display(),
            suite.display()
        ),
    );
    let out = inst.run(&["run-once", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let (check, ctrl) = check_with_result(&inst, "Robotmk t shop");
    println!("ctrl output with the log URL:\n{ctrl}");
    assert_eq!(check.state_num(), 2, "{check:?}");
    // Issue 22: the per-test list follows as details; the URL ends the summary.
    let url = first_url(&check.summary).unwrap_or_else(|| panic!("no URL in {:?}", check.summary));
    let rec = &inst.finished_records("shop")[0];
    let run_id = rec["run_id"].as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "http://127.0.0.1:{}/robot/t/shop/{run_id}/log.html",
            web.port
        )
    );
    assert!(
        check.summary.ends_with(&url),
        "the URL ends the summary: {:?}",
        check.text
    );
    // The host path is no longer what the text offers.
    assert!(
        !check.text.contains(&inst.state.display().to_string()),
        "{}",
        check.text
    );

    // The failed test's own check links to its place in the log.
    let test = parse_ok(&ctrl)
        .local(None)
        .into_iter()
        .find(|c| c.name == "Robotmk t shop Checkout Pays")
        .unwrap_or_else(|| panic!("no per-test check: {ctrl}"));
    assert_eq!(test.state_num(), 2);
    let anchor = first_url(&test.text).unwrap();
    assert_eq!(anchor, format!("{url}#s1-t2"), "{}", test.text);
    let passed = parse_ok(&ctrl)
        .local(None)
        .into_iter()
        .find(|c| c.name == "Robotmk t shop Open Shop")
        .unwrap();
    assert!(first_url(&passed.text).is_none(), "{}", passed.text);

    // What nginx serves, as its `nobody` workers can read it.
    let path = url.split_once(&format!(":{}", web.port)).unwrap().1;
    let (code, body) = http_get(web.port, path);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("Checkout Pays"));
    let shot = path.replace("log.html", "selenium-screenshot-1.png");
    let (code, body) = http_get(web.port, &shot);
    assert_eq!(code, 200, "screenshot {shot}");
    assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (code, _) = http_get(web.port, &path.replace("log.html", "output.xml"));
    assert_eq!(
        code, 404,
        "only the log, the report and screenshots are published"
    );
    let (code, _) = http_get(web.port, "/robot/t/shop/latest/log.html");
    assert_eq!(code, 200, "latest");

    // A real browser opens the test's link: robot's log, scripts run, the failed test
    // expanded with its message and the screenshot in it.
    let profile = inst.dir.path().join("chromium-profile");
    let dom = chromium_dom(&anchor, &profile);
    // What the browser rendered (robot's log builds these from its data with script).
    let rendered = [
        "title=\"TEST  Checkout Pays  [FAIL]\"",
        "<td class=\"message\">payment page shows an error</td>",
        "<img src=\"selenium-screenshot-1.png\" width=\"800px\">",
    ];
    println!("headless chromium on {anchor} shows:");
    for r in rendered {
        if dom.contains(r) {
            println!("  {r}");
        }
    }
    for r in rendered {
        assert!(dom.contains(r), "the browser's DOM lacks {r}");
    }
    assert!(dom.contains("id=\"s1-t2\""), "the log rendered the test");
    assert!(dom.contains("Checkout Pays"));
    assert!(dom.contains("payment page shows an error"));
    assert!(
        dom.contains("src=\"selenium-screenshot-1.png\""),
        "the screenshot is shown in the log"
    );

    // Retention follows keep_runs (2): a third run removes the first's published folder.
    for _ in 0..2 {
        let out = inst.run(&["run-once", "shop"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
    }
    let mut runs: Vec<String> = std::fs::read_dir(publish.join("t/shop"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("latest"))
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(!runs.contains(&run_id.to_string()), "{runs:?}");
    let newest = inst.finished_records("shop").last().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_link(publish.join("t/shop/latest")).unwrap(),
        PathBuf::from(&newest)
    );
}

#[test]
fn a_publish_failure_is_a_note_never_a_lost_run() {
    let Some(robot) = test_robot() else {
        require_tool(false, "Robot Framework ($ROBOTMK_TEST_ROBOT or .venv)");
        return;
    };
    let inst = Instance::new("", "");
    let suite = failing_suite(inst.dir.path());
    // publish_dir is a file: nothing can be published there.
    let blocked = inst.dir.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    inst.write_config(
        &format!(
            "publish_dir = \"{}/sub\"\npublish_url = \"http://127.0.0.1:1/robot\"",
            blocked.display()
        ),
        &format!(
            "[[job]]\nname = \"shop\"\nkind = \"robot\"\nrobot = \"{}\"\nsuite = \"{}\"\n\
             every = \"1h\"\ntimeout = \"120s\"\n",
            robot.display(),
            suite.display()
        ),
    );
    let out = inst.run(&["run-once", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let rec = &inst.finished_records("shop")[0];
    assert_eq!(rec["outcome"], "failure");
    assert_eq!(rec["tests"]["failed"], 1);
    assert!(
        rec["note"].as_str().unwrap().contains("log not published"),
        "{rec}"
    );
    let (check, _) = check_with_result(&inst, "Robotmk t shop");
    assert_eq!(check.state_num(), 2);
    assert!(check.text.contains("log not published"), "{}", check.text);
    // The log is still named where it is.
    assert!(check.text.contains("log.html"), "{}", check.text);
}

/// What a run's files cost their owner, publishing costs the daemon's disk (root's, charged to
/// no quota): a job's user who makes a 100 MiB sparse log (no blocks) and 30 more names of a
/// sparse 19 MiB screenshot (one inode) pays almost nothing, and so does `publish_dir` — the
/// log stays sparse and the 31 names are links to one copy, counted once. Published whole
/// (nothing left out for the run's cap), the files the daemon's `0644`, and what nginx serves
/// of a linked name is the screenshot. As the job's user when the test is root.
#[test]
fn sparse_files_and_hard_links_are_published_as_they_are_not_multiplied() {
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let user = if root {
        system_user("rmkd-runner").map(|_| "user = \"rmkd-runner\"\n")
    } else {
        Some("")
    };
    let Some(user) = user else { return };
    let inst = Instance::new("", "");
    // The job's user must reach the users' tree beside the state dir, nginx the www folder.
    open_for_web(&inst);
    let www = inst.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755)).unwrap();
    let web = nginx_bin().map(|bin| Nginx::start(&bin, &www));
    let publish = www.join("robot");
    let make = script(
        inst.dir.path(),
        "sparse.sh",
        r#"cd "$1" || exit 1
cat > output.xml <<'X'
<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Robot 7.0" generated="2024-01-01T00:00:00" rpa="false" schemaversion="5">
<suite id="s1" name="S"><test id="s1-t1" name="T"><status status="PASS" start="2024-01-01T00:00:00" elapsed="0.1"/></test>
<status status="PASS" start="2024-01-01T00:00:00" elapsed="0.2"/></suite><statistics/><errors/></robot>
X
printf '<html>log' > log.html; truncate -s 100M log.html
printf 'middle' | dd of=log.html bs=1 seek=52428800 conv=notrunc 2>/dev/null
mkdir -p browser/screenshot
printf '\211PNG\r\n\032\n' > browser/screenshot/a.png; truncate -s 19M browser/screenshot/a.png
i=0; while [ $i -lt 30 ]; do ln browser/screenshot/a.png browser/screenshot/b$i.png || exit 1; i=$((i+1)); done
du -sk . >&2"#,
    );
    let port = web.as_ref().map_or(1, |w| w.port);
    inst.write_config(
        &format!(
            "publish_dir = \"{}\"\npublish_url = \"http://127.0.0.1:{port}/robot\"",
            publish.display()
        ),
        &format!(
            "[[job]]\nname = \"pub\"\ncommand = [\"/bin/sh\", \"{}\", \"{{run_dir}}\"]\n\
             result = \"{{run_dir}}/output.xml\"\nevery = \"1h\"\ntimeout = \"60s\"\n{user}",
            make.display()
        ),
    );
    let out = inst.run(&["run-once", "pub"]);
    assert!(out.status.success(), "{out:?}\n{}", inst.log());
    let rec = &inst.finished_records("pub")[0];
    let run_id = rec["run_id"].as_str().unwrap();
    let dest = publish.join("t/pub").join(run_id);
    let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    let used = std::fs::read_to_string(run_dir.join("stderr.log")).unwrap_or_default();
    assert!(
        rec["log_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/log.html")),
        "{rec}"
    );
    let mut names = vec![
        "log.html".to_string(),
        "browser/screenshot/a.png".to_string(),
    ];
    names.extend((0..30).map(|i| format!("browser/screenshot/b{i}.png")));
    let meta: Vec<(String, std::fs::Metadata)> = names
        .iter()
        .filter_map(|n| Some((n.clone(), std::fs::symlink_metadata(dest.join(n)).ok()?)))
        .collect();
    // Disk use: each published inode's blocks, once.
    let inodes: BTreeMap<u64, u64> = meta
        .iter()
        .map(|(_, m)| (m.ino(), m.blocks() * 512))
        .collect();
    let disk: u64 = inodes.values().sum();
    let images: Vec<&std::fs::Metadata> = meta[1..].iter().map(|(_, m)| m).collect();
    let image_inodes: std::collections::BTreeSet<u64> = images.iter().map(|m| m.ino()).collect();
    println!(
        "published {} of {} names: {} inode(s) ({} for the 31 screenshot names, nlink {}), \
         {disk} bytes on disk (the run's folder: {} KiB, du -sk); note: {}",
        meta.len(),
        names.len(),
        inodes.len(),
        image_inodes.len(),
        images.first().map_or(0, |m| m.nlink()),
        used.split_whitespace().next().unwrap_or("?"),
        rec["note"]
    );
    assert_eq!(meta.len(), names.len(), "every name published: {rec}");
    assert!(
        !rec["note"].as_str().unwrap_or("").contains("publish"),
        "nothing left out: {rec}"
    );
    assert!(disk < 1 << 20, "{disk} bytes of the daemon's disk");
    assert_eq!(
        image_inodes.len(),
        1,
        "the 31 screenshot names are one inode"
    );
    assert_eq!(images[0].nlink(), 31);
    // The content as it was, the sparse log's data where it was.
    let log = &meta[0].1;
    assert_eq!(log.len(), 100 << 20);
    let mut f = std::fs::File::open(dest.join("log.html")).unwrap();
    let mut head = [0u8; 9];
    f.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"<html>log");
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(50 << 20)).unwrap();
    let mut mid = [0u8; 6];
    f.read_exact(&mut mid).unwrap();
    assert_eq!(&mid, b"middle");
    assert_eq!(images[0].len(), 19 << 20);
    // The daemon's files, readable by the web server, nothing more.
    let me = unsafe { libc::geteuid() };
    for (n, m) in &meta {
        assert_eq!((m.uid(), m.mode() & 0o7777), (me, 0o644), "{n}");
    }
    let shots = std::fs::symlink_metadata(dest.join("browser/screenshot")).unwrap();
    assert_eq!((shots.uid(), shots.mode() & 0o7777), (me, 0o755));
    if let Some(web) = &web {
        let (code, body) = http_get(
            web.port,
            &format!("/robot/t/pub/{run_id}/browser/screenshot/b7.png"),
        );
        assert_eq!(code, 200);
        assert_eq!(body.len(), 19 << 20);
        assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot");
    } else {
        require_tool(false, "nginx (apt-get install nginx)");
    }
}

// --- Part 2: plugins ----------------------------------------------------------------------

/// One perfdata item as the plugin printed it.
#[derive(Debug)]
struct Printed {
    label: String,
    value: f64,
    unit: String,
    warn: Option<f64>,
    crit: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

/// What the plugin printed (its stdout.log in the run folder), read here on its own by the
/// plugin guidelines: summary, long output, perfdata after `|` (first line, then every line
/// after the first `|` of the long output).
fn printed(stdout: &str) -> (String, Vec<String>, Vec<Printed>) {
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or("");
    let (summary, mut perf) = match first.split_once('|') {
        Some((s, p)) => (s.trim().to_string(), p.to_string()),
        None => (first.trim().to_string(), String::new()),
    };
    let mut details = Vec::new();
    let mut in_perf = false;
    for l in lines {
        if in_perf {
            perf.push(' ');
            perf.push_str(l);
        } else if let Some((t, p)) = l.split_once('|') {
            details.push(t.trim_end().to_string());
            perf.push(' ');
            perf.push_str(p);
            in_perf = true;
        } else {
            details.push(l.trim_end().to_string());
        }
    }
    let num = |s: &str| s.trim().parse::<f64>().ok();
    let items = perf
        .split_whitespace()
        .filter_map(|item| {
            let (label, rest) = item.split_once('=')?;
            let mut f = rest.split(';');
            let v = f.next()?;
            let split = v
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-')))
                .unwrap_or(v.len());
            Some(Printed {
                label: label.trim_matches('\'').to_string(),
                value: v[..split].parse().ok()?,
                unit: v[split..].to_string(),
                warn: f.next().and_then(num),
                crit: f.next().and_then(num),
                min: f.next().and_then(num),
                max: f.next().and_then(num),
            })
        })
        .collect();
    (summary, details, items)
}

/// The factor the daemon's metric should be of the printed value: seconds and bytes.
fn factor(unit: &str) -> f64 {
    match unit {
        "ms" => 1e-3,
        "us" => 1e-6,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024f64.powi(4),
        _ => 1.0,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The check of plugin job `job` compared with what its plugin printed in that run.
fn compare(inst: &Instance, job: &str, service: &str) -> LocalCheck {
    let (check, _) = check_with_result(inst, service);
    let rec = inst.finished_records(job).pop().unwrap();
    let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    let stdout = std::fs::read_to_string(run_dir.join("stdout.log")).unwrap();
    let (summary, details, items) = printed(&stdout);
    let code = rec["exit_code"].as_i64();
    let want_state = match code {
        Some(c @ 0..=3) if rec["outcome"] != "timeout" => c as u8,
        _ if rec["outcome"] == "timeout" => check.state_num(),
        _ => 3,
    };
    assert_eq!(check.state_num(), want_state, "{job}: {check:?} / {stdout}");
    let word = ["OK", "WARN", "CRIT", "UNKNOWN"][usize::from(want_state)];
    assert!(
        check.text.starts_with(&format!("{word} - {summary}")),
        "{job}: {:?} should start with the plugin's summary {summary:?}",
        check.text
    );
    let mut parts = check.text.split("\\n");
    parts.next();
    let shown: Vec<&str> = parts.collect();
    let details: Vec<&str> = details
        .iter()
        .map(|d| d.as_str())
        .filter(|d| !d.trim().is_empty())
        .collect();
    assert_eq!(shown, details, "{job}: details");
    // Every metric the plugin printed, and no other but the job's own runtime.
    let plugin_metrics: Vec<_> = check
        .metrics
        .iter()
        .filter(|m| m.name != "runtime")
        .collect();
    assert_eq!(
        plugin_metrics.len(),
        items.len(),
        "{job}: {:?} vs {items:?}",
        check.metrics
    );
    for (m, p) in plugin_metrics.iter().zip(&items) {
        let f = factor(&p.unit);
        let name: String = p
            .label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        assert_eq!(m.name, name, "{job}: name of {p:?}");
        assert!(m.unit.is_empty(), "{job}: a unit in {m:?}");
        assert!(close(m.value, p.value * f), "{job}: {m:?} vs {p:?}");
        let upper = |l: &Option<common::checkmk::Level>| match l {
            Some(common::checkmk::Level::Upper(v)) => Some(*v),
            _ => None,
        };
        for (got, want, what) in [
            (upper(&m.warn), p.warn, "warn"),
            (upper(&m.crit), p.crit, "crit"),
            (m.min, p.min, "min"),
            (m.max, p.max, "max"),
        ] {
            match (got, want) {
                (Some(g), Some(w)) => assert!(close(g, w * f), "{job}: {what} {m:?} vs {p:?}"),
                (None, None) => {}
                _ => panic!("{job}: {what} {m:?} vs {p:?}"),
            }
        }
    }
    check
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn real_plugins_report_their_state_text_and_every_metric() {
    let plugins = Path::new(PLUGINS);
    let all = ["check_disk", "check_http", "check_procs"]
        .iter()
        .all(|p| plugins.join(p).is_file());
    if !require_tool(
        all,
        "monitoring-plugins-basic (apt-get install monitoring-plugins-basic)",
    ) {
        return;
    }
    let Some(nginx) = nginx_bin() else {
        require_tool(false, "nginx (apt-get install nginx)");
        return;
    };
    let inst = Instance::new("", "");
    open_for_web(&inst);
    let www = inst.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(www.join("index.html"), "<html><body>hello</body></html>\n").unwrap();
    std::fs::set_permissions(
        www.join("index.html"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let web = Nginx::start(&nginx, &www);
    let closed = free_port();
    let d = inst.dir.path();
    let hang = script(
        d,
        "check_hang",
        "echo 'HANG starting | wait=1s'\nexec sleep 600",
    );
    let odd = script(
        d,
        "check_odd",
        "echo 'ODD - something | size=2KB;4;8;0;16 lat=250ms'\necho 'first detail'\necho 'second detail'\nexit 7",
    );
    let failing = script(
        d,
        "deploy",
        "echo 'starting' ; echo 'error: database unreachable' >&2 ; exit 1",
    );
    let p = |n: &str| plugins.join(n).display().to_string();
    let jobs = format!(
        r#"
[[job]]
name = "disk"
kind = "plugin"
command = ["{disk}", "-w", "1%", "-c", "1%", "-p", "/"]
every = "1h"
timeout = "60s"

[[job]]
name = "web"
kind = "plugin"
command = ["{http}", "-H", "127.0.0.1", "-p", "{port}", "-u", "/index.html"]
every = "1h"
timeout = "60s"

[[job]]
name = "web-down"
kind = "plugin"
command = ["{http}", "-H", "127.0.0.1", "-p", "{closed}"]
every = "1h"
timeout = "60s"

[[job]]
name = "procs"
kind = "plugin"
service = "Processes on this host"
command = ["{procs}", "-w", "100000", "-c", "200000"]
every = "1h"
timeout = "60s"

[[job]]
name = "hang"
kind = "plugin"
command = ["{hang}"]
every = "1h"
timeout = "2s"

[[job]]
name = "hang-unknown"
kind = "plugin"
command = ["{hang}"]
every = "1h"
timeout = "2s"
timeout_state = "unknown"

[[job]]
name = "odd"
kind = "plugin"
command = ["{odd}"]
every = "1h"
timeout = "60s"

[[job]]
name = "deploy"
command = ["{failing}"]
every = "1h"
timeout = "60s"
"#,
        disk = p("check_disk"),
        http = p("check_http"),
        procs = p("check_procs"),
        port = web.port,
        hang = hang.display(),
        odd = odd.display(),
        failing = failing.display(),
    );
    inst.write_config("", &jobs);
    for job in [
        "disk",
        "web",
        "web-down",
        "procs",
        "hang",
        "hang-unknown",
        "odd",
        "deploy",
    ] {
        let out = inst.run(&["run-once", job]);
        assert!(out.status.code().is_some(), "{job}: {out:?}");
    }
    let disk = compare(&inst, "disk", "Robotmk t disk");
    assert_eq!(disk.state_num(), 0);
    assert!(
        disk.metrics.iter().any(|m| m.name == "_"),
        "check_disk's `/`: {disk:?}"
    );
    let web_ok = compare(&inst, "web", "Robotmk t web");
    assert_eq!(web_ok.state_num(), 0, "{web_ok:?}");
    assert!(web_ok.metric("time").is_some() && web_ok.metric("size").is_some());
    let down = compare(&inst, "web-down", "Robotmk t web-down");
    assert_eq!(down.state_num(), 2, "{down:?}");
    let procs = compare(&inst, "procs", "Processes on this host");
    assert_eq!(procs.state_num(), 0);
    let (out, _) = check_with_result(&inst, "Processes on this host");
    println!(
        "ctrl line of a plugin with its metrics:\n{} \"{}\" {:?} {}",
        out.state_num(),
        out.name,
        out.metrics,
        out.text
    );
    let hang = compare(&inst, "hang", "Robotmk t hang");
    assert_eq!(hang.state_num(), 2, "{hang:?}");
    assert!(
        hang.text
            .contains("did not finish within its timeout of 2s"),
        "{}",
        hang.text
    );
    assert!(hang.text.contains("HANG starting"), "{}", hang.text);
    let hang_u = compare(&inst, "hang-unknown", "Robotmk t hang-unknown");
    assert_eq!(hang_u.state_num(), 3, "{hang_u:?}");
    // The hanging plugin's whole tree ended with the run.
    assert!(
        processes_of(&inst.dir.path().join("check_hang").display().to_string()).is_empty(),
        "the hanging plugin was left running"
    );
    let odd = compare(&inst, "odd", "Robotmk t odd");
    assert_eq!(odd.state_num(), 3);
    assert!(odd.text.contains("exited with 7"), "{}", odd.text);
    assert_eq!(odd.metric("size").unwrap().value, 2048.0);
    assert_eq!(odd.metric("lat").unwrap().value, 0.25);
    // A plain command that fails says why, in its own words.
    let (deploy, ctrl) = check_with_result(&inst, "Robotmk t deploy");
    assert_eq!(deploy.state_num(), 2);
    assert!(
        deploy
            .text
            .contains("(exit code 1: error: database unreachable)"),
        "{}",
        deploy.text
    );
    println!("ctrl output with plugins:\n{ctrl}");
}

#[test]
fn publishing_and_plugin_settings_are_checked_by_the_config() {
    let inst = Instance::new("", "");
    let job = "[[job]]\nname = \"p\"\nevery = \"1h\"\n";
    for (daemon, jobs, says) in [
        (
            "publish_dir = \"/srv/robot\"",
            format!("{job}command = [\"true\"]\n"),
            "`publish_dir` needs `publish_url`",
        ),
        (
            "publish_url = \"https://h/robot\"",
            format!("{job}command = [\"true\"]\n"),
            "`publish_url` needs `publish_dir`",
        ),
        (
            "publish_dir = \"/srv/robot\"\npublish_url = \"https://h/robot?x=1\"",
            format!("{job}command = [\"true\"]\n"),
            "which Checkmk would not take as part of a link",
        ),
        (
            "publish_dir = \"/srv/robot\"\npublish_url = \"file:///srv/robot\"",
            format!("{job}command = [\"true\"]\n"),
            "must start with http:// or https://",
        ),
        (
            "",
            format!("{job}kind = \"plugin\"\ncommand = [\"true\"]\nservice = \"it's mine\"\n"),
            "a Checkmk service name of a local check cannot carry",
        ),
        (
            "",
            format!("{job}command = [\"true\"]\nservice = \"Mine\"\n"),
            "`service` only applies to `kind = \"plugin\"` jobs",
        ),
        (
            "",
            format!("{job}kind = \"plugin\"\ncommand = [\"true\"]\ntimeout_state = \"red\"\n"),
            "\"red\" is not a state",
        ),
        (
            "",
            format!("{job}kind = \"plugin\"\ncommand = [\"true\"]\nresult = \"x.xml\"\n"),
            "`result` does not apply to `kind = \"plugin\"` jobs",
        ),
        (
            "",
            format!(
                "{job}kind = \"plugin\"\ncommand = [\"true\"]\nservice = \"Robotmk t q\"\n\n\
                 [[job]]\nname = \"q\"\nevery = \"1h\"\ncommand = [\"true\"]\n"
            ),
            "`service` \"Robotmk t q\" begins with \"Robotmk \"",
        ),
        (
            "",
            format!(
                "{job}kind = \"plugin\"\ncommand = [\"true\"]\nservice = \"Shop, HTTP\"\n\n\
                 [[job]]\nname = \"q\"\nevery = \"1h\"\nkind = \"plugin\"\ncommand = [\"true\"]\nservice = \"Shop HTTP\"\n"
            ),
            "the service name \"Shop HTTP\" is taken by another job",
        ),
    ] {
        inst.write_config(daemon, &jobs);
        let out = inst.run(&["check-config"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{daemon} {jobs}: {err}");
        assert!(err.contains(says), "{daemon} {jobs}: {err}");
    }
    inst.write_config(
        "publish_dir = \"/srv/robot\"\npublish_url = \"https://h/robot/\"",
        &format!("{job}kind = \"plugin\"\ncommand = [\"true\"]\nservice = \"Mine\"\ntimeout_state = \"warn\"\n"),
    );
    let out = inst.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
