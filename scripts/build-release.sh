#!/usr/bin/env bash
# Builds a release binary and prints its path (README, "Which build"):
#
#   scripts/build-release.sh            the shipped build, in the .deb and the tarball alike:
#                                       statically linked (runs on any x86_64 glibc host; ctrl,
#                                       which the agent runs every minute, takes about 0.8x
#                                       the wall time of the dynamic build's: no dynamic
#                                       loader, no libgcc_s, no symbol binding; issue 25). It never
#                                       loads NSS modules: users are looked up by the host's
#                                       own `getent` in a process of its own, or in /etc/passwd
#                                       and /etc/group where there is no trusted `getent`
#                                       (src/service/sys/users.rs), since glibc's NSS crashes a
#                                       static binary (issue 20).
#   scripts/build-release.sh --static   the same (the name it had when only the tarball held it).
#   scripts/build-release.sh --dynamic  dynamically linked against this host's glibc, users
#                                       through NSS in-process (getpwnam_r): what `cargo build
#                                       --release` and `cargo install` make; not shipped.
#
# `--target` keeps the static flag off build-time artifacts (proc-macros cannot be static).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
case "${1:-}" in
  --dynamic)
    cargo build --release -q
    echo "$target/release/robotmk-daemon"
    ;;
  "" | --static)
    triple=$(rustc -vV | sed -n 's/^host: //p')
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q --target "$triple"
    echo "$target/$triple/release/robotmk-daemon"
    ;;
  *) echo "usage: $0 [--static|--dynamic]" >&2; exit 2 ;;
esac
