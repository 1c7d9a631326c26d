#!/usr/bin/env bash
# Memory of the daemon, with printed figures (no pass/fail: targets are printed beside them).
#   idle: 100 jobs due hourly, measured after the daemon settled (VmRSS, RssAnon, RssFile)
#   10,000 jobs due hourly: RSS and what each job costs beyond the 100-job daemon
#   flat (BENCH_MEM_SOAK_SECS > 0): 50 jobs every 1 s, RSS sampled every 10 s
# Usage: BIN=path/to/robotmk-daemon scripts/bench-memory.sh
#   (without BIN: the .deb's release build, scripts/build-release.sh)
#   BENCH_MEM_SETTLE_SECS=5 how long the daemon runs before it is measured;
#   BENCH_MEM_SOAK_SECS=0 (default) skips the flat-over-time section, e.g. 180 runs it 3 min;
#   BENCH_MEM_STEADY_JOBS=0 (default) skips the steady state: e.g. 10000 starts that many jobs
#     due every minute and measures them fresh and after two rounds ran (each job then holds
#     its latest result; a daemon with hourly jobs looks like this after two hours);
#   BENCH_MEM_DETAIL=1 also prints the daemon's largest mappings (smaps).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-$(scripts/build-release.sh)}
settle=${BENCH_MEM_SETTLE_SECS:-5}
soak=${BENCH_MEM_SOAK_SECS:-0}
steady=${BENCH_MEM_STEADY_JOBS:-0}
. scripts/bench-lib.sh
bench_init rmkd-bench-mem

mkcfg() {  # mkcfg NAME JOBS EVERY
  local c=$work/$1.toml i
  cfgs+=("$c")
  { printf '[daemon]\ninstance = "%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\nkeep_runs = 3\n' "$1" "$work/$1"
    for ((i = 0; i < $2; i++)); do
      printf '[[job]]\nname = "job%04d"\ncommand = ["true"]\nevery = "%s"\n' "$i" "$3"
    done; } > "$c"
  echo "$c"
}

# The daemon's PID, once it wrote its status (ctrl started it detached).
daemon_pid() {
  local i
  for ((i = 0; i < 300; i++)); do
    if [ -s "$1/status.json" ]; then
      python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["daemon"]["pid"])' "$1/status.json" 2>/dev/null && return
    fi
    sleep 0.1
  done
  echo "no daemon status in $1" >&2; return 1
}

# "rss anon file" in KiB
mem() { awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print r, a, f}' /proc/"$1"/status; }

detail() {
  [ "${BENCH_MEM_DETAIL:-0}" = 1 ] || return 0
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name=$6; if (name == "") name="[anon]"; range=$1}
       /^Rss:/ {if ($2 > 0) printf "    %6d KiB  %s %s\n", $2, range, name}' /proc/"$1"/smaps | sort -rn | head -12
  echo "    threads: $(ls /proc/"$1"/task | wc -l)"
}

start() {  # start NAME JOBS EVERY -> pid
  local c
  c=$(mkcfg "$1" "$2" "$3")
  "$bin" --config "$c" ctrl >/dev/null
  daemon_pid "$work/$1"
}

stop() { "$bin" --config "$work/$1.toml" stop --now --timeout 10s >/dev/null || true; }

echo "memory: $bin; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

pid=$(start idle 100 1h)
sleep "$settle"
read -r r a f < <(mem "$pid")
echo "idle RSS, 100 hourly jobs: $r KiB (anon $a, file $f) (target ≤ 2560 KiB)"
detail "$pid"
stop idle
base=$r

pid=$(start big 10000 1h)
sleep "$settle"
read -r r a f < <(mem "$pid")
per=$(awk -v r="$r" -v b="$base" 'BEGIN {printf "%.2f", (r - b) / 9900}')
echo "RSS with 10,000 jobs: $r KiB ($per KiB/job) (anon $a, file $f) (target ≤ 12 MiB = 12288 KiB)"
detail "$pid"
stop big

if [ "$soak" -gt 0 ]; then
  pid=$(start soak 50 1s)
  samples=() detail=()
  for ((t = 0; t <= soak; t += 10)); do
    read -r r a f < <(mem "$pid")
    samples+=("$r") detail+=("$r($a/$f)")
    [ "$t" -lt "$soak" ] && sleep 10
  done
  runs=$(grep -c "run finished" "$work/soak/daemon.log" || true)
  echo "RSS over ${soak}s, 50 jobs every 1 s ($runs runs), every 10 s, KiB total(anon/file): ${detail[*]}"
  echo "  first minute max $(printf '%s\n' "${samples[@]:0:7}" | sort -n | tail -1), last minute max $(printf '%s\n' "${samples[@]: -6}" | sort -n | tail -1)"
  stop soak
fi

if [ "$steady" -gt 0 ]; then
  pid=$(start steady "$steady" 1m)
  sleep "$settle"
  read -r r0 a0 f0 < <(mem "$pid")
  for ((i = 0; i < 60; i++)); do
    [ "$(grep -c "run finished" "$work/steady/daemon.log" || true)" -ge $((2 * steady)) ] && break
    sleep 5
  done
  sleep "$settle"
  read -r r a f < <(mem "$pid")
  echo "RSS with $steady jobs every minute: fresh $r0 KiB (anon $a0, file $f0), after $(grep -c "run finished" "$work/steady/daemon.log" || true) runs $r KiB (anon $a, file $f)"
  detail "$pid"
  stop steady
fi
