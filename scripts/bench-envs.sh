#!/usr/bin/env bash
# Environment build time, uv vs pip, cold and warm caches (issue 13): builds the same
# requirements (robotframework + one local wheel, offline: --no-index --find-links) with the
# daemon's own build command, `robotmk-daemon env-build`, and prints the wall time of each.
# Needs .venv with robotframework and uv (scripts/test.sh makes it) and network once to fetch
# robotframework's wheel. Usage: scripts/bench-envs.sh [python]   (default /usr/bin/python3)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-/usr/bin/python3}"
cargo build --quiet --bin robotmk-daemon
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/robotmk-daemon"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheels="$work/wheels"
mkdir -p "$wheels/pkg/mypkg-1.0.dist-info"
.venv/bin/pip download -q --disable-pip-version-check --only-binary=:all: --no-deps -d "$wheels" robotframework
# A one-module wheel, written by hand (no build backend, no network).
( cd "$wheels/pkg"
  echo "VERSION = '1.0'" > mypkg.py
  printf 'Metadata-Version: 2.1\nName: mypkg\nVersion: 1.0\n' > mypkg-1.0.dist-info/METADATA
  printf 'Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n' > mypkg-1.0.dist-info/WHEEL
  printf 'mypkg.py,,\nmypkg-1.0.dist-info/METADATA,,\nmypkg-1.0.dist-info/WHEEL,,\nmypkg-1.0.dist-info/RECORD,,\n' > mypkg-1.0.dist-info/RECORD
  "$OLDPWD/.venv/bin/python" -m zipfile -c ../mypkg-1.0-py3-none-any.whl mypkg.py mypkg-1.0.dist-info )
printf -- '--no-index\n--find-links %s\nrobotframework\nmypkg==1.0\n' "$wheels" > "$work/requirements.txt"
for tool in uv pip; do
  for cache in cold warm; do
    [ "$cache" = cold ] && rm -rf "$work/cache-$tool"
    rm -rf "$work/env"; mkdir "$work/env"
    extra=(); [ "$tool" = uv ] && extra=(--uv "$PWD/.venv/bin/uv")
    start=$(date +%s%N)
    UV_CACHE_DIR="$work/cache-uv" PIP_CACHE_DIR="$work/cache-pip" "$bin" env-build \
      --dir "$work/env" --source "$work/requirements.txt" --kind requirements \
      --python "$py" "${extra[@]}" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
    end=$(date +%s%N)
    printf '%-4s %-5s %6.2fs\n' "$tool" "$cache" "$(echo "($end - $start) / 1000000000" | bc -l)"
  done
done
