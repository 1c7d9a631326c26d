#!/usr/bin/env bash
# Soak run (issues 14 and 25): 50 jobs every 1-5 s for two hours with keep_runs = 20 (old runs
# pruned as in production), the torture reader running, and a 64 KiB log limit so the log
# rotates many times. Every 10 s it collects the run records (before keep_runs prunes them);
# every 30 s it samples the daemon: PSS, private dirty (/proc/PID/smaps_rollup), RSS, open fds,
# threads, zombies among its children, daemon.log's size. At the end it prints the series and
# one verdict line per property:
#   no lost record  every run folder seen got a finished record.json; every job's due times
#                   have no gap from its first to its last record and span the soak
#   PSS flat        PSS (its anonymous part: the file part swings with the ctrls sharing the
#                   binary) and private dirty, from minute 10 on (SOAK_WARMUP; a third of a
#                   shorter run), never more than SOAK_PSS_SLACK_KIB (128) above the first sample
#   fds flat        no fd growth after the warm-up (SOAK_FD_SLACK, 16)
#   no zombie       no child of the daemon left in state Z (seen twice, 1 s apart)
#   log limit       daemon.log and each rotated file never above log_max_size
#   reader          the torture reader saw no torn JSON and no failed ctrl
# The jobs: succeeding, failing, printing output, leaving a small Robot Framework output.xml,
# and running into their timeout (the runner is killed).
# Usage: scripts/soak.sh [--minutes N]   (default 120 minutes; SOAK_SECS=seconds also works;
#        SOAK_BIN=path, else BENCH_BIN, else the release build; SOAK_KEEP_RUNS=20)
# Exit code: 0 when every verdict is PASS, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SOAK_SECS:-7200}
case "${1:-}" in
  --minutes) secs=$(( ${2:?--minutes needs a number} * 60 )) ;;
  "") ;;
  *) echo "usage: $0 [--minutes N]" >&2; exit 2 ;;
esac
bin=${SOAK_BIN:-${BENCH_BIN:-$(scripts/build-release.sh)}}
warmup=${SOAK_WARMUP:-$(( secs / 3 < 600 ? secs / 3 : 600 ))}
log_max=65536
keep_runs=${SOAK_KEEP_RUNS:-20}
work=$(mktemp -d /tmp/rmkd-soak.XXXXXX)
cfg=$work/soak.toml
state=$work/state
reader_pid=""
cleanup() {
  [ -n "$reader_pid" ] && { kill "$reader_pid" 2>/dev/null || true; wait "$reader_pid" 2>/dev/null || true; }
  "$bin" --config "$cfg" stop --now --timeout 20s >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset RUST_BACKTRACE

# A small Robot Framework result: two tests, one failing.
cat > "$work/output.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Robot 7.0" generated="2026-01-01T00:00:00.000000" rpa="false" schemaversion="5">
<suite id="s1" name="Soak" source="/soak.robot">
<test id="s1-t1" name="Passes" line="2"><kw name="Log" owner="BuiltIn"><msg time="2026-01-01T00:00:00.100000" level="INFO">hello</msg><arg>hello</arg><status status="PASS" start="2026-01-01T00:00:00.100000" elapsed="0.001"/></kw><status status="PASS" start="2026-01-01T00:00:00.100000" elapsed="0.002"/></test>
<test id="s1-t2" name="Fails" line="5"><kw name="Fail" owner="BuiltIn"><msg time="2026-01-01T00:00:00.200000" level="FAIL">boom</msg><arg>boom</arg><status status="FAIL" start="2026-01-01T00:00:00.200000" elapsed="0.001"/></kw><status status="FAIL" start="2026-01-01T00:00:00.200000" elapsed="0.002">boom</status></test>
<status status="FAIL" start="2026-01-01T00:00:00.000000" elapsed="0.300"/>
</suite>
<statistics><total><stat pass="1" fail="1" skip="0">All Tests</stat></total><tag/><suite><stat pass="1" fail="1" skip="0" id="s1" name="Soak">Soak</stat></suite></statistics>
<errors/>
</robot>
XML

{ printf '[daemon]\ninstance = "soak"\nstate_dir = "%s"\nmax_parallel = 8\nheartbeat_timeout = "10m"\n' "$state"
  printf 'keep_runs = %s\nlog_max_size = "%s"\n' "$keep_runs" "$log_max"
  for i in $(seq 0 49); do
    printf '[[job]]\nname = "job%02d"\nevery = "%ss"\n' "$i" $(( 1 + i % 5 ))
    case $(( i / 5 % 5 )) in
      0) printf 'command = ["true"]\n' ;;
      1) printf 'command = ["sh", "-c", "echo failing; exit 3"]\n' ;;
      2) printf 'command = ["sh", "-c", "seq 1 300; echo on stderr >&2"]\n' ;;
      3) printf 'command = ["cp", "%s", "{run_dir}/output.xml"]\nresult = "{run_dir}/output.xml"\n' "$work/output.xml" ;;
      4) printf 'command = ["sleep", "3"]\ntimeout = "1s"\n' ;;
    esac
  done; } > "$cfg"
"$bin" --config "$cfg" check-config >/dev/null
"$bin" --config "$cfg" ctrl >/dev/null
echo "soak: 50 jobs every 1-5 s for ${secs}s (warm-up ${warmup}s), log_max_size ${log_max} B; load $(cut -d' ' -f1-3 /proc/loadavg); $bin"

# The torture reader: ctrl and status.json / latest.json parses in a tight loop.
python3 - "$bin" "$cfg" "$state" "$work/reader" <<'PY' &
import glob, json, os, signal, subprocess, sys
bin, cfg, state, out = sys.argv[1:]
n = {"ctrl": 0, "ctrl_failed": 0, "reads": 0, "torn": 0}
def done(*_):
    # os._exit, not sys.exit: a SystemExit raised where Python ignores exceptions (a
    # finalizer) was swallowed once, and the reader ran on with the script waiting for it.
    with open(out, "w") as f:
        json.dump(n, f)
    os._exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    r = subprocess.run([bin, "--config", cfg, "ctrl"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    n["ctrl"] += 1
    if r.returncode != 0:
        n["ctrl_failed"] += 1
        print("ctrl failed:", r.stderr.decode(errors="replace")[:200], file=sys.stderr)
    for f in [f"{state}/status.json"] + glob.glob(f"{state}/jobs/*/latest.json"):
        try: b = open(f, "rb").read()
        except FileNotFoundError: continue
        n["reads"] += 1
        try: json.loads(b)
        except ValueError:
            n["torn"] += 1; print("TORN:", f, file=sys.stderr)
PY
reader_pid=$!

date +%s.%N > "$work/t0"
python3 - "$state" "$secs" "$log_max" "$work/samples" "$work/records" <<'PY'
import glob, json, os, sys, time
state, secs, log_max, out, rec_out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def stat_fields(pid):
    s = open(f"/proc/{pid}/stat").read()
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1])   # state, ppid
def zombies(pid):
    z = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st, ppid = stat_fields(d)
            except (FileNotFoundError, ProcessLookupError, ValueError): continue
            if st == "Z" and ppid == pid: z.add(int(d))
    return z
def smaps(pid):
    f = {k: int(v.split()[0]) for k, _, v in (l.partition(":") for l in open(f"/proc/{pid}/smaps_rollup"))
         if v.strip().endswith("kB")}
    return f["Pss"], f.get("Pss_Anon", f["Pss"]), f["Private_Dirty"], f["Rss"]
# Run folders seen so far: run path -> [job, due, trigger, outcome or None, started]. keep_runs
# prunes a job's old folders; at one run a second, 20 runs last longer than the 10 s between
# scans. A folder prepared ahead of its due time holds a record without `started` until the
# run starts; one the daemon discards (at its stop, or when it woke too late) goes unstarted.
records = {}
def scan():
    for d in glob.glob(f"{state}/jobs/*/runs/*"):
        if records.get(d, [None] * 4)[3] is not None: continue
        try: r = json.load(open(f"{d}/record.json"))
        except FileNotFoundError: records.setdefault(d, [None, None, None, None, False]); continue
        except ValueError: continue   # being replaced: the next scan reads it
        records[d] = [r.get("job"), r.get("due"), r.get("trigger"), r.get("outcome"), bool(r.get("started"))]
samples, t0, tick = [], time.time(), 0
while True:
    el = time.time() - t0
    scan()
    if tick % 3 == 0 or el >= secs:
        pid = json.load(open(f"{state}/status.json"))["daemon"]["pid"]
        z = zombies(pid)
        if z:
            time.sleep(1)
            z &= zombies(pid)   # still there a second later: not merely between exit and reap
        logs = {n: os.path.getsize(f"{state}/{n}") for n in ["daemon.log", "daemon.log.1", "daemon.log.2", "daemon.log.3"]
                if os.path.exists(f"{state}/{n}")}
        pss, anon, dirty, rss = smaps(pid)
        x = dict(t=round(el), pid=pid, pss=pss, anon=anon, dirty=dirty, rss=rss, fds=len(os.listdir(f"/proc/{pid}/fd")),
                 threads=len(os.listdir(f"/proc/{pid}/task")), zombies=len(z), log=logs.get("daemon.log", 0),
                 rotated=len(logs) - 1, log_max_seen=max(logs.values()), load=open("/proc/loadavg").read().split()[0])
        samples.append(x)
        print("  t={t:>5}s  PSS {pss} KiB (anonymous {anon}, private dirty {dirty}, RSS {rss})  fds {fds}  threads {threads}  zombies {zombies}  "
              "daemon.log {log} B (+{rotated} rotated)  load {load}".format(**x), flush=True)
        json.dump(samples, open(out, "w"))
        json.dump(records, open(rec_out, "w"))
    if el >= secs: break
    tick += 1
    time.sleep(min(10, max(0, secs - (time.time() - t0))))
PY

date +%s.%N > "$work/t1"
kill "$reader_pid"; wait "$reader_pid" || true; reader_pid=""
"$bin" --config "$cfg" stop --timeout 30s >/dev/null   # lets runs in flight finish and be recorded
python3 - "$state" "$warmup" "$log_max" "$work/samples" "$work/reader" "$cfg" "${SOAK_PSS_SLACK_KIB:-128}" "${SOAK_FD_SLACK:-16}" "$work/records" <<'PY'
import glob, json, os, re, sys, datetime as dt
state, warmup, log_max, samples, reader, cfg = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
pss_slack, fd_slack, records = int(sys.argv[7]), int(sys.argv[8]), json.load(open(sys.argv[9]))
S = json.load(open(samples))
R = json.load(open(reader)) if os.path.exists(reader) else None
ok = True
def verdict(name, good, detail):
    global ok
    ok &= good
    print(f"{'PASS' if good else 'FAIL'}  {name}: {detail}")
p = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
every = {m[0]: int(m[1]) for m in re.findall(r'name = "(job\d+)"\nevery = "(\d+)s"', open(cfg).read())}

# Records: every run folder seen (by the scans during the soak, and now after the stop) got a
# finished record; each job's due times without a gap from its first record to its last.
now = set(glob.glob(f"{state}/jobs/*/runs/*"))
for d in now:
    try: r = json.load(open(f"{d}/record.json"))
    except (FileNotFoundError, ValueError): records.setdefault(d, [None, None, None, None, False]); continue
    records[d] = [r.get("job"), r.get("due"), r.get("trigger"), r.get("outcome"), bool(r.get("started"))]
# A folder gone before its run started was a discarded preparation, not a lost record.
discarded = [d for d, r in records.items() if d not in now and r[3] is None and not r[4]]
for d in discarded: del records[d]
unrecorded = [d for d, r in records.items() if r[0] is None]
unfinished = [d for d, r in records.items() if r[0] is not None and r[3] is None]
dues, outcomes = {}, {}
for job, due, trigger, outcome, _ in records.values():
    if outcome is None: continue
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if trigger == "schedule": dues.setdefault(job, []).append(p(due))
woke_late = sum("daemon woke late" in l for f in glob.glob(f"{state}/daemon.log*") for l in open(f, errors="replace"))
gaps, expected, stalled = 0, 0, []
t0, t1 = (float(open(f"{os.path.dirname(samples)}/{n}").read()) for n in ("t0", "t1"))
for job, e in every.items():
    ds = sorted(dues.get(job, []))
    if not ds: gaps += 1; stalled.append(job); continue
    if ds[0] > t0 + e + 10 or ds[-1] < t1 - e - 10:   # started late, or stalled
        stalled.append(job)
    slots = round((ds[-1] - ds[0]) / e) + 1
    expected += slots
    gaps += slots - len(set(ds))
total = sum(len(v) for v in dues.values())
print(f"records: {len(records)} run folders seen, {total} scheduled; outcomes {outcomes}; "
      f"{len(discarded)} prepared folders discarded unstarted")
verdict("no lost record", not unrecorded and not unfinished and gaps == 0 and not stalled,
        f"{len(unrecorded)} run folders without record.json, {len(unfinished)} unfinished {unfinished[:3]}, "
        f"{len(stalled)} jobs whose due times do not span the soak {stalled[:5]}, "
        f"{gaps} due times missing of {expected} "
        f"({woke_late} 'daemon woke late' warnings in the retained log)")

# Flat lines, from the first sample after the warm-up.
base = next((s for s in S if s["t"] >= warmup), S[-1])
last = S[-1]
series = lambda k: " ".join(str(s[k]) for s in S)
print(f"PSS KiB:   {series('pss')}\nanon KiB:  {series('anon')}\ndirty KiB: {series('dirty')}\nRSS KiB:   {series('rss')}\nfds:       {series('fds')}\nthreads:   {series('threads')}")
print(f"log B:     {series('log')}\nload:      {series('load')}")
post = [s for s in S if s["t"] >= base["t"]]
def slope(k):   # least squares, KiB per hour
    if len(post) < 2: return 0.0
    mt, mv = sum(s["t"] for s in post) / len(post), sum(s[k] for s in post) / len(post)
    den = sum((s["t"] - mt) ** 2 for s in post)
    return sum((s["t"] - mt) * (s[k] - mv) for s in post) / den * 3600 if den else 0.0
# Judged on the anonymous part of PSS (heap, stacks: what the daemon itself holds); the file
# part is the binary's pages, shared with every ctrl the reader runs, so it swings with how
# many run at the sampling instant (hundreds of KiB) without the daemon holding more.
top = max(s["anon"] for s in post)
verdict("PSS flat", top - base["anon"] <= pss_slack and last["dirty"] - base["dirty"] <= pss_slack,
        f"anonymous PSS {base['anon']} -> {last['anon']} KiB (max {top}; PSS {base['pss']} -> {last['pss']}, "
        f"private dirty {base['dirty']} -> {last['dirty']}) from t={base['t']}s to t={last['t']}s; "
        f"bound +{pss_slack} KiB; trend {slope('anon'):+.0f} KiB/h (dirty {slope('dirty'):+.0f})")
verdict("fds flat", last["fds"] - base["fds"] <= fd_slack,
        f"{base['fds']} -> {last['fds']} (max {max(s['fds'] for s in S)}); bound +{fd_slack}")
verdict("one daemon", len({s['pid'] for s in S}) == 1, f"daemon PIDs {sorted({s['pid'] for s in S})}")
verdict("no zombie", all(s["zombies"] == 0 for s in S), f"lingering zombies per sample: {series('zombies')}")
logs = {os.path.basename(f): os.path.getsize(f) for f in glob.glob(f"{state}/daemon.log*")}
biggest = max(max(s["log_max_seen"] for s in S), max(logs.values()))
verdict("log under its limit", biggest <= log_max and len(logs) <= 4 and "daemon.log.1" in logs,
        f"largest log file seen {biggest} B, limit {log_max} B; files now {logs}"
        + ("" if "daemon.log.1" in logs else " (it never rotated)"))
if R is None: verdict("torture reader", False, "no report from the reader")
else: verdict("torture reader", R["torn"] == 0 and R["ctrl_failed"] == 0 and R["ctrl"] > 0,
              f"{R['ctrl']} ctrl calls ({R['ctrl_failed']} failed), {R['reads']} JSON reads ({R['torn']} torn)")
sys.exit(0 if ok else 1)
PY
