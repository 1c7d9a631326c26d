//! The static tarball build and user lookups (issue 20.1): glibc's NSS crashes a static binary
//! (SIGSEGV in `libnss_systemd.so.2` with Debian's `passwd: files systemd`), so the static build
//! never loads it. A user that is not there is a config error naming the user — in
//! `check-config`, and as a CRIT line in ctrl's output — never a crash and never an empty
//! output; a user that is there runs its job.
//!
//! The static binary is built by `scripts/build-release.sh --static` (a release build);
//! scripts/test.sh does that and passes its path in `ROBOTMK_TEST_STATIC_BIN`. Skips without
//! it on a developer's machine, fails in CI.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn static_bin() -> Option<PathBuf> {
    let p = std::env::var_os("ROBOTMK_TEST_STATIC_BIN").map(PathBuf::from);
    let ok = p.as_ref().is_some_and(|p| p.is_file());
    if !require_tool(
        ok,
        "the static build in ROBOTMK_TEST_STATIC_BIN (scripts/build-release.sh --static; scripts/test.sh sets it)",
    ) {
        return None;
    }
    p
}

/// True if the ELF file has no program interpreter (PT_INTERP): statically linked.
fn is_static(path: &Path) -> bool {
    let b = std::fs::read(path).expect("read the binary");
    assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(b[4], 2, "not a 64-bit ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let p = phoff + i * phentsize;
        u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) != 3
    })
}

fn run(bin: &Path, inst: &Instance, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--config")
        .arg(&inst.config)
        .args(args)
        .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
        .env_remove("MK_CONFDIR")
        .env_remove("MK_VARDIR")
        .stdin(Stdio::null())
        .output()
        .expect("run the static binary")
}

const MISSING: &str = "robotmk-i20-no-such-user";

#[test]
fn the_static_build_reports_a_missing_user_as_a_config_error_and_never_crashes() {
    let Some(bin) = static_bin() else { return };
    assert!(
        is_static(&bin),
        "{} is not statically linked",
        bin.display()
    );
    let job = format!(
        "[[job]]\nname = \"as-nobody-known\"\ncommand = [\"true\"]\nevery = \"1h\"\nuser = \"{MISSING}\"\n"
    );
    let inst = Instance::new("", &job);

    let check = run(&bin, &inst, &["check-config"]);
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(
        check.status.signal(),
        None,
        "check-config was killed by a signal: {check:?}"
    );
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    assert!(
        err.contains("config error") && err.contains(MISSING) && err.contains("job[0].user"),
        "the error names the user and the field: {err}"
    );

    let ctrl = run(&bin, &inst, &["ctrl"]);
    assert_eq!(ctrl.status.signal(), None, "ctrl was killed: {ctrl:?}");
    assert!(ctrl.status.success(), "{ctrl:?}");
    let out = String::from_utf8_lossy(&ctrl.stdout);
    let lines = local_lines(&out);
    let daemon = lines
        .iter()
        .find(|l| l.contains("\"Robotmk t daemon\""))
        .unwrap_or_else(|| panic!("no daemon line: {out}"));
    assert!(
        daemon.starts_with("2 ") && daemon.contains("config error") && daemon.contains(MISSING),
        "ctrl's daemon line is a CRIT config error naming the user: {daemon}"
    );
    assert_eq!(parse_section(&out)["ctrl"]["action"], "config_error");
    // The daemon it launched refused the config and is gone; none is left running.
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
}

#[test]
fn the_static_build_runs_a_job_as_a_user_that_is_there() {
    let Some(bin) = static_bin() else { return };
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "needs root in CI"
        );
        eprintln!("SKIP: running a job as another user needs root");
        return;
    }
    // `nobody` is in every /etc/passwd.
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"who\"\ncommand = [\"sh\", \"-c\", \"id -u\"]\nevery = \"2s\"\nuser = \"nobody\"\n",
    );
    // The user must reach the users' tree beside the state dir: the temp dir is 0700.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(inst.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let check = run(&bin, &inst, &["check-config"]);
    assert!(check.status.success(), "{check:?}");
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let shown = String::from_utf8_lossy(&check.stdout);
    let want = format!("user:     nobody (uid {}, gid {}", id("-u"), id("-g"));
    assert!(
        shown.contains(&want),
        "check-config shows the ids the host gives: {want}\n{shown}"
    );
    let ctrl = run(&bin, &inst, &["ctrl"]);
    assert!(ctrl.status.success(), "{ctrl:?}");
    assert!(
        wait_for(Duration::from_secs(30), || !inst
            .finished_records("who")
            .is_empty()),
        "the job never ran: {}",
        inst.log()
    );
    let rec = &inst.finished_records("who")[0];
    assert_eq!(rec["outcome"], "success", "{rec}");
    let out =
        std::fs::read_to_string(Path::new(rec["run_dir"].as_str().unwrap()).join("stdout.log"))
            .unwrap();
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    assert_eq!(out.trim(), String::from_utf8_lossy(&nobody.stdout).trim());
    let stop = run(&bin, &inst, &["stop", "--now"]);
    assert!(stop.status.success(), "{stop:?}");
}
