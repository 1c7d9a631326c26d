#!/usr/bin/env bash
# Memory per job (issue 25): 10,000 jobs, each holding its last result, for interval schedules,
# cron schedules and a mix, against 100 such jobs; PSS, private dirty, private clean and RSS from
# /proc/PID/smaps_rollup. A schedule's cost per job is (PSS at 10,000 - PSS at 100) / 9,900, per
# kind. Target: PSS <= 8 MiB at 10,000 jobs for each kind (printed, never enforced).
#
# The 100 jobs run once soon after the daemon starts (interval jobs `every = "1h"` with an
# offset a few seconds ahead). The 10,000 jobs' results are those of a daemon restarted with a
# history: each job's latest.json is written before the start (a copy of a real one of the 100,
# renamed), and the daemon reads them back as it does after any restart; running 10,000 jobs
# first takes minutes on a busy machine (each run gets its folder, journal and cgroup). Their
# schedules (hourly at an offset, or daily at a minute, half an hour away; catch_up = "skip")
# fire nothing while measured. The daemon is measured once it has been quiet for a while (it
# hands back what a burst left once it has idled 10 s: app/daemon/shell.rs `shrink_when_idle`), so
# the figure is what it holds for as long as it idles.
# Usage: BIN=path/to/robotmk-daemon scripts/bench-memory.sh
#   (without BIN: the .deb's release build, scripts/build-release.sh)
#   BENCH_MEM_JOBS=10000 the large count; BENCH_MEM_KINDS="every cron mix" the kinds;
#   BENCH_MEM_DETAIL=1 also prints the daemon's largest mappings (smaps).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-$(scripts/build-release.sh)}
big=${BENCH_MEM_JOBS:-10000}
kinds=${BENCH_MEM_KINDS:-every cron mix}
. scripts/bench-lib.sh
bench_init rmkd-bench-mem

mkcfg() {  # mkcfg NAME JOBS KIND SOON -> prints the config's path; SOON=1: due in 5 s
  local c=$work/$1.toml i offset cron k
  if [ "$4" = 1 ]; then offset=$(( ($(date +%s) + 5) % 3600 )); else offset=$(( ($(date +%s) + 1800) % 3600 )); fi
  cron=$(date -d "@$(( $(date +%s) + 1800 ))" '+%-M %-H * * *')
  cfgs+=("$c")
  { printf '[daemon]\ninstance = "%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\nkeep_runs = 3\n' "$1" "$work/$1"
    for ((i = 0; i < $2; i++)); do
      k=$3; [ "$k" = mix ] && { [ $((i % 2)) = 0 ] && k=every || k=cron; }
      printf '[[job]]\nname = "job%05d"\ncommand = ["true"]\ntimeout = "30s"\ncatch_up = "skip"\n' "$i"
      if [ "$k" = cron ]; then printf 'cron = "%s"\n' "$cron"
      else printf 'every = "1h"\noffset = "%ss"\n' "$offset"; fi
    done; } > "$c"
  echo "$c"
}

# plant NAME JOBS: every job's latest.json, copied from job00000's of the 100-job run.
plant() {
  python3 - "$work/base/jobs/job00000/latest.json" "$work/$1" "$2" <<'PY'
import json, os, sys
template, state, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = json.load(open(template))
os.makedirs(f"{state}/jobs", mode=0o700, exist_ok=True)
os.chmod(state, 0o700)
for i in range(n):
    name = f"job{i:05d}"
    d = f"{state}/jobs/{name}"
    os.makedirs(d, mode=0o700, exist_ok=True)
    r = dict(t, job=name, run_dir=f"{d}/runs/{t['run_id']}")
    with open(f"{d}/latest.json", "w") as f: json.dump(r, f)
PY
}

detail() {
  [ "${BENCH_MEM_DETAIL:-0}" = 1 ] || return 0
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name=$6; if (name == "") name="[anon]"; range=$1}
       /^Pss:/ {if ($2 > 0) printf "    %6d KiB PSS  %s %s\n", $2, range, name}' /proc/"$1"/smaps | sort -rn | head -12
  echo "    threads: $(ls /proc/"$1"/task | wc -l)"
}

# measure NAME JOBS KIND: starts the daemon (the 100-job one runs its jobs, the others have
# theirs planted), waits for every result and the idle release, prints "pss dirty clean rss"
# of the settled daemon, stops it.
measure() {
  local c pid
  if [ "$1" = base ]; then c=$(mkcfg "$1" "$2" "$3" 1); else c=$(mkcfg "$1" "$2" "$3" 0); plant "$1" "$2"; fi
  "$bin" --config "$c" ctrl >/dev/null
  python3 - "$bin" "$c" "$2" "$work/$1" <<'PY' >&2
import json, os, subprocess, sys, time
bin, cfg, n, state = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
deadline = time.time() + 300
while True:
    try: doc = json.load(open(f"{state}/status.json"))
    except (FileNotFoundError, ValueError): doc = {"jobs": []}
    done = sum(1 for j in doc.get("jobs", []) if (j.get("last") or {}).get("outcome") == "success")
    busy = any(j.get("running") or j.get("queued") for j in doc["jobs"])
    if done == n and not busy: break
    if time.time() > deadline: sys.exit(f"only {done} of {n} jobs have a result after 300 s")
    time.sleep(1)
pid = doc["daemon"]["pid"]
def pss():
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/smaps_rollup") if l.startswith("Pss:"))
# Past the idle release (30 s without anything due, running or queued), then steady for 5 s.
time.sleep(35)
prev, end = pss(), time.time() + 60
while time.time() < end:
    time.sleep(5)
    cur = pss()
    if abs(cur - prev) <= 8: break
    prev = cur
PY
  pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["daemon"]["pid"])' "$work/$1/status.json")
  smaps "$pid"
  detail "$pid" >&2
  "$bin" --config "$c" stop --now --timeout 30s >/dev/null || true
}

echo "memory per job: $bin; load average: $(load)"
wait_quiet
read -r bp bd bc br < <(measure base 100 every)
echo "100 interval jobs with results: PSS $bp KiB, private dirty $bd, private clean $bc, RSS $br"
for kind in $kinds; do
  wait_quiet
  read -r p d c r < <(measure "big-$kind" "$big" "$kind")
  per=$(awk -v p="$p" -v b="$bp" -v n="$big" 'BEGIN {printf "%.2f", (p - b) / (n - 100)}')
  echo "$big $kind jobs with results: PSS $p KiB ($per KiB/job beyond 100 jobs), private dirty $d, private clean $c, RSS $r; load $(load)"
  summary "3. PSS, $big $kind jobs with results" "$p KiB (dirty $d, clean $c, RSS $r)" "100 jobs: $bp KiB" \
    "$per KiB/job" "<= 8192 KiB" "$(verdict "$p <= 8192")"
done
