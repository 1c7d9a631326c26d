//! Links libgcc's unwinder into the dynamically linked Linux build instead of loading
//! `libgcc_s.so.1` at every start, as `gcc -static-libgcc` does for a C program.
//!
//! Rust's standard library asks for `-lgcc_s` (its unwinder: backtraces; this build aborts on
//! panic and never unwinds). Loading it costs every process start a library to open, map and
//! relocate, and runs libgcc's CPU-model constructor, whose `cpuid` instructions each trap to
//! the hypervisor on a virtual machine. ctrl starts every minute on every monitored host: with
//! libgcc_s it took 2.23x `/bin/true` at 1,000 jobs, without it 2.00x, as the static build
//! does (issue 25; `--version` 1.58 -> 1.38 ms against `/bin/true` 1.13 ms, interleaved).
//!
//! How: a linker script named `libgcc_s.so` in a folder searched before the system's, which
//! stands for the static archive (`INPUT(-lgcc_eh)`, the unwinder of gcc's own install).
//! The static build (`crt-static`) already links `gcc_eh`; other targets are left alone.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if !linux_gnu || static_crt {
        return;
    }
    let dir = PathBuf::from(var("OUT_DIR")).join("static-libgcc");
    let script = dir.join("libgcc_s.so");
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&script, "INPUT(-lgcc_eh)\n"))
    {
        panic!("cannot write {}: {e}", script.display());
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
}
