#!/usr/bin/env bash
# Throughput ceiling (issue 25): the highest rate of short jobs (`true`, N jobs every second) the
# daemon sustains for BENCH_TPUT_SECS (60) seconds, against the highest rate the floor program
# (bench/floor_rate.c: fork+exec N times a second and reap, nothing else) sustains for the same
# work. Target: the daemon's rate >= 0.9x the floor's (printed, never enforced).
#
# A daemon trial at N is sustained when
#   - every job has a record for every second of the window (the first 3 s and last 2 s of the
#     trial are left out: the daemon's start and the stop), each finished with success,
#   - no record started more than one period (1 s) after its due time, none was skipped,
#   - `stop` (graceful: runs in flight finish and are recorded) returns within stop_grace (10 s).
# A floor trial at N is sustained when every batch of N started and ended within its second.
# The search doubles N from BENCH_TPUT_START until a trial fails, then bisects twice.
# Past the ceiling the daemon must degrade visibly: the first failing trial's skipped records
# and the daemon's line in ctrl's output (a WARN naming the backlog) are printed.
# Usage: BIN=path scripts/bench-throughput.sh   (BENCH_TPUT_SECS=60, BENCH_TPUT_START=50,
#        BENCH_TPUT_MAX=4000, BENCH_TPUT_STEPS=2 bisection steps)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-${BENCH_BIN:-$(scripts/build-release.sh)}}
secs=${BENCH_TPUT_SECS:-60}
start=${BENCH_TPUT_START:-50}
max=${BENCH_TPUT_MAX:-4000}
steps=${BENCH_TPUT_STEPS:-2}
. scripts/bench-lib.sh
bench_init rmkd-throughput
cc -O2 -o "$work/floor_rate" bench/floor_rate.c
truebin=$(type -P true)   # the program, not the shell builtin
echo "throughput: $bin; ${secs}s per trial; load average: $(load); $(nproc) cores"

# daemon_trial N: 0 when sustained; prints one line on how it went. Leaves $work/d$N.
daemon_trial() {
  local n=$1 c=$work/d$1.toml i t0 t1 s0 s1 rc=0
  cfgs+=("$c")
  { printf '[daemon]\ninstance = "tput%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\nkeep_runs = 1000000\n' "$n" "$work/d$n"
    for ((i = 0; i < n; i++)); do
      printf '[[job]]\nname = "job%05d"\ncommand = ["%s"]\nevery = "1s"\ntimeout = "30s"\n' "$i" "$truebin"
    done; } > "$c"
  t0=$(date +%s.%N)
  "$bin" --config "$c" start >/dev/null
  sleep "$secs"
  ctrl_line=$("$bin" --config "$c" ctrl 2>/dev/null | grep -m1 '"Robotmk tput'"$n"' daemon"' || true)
  t1=$(date +%s.%N)
  s0=$(date +%s.%N)
  "$bin" --config "$c" stop --timeout 60s >/dev/null 2>&1 || rc=$?
  s1=$(date +%s.%N)
  python3 - "$work/d$n" "$n" "$t0" "$t1" "$s0" "$s1" "$rc" "$ctrl_line" <<'PY'
import glob, json, sys, datetime as dt
state, n, t0, t1, s0, s1, rc, line = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:7]), int(sys.argv[7]), sys.argv[8]
p = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
lo, hi = int(t0) + 3, int(t1) - 2
seen, late, skipped, bad, unrecorded = {}, 0, 0, 0, 0
for f in glob.glob(f"{state}/jobs/*/runs/*"):
    try: r = json.load(open(f"{f}/record.json"))
    except (FileNotFoundError, ValueError): unrecorded += 1; continue
    if r.get("outcome") == "skipped": skipped += 1; continue
    if r.get("outcome") != "success": bad += 1; continue
    due = p(r["due"])
    if r.get("started") and p(r["started"]) - due > 1.0: late += 1
    if lo <= due <= hi: seen.setdefault(r["job"], set()).add(round(due))
want = (hi - lo + 1) * n
have = sum(len(v) for v in seen.values())
stop_s = s1 - s0
ok = have == want and late == 0 and skipped == 0 and bad == 0 and unrecorded == 0 and rc == 0 and stop_s <= 10
print(f"  daemon N={n}: {'sustained' if ok else 'NOT sustained'}: {have} of {want} runs in the window recorded, "
      f"{late} started > 1 s late, {skipped} skipped, {bad} not successful, {unrecorded} without a record; "
      f"stop took {stop_s:.1f}s (exit {rc}); load {open('/proc/loadavg').read().split()[0]}")
print(f"    daemon line: {line or '(none)'}")
warned = line.startswith("1 ") and "behind schedule" in line
open(f"{state}.skipped", "w").write(f"{skipped} {int(warned)}\n")
sys.exit(0 if ok else 1)
PY
}

floor_trial() {  # floor_trial N
  local n=$1 out
  out=$("$work/floor_rate" "$n" "$secs" "$truebin")
  read -r _ b _ l _ sp _ em _ f <<< "$out"
  if [ "$l" = 0 ] && [ "$f" = 0 ]; then
    echo "  floor N=$n: sustained: $out; load $(load1)"; return 0
  fi
  echo "  floor N=$n: NOT sustained: $out; load $(load1)"; return 1
}

# search KIND: the highest sustained N (0 if even the start fails); sets first_bad.
search() {
  local kind=$1 good=0 bad=0 n=$start mid
  while (( n <= max )); do
    wait_quiet "$kind N=$n" >&2
    if "${kind}_trial" "$n" >&2; then good=$n; n=$(( n * 2 )); else bad=$n; break; fi
  done
  if (( bad > 0 && good > 0 )); then
    for ((i = 0; i < steps; i++)); do
      mid=$(( (good + bad) / 2 ))
      (( mid == good )) && break
      wait_quiet "$kind N=$mid" >&2
      if "${kind}_trial" "$mid" >&2; then good=$mid; else bad=$mid; fi
    done
  fi
  echo "$good $bad"
}

echo "== the daemon"
read -r dgood dbad < <(search daemon)
echo "== the floor"
read -r fgood fbad < <(search floor)
echo "daemon sustains $dgood jobs/s (fails at ${dbad:-?}), the floor $fgood jobs/s (fails at ${fbad:-?})"
ratio=$(python3 -c "print(f'{$dgood / $fgood:.2f}' if $fgood else 'n/a')")
summary "7. throughput: jobs/s sustained ${secs}s" "$dgood/s (fails at $dbad/s)" "floor $fgood/s" "${ratio}x" \
  ">= 0.9x floor" "$(verdict "$fgood > 0 and $dgood / $fgood >= 0.9")"
# How the first failing trial degraded: skipped runs recorded, and a WARN on the daemon line.
if (( dbad > 0 )) && [ -f "$work/d$dbad.skipped" ]; then
  read -r sk warned < "$work/d$dbad.skipped"
  summary "7. past the ceiling ($dbad/s): degrades visibly" "$sk skipped runs recorded" \
    "daemon line WARN 'behind schedule': $( [ "$warned" = 1 ] && echo yes || echo no)" "" \
    "skipped recorded, WARN on the daemon line" "$(verdict "$sk > 0 and $warned == 1")"
fi
