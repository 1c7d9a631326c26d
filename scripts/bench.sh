#!/usr/bin/env bash
# The performance benchmark of issues 14 and 25: every row of issue 25's targets in one run, with
# the comparisons (cron, pueue, a bare fork+exec "floor") as ratios, the load average beside every
# figure, and a summary table with each target and whether it is met. Targets are printed, never
# enforced: the exit code says only whether the bench itself ran (a busy machine must not fail CI).
# Each section (and each round inside the row scripts) first waits for a quiet machine: load
# average <= BENCH_QUIET_LOAD (1.5), at most BENCH_QUIET_WAIT seconds (300), see bench-lib.sh.
#   1. ctrl vs /bin/true, 100 and 1,000 jobs with results, and 1,000 cron jobs
#      (scripts/bench-ctrl.sh); `pueue status` with 100 finished tasks vs /bin/true beside it
#   2. idle, 100 hourly jobs: PSS, private dirty, private clean, RSS (/proc/PID/smaps_rollup),
#      where the PSS lies (the program's own file, libraries, anonymous: /proc/PID/smaps) and
#      wake-ups per 30 s over all threads, for the daemon, cron and pueued side by side
#   3. 10,000 jobs with a kept last result: PSS per schedule kind (scripts/bench-memory.sh)
#   4. start lateness of 20 jobs due together, p50/p99, for the daemon, cron and pueue
#   5. start lateness vs the floor at 100 and 1,000 jobs, five rounds (scripts/bench-lateness.sh)
#   6. a 1 s job alone and beside a job leaving a 200 MB output.xml every 10 s (extra row)
#   7. throughput: jobs per second sustained for 60 s vs the floor (scripts/bench-throughput.sh)
#   The two-hour soak is scripts/soak.sh, run on its own (its row here says so).
# Lateness is measured the same way for all three schedulers: the job's command is
# `sh -c 'date +%s.%N >> FILE'`, and lateness = the time written - the due instant.
#
# Usage: scripts/bench.sh [--quick]
#   --quick              shorter windows and fewer rounds (a check that the bench works, not
#                        figures to quote): 30 s quiet waits, 2 lateness rounds, 10 s throughput
#                        trials, 80 ctrl pairs
#   BENCH_BIN=path       measure another build (default: the .deb's build, scripts/build-release.sh;
#                        `BENCH_BIN=$(scripts/build-release.sh --static)` measures the tarball's)
#   BENCH_ONLY="2 4"     run only those sections
#   BENCH_IDLE_SECS=30   the idle window of section 2 (wake-ups are scaled to 30 s)
#   BENCH_BIG_SECS=30    each half of section 6
#   BENCH_PUEUE_DIR=dir  where pueue 4.0.4 is (built there with cargo install if missing;
#                        default ~/.cache/robotmk-bench/pueue-4.0.4); BENCH_PUEUE=0 skips it
# Helper scripts get BIN=<binary> and print summary rows as lines (bench-lib.sh `summary`)
#   SUMMARY|<row>|<measured>|<comparison>|<ratio>|<target>|<met or NOT met>|<load>
# which go to the table at the end (the rest of their output is shown as it comes).
#
# cron: Debian's cron has no private spool option, so each cron instance runs in a mount
# namespace of its own (unshare -m) where a private crontab is bind-mounted over /etc/crontab,
# empty dirs over /etc/cron.d and /var/spool/cron/crontabs, and a private dir over /run (its
# pid file). Nothing outside the namespace changes, and the mounts vanish with the process.
# Needs root and `apt-get install -y cron`; without them the cron column says why it is empty.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --quick ]; then
  export BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-30} BENCH_IDLE_SECS=${BENCH_IDLE_SECS:-10}
  export BENCH_CTRL_ROUNDS=${BENCH_CTRL_ROUNDS:-80} LATENESS_ROUNDS=${LATENESS_ROUNDS:-2}
  export BENCH_TPUT_SECS=${BENCH_TPUT_SECS:-10} BENCH_TPUT_STEPS=${BENCH_TPUT_STEPS:-1}
  export BENCH_BIG_SECS=${BENCH_BIG_SECS:-10}
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [--quick]" >&2; exit 2
fi
bin=${BENCH_BIN:-$(scripts/build-release.sh)}
. scripts/bench-lib.sh
only=" ${BENCH_ONLY:-1 2 3 4 5 6 7} "
want() { [[ "$only" == *" $1 "* ]]; }
idle_secs=${BENCH_IDLE_SECS:-30}
pueue_dir=${BENCH_PUEUE_DIR:-$HOME/.cache/robotmk-bench/pueue-4.0.4}
t_start=$(date +%s)
work=$(mktemp -d /tmp/rmkd-bench.XXXXXX)
# What the jobs of cron, pueue and the daemon write goes to a folder of its own: beside the
# daemons' configs it would wake their config watch (a file changing next to the config).
mkdir "$work/out"
summary=$work/summary
: > "$summary"
cfgs=()   # daemon configs: stopped through `stop`
pids=()   # cron and pueued processes this script started: stopped by PID
cleanup() {
  local c p
  for c in "${cfgs[@]}"; do   # a daemon `stop` could not end is killed by its verified PID
    p=$(daemon_pid "${c%.toml}" 2>/dev/null) || p=""
    "$bin" --config "$c" stop --now --timeout 10s >/dev/null 2>&1 || true
    if [ -n "$p" ] && grep -qaF "$c" "/proc/$p/cmdline" 2>/dev/null; then kill -9 "$p" 2>/dev/null || true; fi
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset RUST_BACKTRACE   # backtrace capture inflates an idle Rust daemon's RSS

stop_pid() {  # stop_pid PID: one of ours, ended and reaped, then forgotten
  local p keep=()
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
summary_row() { local IFS='|'; echo "$*|$(load1)" >> "$summary"; }
echo "load average: $(load); $(nproc) cores; $bin ($(file -b "$bin" | grep -o 'static-pie linked\|statically linked\|dynamically linked' || echo 'linkage unknown'), $(( $(stat -c %s "$bin") / 1024 )) KiB)"

# Runs a helper script, shows its output, keeps its SUMMARY lines for the table.
helper() {  # helper SCRIPT LABEL
  local out=$work/$(basename "$1").out rc
  echo "-- $1 (BIN=$bin)"
  set +e
  BIN=$bin "$1" 2>&1 | tee "$out" | grep --line-buffered -v '^SUMMARY|'
  rc=${PIPESTATUS[0]}
  set -e
  grep '^SUMMARY|' "$out" | cut -d'|' -f2- >> "$summary" || true
  if [ "$rc" != 0 ]; then
    echo "$1 failed (exit $rc)"
    summary_row "$2" "$1 failed (exit $rc)" "" "" "" "not measured"
  fi
}

mkcfg() {  # mkcfg NAME JOBS EVERY [OFFSET [COMMAND_TOML]]: prints the config's path
  local c=$work/$1.toml i off="" cmd=${5:-'["true"]'}
  [ -n "${4:-}" ] && off="offset = \"$4\"\n"
  cfgs+=("$c")
  { printf '[daemon]\ninstance = "%s"\nstate_dir = "%s"\nmax_parallel = 0\nheartbeat_timeout = "10m"\n' "$1" "$work/$1"
    for ((i = 0; i < $2; i++)); do
      printf '[[job]]\nname = "job%04d"\ncommand = %s\nevery = "%s"\n'"$off" "$i" "$cmd" "$3"
    done; } > "$c"
}
daemon_pid() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["daemon"]["pid"])' "$1/status.json"; }
# An hourly slot half an hour away, so no hourly job fires during the bench.
slot_min=$(( ($(date +%-M) + 30) % 60 )); [ "$slot_min" = 0 ] && slot_min=1

# Percentiles of lateness from files of `date +%s.%N` lines: the same code for every scheduler.
cat > "$work/late.py" <<'PY'
import sys, time, math
def q(v, f): return v[min(len(v) - 1, int(f * len(v)))]   # nearest rank: p99 of 20 is the max
def read(path):
    try: return [float(l) for l in open(path) if l.strip()]
    except FileNotFoundError: return []
mode, path, n, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
deadline = time.time() + wait
while True:
    ts = read(path)
    if mode == "period":      # due at multiples of PERIOD; batches due after AFTER, skip SKIP, take TAKE
        period, after, skip, take = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
        b = {}
        for t in ts: b.setdefault(math.floor(t / period) * period, []).append(t)
        full = sorted(d for d, v in b.items() if d >= after and len(v) >= n)
        batches = [(d, b[d]) for d in full[skip:skip + take]]
    else:                     # "instants": due at each of the given instants
        inst = sorted(float(x) for x in sys.argv[5].split(","))
        b = {d: [] for d in inst}
        for t in ts:
            d = max((d for d in inst if d <= t), default=None)
            if d is not None: b[d].append(t)
        take = len(inst)
        batches = [(d, v) for d, v in b.items() if len(v) >= n]
    if len(batches) >= take: break
    if time.time() > deadline:
        sys.exit(f"only {len(batches)} of {take} batches of {n} starts after {wait:.0f}s ({len(ts)} starts)")
    time.sleep(0.5)
late = sorted((t - d) * 1000 for d, v in batches for t in v)
print(f"{q(late, .5):.1f} {q(late, .99):.1f} {late[-1]:.1f} {len(late)}")
PY
late() { python3 "$work/late.py" "$@"; }

# ---- cron: private instances (see the header) ----
cron_note=""
if ! command -v cron >/dev/null; then cron_note="cron not installed (apt-get install -y cron)"
elif [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null; then cron_note="cron needs root and unshare for a private instance"
fi
start_cron() {  # start_cron NAME: crontab lines (system format) in $work/cron-NAME.lines; sets cron_pid
  local d=$work/cron-$1
  mkdir -p "$d/crond" "$d/spool" "$d/run"
  { echo 'SHELL=/bin/sh'; echo 'PATH=/usr/bin:/bin'; cat "$d.lines"; } > "$d/crontab"
  chmod 644 "$d/crontab"
  unshare -m --propagation private sh -c 'mount --bind "$1/crontab" /etc/crontab &&
    mount --bind "$1/crond" /etc/cron.d && mount --bind "$1/spool" /var/spool/cron/crontabs &&
    mount --bind "$1/run" /run && exec cron -f' sh "$d" > "$d/out" 2>&1 &
  cron_pid=$!
  pids+=("$cron_pid")
}
# Starting cron for section 4 early lets its wait for a minute boundary overlap sections 2-3.
cron_late_pid="" cron_late_t0=0
start_cron_late() {
  [ -z "$cron_note" ] && [ -z "$cron_late_pid" ] || return 0
  local i
  cron_late_t0=$(date +%s.%N)
  for i in $(seq 20); do echo "* * * * * root date +\%s.\%N >> $work/out/late20-cron.txt"; done > "$work/cron-late.lines"
  start_cron late
  cron_late_pid=$cron_pid
}
stop_cron_late() { if [ -n "$cron_late_pid" ]; then stop_pid "$cron_late_pid"; cron_late_pid=""; fi; }

# ---- pueue 4.0.4, built once into a cache dir ----
pueue_note=""
if [ "${BENCH_PUEUE:-1}" = 0 ]; then pueue_note="pueue skipped (BENCH_PUEUE=0)"
elif [ ! -x "$pueue_dir/bin/pueued" ] && { want 1 || want 2 || want 4; }; then
  echo "building pueue 4.0.4 into $pueue_dir (once; log: $pueue_dir.log)"
  mkdir -p "$(dirname "$pueue_dir")"
  if ! cargo install --locked pueue --version 4.0.4 --root "$pueue_dir" > "$pueue_dir.log" 2>&1; then
    pueue_note="pueue build failed (see $pueue_dir.log)"
  fi
fi
[ -z "$pueue_note" ] && [ ! -x "$pueue_dir/bin/pueued" ] && pueue_note="pueue missing in $pueue_dir"
start_pueued() {  # start_pueued NAME PARALLEL; sets pq_cfg, pq_pid
  local d=$work/pueue-$1
  mkdir -p "$d"
  pq_cfg=$d/pueue.yml
  printf 'shared:\n  pueue_directory: %s\n  runtime_directory: %s\n  use_unix_socket: true\n  unix_socket_path: %s/pueue.socket\n  pid_path: %s/pueue.pid\n' \
    "$d" "$d" "$d" "$d" > "$pq_cfg"
  "$pueue_dir/bin/pueued" -c "$pq_cfg" > "$d/out" 2>&1 &
  pq_pid=$!
  pids+=("$pq_pid")
  for _ in $(seq 100); do "$pueue_dir/bin/pueue" -c "$pq_cfg" status >/dev/null 2>&1 && break; sleep 0.1; done
  "$pueue_dir/bin/pueue" -c "$pq_cfg" parallel "$2" >/dev/null
}
pq() { "$pueue_dir/bin/pueue" -c "$pq_cfg" "$@"; }
pueue_done() {  # pueue_done N: waits until N tasks are done
  python3 - "$pueue_dir/bin/pueue" "$pq_cfg" "$1" <<'PY'
import json, subprocess, sys, time
pueue, cfg, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.time() + 60
while time.time() < deadline:
    st = json.loads(subprocess.run([pueue, "-c", cfg, "status", "--json"], capture_output=True, text=True, check=True).stdout)
    done = sum(1 for t in st["tasks"].values() if "Done" in t["status"])
    if done >= n: sys.exit(0)
    time.sleep(0.2)
sys.exit(f"pueue: only {done} of {n} tasks done")
PY
}

# Times a command paired with /bin/true (alternating, so both see the same machine).
paired() {  # paired ROUNDS CMD...: prints "median_ms p90_ms true_median_ms ratio"
  python3 - "$@" <<'PY'
import subprocess, sys, time, statistics
rounds, cmd = int(sys.argv[1]), sys.argv[2:]
def t(c):
    s = time.perf_counter(); subprocess.run(c, stdout=subprocess.DEVNULL, check=True); return time.perf_counter() - s
a, b = [], []
for _ in range(20): t(cmd); t(["/bin/true"])
for _ in range(rounds): a.append(t(cmd)); b.append(t(["/bin/true"]))
ma, mb = statistics.median(a), statistics.median(b)
print(f"{ma*1e3:.2f} {sorted(a)[int(.9*rounds)]*1e3:.2f} {mb*1e3:.2f} {ma/mb:.2f}")
PY
}

# ================= 1. ctrl vs /bin/true =================
if want 1; then
  wait_quiet
  echo; echo "== 1. ctrl vs /bin/true, jobs with results (load $(load))"
  pueue_cmp="pueue: $pueue_note"
  if [ -z "$pueue_note" ]; then
    start_pueued status 20
    for i in $(seq 0 99); do pq add -- "echo result $i" >/dev/null; done
    pueue_done 100
    read -r pm pp pt pr < <(paired 200 "$pueue_dir/bin/pueue" -c "$pq_cfg" status)
    echo "pueue status (100 finished tasks): median $pm ms (p90 $pp), /bin/true $pt ms -> ${pr}x"
    pueue_cmp="pueue status ${pm} ms (${pr}x true)"
    stop_pid "$pq_pid"
  fi
  helper scripts/bench-ctrl.sh "1. ctrl / true"
  summary_row "1. pueue status / true (100 tasks)" "" "$pueue_cmp" "" "(comparison)" "-"
fi

# ================= 2. idle =================
if want 2; then
  wait_quiet
  echo; echo "== 2. idle with 100 hourly jobs: daemon, cron and pueued side by side, ${idle_secs}s (load $(load))"
  mkcfg idle 100 1h "${slot_min}m"
  "$bin" --config "$work/idle.toml" ctrl >/dev/null
  procs="daemon=$(daemon_pid "$work/idle")"
  if [ -z "$cron_note" ]; then
    for i in $(seq 0 99); do echo "$slot_min * * * * root true job$i"; done > "$work/cron-idle.lines"
    start_cron idle
    procs+=" cron=$cron_pid"
  fi
  if [ -z "$pueue_note" ]; then
    start_pueued idle 1
    for i in $(seq 0 99); do pq add --delay 3600 -- "true job$i" >/dev/null; done
    procs+=" pueued=$pq_pid"
  fi
  python3 - "$idle_secs" "$summary" "${cron_note:-}" "${pueue_note:-}" $procs <<'PY'
import glob, os, sys, time
secs, summary, cron_note, pueue_note = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
procs = dict(a.split("=") for a in sys.argv[5:])
def csw(pid):   # voluntary context switches of every thread: each is a wake-up
    n = 0
    for f in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            for l in open(f):
                if l.startswith("voluntary_ctxt_switches"): n += int(l.split()[1])
        except FileNotFoundError: pass
    return n
def smaps(pid):  # KiB: what the process costs the machine (PSS) and what only it holds
    f = {k: int(v.split()[0]) for k, _, v in (l.partition(":") for l in open(f"/proc/{pid}/smaps_rollup"))
         if v.strip().endswith("kB")}
    return {"pss": f["Pss"], "dirty": f["Private_Dirty"], "clean": f["Private_Clean"], "rss": f["Rss"]}
def threads(pid): return len(glob.glob(f"/proc/{pid}/task/*"))
def split(pid):  # KiB of PSS: the program's own file, libraries and other files, anonymous
    exe = os.path.realpath(f"/proc/{pid}/exe")
    own = libs = anon = 0
    path, pss = None, 0
    for l in open(f"/proc/{pid}/smaps"):
        f = l.split()
        if f and "-" in f[0] and not f[0].endswith(":"):
            path = f[5] if len(f) > 5 else ""
        elif f and f[0] == "Pss:":
            pss = int(f[1])
        elif f and f[0] == "Anonymous:":
            # A private page written to (relocated data, heap, stacks) is the process's own:
            # its PSS is its size; the rest of the mapping's PSS is the file's pages.
            a = int(f[1])
            anon += a
            if path and path.startswith("/"):
                if path == exe: own += pss - a
                else: libs += pss - a
    return own, libs, anon
time.sleep(35)   # past start-up, its first runs' records and the idle shrink (app/daemon/shell.rs)
a = {k: csw(p) for k, p in procs.items()}
time.sleep(secs)
w = {k: (csw(p) - a[k]) * 30 / secs for k, p in procs.items()}
m = {k: smaps(p) for k, p in procs.items()}
# Where the PSS lies: a program's own file pages are mapped by it alone (the kernel maps whole
# page-cache folios, and fault-around their neighbours, so an idle daemon holds most of its
# code), a library's are shared with every process that maps it; anonymous memory is its own.
parts = {k: split(p) for k, p in procs.items()}
for k, p in procs.items():
    print(f"{k:>7}: PSS {m[k]['pss']} KiB, private dirty {m[k]['dirty']}, private clean {m[k]['clean']}, "
          f"RSS {m[k]['rss']}; threads {threads(p)}, wake-ups per 30 s: {w[k]:.0f}; "
          "PSS of its own binary {} KiB, of libraries and other files {}, anonymous {}".format(*parts[k]))
load = open("/proc/loadavg").read().split()[0]
def cmp(get, fmt):
    out = []
    for k, n in (("cron", cron_note), ("pueued", pueue_note)):
        out.append(f"{k} {fmt(get(k))}" if k in procs else f"{k}: {n}")
    return ", ".join(out)
def row(name, key, target):
    d = m["daemon"][key]
    if "cron" in m:
        c = m["cron"][key]
        ratio, verdict = f"{d / c:.2f}x cron", "met" if d <= c else "NOT met"
    else:
        ratio, verdict = "-", "not measured (no cron)"
    return [name, f"{d} KiB", cmp(lambda k: m[k][key], lambda v: f"{v} KiB"), ratio, target, verdict, load]
rows = [row("2. idle PSS, 100 hourly jobs", "pss", "<= cron's"),
        row("2. idle private dirty, 100 hourly jobs", "dirty", "<= cron's"),
        ["2. idle private clean / RSS (no target)", f"{m['daemon']['clean']} / {m['daemon']['rss']} KiB",
         cmp(lambda k: (m[k]["clean"], m[k]["rss"]), lambda v: f"{v[0]} / {v[1]} KiB"), "", "(comparison)", "-", load],
        ["2. idle PSS: own binary / libraries / anonymous (no target)", "{} / {} / {} KiB".format(*parts["daemon"]),
         cmp(lambda k: parts[k], lambda v: "{} / {} / {} KiB".format(*v)), "", "(comparison)", "-", load],
        ["2. idle wake-ups per 30 s", f"{w['daemon']:.0f}", cmp(lambda k: w[k], lambda v: f"{v:.0f}"),
         "", "<= 1", "met" if w["daemon"] <= 1 else "NOT met", load]]
with open(summary, "a") as f:
    for r in rows: f.write("|".join(r) + "\n")
PY
  "$bin" --config "$work/idle.toml" stop >/dev/null
  [ -z "$cron_note" ] && stop_pid "$cron_pid"
  [ -z "$pueue_note" ] && stop_pid "$pq_pid"
fi

# ================= 3. memory per job =================
if want 3; then
  echo; echo "== 3. memory per job: 10,000 jobs with results, per schedule kind (load $(load))"
  helper scripts/bench-memory.sh "3. PSS, 10,000 jobs"
fi

# ================= 4. 20 jobs due together =================
if want 4; then
  wait_quiet
  start_cron_late
  echo; echo "== 4. start lateness, 20 jobs due together (load $(load))"
  # cron's batch, if it came during sections 2-3: stop cron now, before it disturbs the others.
  c="" cn=$cron_note
  if [ -z "$cron_note" ] && c=$(late period "$work/out/late20-cron.txt" 20 0 60 "$cron_late_t0" 0 1 2>/dev/null); then
    stop_cron_late
  fi
  # The daemon: 20 jobs every 10 s; three batches, skipping the first after its start.
  mkcfg late20 20 10s "" "[\"sh\", \"-c\", \"date +%s.%N >> $work/out/late20-daemon.txt\"]"
  t0=$(date +%s.%N)
  "$bin" --config "$work/late20.toml" ctrl >/dev/null
  d=$(late period "$work/out/late20-daemon.txt" 20 60 10 "$t0" 1 3) || d=""
  "$bin" --config "$work/late20.toml" stop --now >/dev/null
  echo "robotmk-daemon: ${d:-failed} (p50 p99 max ms, starts)"
  # pueue: 3 batches of 20 tasks delayed to the same instant.
  p="" pn=$pueue_note
  if [ -z "$pueue_note" ]; then
    start_pueued late 100
    base=$(( $(date +%s) + 8 ))
    for j in 0 3 6; do
      at=$(date -d "@$((base + j))" '+%Y-%m-%d %H:%M:%S')
      for i in $(seq 20); do pq add --delay "$at" -- "date +%s.%N >> $work/out/late20-pueue.txt" >/dev/null; done
    done
    [ "$(date +%s)" -ge "$base" ] && echo "(pueue: adding the tasks took past the first instant)"
    p=$(late instants "$work/out/late20-pueue.txt" 20 30 "$base,$((base + 3)),$((base + 6))") || pn="pueue: failed"
    stop_pid "$pq_pid"
    echo "pueue:          ${p:-$pn}"
  fi
  # cron: started before section 2 when that ran; its first full minute after the start.
  if [ -z "$cron_note" ]; then
    [ -n "$c" ] || c=$(late period "$work/out/late20-cron.txt" 20 75 60 "$cron_late_t0" 0 1) || cn="cron: failed"
    echo "cron:           ${c:-$cn}"
  fi
  stop_cron_late
  python3 - "$summary" "$d" "$c" "$p" "${cn:-}" "${pn:-}" <<'PY'
import sys
summary, d, c, p, cn, pn = sys.argv[1:]
v = lambda s: [float(x) for x in s.split()[:2]] if s else None
d, c, p = v(d), v(c), v(p)
fmt = lambda x: f"{x[0]:.1f}/{x[1]:.1f} ms"
cmp = ", ".join([f"cron {fmt(c)}" if c else cn, f"pueue {fmt(p)}" if p else pn])
ratio = ", ".join(f"{d[1]/x[1]:.2f}x {k}" for k, x in (("cron", c), ("pueue", p)) if x and d)
with open(summary, "a") as f:
    f.write("|".join(["4. lateness p50/p99, 20 due together", fmt(d) if d else "failed", cmp,
                      ratio + (" (p99)" if ratio else ""), "none set (comparison)", "-",
                      open("/proc/loadavg").read().split()[0]]) + "\n")
PY
fi
stop_cron_late

# ================= 5. lateness vs the floor =================
if want 5; then
  echo; echo "== 5. start lateness vs the floor, 100 and 1,000 jobs due together (load $(load))"
  helper scripts/bench-lateness.sh "5. lateness / floor"
fi

# ================= 6. a 1 s job beside a 200 MB result =================
if want 6; then
  wait_quiet
  echo; echo "== 6. a 1 s job alone, and beside a job with a 200 MB output.xml every 10 s (${BENCH_BIG_SECS:-30}s each; load $(load))"
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
    python3 - "$work/$mode" "$mode" "$summary" <<'PY'
import sys
state, mode, summary = sys.argv[1:]
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
open(f"{summary}.{mode}", "w").write(f"{q(0.5):.2f} {q(0.99):.2f}\n")
PY
  done
  read -r a50 a99 < "$summary.alone"; read -r b50 b99 < "$summary.beside"
  summary_row "6. 1 s job beside 200 MB results (extra)" "p50/p99 $b50/$b99 ms" "alone $a50/$a99 ms" \
    "$(python3 -c "print(f'{$b99 / max($a99, 0.01):.2f}x alone (p99)')")" "none set (should match)" "-"
fi

# ================= 7. throughput =================
if want 7; then
  echo; echo "== 7. throughput: the highest rate of short jobs sustained, daemon vs floor (load $(load))"
  helper scripts/bench-throughput.sh "7. throughput"
fi

# ================= the soak =================
summary_row "8. soak: PSS flat, no fd growth, no zombie, no lost record" "not run here" "" "" \
  "scripts/soak.sh (2 h; --minutes N)" "run separately"

# ================= summary =================
echo; echo "== summary ($(( $(date +%s) - t_start )) s; load average now $(load); targets are printed, not enforced)"
{ echo "row|measured|comparison|ratio|target|verdict|load"; cat "$summary"; } | column -t -s '|'
