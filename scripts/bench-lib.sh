# Sourced by the row scripts of scripts/bench.sh: a private work folder under /tmp and, on
# exit, every daemon they started stopped and the folder removed.
#   bench_init PREFIX   sets $work and an empty $cfgs; add each config a daemon runs with to
#                       cfgs: "CONFIG" (stopped with $bin) or "BINARY|CONFIG"
bench_init() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  cfgs=()
  trap bench_cleanup EXIT
  unset RUST_BACKTRACE   # backtrace capture inflates an idle Rust daemon's RSS
}

bench_cleanup() {
  local c b
  for c in "${cfgs[@]}"; do
    b=$bin
    if [[ "$c" == *"|"* ]]; then b=${c%%|*}; c=${c#*|}; fi
    "$b" --config "$c" stop --now --timeout 10s >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}

# The load average (1, 5, 15 min), printed with every figure: a busy machine explains a poor one.
load() { cut -d' ' -f1-3 /proc/loadavg; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# Waits until the 1-minute load average is at most BENCH_QUIET_LOAD (1.5) before a round, at
# most BENCH_QUIET_WAIT seconds (300; 30 with --quick): figures taken beside other work are
# noise, but a machine that never quietens must not hang the bench. Says what it did.
wait_quiet() {  # wait_quiet [WHAT]
  local max=${BENCH_QUIET_WAIT:-300} lim=${BENCH_QUIET_LOAD:-1.5} t0=$SECONDS
  while awk -v l="$(load1)" -v m="$lim" 'BEGIN {exit !(l > m)}'; do
    if (( SECONDS - t0 >= max )); then
      echo "  (load $(load) still above $lim after ${max}s; measuring ${1:-anyway})"
      return 0
    fi
    sleep 5
  done
  (( SECONDS - t0 > 0 )) && echo "  (waited $(( SECONDS - t0 ))s for load <= $lim; now $(load))"
  return 0
}

# One row of bench.sh's summary table: printed as a line the bench collects, with the load
# average at the time of the measurement appended.
#   summary ROW MEASURED COMPARISON RATIO TARGET VERDICT
summary() { local IFS='|'; echo "SUMMARY|$*|$(load1)"; }
# met / NOT met from a Python expression.
verdict() { python3 -c "import sys; print('met' if ($1) else 'NOT met')"; }

# PSS, private dirty, private clean and RSS of a process in KiB (/proc/PID/smaps_rollup):
# PSS charges shared pages to each sharer in part, so it is what the process costs the
# machine; RSS counts every shared library page whole and the binary's file pages.
#   prints "pss private_dirty private_clean rss"
smaps() {
  awk '/^Pss:/ {p=$2} /^Private_Dirty:/ {d=$2} /^Private_Clean:/ {c=$2} /^Rss:/ {r=$2}
       END {print p, d, c, r}' "/proc/$1/smaps_rollup"
}
