//! A slow user database does not hold the schedule back: loading the config again looks up
//! every job's user, and on a host with a large `/etc/passwd` (or LDAP, sssd) that takes
//! seconds; runs due meanwhile start on time under the running config.
//!
//! The daemon runs in a mount namespace of its own where `/etc` is a bind mount of a copy whose
//! `passwd` has 200,000 more accounts before the jobs' users: glibc's own lookups, as slow as
//! such a host's, and the host's files untouched. The whole folder, not the file: a `useradd`
//! on the host renames a new `/etc/passwd` over the old one, which would detach a mount on the
//! file (a CI run saw a load take 0.8 s).
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

const FILLER: usize = 200_000;
const USERS: usize = 300;

/// `start --foreground` of `inst` in a mount namespace of its own where `etc` is `/etc`.
fn daemon_on(inst: &Instance, etc: &std::path::Path) -> std::process::Child {
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc && shift && exec \"$@\"")
        .arg("sh")
        .arg(etc)
        .arg(BIN)
        .arg("--config")
        .arg(&inst.config)
        .args(["start", "--foreground"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("unshare")
}

/// Waits until the daemon of `inst` has run its job `tick` twice.
fn runs_tick(inst: &Instance, within: Duration) {
    assert!(
        wait_for(within, || inst.finished_records("tick").len() >= 2),
        "the daemon did not run tick: {}",
        inst.log()
    );
}

/// An instance and a copy of the host's `/etc` in its folder, to bind-mount over `/etc` in a
/// mount namespace of the daemon's; `None` (a skip, a failure in CI) without root and
/// `unshare`.
fn with_private_etc() -> Option<(Instance, std::path::PathBuf)> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    let unshare = std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !require_tool(
        root && unshare,
        "root and unshare --mount (a private /etc/passwd)",
    ) {
        return None;
    }
    let inst = Instance::new("heartbeat_timeout = \"0\"", "");
    let etc = inst.dir.path().join("etc");
    let copied = std::process::Command::new("cp")
        .args(["-a", "/etc"])
        .arg(&etc)
        .status()
        .is_ok_and(|s| s.success());
    assert!(copied, "cp -a /etc");
    Some((inst, etc))
}

#[test]
fn a_slow_user_database_does_not_make_runs_late() {
    let Some((inst, etc)) = with_private_etc() else {
        return;
    };
    let passwd = etc.join("passwd");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&passwd).unwrap());
        f.write_all(&std::fs::read("/etc/passwd").unwrap()).unwrap();
        for i in 0..FILLER {
            writeln!(
                f,
                "rmkdfill{i}:x:{}:{}::/nonexistent:/usr/sbin/nologin",
                3_000_000 + i,
                3_000_000 + i
            )
            .unwrap();
        }
        for i in 0..USERS {
            writeln!(
                f,
                "rmkdslow{i}:x:{}:{}::/nonexistent:/usr/sbin/nologin",
                2_900_000 + i,
                2_900_000 + i
            )
            .unwrap();
        }
        f.flush().unwrap();
    }
    // Jobs of those users, due on January 1st only: they are looked up, never run.
    let mut users_jobs = String::new();
    for i in 0..USERS {
        users_jobs.push_str(&format!(
            "[[job]]\nname = \"u{i}\"\ncommand = [\"true\"]\nuser = \"rmkdslow{i}\"\ncron = \"0 0 1 1 *\"\n"
        ));
    }
    let tick = "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n";
    // Every run of tick is kept: a load slowed by a busy machine (40 s seen) spans more runs
    // than the default keep_runs, and the pruned ones would read as runs not started.
    let daemon_cfg = "heartbeat_timeout = \"0\"\nkeep_runs = 100000";
    inst.write_config(daemon_cfg, &format!("{tick}{users_jobs}"));
    let mut daemon = daemon_on(&inst, &etc);
    let _guard = KillOnDrop(daemon.id());
    runs_tick(&inst, Duration::from_secs(120));
    // An edit: one more job, which shows when the load has been applied.
    let tock = "[[job]]\nname = \"tock\"\ncommand = [\"true\"]\nevery = \"1s\"\n";
    let edited_at = Instant::now();
    let edited = chrono::Utc::now();
    inst.write_config(daemon_cfg, &format!("{tick}{tock}{users_jobs}"));
    assert!(
        wait_for(Duration::from_secs(120), || !inst
            .records("tock")
            .is_empty()),
        "the edit was not applied: {}",
        inst.log()
    );
    let load = edited_at.elapsed();
    // The load must have been slow, or this test shows nothing.
    assert!(
        load > Duration::from_millis(1500),
        "the load took {load:?} only: make FILLER larger"
    );
    // Every run of tick due while the config loaded started on time.
    let during: Vec<(String, f64)> = inst
        .records("tick")
        .iter()
        .filter_map(|r| {
            let due = chrono::DateTime::parse_from_rfc3339(r["due"].as_str()?).ok()?;
            (due > edited && due.to_utc() < edited + load).then(|| {
                let started = r["started"]
                    .as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
                let late = started.map_or(f64::INFINITY, |s| {
                    (s - due).num_milliseconds() as f64 / 1000.0
                });
                (r["run_id"].as_str().unwrap_or("?").to_string(), late)
            })
        })
        .collect();
    assert!(
        during.len() + 1 >= load.as_secs() as usize,
        "tick's runs while the config loaded ({load:?}): {during:?}"
    );
    let late: Vec<_> = during.iter().filter(|(_, s)| *s > 0.5).collect();
    assert!(
        late.is_empty(),
        "late while the config loaded ({load:?}): {late:?}"
    );
    eprintln!(
        "a load of {USERS} users in a {FILLER}-line passwd took {load:?}; {} runs of tick due meanwhile, none late",
        during.len()
    );
    let _ = inst.run(&["stop", "--now"]);
    let _ = daemon.wait();
}

/// A user database that stops answering (LDAP, sssd or nslcd hung: played by a FIFO renamed
/// over `/etc/passwd`, which a lookup opens and waits on for ever) holds the load of the config
/// that its change asked for, and every edit after it waits for that load. The config runs on,
/// and the daemon line says so once the load has taken 30 s, instead of OK while edits are
/// silently never applied; once the database answers again, the edit is applied and the
/// warning goes.
#[test]
fn a_user_database_that_hangs_is_said_on_the_daemon_line_and_the_edit_follows_it() {
    let Some((inst, etc)) = with_private_etc() else {
        return;
    };
    let passwd = etc.join("passwd");
    let mut content = std::fs::read(&passwd).unwrap();
    content.extend_from_slice(b"rmkdhang:x:2899999:2899999::/nonexistent:/usr/sbin/nologin\n");
    std::fs::write(&passwd, &content).unwrap();
    let tick = "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n\
                [[job]]\nname = \"held\"\ncommand = [\"true\"]\nuser = \"rmkdhang\"\ncron = \"0 0 1 1 *\"\n";
    inst.write_config("heartbeat_timeout = \"0\"", tick);
    let mut daemon = daemon_on(&inst, &etc);
    let _guard = KillOnDrop(daemon.id());
    runs_tick(&inst, Duration::from_secs(60));
    // The database hangs: a FIFO (kept under a second name, to answer later) over passwd.
    let fifo = etc.join("passwd.fifo");
    let made = std::process::Command::new("mkfifo")
        .args(["-m", "644"])
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo");
    std::fs::hard_link(&fifo, etc.join("passwd.new")).unwrap();
    std::fs::rename(etc.join("passwd.new"), &passwd).unwrap();
    // An edit: one more job, which shows when a load has been applied.
    let tock = "[[job]]\nname = \"tock\"\ncommand = [\"true\"]\nevery = \"1s\"\n";
    inst.write_config("heartbeat_timeout = \"0\"", &format!("{tick}{tock}"));
    let daemon_line = || {
        let out = text(&inst.ctrl().stdout);
        out.lines()
            .find(|l| l.contains(" daemon\" - "))
            .unwrap_or_default()
            .to_string()
    };
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(90), || {
            line = daemon_line();
            line.contains("has not finished")
        }),
        "the daemon line never said the load hangs: {line}\n{}",
        inst.log()
    );
    assert!(line.starts_with("1 "), "{line}");
    assert!(
        inst.records("tock").is_empty(),
        "the edit was applied while the user database hung"
    );
    // It answers again: a plain passwd for new lookups, and the waiting one gets its answer.
    std::fs::write(etc.join("passwd.new"), &content).unwrap();
    std::fs::rename(etc.join("passwd.new"), &passwd).unwrap();
    {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let _ = w.write_all(&content);
    }
    assert!(
        wait_for(Duration::from_secs(60), || !inst.records("tock").is_empty()),
        "the edit was not applied once the user database answered: {}",
        inst.log()
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            line = daemon_line();
            !line.contains("has not finished")
        }),
        "{line}"
    );
    let _ = inst.run(&["stop", "--now"]);
    let _ = daemon.wait();
}

/// W2 F1: a job's user deleted and its uid given to a new user while the user database
/// hangs (sssd stuck: a FIFO over `group`). The load that follows the change hangs with it;
/// the daemon ran the job on as the old uid — the new user's — meanwhile, every second. Now
/// a `user` job waits until its user has been looked up again: no run as the stranger, and
/// once the database answers the job is held (its user is gone). A root job runs on.
#[test]
fn a_deleted_users_uid_given_to_another_is_not_run_as_while_the_database_hangs() {
    let Some((inst, etc)) = with_private_etc() else {
        return;
    };
    let (passwd, group) = (etc.join("passwd"), etc.join("group"));
    let old_passwd = std::fs::read_to_string(&passwd).unwrap();
    // `rmkdstay` stays: its lookup reads `group` (its groups), where the load hangs.
    let old_passwd = format!("{old_passwd}rmkdstay:x:2899902:2899902::/nonexistent:/bin/sh\n");
    let entry = "rmkdgone:x:2899901:2899901::/nonexistent:/bin/sh\n";
    std::fs::write(&passwd, format!("{old_passwd}{entry}")).unwrap();
    let group_text = format!(
        "{}rmkdgone:x:2899901:\nrmkdstay:x:2899902:\n",
        std::fs::read_to_string(&group).unwrap()
    );
    std::fs::write(&group, &group_text).unwrap();
    let jobs = "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n\
                [[job]]\nname = \"jo\"\ncommand = [\"true\"]\nuser = \"rmkdstay\"\ncron = \"0 0 1 1 *\"\n\
                [[job]]\nname = \"jv\"\ncommand = [\"/bin/sh\", \"-c\", \"id -u\"]\nuser = \"rmkdgone\"\nevery = \"1s\"\n";
    inst.write_config("heartbeat_timeout = \"0\"", jobs);
    let mut daemon = daemon_on(&inst, &etc);
    let _guard = KillOnDrop(daemon.id());
    assert!(
        wait_for(Duration::from_secs(60), || !inst
            .finished_records("jv")
            .is_empty()),
        "jv never ran: {}",
        inst.log()
    );
    // The group database hangs; then the user goes and a new one gets its uid.
    let fifo = etc.join("group.fifo");
    let made = std::process::Command::new("mkfifo")
        .args(["-m", "644"])
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo");
    std::fs::hard_link(&fifo, etc.join("group.new")).unwrap();
    std::fs::rename(etc.join("group.new"), &group).unwrap();
    let evil = "rmkdevil:x:2899901:2899901::/nonexistent:/bin/sh\n";
    std::fs::write(etc.join("passwd.new"), format!("{old_passwd}{evil}")).unwrap();
    std::fs::rename(etc.join("passwd.new"), &passwd).unwrap();
    // The daemon learns of it from its watch on the files; a run started in that instant
    // is not the point, those started a second later are.
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    let started_after = |r: &serde_json::Value| {
        r["started"]
            .as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
            .is_some_and(|t| t > after)
    };
    let ticks = |inst: &Instance| {
        inst.finished_records("tick")
            .iter()
            .filter(|r| started_after(r))
            .count()
    };
    // Four seconds of the root job's runs: the schedule goes on.
    assert!(
        wait_for(Duration::from_secs(60), || ticks(&inst) >= 4),
        "tick stopped: {}",
        inst.log()
    );
    let as_stranger: Vec<serde_json::Value> = inst
        .records("jv")
        .into_iter()
        .filter(|r| started_after(r))
        .collect();
    assert!(
        as_stranger.is_empty(),
        "jv ran as the uid now rmkdevil's: {as_stranger:?}"
    );
    // The database answers: the job's user is gone, its runs are held, never started. The
    // FIFO opens without waiting only while a lookup reads it: the load did hang.
    std::fs::write(etc.join("group.new"), &group_text).unwrap();
    std::fs::rename(etc.join("group.new"), &group).unwrap();
    {
        use std::os::unix::fs::OpenOptionsExt;
        let w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
        let mut w = w.expect("no load was reading the hung group file");
        let _ = w.write_all(group_text.as_bytes());
    }
    assert!(
        wait_for(Duration::from_secs(60), || {
            inst.finished_records("jv")
                .iter()
                .any(|r| r.to_string().contains("its user is held"))
        }),
        "jv is not held once the database answered: {:?}\n{}",
        inst.finished_records("jv").last(),
        inst.log()
    );
    for r in inst
        .finished_records("jv")
        .iter()
        .filter(|r| started_after(r))
    {
        assert!(r["pid"].is_null(), "a run of jv started: {r}");
    }
    let _ = inst.run(&["stop", "--now"]);
    let _ = daemon.wait();
}

/// W2 F8: a config edit and a `userdel` seen in one look (a busy daemon, or a script doing
/// both): the load failed on the gone user, the edit was taken as rejected, and the running
/// config ran the gone user's job on as its old uid. Now the edited config applies with that
/// job held. (SIGSTOP holds the daemon while both land, so one look sees them together.)
#[test]
fn an_edit_and_a_userdel_seen_together_hold_the_gone_users_job() {
    let Some((inst, etc)) = with_private_etc() else {
        return;
    };
    let passwd = etc.join("passwd");
    let old_passwd = std::fs::read_to_string(&passwd).unwrap();
    let entry = "rmkdgone2:x:2899903:2899903::/nonexistent:/bin/sh\n";
    std::fs::write(&passwd, format!("{old_passwd}{entry}")).unwrap();
    let jobs =
        "[[job]]\nname = \"jv\"\ncommand = [\"true\"]\nuser = \"rmkdgone2\"\nevery = \"1s\"\n";
    inst.write_config("heartbeat_timeout = \"0\"", jobs);
    let mut daemon = daemon_on(&inst, &etc);
    let _guard = KillOnDrop(daemon.id());
    assert!(
        wait_for(Duration::from_secs(60), || !inst
            .finished_records("jv")
            .is_empty()),
        "jv never ran: {}",
        inst.log()
    );
    let pid = inst.daemon_pid().expect("the daemon's pid");
    let signal = |sig| {
        // SAFETY: a signal to the daemon this test started, by its PID.
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    };
    signal(libc::SIGSTOP);
    let tock = "[[job]]\nname = \"tock\"\ncommand = [\"true\"]\nevery = \"1s\"\n";
    inst.write_config("heartbeat_timeout = \"0\"", &format!("{jobs}{tock}"));
    std::fs::write(etc.join("passwd.new"), &old_passwd).unwrap();
    std::fs::rename(etc.join("passwd.new"), &passwd).unwrap();
    signal(libc::SIGCONT);
    assert!(
        wait_for(Duration::from_secs(30), || {
            !inst.finished_records("tock").is_empty()
                && inst
                    .finished_records("jv")
                    .iter()
                    .any(|r| r.to_string().contains("its user is held"))
        }),
        "the edit did not apply with jv held: {:?}\n{}",
        inst.finished_records("jv").last(),
        inst.log()
    );
    let _ = inst.run(&["stop", "--now"]);
    let _ = daemon.wait();
}

/// A user database that hangs when the daemon starts (its first load looks up the jobs'
/// users): the daemon takes its instance lock first, so ctrl sees one daemon starting (WARN,
/// saying what it waits for) and launches no other — before, the daemon hung before its lock,
/// ctrl said "daemon not running" and launched another each time a launch's 30 s grace ran
/// out, each hanging the same way. Once the database answers, the daemon runs.
#[test]
fn a_user_database_that_hangs_at_start_leaves_one_daemon_starting() {
    if !require_tool(
        have_tool("nsenter"),
        "nsenter (ctrl in the daemon's mount namespace)",
    ) {
        return;
    }
    let Some((inst, etc)) = with_private_etc() else {
        return;
    };
    let passwd = etc.join("passwd");
    let mut content = std::fs::read(&passwd).unwrap();
    content.extend_from_slice(b"rmkdhang:x:2899999:2899999::/nonexistent:/usr/sbin/nologin\n");
    // The database hangs from the start: a FIFO (kept under a second name, to answer later).
    let fifo = etc.join("passwd.fifo");
    let made = std::process::Command::new("mkfifo")
        .args(["-m", "644"])
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo");
    std::fs::remove_file(&passwd).unwrap();
    std::fs::hard_link(&fifo, &passwd).unwrap();
    inst.write_config(
        "heartbeat_timeout = \"0\"",
        "[[job]]\nname = \"tick\"\ncommand = [\"true\"]\nevery = \"1s\"\n\
         [[job]]\nname = \"held\"\ncommand = [\"true\"]\nuser = \"rmkdhang\"\ncron = \"0 0 1 1 *\"\n",
    );
    // A mount namespace holding the private /etc, where each ctrl runs (as the agent would).
    let mut holder = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc && exec sleep 600")
        .arg("sh")
        .arg(&etc)
        .spawn()
        .expect("unshare");
    let _guard = KillOnDrop(holder.id());
    let ctrl = || {
        let out = std::process::Command::new("nsenter")
            .arg("-t")
            .arg(holder.id().to_string())
            .args(["-m", "--"])
            .arg(BIN)
            .arg("--config")
            .arg(&inst.config)
            .arg("ctrl")
            .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
            .output()
            .expect("ctrl");
        let text = text(&out.stdout);
        text.lines()
            .find(|l| l.contains(" daemon\" - "))
            .unwrap_or_default()
            .to_string()
    };
    // The mount is in place once /etc/passwd in the namespace is the FIFO.
    assert!(wait_for(Duration::from_secs(10), || std::fs::metadata(
        format!("/proc/{}/root/etc/passwd.fifo", holder.id())
    )
    .is_ok()));
    let first = ctrl();
    assert!(
        first.starts_with("1 ") && first.contains("starting"),
        "the first ctrl: {first}"
    );
    let daemons = inst.daemon_processes();
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    // Past a launch's grace (30 s: the starting mark's age), ctrl still launches no other.
    let mark = inst.state.join("starting");
    assert!(
        wait_for(Duration::from_secs(60), || std::fs::metadata(&mark)
            .and_then(|m| m.modified())
            .map_or(true, |m| m
                .elapsed()
                .is_ok_and(|e| e > Duration::from_secs(31)))),
        "the starting mark stayed young"
    );
    let later = ctrl();
    assert!(
        later.starts_with("1 ") && later.contains("starting"),
        "{later}"
    );
    let after = inst.daemon_processes();
    assert_eq!(
        after, daemons,
        "ctrl launched another daemon beside the stuck one"
    );
    // It answers: the daemon starts.
    std::fs::write(etc.join("passwd.new"), &content).unwrap();
    std::fs::rename(etc.join("passwd.new"), &passwd).unwrap();
    {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let _ = w.write_all(&content);
    }
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            line = ctrl();
            line.starts_with("0 ")
        }),
        "{line}\n{}",
        inst.log()
    );
    for p in inst.daemon_processes() {
        kill9(p);
    }
    let _ = holder.kill();
    let _ = holder.wait();
}
