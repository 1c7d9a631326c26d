#!/usr/bin/env bash
# Start lateness at N jobs due at the same instant, the daemon against the floor: bench/floor.c,
# a minimal scheduler that sleeps until the due instant and fork+execs the same command N times
# back to back. Both run `sh -c 'date +%s.%N >> FILE'`: lateness = the instant each child ran
# minus the due instant (a whole second for both: the daemon's `every = "10s"` due times are
# whole multiples of 10 s). Rounds alternate the daemon and the floor, so both see the same
# machine; the figures are the medians over the rounds.
# The daemon's second batch is measured: the first one after its start may not have been
# prepared ahead.
# Usage: scripts/bench-lateness.sh   (BIN=path to the release binary, default: build it;
#        BENCH_BIN_OLD=path also measures another build in the same rounds, interleaved;
#        LATENESS_N="100 1000" the batch sizes; LATENESS_ROUNDS=5 rounds per size)
# Each round first waits for a quiet machine (wait_quiet, scripts/bench-lib.sh); the figures
# end in SUMMARY lines for scripts/bench.sh (targets: p50 <= 1.05x, p99 <= 1.1x the floor).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-${BENCH_BIN:-$(scripts/build-release.sh)}}
old=${BENCH_BIN_OLD:-}
sizes=${LATENESS_N:-100 1000}
rounds=${LATENESS_ROUNDS:-5}
. scripts/bench-lib.sh
bench_init rmkd-lateness
cc -O2 -o "$work/floor" bench/floor.c
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $bin${old:+ (old: $old)}"

# daemon BIN TAG N OUT: a daemon with N jobs due together every 10 s; returns once its second
# batch is complete in OUT.
daemon() {
  local b=$1 tag=$2 n=$3 out=$4 c=$work/$2.toml i
  cfgs+=("$b|$c")
  { printf '[daemon]\ninstance = "%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\n' "$tag" "$work/$tag"
    for ((i = 0; i < n; i++)); do
      printf '[[job]]\nname = "job%04d"\ncommand = ["sh", "-c", "date +%%s.%%N >> %s"]\nevery = "10s"\n' "$i" "$out"
    done; } > "$c"
  "$b" --config "$c" start >/dev/null
  python3 - "$out" "$n" <<'PY'
import sys, time, collections
out, n = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 60
while time.time() < deadline:
    try: ts = [float(l) for l in open(out) if l.strip()]
    except FileNotFoundError: ts = []
    b = collections.Counter(int(t // 10) * 10 for t in ts)
    if sum(1 for v in b.values() if v >= n) >= 2: sys.exit(0)
    time.sleep(0.2)
sys.exit(f"daemon: no two complete batches in {out} within 60 s")
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
    wait_quiet "round $r"
    echo "  round $r: load $(load)"
    daemon "$bin" "new$n-$r" "$n" "$work/new$n-$r.out"
    floor "$n" "$work/floor$n-$r.out"
    if [ -n "$old" ]; then daemon "$old" "old$n-$r" "$n" "$work/old$n-$r.out"; fi
  done
  python3 - "$work" "$n" "$rounds" "${old:+old}" "$(load1)" <<'PY'
import sys, statistics, collections
work, n, rounds, with_old, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "old", sys.argv[5]
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
med = {}
for name, get in kinds:
    p50s, p99s = [], []
    for r in range(1, rounds + 1):
        late = get(r)
        assert len(late) == n, f"{name} round {r}: {len(late)} of {n} starts"
        p50s.append(q(late, 0.5)); p99s.append(q(late, 0.99))
    med[name] = (statistics.median(p50s), statistics.median(p99s))
    rs = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(p50s, p99s))
    print(f"{name:>6}: p50 {med[name][0]:7.1f} ms, p99 {med[name][1]:7.1f} ms  (rounds p50/p99: {rs})")
f50, f99 = med["floor"]
for name in [k for k, _ in kinds if k != "floor"]:
    d50, d99 = med[name]
    print(f"{name:>6} / floor: p50 {d50 / f50:.2f}x (target <= 1.05x), p99 {d99 / f99:.2f}x (target <= 1.1x)")
d50, d99 = med["daemon"]
ok = d50 / f50 <= 1.05 and d99 / f99 <= 1.1
print("|".join(["SUMMARY", f"5. lateness / floor, {n} jobs due together ({rounds} rounds)", f"p50/p99 {d50:.1f}/{d99:.1f} ms",
                f"floor {f50:.1f}/{f99:.1f} ms", f"{d50 / f50:.2f}x/{d99 / f99:.2f}x", "p50 <= 1.05x, p99 <= 1.1x",
                "met" if ok else "NOT met", load]))
PY
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
