//! What the dynamic loader loads for the dynamically linked build: glibc and nothing else.
//! libgcc's unwinder is linked in (build.rs), so no process start pays for opening,
//! relocating and initialising `libgcc_s.so.1` (whose CPU-model constructor traps to the
//! hypervisor on a virtual machine): ctrl runs every minute (issue 25).
#![cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(target_feature = "crt-static")
))]

use std::process::Command;

#[test]
fn the_binary_loads_glibc_and_no_libgcc_s() {
    // What `ldd` prints, from the loader itself: with this variable set, ld.so lists the
    // objects it loaded for the program and exits instead of running it.
    let out = Command::new(env!("CARGO_BIN_EXE_robotmk-daemon"))
        .arg("--version")
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("run the binary under the loader's trace");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the loader's trace failed: {out:?}");
    assert!(
        listed.contains("libc.so.6"),
        "the trace lists the loaded objects (libc at least):\n{listed}"
    );
    assert!(
        !listed.contains("libgcc_s"),
        "the binary loads libgcc_s at every start (build.rs links libgcc's unwinder in):\n{listed}"
    );
}
