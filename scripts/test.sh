#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (Debian packages,
# the Windows target, Robot Framework in a virtual environment), then runs lints and
# `cargo test` (unit tests, integration tests with the real binary, the systemd sandbox test).
# CI runs this same script (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '==> %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------
pkgs=()
command -v x86_64-w64-mingw32-gcc >/dev/null || pkgs+=(gcc-mingw-w64-x86-64)
command -v systemd-nspawn >/dev/null || pkgs+=(systemd-container)
command -v debootstrap >/dev/null || pkgs+=(debootstrap)
# A real headless browser for tests/escapees.rs (its helpers leave their run the way nothing
# else does: double fork, setsid, rewritten environment).
command -v chromium >/dev/null || pkgs+=(chromium chromium-driver)
# Issue 23 (tests/publish_plugins.rs): a real nginx serves the published logs (the test runs
# its own, with its own config and port, as its child), and Debian's Nagios plugins run as
# `kind = "plugin"` jobs.
[ -x /usr/sbin/nginx ] || pkgs+=(nginx)
[ -x /usr/lib/nagios/plugins/check_disk ] || pkgs+=(monitoring-plugins-basic)
# tests/scheduler.rs sets the daemon's wall clock back (libfaketime: the machine's own clock
# is not the test's to change).
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || pkgs+=(faketime)
if ((${#pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    say "installing ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    say "missing ${pkgs[*]} (not root: tests that need them will skip)"
  fi
fi

# --- Rust targets ----------------------------------------------------------------------
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-pc-windows-gnu; then
  say "adding the Windows target"
  rustup target add x86_64-pc-windows-gnu
fi

# --- Windows under Wine (issue 5) ------------------------------------------------------
# tests/windows_wine.rs runs the Windows build under Wine: wine + wine64 here (as root); the
# test itself builds the agent-model harness and the bcryptprimitives.dll shim Rust's std
# needs under Wine 8 (tests/windows/, with mingw), uses a private WINEPREFIX, `timeout` on
# every wine call and `wineserver -k` on that prefix at the end. The Windows binary is built
# here once and handed over, so the test does not build it again in a target dir of its own.
if ! command -v wine >/dev/null || ! command -v wineserver >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    say "installing wine wine64"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wine wine64 >/dev/null
  else
    say "missing wine (not root: the Windows tests will skip)"
  fi
fi
if command -v x86_64-w64-mingw32-gcc >/dev/null && rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
  say "building the Windows binary for the Wine tests"
  cargo build --quiet --target x86_64-pc-windows-gnu --bin robotmk-daemon
  export ROBOTMK_WINDOWS_EXE="${CARGO_TARGET_DIR:-$PWD/target}/x86_64-pc-windows-gnu/debug/robotmk-daemon.exe"
fi
# --- end of the Wine section -------------------------------------------------------------

# --- Robot Framework in a venv (the system Python refuses pip install) ---------------
if [ ! -x .venv/bin/robot ]; then
  say "creating .venv with Robot Framework"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check robotframework
fi
# uv builds the jobs' Python environments when the host has it; tests/envs.rs compares it
# with pip, so both must be there.
if [ ! -x .venv/bin/uv ]; then
  say "installing uv into .venv"
  .venv/bin/pip install -q --disable-pip-version-check uv
fi
export ROBOTMK_TEST_ROBOT="$PWD/.venv/bin/robot"

# --- the .deb for tests/systemd_deb.rs (a release build; cargo-deb installed once) -----
# The sandbox test installs, upgrades and removes it with dpkg under a real systemd.
if [ "$(id -u)" = 0 ] && command -v systemd-nspawn >/dev/null; then
  say "building the .deb (scripts/package.sh deb)"
  ROBOTMK_TEST_DEB=$(scripts/package.sh deb)
  export ROBOTMK_TEST_DEB
fi

# --- the static tarball build for tests/static_build.rs (and the sandbox's NSS checks) ---
# The static binary never loads NSS (issue 20): those tests run it against a user that is
# not there, and against a user only systemd's NSS module knows.
say "building the static binary (scripts/build-release.sh --static)"
ROBOTMK_TEST_STATIC_BIN=$(scripts/build-release.sh --static)
export ROBOTMK_TEST_STATIC_BIN

# --- lints -----------------------------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all -- --check
say "clippy (linux)"
cargo clippy --all-targets -- -D warnings
say "clippy (windows)"
cargo clippy --all-targets --target x86_64-pc-windows-gnu -- -D warnings

# --- tests -----------------------------------------------------------------------------
say "cargo test"
cargo test --all-targets --no-fail-fast
# --all-targets leaves out doc tests: the compile_fail ones in src/service/run/mod.rs hold that
# a run as another user cannot take the shared-memory spawn path.
cargo test --doc

# --- the library's unit tests for Windows, under Wine --------------------------------------
# (path trust by ACL, safe opens, process identity: src/service/sys/windows.rs and the OS-neutral
# modules). The shim Rust's std needs under Wine 8 goes next to the test .exe; output goes to
# a file, since a Wine child keeps its creator's descriptors and a pipe might never close.
if [ -n "${ROBOTMK_WINDOWS_EXE:-}" ] && command -v wine >/dev/null; then
  say "unit tests for Windows (under Wine)"
  cargo test --quiet --no-run --target x86_64-pc-windows-gnu --lib
  deps="${CARGO_TARGET_DIR:-$PWD/target}/x86_64-pc-windows-gnu/debug/deps"
  x86_64-w64-mingw32-gcc -shared -O2 -o "$deps/bcryptprimitives.dll" \
    tests/windows/bcryptprimitives.c tests/windows/bcryptprimitives.def -ladvapi32
  wine_dir=$(mktemp -d)
  log="$wine_dir/unit-tests.log"
  rc=0
  WINEPREFIX="$wine_dir/prefix" WINEDEBUG=-all timeout 900 \
    cargo test --target x86_64-pc-windows-gnu --lib </dev/null >"$log" 2>&1 || rc=$?
  WINEPREFIX="$wine_dir/prefix" wineserver -k 2>/dev/null || true
  cat "$log"
  rm -rf "$wine_dir"
  [ "$rc" = 0 ] || { echo "Windows unit tests failed (exit $rc)"; exit "$rc"; }
elif [ "${CI:-}" = true ]; then
  echo "Windows unit tests: Wine or the Windows build is missing in CI"; exit 1
fi
