#!/usr/bin/env bash
# ctrl's cost against /bin/true, with a running daemon and every job holding a real result,
# at 100 and 1,000 jobs (paired: ctrl and /bin/true alternate, so both see the same machine).
# Usage: BIN=path scripts/bench-ctrl.sh   (default: the build the .deb ships, dynamically linked,
#        scripts/build-release.sh; the static tarball build: BIN=$(scripts/build-release.sh --static)
#        scripts/bench-ctrl.sh; BENCH_CTRL_JOBS="100 1000"
#        sets the job counts, BENCH_CTRL_ROUNDS=300 the pairs measured per count)
# Prints one line per count: "ctrl vs /bin/true, N jobs with results: median X ms vs Y ms → R×
# (target ≤ 1.5× at 100 / ≤ 2× above), output B bytes", and a SUMMARY line for scripts/bench.sh.
# Each count waits for a quiet machine first (wait_quiet, scripts/bench-lib.sh).
#
# ctrl is run as the Checkmk agent runs it: the plugin (a link named `robotmk_daemon_ctrl` to the
# binary) without arguments, the config found through `MK_CONFDIR` (the agent sets it for every
# plugin), so the figure is what each agent call costs. `robotmk-daemon --config FILE ctrl`, an
# admin's invocation, also parses the command line (clap) and is printed beside it.
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

mkcfg() {  # mkcfg FILE NAME JOBS KIND: jobs that run once soon and then not for an hour (every)
  # or a day (cron, at the next minute in local time, as cron schedules are evaluated)
  local i offset=$(( ($(date +%s) + 5) % 3600 )) sched
  if [ "$4" = cron ]; then
    sched=$(date -d "@$(( ($(date +%s) + 5) / 60 * 60 + 60 ))" '+cron = "%-M %-H * * *"')
  fi
  { printf '[daemon]\ninstance = "%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\n' "$2" "$work/$2"
    for ((i = 0; i < $3; i++)); do
      if [ "$4" = cron ]; then
        printf '[[job]]\nname = "job%04d"\ncommand = ["true"]\n%s\ntimeout = "30s"\n' "$i" "$sched"
      else
        printf '[[job]]\nname = "job%04d"\ncommand = ["true"]\nevery = "1h"\noffset = "%ss"\ntimeout = "30s"\n' "$i" "$offset"
      fi
    done; } > "$1"
}

# Each count with interval schedules, and the largest also with cron schedules (BENCH_CTRL_CRON=0
# skips those): the view ctrl reads must not cost more for one kind than the other.
runs="$(for n in $counts; do echo "$n:every"; done)"
[ "${BENCH_CTRL_CRON:-1}" = 1 ] && runs="$runs ${counts##* }:cron"
for nk in $runs; do
  n=${nk%%:*} kind=${nk#*:}
  name=ctrl$n$kind
  mkdir -p "$work/$name-conf" "$work/plugins"
  c=$work/$name-conf/robotmk-daemon.toml
  plugin=$work/plugins/robotmk_daemon_ctrl
  ln -sf "$bin" "$plugin"
  cfgs+=("$c")
  mkcfg "$c" "$name" "$n" "$kind"
  MK_CONFDIR=$work/$name-conf "$plugin" >/dev/null
  python3 - "$bin" "$c" "$n" <<'PY'
import json, subprocess, sys, time
bin, cfg, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.time() + 240
while True:
    doc = json.loads(subprocess.run([bin, "--config", cfg, "status", "--json"], capture_output=True, text=True).stdout)
    done = sum(1 for j in doc["jobs"] if (j.get("last") or {}).get("outcome") == "success")
    busy = any(j.get("running") or j.get("queued") for j in doc["jobs"])
    if done == n and not busy:
        break
    if time.time() > deadline:
        sys.exit(f"only {done} of {n} jobs have a result after 240 s")
    time.sleep(0.5)
PY
  wait_quiet
  MK_CONFDIR=$work/$name-conf python3 - "$bin" "$c" "$n" "$rounds" "$(load1)" "$kind" "$plugin" <<'PY'
import subprocess, sys, time, statistics
bin, cfg, n, rounds, load, kind, plugin = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
ctrl = [plugin]                       # as the agent runs it (MK_CONFDIR is set)
cli = [bin, "--config", cfg, "ctrl"]  # as an admin types it
def t(cmd):
    s = time.perf_counter(); subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True); return time.perf_counter() - s
for _ in range(20): t(ctrl); t(["/bin/true"]); t(cli)
c, tr, cl = [], [], []
for _ in range(rounds):   # paired: alternate, so all see the same machine
    c.append(t(ctrl)); tr.append(t(["/bin/true"])); cl.append(t(cli))
mc, mt, ml = statistics.median(c), statistics.median(tr), statistics.median(cl)
out = subprocess.run(ctrl, capture_output=True).stdout
# The agent's invocation must find the same daemon and print every job OK, as the admin's does.
for cmd in (ctrl, cli):
    ok = sum(1 for l in subprocess.run(cmd, capture_output=True).stdout.splitlines() if l.startswith(b"0 "))
    if ok != n + 1:
        sys.exit(f"{cmd}: {ok} OK lines, expected {n + 1} (the daemon's and one per job)")
lim = 1.5 if n <= 100 else 2.0
print(f"ctrl vs /bin/true, {n} {kind} jobs with results: median {mc*1e3:.2f} ms vs {mt*1e3:.2f} ms \u2192 {mc/mt:.2f}\u00d7 "
      f"(target \u2264 {lim}\u00d7), output {len(out)} bytes; load {load}; "
      f"`--config FILE ctrl` {ml*1e3:.2f} ms \u2192 {ml/mt:.2f}\u00d7")
print("|".join(["SUMMARY", f"1. ctrl / true, {n} {kind} jobs with results", f"{mc*1e3:.2f} ms (p90 {sorted(c)[int(.9*rounds)]*1e3:.2f})",
                f"/bin/true {mt*1e3:.2f} ms", f"{mc/mt:.2f}x", f"<= {lim}x", "met" if mc / mt <= lim else "NOT met", load]))
PY
  "$bin" --config "$c" stop --now >/dev/null
done
