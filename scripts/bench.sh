#!/usr/bin/env bash
# Benchmarks with printed figures (no pass/fail thresholds: a busy machine must not fail CI).
#   1. ctrl with a running daemon and 100 jobs that have results, paired with /bin/true
#   2. the idle daemon (100 jobs due hourly): RSS and wake-ups (voluntary context switches)
#   3. start lateness (spawn - due) with 100 and 1000 jobs due at the same instant, and the
#      run starts per second the daemon sustained
#   4. lateness of a job due every second, alone and while another job leaves a 200 MB
#      output.xml every 10 s (finishing runs happens off the loop: the two should match)
# Usage: scripts/bench.sh   (BENCH_IDLE_SECS=30 sets the idle measurement window;
#        BENCH_BIN=path measures another build, e.g. an older one, with the same script;
#        BENCH_ONLY="3 4" runs only those sections)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BENCH_BIN:-$(scripts/build-release.sh)}
only=" ${BENCH_ONLY:-1 2 3 4} "
want() { [[ "$only" == *" $1 "* ]]; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $bin"
idle_secs=${BENCH_IDLE_SECS:-30}
work=$(mktemp -d /tmp/rmkd-bench.XXXXXX)
cfgs=()
cleanup() {
  for c in "${cfgs[@]}"; do "$bin" --config "$c" stop --now --timeout 10s >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
unset RUST_BACKTRACE   # backtrace capture inflates an idle Rust daemon's RSS

mkcfg() {  # mkcfg NAME JOBS EVERY
  local c=$work/$1.toml i
  cfgs+=("$c")
  { printf '[daemon]\ninstance = "%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\n' "$1" "$work/$1"
    for ((i = 0; i < $2; i++)); do
      printf '[[job]]\nname = "job%04d"\ncommand = ["true"]\nevery = "%s"\n' "$i" "$3"
    done; } > "$c"
  echo "$c"
}

daemon_pid() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["daemon"]["pid"])' "$1/status.json"; }

if want 1; then
echo "== 1. ctrl vs /bin/true (100 jobs with results, daemon running)"
c=$(mkcfg ctrl 100 1h)
for i in $(seq 0 99); do "$bin" --config "$c" run-once "$(printf job%04d "$i")" >/dev/null; done
"$bin" --config "$c" ctrl >/dev/null
python3 - "$bin" "$c" <<'PY'
import subprocess, sys, time, statistics
bin, cfg = sys.argv[1], sys.argv[2]
def t(cmd):
    s = time.perf_counter(); subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True); return time.perf_counter() - s
ctrl, true = [], []
for _ in range(20): t([bin, "--config", cfg, "ctrl"]); t(["/bin/true"])
for _ in range(300):   # paired: alternate, so both see the same machine
    ctrl.append(t([bin, "--config", cfg, "ctrl"])); true.append(t(["/bin/true"]))
mc, mt = statistics.median(ctrl), statistics.median(true)
print(f"ctrl median {mc*1e3:.2f} ms (p90 {sorted(ctrl)[270]*1e3:.2f}), /bin/true median {mt*1e3:.2f} ms -> ratio {mc/mt:.2f}x (target <= 3x)")
out = subprocess.run([bin, "--config", cfg, "ctrl"], capture_output=True, text=True).stdout
print(f"ctrl output: {len(out)} bytes, {out.count(chr(10))} lines")
PY
"$bin" --config "$c" stop >/dev/null
fi

if want 2; then
echo "== 2. idle daemon, 100 jobs due hourly, ${idle_secs}s"
c=$(mkcfg idle 100 1h)
"$bin" --config "$c" ctrl >/dev/null
pid=$(daemon_pid "$work/idle")
sleep 2
csw() { cat /proc/"$pid"/task/*/status | awk '/^voluntary_ctxt_switches/ {s+=$2} END {print s}'; }
a=$(csw); sleep "$idle_secs"; b=$(csw)
echo "RSS $(awk '/VmRSS/ {print $2, $3}' /proc/"$pid"/status) (target <= 5 MiB), threads $(ls /proc/"$pid"/task | wc -l), wake-ups in ${idle_secs}s: $((b - a)) (housekeeping tick 1/s)"
"$bin" --config "$c" stop >/dev/null
fi

want 3 && for n in 100 1000; do
  echo "== 3. start lateness, $n jobs due at the same instant"
  c=$(mkcfg "late$n" "$n" 10s)
  "$bin" --config "$c" ctrl >/dev/null
  python3 - "$work/late$n" "$n" <<'PY'
import json, sys, time, glob, datetime as dt
state, n = sys.argv[1], int(sys.argv[2])
def recs():
    out = []
    for p in glob.glob(f"{state}/jobs/*/runs/*/record.json"):
        try: r = json.load(open(p))
        except Exception: continue
        if r.get("started") and r.get("trigger") == "schedule": out.append(r)
    return out
deadline = time.time() + 60
while time.time() < deadline:
    rs = recs()
    dues = {}
    for r in rs: dues.setdefault(r["due"], []).append(r)
    full = [d for d, v in dues.items() if len(v) == n]
    if len(full) >= 2: break
    time.sleep(0.5)
else:
    sys.exit(f"only {len(rs)} runs recorded")
p = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
# The second batch: the first one after a start cannot have been prepared ahead.
batch = dues[sorted(full)[1]]
late = sorted((p(r["started"]) - p(r["due"])).total_seconds() * 1000 for r in batch)
span = (max(p(r["started"]) for r in batch) - min(p(r["started"]) for r in batch)).total_seconds()
q = lambda f: late[min(len(late) - 1, int(f * len(late)))]
print(f"lateness p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {late[-1]:.1f} ms; "
      f"{n} starts in {span*1000:.0f} ms = {n/span if span else float('inf'):.0f} starts/s")
PY
  "$bin" --config "$c" stop --now >/dev/null
done

want 4 || exit 0
echo "== 4. a 1 s job alone, and beside a job with a 200 MB output.xml every 10 s (${BENCH_BIG_SECS:-30}s each)"
python3 - "$work/big.xml" <<'PY'
import sys
msg = "y" * 10000
with open(sys.argv[1], "w") as f:
    f.write('<robot><suite name="Big">')
    for _ in range(10000):
        f.write('<test name="t"><kw name="Log"><msg level="INFO">' + msg + '</msg><status status="PASS"/></kw>'
                '<status status="FAIL">' + msg + '</status></test>\n')
    f.write('<status status="FAIL"/></suite><statistics><total><stat pass="0" fail="10000" skip="0">All Tests</stat></total></statistics></robot>')
PY
for mode in alone beside; do
  c=$work/$mode.toml
  cfgs+=("$c")
  { printf '[daemon]\ninstance = "%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\nkeep_runs = 3\n' "$mode" "$work/$mode"
    printf '[[job]]\nname = "tick"\ncommand = ["true"]\nevery = "1s"\n'
    if [ "$mode" = beside ]; then
      printf '[[job]]\nname = "big"\ncommand = ["ln", "%s", "{run_dir}/output.xml"]\nevery = "10s"\n' "$work/big.xml"
    fi; } > "$c"
  "$bin" --config "$c" ctrl >/dev/null
  sleep "${BENCH_BIG_SECS:-30}"
  "$bin" --config "$c" stop --now >/dev/null
  python3 - "$work/$mode" "$mode" <<'PY'
import json, sys, glob, datetime as dt
state, mode = sys.argv[1], sys.argv[2]
p = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
# keep_runs prunes old folders: the daemon's log has every start ("run started ... late_ms").
late, bigs = [], 0
for line in open(f"{state}/daemon.log"):
    if "job=tick" in line and "late_ms=" in line:
        late.append(float(line.split("late_ms=")[1].split()[0]))
    if "job=big" in line and "run finished" in line:
        bigs += 1
late.sort()
q = lambda f: late[min(len(late) - 1, int(f * len(late)))]
print(f"{mode:>6}: {len(late)} starts of the 1 s job, lateness p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {late[-1]:.2f} ms"
      + (f"; {bigs} runs with a 200 MB result finished meanwhile" if mode == "beside" else ""))
PY
done
