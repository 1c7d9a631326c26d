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
