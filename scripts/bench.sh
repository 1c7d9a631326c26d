#!/usr/bin/env bash
# The performance benchmark of issue 14: every row of its table in one run, with the comparisons
# (cron, pueue, a bare fork+exec "floor") as ratios, the machine's load average, and a summary
# table with each target and whether it is met. Targets are printed, never enforced: the exit
# code says only whether the bench itself ran (a busy machine must not fail CI).
#   1. ctrl vs /bin/true, 100 and 1,000 jobs with results (scripts/bench-ctrl.sh); `pueue status`
#      with 100 finished tasks vs /bin/true beside it
#   2. idle, 100 hourly jobs: RSS (anon/file) and wake-ups per 30 s over all threads, for the
#      daemon, cron and pueued measured side by side (scripts/bench-memory.sh adds its rows)
#   3. RSS with 10,000 jobs (scripts/bench-memory.sh, or measured here)
#   4. start lateness of 20 jobs due together, p50/p99, for the daemon, cron and pueue
#   5. start lateness vs the floor at 100 and 1,000 jobs (scripts/bench-lateness.sh)
#   6. a 1 s job alone and beside a job leaving a 200 MB output.xml every 10 s (extra row)
# Lateness is measured the same way for all three schedulers: the job's command is
# `sh -c 'date +%s.%N >> FILE'`, and lateness = the time written - the due instant.
#
# Usage: scripts/bench.sh
#   BENCH_BIN=path       measure another build (default: the .deb's build, scripts/build-release.sh;
#                        `BENCH_BIN=$(scripts/build-release.sh --static)` measures the tarball's)
#   BENCH_ONLY="2 4"     run only those sections
#   BENCH_IDLE_SECS=30   the idle window of section 2 (wake-ups are scaled to 30 s)
#   BENCH_BIG_SECS=30    each half of section 6
#   BENCH_PUEUE_DIR=dir  where pueue 4.0.4 is (built there with cargo install if missing;
#                        default ~/.cache/robotmk-bench/pueue-4.0.4); BENCH_PUEUE=0 skips it
# Helper scripts get BIN=<binary> and may print summary rows as lines
#   SUMMARY|<row>|<measured>|<comparison>|<ratio>|<target>|<met or NOT met>
# which go to the table at the end (the rest of their output is shown as it comes).
#
# cron: Debian's cron has no private spool option, so each cron instance runs in a mount
# namespace of its own (unshare -m) where a private crontab is bind-mounted over /etc/crontab,
# empty dirs over /etc/cron.d and /var/spool/cron/crontabs, and a private dir over /run (its
# pid file). Nothing outside the namespace changes, and the mounts vanish with the process.
# Needs root and `apt-get install -y cron`; without them the cron column says why it is empty.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BENCH_BIN:-$(scripts/build-release.sh)}
only=" ${BENCH_ONLY:-1 2 3 4 5 6} "
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
summary_row() { local IFS='|'; echo "$*" >> "$summary"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "load average: $(load); $(nproc) cores; $bin"

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
  elif ! grep -q '^SUMMARY|' "$out"; then
    parse_helper "$1" "$out" "$2"
  elif [ -n "${PUEUE_CMP:-}" ]; then
    summary_row "1. pueue status / true (100 tasks)" "" "$PUEUE_CMP" "" "(comparison)" "-"
  fi
}
# Without SUMMARY lines: the figures from the lines these scripts print today, else a pointer.
parse_helper() {  # parse_helper SCRIPT OUTPUT LABEL
  python3 - "$@" "$summary" <<'PY'
import os, re, sys
script, out, label, summary = sys.argv[1:]
text = open(out, encoding="utf-8", errors="replace").read()
rows = []
met = lambda ok: "met" if ok else "NOT met"
if script.endswith("bench-ctrl.sh"):
    for n, c, t, r in re.findall(r"(\d+) jobs with results: median ([\d.]+) ms vs ([\d.]+) ms \S+ ([\d.]+)", text):
        lim = 2 if int(n) <= 100 else 3
        pueue = os.environ.get("PUEUE_CMP", "")
        rows.append([f"1. ctrl / true, {n} jobs", f"{c} ms", f"/bin/true {t} ms" + (f"; {pueue}" if pueue and int(n) == 100 else ""),
                     f"{r}x", f"<= {lim}x", met(float(r) <= lim)])
elif script.endswith("bench-memory.sh"):
    m = re.search(r"idle RSS, 100 hourly jobs: (\d+) KiB \(anon (\d+), file (\d+)\)", text)
    if m:
        rows.append(["2. idle RSS, 100 hourly jobs (bench-memory.sh)", f"{m[1]} KiB (anon {m[2]}, file {m[3]})", "", "",
                     "<= 2560 KiB", met(int(m[1]) <= 2560)])
    m = re.search(r"RSS with 10,000 jobs: (\d+) KiB \(([\d.]+) KiB/job\)", text)
    if m:
        rows.append(["3. RSS, 10,000 jobs", f"{m[1]} KiB ({m[2]} KiB/job)", "", "", "<= 12288 KiB", met(int(m[1]) <= 12288)])
elif script.endswith("bench-lateness.sh"):
    for part in re.split(r"(?m)^== ", text)[1:]:
        n = re.match(r"start lateness, (\d+) jobs", part)
        d = re.search(r"(?m)^\s*daemon: p50\s+([\d.]+) ms, p99\s+([\d.]+) ms", part)
        f = re.search(r"(?m)^\s*floor: p50\s+([\d.]+) ms, p99\s+([\d.]+) ms", part)
        r = re.search(r"(?m)^\s*daemon / floor: p50 ([\d.]+)x.*p99 ([\d.]+)x", part)
        if n and d and f and r:
            rows.append([f"5. lateness / floor, {n[1]} jobs", f"p50/p99 {d[1]}/{d[2]} ms", f"floor {f[1]}/{f[2]} ms",
                         f"{r[1]}x/{r[2]}x", "p50 <= 1.1x, p99 <= 1.2x", met(float(r[1]) <= 1.1 and float(r[2]) <= 1.2)])
if not rows:
    rows.append([label, f"see {script} output above", "", "", "", "?"])
with open(summary, "a") as s:
    for r in rows: s.write("|".join(r) + "\n")
PY
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
  if [ -x scripts/bench-ctrl.sh ]; then
    PUEUE_CMP=$pueue_cmp helper scripts/bench-ctrl.sh "1. ctrl / true"
  else
    mkcfg ctrl 100 1h "${slot_min}m"
    c=$work/ctrl.toml
    for i in $(seq 0 99); do "$bin" --config "$c" run-once "$(printf job%04d "$i")" >/dev/null; done
    "$bin" --config "$c" ctrl >/dev/null
    read -r cm cp ct cr < <(paired 300 "$bin" --config "$c" ctrl)
    out=$("$bin" --config "$c" ctrl | wc -c)
    echo "100 jobs: ctrl median $cm ms (p90 $cp), /bin/true $ct ms -> ${cr}x; output $out bytes"
    echo "1000 jobs: not measured (scripts/bench-ctrl.sh missing)"
    met=$(python3 -c "print('met' if $cr <= 2 else 'NOT met')")
    summary_row "1. ctrl / true, 100 jobs" "${cm} ms (${cr}x true)" "$pueue_cmp" "${cr}x" "<= 2x" "$met"
    summary_row "1. ctrl / true, 1000 jobs" "not measured (scripts/bench-ctrl.sh missing)" "" "" "<= 3x" "not measured"
    "$bin" --config "$c" stop >/dev/null
  fi
fi

# ================= 2. idle =================
if want 2; then
  want 4 && start_cron_late
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
import glob, sys, time
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
def status(pid):
    return {k: (v.split() or [""])[0] for k, _, v in (l.partition(":") for l in open(f"/proc/{pid}/status"))}
time.sleep(2)   # past start-up
a = {k: csw(p) for k, p in procs.items()}
time.sleep(secs)
w = {k: (csw(p) - a[k]) * 30 / secs for k, p in procs.items()}
r = {}
for k, p in procs.items():
    s = status(p)
    r[k] = int(s["VmRSS"])
    print(f"{k:>7}: RSS {s['VmRSS']} KiB (anon {s['RssAnon']}, file {s['RssFile']}, shmem {s['RssShmem']}), "
          f"threads {s['Threads']}, wake-ups per 30 s: {w[k]:.0f}")
def cmp(key, fmt, note):
    out = []
    for k, n in (("cron", cron_note), ("pueued", pueue_note)):
        out.append(f"{k} {fmt(key[k])}" if k in key else f"{k}: {n}")
    return ", ".join(out)
ratio = lambda x, y: f"{x / y:.2f}x cron" if y else "-"
with open(summary, "a") as f:
    f.write("|".join(["2. idle RSS, 100 hourly jobs", f"{r['daemon']} KiB", cmp(r, lambda v: f"{v} KiB", None),
                      ratio(r["daemon"], r.get("cron", 0)), "<= 2560 KiB",
                      "met" if r["daemon"] <= 2560 else "NOT met"]) + "\n")
    f.write("|".join(["2. idle wake-ups per 30 s", f"{w['daemon']:.0f}", cmp(w, lambda v: f"{v:.0f}", None),
                      ratio(w["daemon"], w.get("cron", 0)), "<= 1",
                      "met" if w["daemon"] <= 1 else "NOT met"]) + "\n")
PY
  "$bin" --config "$work/idle.toml" stop >/dev/null
  [ -z "$cron_note" ] && stop_pid "$cron_pid"
  [ -z "$pueue_note" ] && stop_pid "$pq_pid"
fi

# ================= 2/3. memory =================
if (want 2 || want 3) && [ -x scripts/bench-memory.sh ]; then
  echo; echo "== 2/3. memory (load $(load))"
  want 4 && start_cron_late
  helper scripts/bench-memory.sh "2/3. RSS"
elif want 3; then
  want 4 && start_cron_late
  echo; echo "== 3. RSS with 10,000 hourly jobs (load $(load))"
  mkcfg big 10000 1h "${slot_min}m"
  "$bin" --config "$work/big.toml" ctrl >/dev/null
  pid=$(daemon_pid "$work/big")
  # Settled: the same RSS two seconds apart.
  prev=0
  for _ in $(seq 30); do
    sleep 2; rss=$(awk '/^VmRSS/ {print $2}' /proc/"$pid"/status)
    [ "$rss" = "$prev" ] && break; prev=$rss
  done
  echo "RSS $(awk '/^(VmRSS|RssAnon|RssFile)/ {printf "%s %s KiB  ", $1, $2}' /proc/"$pid"/status)"
  met=$( [ "$rss" -le 12288 ] && echo met || echo "NOT met")
  summary_row "3. RSS, 10,000 jobs" "$rss KiB" "" "" "<= 12288 KiB" "$met"
  "$bin" --config "$work/big.toml" stop >/dev/null
fi

# ================= 4. 20 jobs due together =================
if want 4; then
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
                      ratio + (" (p99)" if ratio else ""), "none set (comparison)", "-"]) + "\n")
PY
fi
stop_cron_late

# ================= 5. lateness vs the floor =================
if want 5; then
  echo; echo "== 5. start lateness vs the floor, 100 and 1,000 jobs due together (load $(load))"
  if [ -x scripts/bench-lateness.sh ]; then
    helper scripts/bench-lateness.sh "5. lateness / floor"
  else
    echo "the floor: not measured (bench/floor.c or scripts/bench-lateness.sh missing); the daemon alone:"
    for n in 100 1000; do
      mkcfg "late$n" "$n" 10s
      "$bin" --config "$work/late$n.toml" ctrl >/dev/null
      r=$(python3 - "$work/late$n" "$n" <<'PY'
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
print(f"{q(0.5):.1f} {q(0.99):.1f} {late[-1]:.1f} {n/span if span else float('inf'):.0f}")
PY
      ) || r=""
      "$bin" --config "$work/late$n.toml" stop --now >/dev/null
      read -r p50 p99 mx rate <<< "${r:-- - - -}"
      echo "$n jobs: record's started - due: p50 $p50 ms, p99 $p99 ms, max $mx ms; $rate starts/s"
      summary_row "5. lateness / floor, $n jobs" "p50/p99 $p50/$p99 ms" "floor: not measured (bench-lateness.sh missing)" "" "p50 <= 1.1x, p99 <= 1.2x" "not measured"
    done
  fi
fi

# ================= 6. a 1 s job beside a 200 MB result =================
if want 6; then
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

# ================= summary =================
echo; echo "== summary ($(( $(date +%s) - t_start )) s; load average now $(load); targets are printed, not enforced)"
{ echo "row|measured|comparison|ratio|target|verdict"; cat "$summary"; } | column -t -s '|'
