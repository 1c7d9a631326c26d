#!/usr/bin/env bash
# ctrl's cost against /bin/true, with a running daemon and every job holding a real result,
# at 100 and 1,000 jobs (paired: ctrl and /bin/true alternate, so both see the same machine).
# Usage: BIN=path scripts/bench-ctrl.sh   (default: the build the .deb ships, dynamically linked,
#        scripts/build-release.sh; the static tarball build: BIN=$(scripts/build-release.sh --static)
#        scripts/bench-ctrl.sh; BENCH_CTRL_JOBS="100 1000"
#        sets the job counts, BENCH_CTRL_ROUNDS=300 the pairs measured per count)
# Prints one line per count: "ctrl vs /bin/true, N jobs with results: median X ms vs Y ms → R×
# (target ≤ 2× / ≤ 3×), output B bytes".
#
# Populating the results: every job is due hourly, at an offset that falls a few seconds after
# the daemon starts, so each job has one real run of `true` through the daemon and nothing
# more runs while ctrl is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-$(scripts/build-release.sh)}
counts=${BENCH_CTRL_JOBS:-100 1000}
rounds=${BENCH_CTRL_ROUNDS:-300}
. scripts/bench-lib.sh
echo "measuring $bin ($(file -b "$bin" 2>/dev/null | grep -o 'static-pie linked\|statically linked\|dynamically linked' || echo 'linkage unknown'))"
bench_init rmkd-bench-ctrl

mkcfg() {  # mkcfg FILE NAME JOBS: hourly jobs, all due 5 s from now
  local i offset=$(( ($(date +%s) + 5) % 3600 ))
  { printf '[daemon]\ninstance = "%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\n' "$2" "$work/$2"
    for ((i = 0; i < $3; i++)); do
      printf '[[job]]\nname = "job%04d"\ncommand = ["true"]\nevery = "1h"\noffset = "%ss"\ntimeout = "30s"\n' "$i" "$offset"
    done; } > "$1"
}

for n in $counts; do
  name=ctrl$n
  c=$work/$name.toml
  cfgs+=("$c")
  mkcfg "$c" "$name" "$n"
  "$bin" --config "$c" ctrl >/dev/null
  python3 - "$bin" "$c" "$n" <<'PY'
import json, subprocess, sys, time
bin, cfg, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.time() + 120
while True:
    doc = json.loads(subprocess.run([bin, "--config", cfg, "status", "--json"], capture_output=True, text=True).stdout)
    done = sum(1 for j in doc["jobs"] if (j.get("last") or {}).get("outcome") == "success")
    busy = any(j.get("running") or j.get("queued") for j in doc["jobs"])
    if done == n and not busy:
        break
    if time.time() > deadline:
        sys.exit(f"only {done} of {n} jobs have a result after 120 s")
    time.sleep(0.5)
PY
  python3 - "$bin" "$c" "$n" "$rounds" <<'PY'
import subprocess, sys, time, statistics
bin, cfg, n, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctrl = [bin, "--config", cfg, "ctrl"]
def t(cmd):
    s = time.perf_counter(); subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True); return time.perf_counter() - s
for _ in range(20): t(ctrl); t(["/bin/true"])
c, tr = [], []
for _ in range(rounds):   # paired: alternate, so both see the same machine
    c.append(t(ctrl)); tr.append(t(["/bin/true"]))
mc, mt = statistics.median(c), statistics.median(tr)
out = subprocess.run(ctrl, capture_output=True).stdout
print(f"ctrl vs /bin/true, {n} jobs with results: median {mc*1e3:.2f} ms vs {mt*1e3:.2f} ms \u2192 {mc/mt:.2f}\u00d7 "
      f"(target \u2264 2\u00d7 / \u2264 3\u00d7), output {len(out)} bytes")
PY
  "$bin" --config "$c" stop --now >/dev/null
done
