#!/usr/bin/env bash
# Runs the demo instance of examples/demo for about a minute: builds the binary, installs
# Robot Framework into .venv, then plays the Checkmk agent (ctrl every 10 s) and shows what
# the daemon scheduled and what the agent would receive. Stops the daemon at the end.
# Usage: scripts/demo.sh [SECONDS]   (default 65)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-65}
cfg=examples/demo/robotmk-daemon.toml
echo "==> building"
bin=$(scripts/build-release.sh)
if [ ! -x .venv/bin/robot ]; then
  echo "==> installing Robot Framework into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check robotframework
fi
trap '"$bin" --config "$cfg" stop --now --timeout 10s || true' EXIT
echo "==> the config"
"$bin" --config "$cfg" check-config
end=$((SECONDS + secs))
while [ $SECONDS -lt $end ]; do
  echo; echo "==> ctrl (what the agent runs every minute) at $(date +%T)"
  "$bin" --config "$cfg" ctrl | sed -n '/<<<local/,$p'
  sleep 10
done
echo; echo "==> status"
"$bin" --config "$cfg" status || true
echo; echo "==> the runs left behind (target/demo-state/jobs/*/runs/*)"
ls -d target/demo-state/jobs/*/runs/* | tail -n 12
echo; echo "==> a robot run record"
cat "$(ls -d target/demo-state/jobs/web-login/runs/* | tail -n 1)/record.json" 2>/dev/null || true
