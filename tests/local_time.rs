//! Issue D4: cron schedules are in the host's local time whoever launched the daemon. A ctrl
//! (or `start`) run from a shell with `TZ` set must not hand that zone to the daemon it
//! launches; `start --foreground` (a unit or container that sets `TZ` on purpose) keeps it.
//! `status` says which zone the daemon's cron schedules are in.
#![cfg(unix)]

mod common;

use common::{text, wait_for, Instance};
use std::time::Duration;

const NINE: &str = "[[job]]\nname = \"nine\"\ncommand = [\"true\"]\ncron = \"0 9 * * *\"\n";

/// A POSIX `TZ` about twelve hours from the host's zone (no tz database needed): 09:00 there
/// is a different instant from 09:00 on the host.
fn far_zone() -> String {
    let out = std::process::Command::new("date")
        .arg("+%z")
        .env_remove("TZ")
        .output()
        .expect("date");
    let z = text(&out.stdout);
    let z = z.trim();
    let hours: i32 = z[..3].parse().unwrap_or(0);
    // POSIX signs are west-positive: `FAR+7` is UTC-07:00.
    if hours >= 0 {
        format!("FAR+{}", 12 - hours)
    } else {
        format!("FAR-{}", 12 + hours)
    }
}

/// The daemon's next due time of job `nine`, as `status --json` shows it.
fn next_due(inst: &Instance) -> String {
    let s = inst.status_json();
    assert_eq!(s["daemon"]["running"], true, "{s}");
    s["jobs"][0]["next_due"]
        .as_str()
        .expect("next_due")
        .to_string()
}

fn stop(inst: &Instance) {
    let out = inst.run(&["stop", "--now"]);
    assert!(out.status.success(), "{out:?}");
    assert!(inst.wait_daemon_gone(Duration::from_secs(10)));
}

#[test]
fn a_daemon_launched_by_ctrl_schedules_cron_in_the_hosts_zone_whatever_tz_ctrl_has() {
    let far = far_zone();
    let inst = Instance::new("", NINE);
    // The first ctrl comes from an admin's shell with TZ set (or a container's environment).
    let out = inst.cmd().arg("ctrl").env("TZ", &far).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let with_tz = next_due(&inst);
    let s = inst.status_json();
    let zone = s["daemon"]["time_zone"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let table = text(&inst.run(&["status"]).stdout);
    stop(&inst);
    // The agent's own ctrl, without TZ.
    let out = inst.cmd().arg("ctrl").env_remove("TZ").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let without_tz = next_due(&inst);
    assert_eq!(
        with_tz, without_tz,
        "a daemon launched by a ctrl with TZ={far} schedules `0 9 * * *` elsewhere"
    );
    assert!(
        zone.contains("/etc/localtime") && !zone.contains("FAR"),
        "the daemon's zone: {zone:?}"
    );
    assert!(
        table.contains(&format!("cron time:  local time, {zone}")),
        "{table}"
    );
    stop(&inst);
    // Stopped: status names the zone a launch would take.
    let table = text(
        &inst
            .cmd()
            .arg("status")
            .env("TZ", &far)
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        table.contains("cron time:  local time, ") && !table.contains("FAR"),
        "{table}"
    );
}

#[test]
fn start_foreground_keeps_the_tz_it_was_given() {
    let far = far_zone();
    let inst = Instance::new("", NINE);
    let mut fg = inst
        .cmd()
        .args(["start", "--foreground"])
        .env("TZ", &far)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start --foreground");
    // Running (its lock held) comes before its first status: wait for the status, which
    // names the zone.
    assert!(
        wait_for(Duration::from_secs(10), || {
            let s = inst.status_json();
            s["daemon"]["running"] == true && s["daemon"]["time_zone"].is_string()
        }),
        "no daemon"
    );
    let s = inst.status_json();
    let zone = s["daemon"]["time_zone"].as_str().unwrap_or_default();
    assert!(
        zone.starts_with(&format!("{far} (")) && zone.ends_with("from TZ"),
        "{zone}"
    );
    let in_far = next_due(&inst);
    stop(&inst);
    let _ = fg.wait();
    let out = inst.cmd().arg("ctrl").env_remove("TZ").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_ne!(in_far, next_due(&inst), "TZ={far} was not in force");
    stop(&inst);
}

/// The host's zone changed under a running daemon (`timedatectl set-timezone` relinks
/// `/etc/localtime`): its cron jobs are planned again in the new zone, and `status` names it,
/// without a reload. Runs the daemon in a private mount namespace with a copy of `/etc`
/// bound over it, so the host's zone is never touched.
#[test]
fn a_change_of_the_hosts_zone_replans_cron_jobs() {
    if !common::require_root("a private mount namespace (unshare --mount) needs root") {
        return;
    }
    let zones = std::path::Path::new("/usr/share/zoneinfo/Etc");
    if !common::require_tool(zones.join("GMT-5").exists(), "the tz database (tzdata)") {
        return;
    }
    let host_zone = std::fs::read_link("/etc/localtime").ok();
    let inst = Instance::new("heartbeat_timeout = \"0\"", NINE);
    let etc = inst.dir.path().join("etc");
    // Errors on special files are of no matter: the daemon reads users and the zone.
    let _ = std::process::Command::new("cp")
        .args(["-a", "/etc"])
        .arg(&etc)
        .status();
    let relink = |target: &str, etc: &std::path::Path| {
        let tmp = etc.join(".localtime.new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(zones.join(target), &tmp).unwrap();
        std::fs::rename(&tmp, etc.join("localtime")).unwrap();
    };
    relink("UTC", &etc);
    // `start` detaches: the daemon stays in the namespace after unshare's shell has gone.
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc && exec \"$2\" --config \"$3\" start")
        .arg("sh")
        .arg(&etc)
        .arg(common::BIN)
        .arg(&inst.config)
        .env_remove("TZ")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare");
    assert!(out.status.success(), "{out:?}");
    let zone = |inst: &Instance| {
        let s = inst.status_json();
        let z = s["daemon"]["time_zone"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (
            z,
            s["jobs"][0]["next_due"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    assert!(
        wait_for(Duration::from_secs(10), || zone(&inst)
            .0
            .starts_with("Etc/UTC (")),
        "{:?}",
        zone(&inst)
    );
    assert!(zone(&inst).1.ends_with("T09:00:00Z"), "{:?}", zone(&inst));
    // UTC+05:00 (the tz database's signs are POSIX's): 09:00 there is 04:00 UTC.
    relink("GMT-5", &etc);
    let ok = wait_for(Duration::from_secs(10), || {
        let (z, due) = zone(&inst);
        z.starts_with("Etc/GMT-5 (UTC+05:00)") && due.ends_with("T04:00:00Z")
    });
    assert!(
        ok,
        "zone and next due after the change: {:?}\n{}",
        zone(&inst),
        inst.log()
    );
    let table = text(&inst.run(&["status"]).stdout);
    assert!(table.contains("Etc/GMT-5"), "{table}");
    // A zone file copied over /etc/localtime (no link to name it) while /etc/timezone names
    // another zone: the rules are the copy's, and the name is not taken from /etc/timezone.
    std::fs::write(etc.join("timezone"), "Etc/UTC\n").unwrap();
    let tmp = etc.join(".localtime.new");
    let _ = std::fs::remove_file(&tmp);
    std::fs::copy(zones.join("GMT+5"), &tmp).unwrap();
    std::fs::rename(&tmp, etc.join("localtime")).unwrap();
    let ok = wait_for(Duration::from_secs(10), || {
        let (z, due) = zone(&inst);
        z.starts_with("unnamed zone (not the Etc/UTC that /etc/timezone names) (UTC-05:00)")
            && due.ends_with("T14:00:00Z")
    });
    assert!(ok, "after a copied zone file: {:?}", zone(&inst));
    assert_eq!(
        std::fs::read_link("/etc/localtime").ok(),
        host_zone,
        "the host's zone"
    );
    stop(&inst);
}
