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
