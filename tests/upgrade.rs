//! Upgrades by rename, as dpkg does them (issue 20.3): the new binary is written beside the
//! old one and renamed over it, so the running daemon keeps running the old build from a file
//! that no longer has a name (`/proc/<pid>/exe` reads `… (deleted)`). The helpers the daemon
//! starts from its own binary — the retry wrapper of a robot job with `attempts`, and an
//! environment build — must still start for a job added by a reload after that, and run the
//! very build the daemon runs.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The build user of this test's environment (as root; created once, kept).
const BUILDER: &str = "rmkd-upgrade-build";

/// A wheel of a one-module package, written by python (no network, no index).
const MKWHEEL: &str = r#"
import sys, zipfile, hashlib, base64, os
name, version, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
files = {
    f"{name}.py": f"VERSION = {version!r}\n",
    f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: robotmk-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = f"{name}-{version}.dist-info/RECORD"
lines = []
for path, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    lines.append(f"{path},sha256={digest},{len(text.encode())}")
lines.append(f"{record},,")
files[record] = "\n".join(lines) + "\n"
os.makedirs(outdir, exist_ok=True)
with zipfile.ZipFile(os.path.join(outdir, f"{name}-{version}-py3-none-any.whl"), "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
"#;

/// Copies the test's build to `to` (mode 0755) through a temporary name and a rename, as
/// dpkg installs a file.
fn install(to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = to.with_file_name(".robotmk-daemon.dpkg-new");
    std::fs::copy(BIN, &tmp).expect("copy the binary");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, to).expect("rename the new binary into place");
}

#[test]
fn after_an_upgrade_by_rename_a_reloaded_job_starts_its_retry_wrapper_and_environment_build() {
    let Some(robot) = test_robot() else {
        require_tool(
            false,
            "Robot Framework (.venv/bin/robot or $ROBOTMK_TEST_ROBOT)",
        );
        return;
    };
    // As root the environment is built as an unprivileged build user, which must reach the
    // base interpreter (the venv's python lives under /root here) and the test's folder.
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    let daemon = if root {
        if system_user(BUILDER).is_none() {
            return;
        }
        format!("uv = \"off\"\nbuild_user = \"{BUILDER}\"")
    } else {
        "uv = \"off\"".to_string()
    };
    let python = Path::new("/usr/bin/python3");
    if !require_tool(python.is_file(), "/usr/bin/python3") {
        return;
    }
    let inst = Instance::new(&daemon, "");
    let d = inst.dir.path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let installed = d.join("bin").join("robotmk-daemon");
    std::fs::create_dir(d.join("bin")).unwrap();
    install(&installed);
    let ctrl = |bin: &Path| {
        let out = Command::new(bin)
            .arg("--config")
            .arg(&inst.config)
            .arg("ctrl")
            .env("ROBOTMK_DAEMON_NO_SYSTEMD", "1")
            .env_remove("MK_CONFDIR")
            .env_remove("MK_VARDIR")
            .stdin(Stdio::null())
            .output()
            .expect("run ctrl");
        assert!(out.status.success(), "ctrl: {out:?}");
        parse_section(&String::from_utf8_lossy(&out.stdout))
    };
    let first = ctrl(&installed);
    let pid = first["daemon"]["pid"].as_u64().expect("a daemon runs") as u32;

    // The upgrade: a new file renamed over the one the daemon runs.
    install(&installed);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().ends_with(" (deleted)"),
        "the daemon should run a replaced file now: {}",
        exe.display()
    );

    // A config edit after the upgrade: a retried robot job and a job with an environment.
    let wheels = d.join("wheels");
    let made = Command::new(python)
        .args(["-c", MKWHEEL, "mypkg", "1.0"])
        .arg(&wheels)
        .output()
        .expect("run python");
    assert!(made.status.success(), "build the test wheel: {made:?}");
    std::fs::write(
        d.join("pass.robot"),
        "*** Test Cases ***\nPasses\n    Log    fine\n",
    )
    .unwrap();
    std::fs::write(
        d.join("requirements.txt"),
        format!(
            "--no-index\n--find-links {}\nmypkg==1.0\n",
            wheels.display()
        ),
    )
    .unwrap();
    let jobs = format!(
        "[[job]]\nname = \"retried\"\nkind = \"robot\"\nrobot = \"{r}\"\nsuite = \"pass.robot\"\nevery = \"2s\"\ntimeout = \"120s\"\nattempts = 2\n\n\
         [[job]]\nname = \"with-env\"\nsuite = \"pass.robot\"\nevery = \"1h\"\ntimeout = \"120s\"\nrequirements = \"requirements.txt\"\npython = \"{p}\"\n",
        r = robot.display(),
        p = python.display(),
    );
    inst.write_config(&daemon, &jobs);

    // A run that took longer than the 2 s interval (a loaded machine) has the next due time
    // recorded as skipped before it ends: that is not the run looked for.
    let ran = || -> Vec<serde_json::Value> {
        inst.finished_records("retried")
            .into_iter()
            .filter(|r| r["outcome"] != "skipped")
            .collect()
    };
    let done = wait_for(Duration::from_secs(120), || !ran().is_empty());
    let recs = ran();
    assert!(done, "the retried job never finished: {}", inst.log());
    let rec = &recs[0];
    assert_eq!(
        rec["outcome"],
        "success",
        "the retry wrapper must start after the upgrade: {rec}\nstderr: {}",
        std::fs::read_to_string(
            Path::new(rec["run_dir"].as_str().unwrap_or_default()).join("stderr.log")
        )
        .unwrap_or_default()
    );
    assert_eq!(rec["attempts"].as_array().map(Vec::len), Some(1), "{rec}");

    let env_state = || {
        inst.status_json()["envs"]
            .as_array()
            .and_then(|e| e.first().cloned())
            .unwrap_or_default()
    };
    assert!(
        wait_for(Duration::from_secs(180), || {
            let e = env_state();
            e["state"] == "ready" || e["state"] == "failed"
        }),
        "the environment build never ended: {}",
        env_state()
    );
    let env = env_state();
    assert_eq!(
        env["state"], "ready",
        "the environment build must start after the upgrade: {env}"
    );
    // The daemon that did all this is the one started before the upgrade.
    assert_eq!(inst.daemon_pid(), Some(pid));
}
