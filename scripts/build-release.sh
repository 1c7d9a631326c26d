#!/usr/bin/env bash
# Builds a release binary and prints its path. Two builds, one per artefact (README, "Which
# build"):
#
#   scripts/build-release.sh            the .deb's build: dynamically linked against the
#                                       distribution's glibc, so user lookups (`user = "…"`)
#                                       go through the host's NSS like any program's (LDAP,
#                                       sssd, systemd users). The benches measure this one.
#   scripts/build-release.sh --static   the tarball's build: statically linked (runs on hosts
#                                       with an older glibc; ctrl starts faster without the
#                                       dynamic loader). It never loads NSS modules: it asks
#                                       the host's `getent` or reads /etc/passwd and /etc/group
#                                       (src/service/sys/users.rs), since glibc's NSS crashes a static
#                                       binary (issue 20).
#
# `--target` keeps the static flag off build-time artifacts (proc-macros cannot be static).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
case "${1:-}" in
  "")
    cargo build --release -q
    echo "$target/release/robotmk-daemon"
    ;;
  --static)
    triple=$(rustc -vV | sed -n 's/^host: //p')
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q --target "$triple"
    echo "$target/$triple/release/robotmk-daemon"
    ;;
  *) echo "usage: $0 [--static]" >&2; exit 2 ;;
esac
