//! Past the rate of runs the machine sustains the daemon degrades visibly, never silently
//! (issue 25): due times it could not fire are recorded as skipped runs, and ctrl's daemon
//! line turns WARN naming the backlog, until a minute after the daemon caught up.
//! The overload: the daemon held in SIGSTOP for three periods of its jobs, as a machine too
//! busy to give it the CPU would; real binary, real signals, polled with deadlines.
#![cfg(unix)]

mod common;

use common::*;
use std::time::Duration;

/// The daemon held stopped; continued on drop (also when the test panics).
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        // SAFETY: signalling the daemon this test started (its PID from its own status).
        unsafe {
            libc::kill(pid as i32, libc::SIGSTOP);
        }
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: the daemon stopped above; the instance's guard ends it later by PID.
        unsafe {
            libc::kill(self.0 as i32, libc::SIGCONT);
        }
    }
}

fn daemon_line(inst: &Instance) -> String {
    let out = inst.ctrl();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("\"Robotmk t daemon\""))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn due_times_the_daemon_was_too_late_for_are_recorded_as_skipped_and_the_daemon_line_warns() {
    let jobs = (0..3)
        .map(|i| format!("[[job]]\nname = \"tick{i}\"\ncommand = [\"true\"]\nevery = \"1s\"\n"))
        .collect::<String>();
    let inst = Instance::new("heartbeat_timeout = \"10m\"", &jobs);
    inst.ctrl_json();
    assert!(
        wait_for(Duration::from_secs(30), || (0..3)
            .all(|i| inst.finished_records(&format!("tick{i}")).len() >= 2)),
        "the jobs did not run"
    );
    let calm = daemon_line(&inst);
    assert!(calm.starts_with("0 "), "{calm}");
    let pid = inst.daemon_pid().expect("daemon pid");
    {
        let _held = Stopped::new(pid);
        // The overload itself (not a synchronisation): three due times pass unfired.
        std::thread::sleep(Duration::from_millis(3500));
    }
    let skipped = |i: usize| {
        inst.finished_records(&format!("tick{i}"))
            .into_iter()
            .filter(|r| r["outcome"] == "skipped")
            .collect::<Vec<_>>()
    };
    assert!(
        wait_for(Duration::from_secs(30), || (0..3)
            .all(|i| !skipped(i).is_empty())),
        "no skipped record for the missed due times: {} records of tick0, none skipped",
        inst.finished_records("tick0").len()
    );
    let note = skipped(0)[0]["note"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(note.contains("woke too late"), "{note}");
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            line = daemon_line(&inst);
            line.starts_with("1 ") && line.contains("behind schedule")
        }),
        "the daemon line does not warn: {line}"
    );
    assert!(line.contains("due times missed"), "{line}");
    assert!(line.contains("records waiting to be written"), "{line}");
    // The runs go on after the overload.
    let before = inst.finished_records("tick0").len();
    assert!(wait_for(Duration::from_secs(30), || inst
        .finished_records("tick0")
        .len()
        >= before + 2));
}
