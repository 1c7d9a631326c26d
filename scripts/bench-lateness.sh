#!/usr/bin/env bash
# Start lateness at N jobs due at the same instant, the daemon against the floor: bench/floor.c,
# a minimal scheduler that sleeps until the due instant and fork+execs the same command N times
# back to back. Both run `sh -c 'date +%s.%N >> FILE'`: lateness = the instant each child ran
# minus the due instant (a whole second for both: the daemon's `every = "10s"` due times are
# whole multiples of 10 s). Rounds alternate the daemon and the floor, so both see the same
# machine; the figures are the medians over the rounds.
# The daemon's second batch is measured: the first one after its start may not have been
# prepared ahead.
# Each daemon's CPU time (utime + stime, in clock ticks) over one whole batch is printed too:
# from 5 s after the first measured due instant to 5 s after the next (its preparation, its
# starts, collecting and recording its runs).
# A round starts only once the 1-minute load average is at most LATENESS_MAX_LOAD (waiting up to
# LATENESS_LOAD_WAIT s); a round that still starts above it is run again (up to 3 times). The
# load at the start of each round is printed with it.
# Usage: scripts/bench-lateness.sh   (BIN=path to the release binary, default: build it;
#        BENCH_BIN_OLD=path also measures another build in the same rounds, interleaved;
#        BENCH_ENV / BENCH_ENV_OLD="VAR=value ..." the environment each of them starts with
#        (the same binary twice with different settings is two builds to this script);
#        LATENESS_N="100 1000" the batch sizes; LATENESS_ROUNDS=5 rounds per size;
#        LATENESS_MAX_LOAD=1.5; LATENESS_LOAD_WAIT=600)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-${BENCH_BIN:-$(scripts/build-release.sh)}}
old=${BENCH_BIN_OLD:-}
read -r -a env_new <<< "${BENCH_ENV:-}"
read -r -a env_old <<< "${BENCH_ENV_OLD:-}"
sizes=${LATENESS_N:-100 1000}
rounds=${LATENESS_ROUNDS:-5}
max_load=${LATENESS_MAX_LOAD:-1.5}
load_wait=${LATENESS_LOAD_WAIT:-600}
. scripts/bench-lib.sh
bench_init rmkd-lateness
cc -O2 -o "$work/floor" bench/floor.c
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; daemon: ${env_new[*]:+${env_new[*]} }$bin${old:+; old: ${env_old[*]:+${env_old[*]} }$old}"

load1() { cut -d' ' -f1 /proc/loadavg; }
above() { awk -v l="$1" -v m="$max_load" 'BEGIN { exit !(l > m) }'; }
# quiet: waits (up to load_wait s) until the load average is at most max_load; prints it.
quiet() {
  local end=$((SECONDS + load_wait))
  while above "$(load1)" && ((SECONDS < end)); do sleep 5; done
  load1
}

# daemon BIN TAG N OUT [VAR=value...]: a daemon with N jobs due together every 10 s, started
# with that environment; returns once its second batch is complete in OUT (and its CPU time
# over that batch is in OUT.cpu).
daemon() {
  local b=$1 tag=$2 n=$3 out=$4 c=$work/$2.toml i
  shift 4
  cfgs+=("$b|$c")
  { printf '[daemon]\ninstance = "%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\n' "$tag" "$work/$tag"
    for ((i = 0; i < n; i++)); do
      printf '[[job]]\nname = "job%04d"\ncommand = ["sh", "-c", "date +%%s.%%N >> %s"]\nevery = "10s"\n' "$i" "$out"
    done; } > "$c"
  env "$@" "$b" --config "$c" start >/dev/null
  python3 - "$out" "$n" "$work/$tag/status.json" <<'PY'
import sys, time, json, collections
out, n, status = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def ticks():
    pid = json.load(open(status))["daemon"]["pid"]
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime
deadline = time.time() + 75
marks = []  # CPU ticks 5 s after the first and the second complete batch's due instant
while time.time() < deadline:
    try: ts = [float(l) for l in open(out) if l.strip()]
    except FileNotFoundError: ts = []
    b = collections.Counter(int(t // 10) * 10 for t in ts)
    full = sorted(d for d, v in b.items() if v >= n)
    if len(full) > len(marks) and time.time() >= full[len(marks)] + 5:
        marks.append(ticks())
        if len(marks) == 2:
            open(out + ".cpu", "w").write(f"{marks[1] - marks[0]}\n")
            sys.exit(0)
    time.sleep(0.2)
sys.exit(f"daemon: no two complete batches in {out} within 75 s")
PY
  "$b" --config "$c" stop --now --timeout 30s >/dev/null
}

# floor N OUT: the floor program at the next whole second but one.
floor() {
  local n=$1 out=$2 due
  due=$(( $(date +%s) + 2 ))
  # sh by its full path, as the daemon execs it (it resolves PATH once and caches): execvp's
  # walk through PATH would cost the floor failed execs the daemon does not pay.
  "$work/floor" "$n" "$due" "$(command -v sh)" -c "date +%s.%N >> $out"
  echo "$due" > "$out.due"
}

for n in $sizes; do
  echo "== start lateness, $n jobs due at the same instant ($rounds rounds)"
  for ((r = 1; r <= rounds; r++)); do
    for attempt in 1 2 3; do
      l=$(quiet)
      echo "$l" > "$work/load$n-$r"
      # Alternating which daemon goes first: neither always follows the floor.
      if [ -n "$old" ] && ((r % 2 == 0)); then
        daemon "$old" "old$n-$r" "$n" "$work/old$n-$r.out" "${env_old[@]}"
      fi
      daemon "$bin" "new$n-$r" "$n" "$work/new$n-$r.out" "${env_new[@]}"
      if [ -n "$old" ] && ((r % 2 == 1)); then
        daemon "$old" "old$n-$r" "$n" "$work/old$n-$r.out" "${env_old[@]}"
      fi
      floor "$n" "$work/floor$n-$r.out"
      if ! above "$l" || ((attempt == 3)); then break; fi
      echo "round $r: load $l at its start (above $max_load): run again"
      rm -rf "$work/new$n-$r"* "$work/old$n-$r"* "$work/floor$n-$r.out"*
    done
  done
  python3 - "$work" "$n" "$rounds" "${old:+old}" <<'PY'
import sys, statistics, collections
work, n, rounds, with_old = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "old"
def cpu(tag, r):
    try: return int(open(f"{work}/{tag}{n}-{r}.out.cpu").read())
    except (FileNotFoundError, ValueError): return None
loads = [open(f"{work}/load{n}-{r}").read().strip() for r in range(1, rounds + 1)]
tags = [("daemon", "new")] + ([("old", "old")] if with_old else [])
def q(xs, f): return xs[min(len(xs) - 1, int(f * len(xs)))]
def daemon(path):
    # Lines grouped by their due time (multiples of 10 s): the second complete batch.
    ts = [float(l) for l in open(path) if l.strip()]
    b = collections.defaultdict(list)
    for t in ts: b[int(t // 10) * 10].append(t)
    due = sorted(d for d, v in b.items() if len(v) >= n)[1]
    return sorted((t - due) * 1000 for t in b[due])
def floor(path):
    due = int(open(path + ".due").read())
    return sorted((float(l) - due) * 1000 for l in open(path) if l.strip())
kinds = [("daemon", lambda r: daemon(f"{work}/new{n}-{r}.out"))]
if with_old: kinds.append(("old", lambda r: daemon(f"{work}/old{n}-{r}.out")))
kinds.append(("floor", lambda r: floor(f"{work}/floor{n}-{r}.out")))
med, per = {}, {}
for name, get in kinds:
    p50s, p99s = [], []
    for r in range(1, rounds + 1):
        late = get(r)
        assert len(late) == n, f"{name} round {r}: {len(late)} of {n} starts"
        p50s.append(q(late, 0.5)); p99s.append(q(late, 0.99))
    med[name] = (statistics.median(p50s), statistics.median(p99s))
    per[name] = (p50s, p99s)
    rs = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(p50s, p99s))
    print(f"{name:>6}: p50 {med[name][0]:7.1f} ms, p99 {med[name][1]:7.1f} ms  (rounds p50/p99: {rs})")
names = [k for k, _ in kinds]
print("round  load  " + "  ".join(f"{k + ' p50/p99':>17}" for k in names) + "  " + "  ".join(f"{k + ' CPU':>10}" for k, _ in tags))
for r in range(rounds):
    cells = [f"{per[k][0][r]:.1f}/{per[k][1][r]:.1f}" for k in names]
    ticks = [cpu(t, r + 1) for _, t in tags]
    print(f"{r + 1:>5}  {loads[r]:>4}  " + "  ".join(f"{c:>17}" for c in cells) + "  " + "  ".join(f"{'-' if t is None else t:>10}" for t in ticks))
for name, t in tags:
    ts = [x for x in (cpu(t, r) for r in range(1, rounds + 1)) if x is not None]
    if ts: print(f"{name:>6}: CPU per batch of {n} starts, median {statistics.median(ts)} ticks (rounds: {', '.join(map(str, ts))})")
f50, f99 = med["floor"]
for name in [k for k, _ in kinds if k != "floor"]:
    d50, d99 = med[name]
    print(f"{name:>6} / floor: p50 {d50 / f50:.2f}x (target <= 1.1x), p99 {d99 / f99:.2f}x (target <= 1.2x)")
PY
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
