#!/usr/bin/env bash
# Builds the release binary for deployment: statically linked (ctrl starts faster without the
# dynamic loader's work, and the plugin runs on hosts with an older glibc). Prints its path.
# `--target` keeps the static flag off build-time artifacts (proc-macros cannot be static).
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
if [ "$(uname -m)" != x86_64 ]; then
  cargo build --release -q   # other architectures: the ordinary (dynamic) build
  echo "${CARGO_TARGET_DIR:-$PWD/target}/release/robotmk-daemon"
  exit 0
fi
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q --target "$triple"
echo "${CARGO_TARGET_DIR:-$PWD/target}/$triple/release/robotmk-daemon"
