#!/usr/bin/env bash
# Reading Robot Framework results: peak RSS and time of `robotmk-daemon parse-result` (what
# the daemon does when a run ends) on hostile files, against a tiny file as the idle figure.
# The contract (issue 11): at most 8 MiB above idle whatever the file.
#   message.xml/.json  one 40 MB log message
#   big.xml/.json      200 MB: 10,000 tests with two 10 KB messages each
#   deep.xml/.json     300,000 levels of nesting (refused: deeper than robot ever writes)
# Printed figures only, no thresholds (tests/robot.rs checks the 8 MiB bound on the small cases).
# Usage: scripts/bench-results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/build-release.sh)
work=$(mktemp -d /tmp/rmkd-bench-results.XXXXXX)
trap 'rm -rf "$work"' EXIT

python3 - "$work" <<'PY'
import sys, os
d = sys.argv[1]
def write(name, head, part, times, tail):
    with open(os.path.join(d, name), "w") as f:
        f.write(head)
        for _ in range(times):
            f.write(part)
        f.write(tail)
write("tiny.xml", '<robot><suite name="S"><test name="T"><status status="PASS"/></test></suite></robot>', "", 0, "")
mb = "x" * (1 << 20)
write("message.xml", '<robot><suite name="S"><test name="T"><kw name="Log"><msg level="INFO">', mb, 40,
      '</msg></kw><status status="FAIL">m</status></test></suite></robot>')
write("message.json", '{"suite":{"tests":[{"body":[{"type":"MESSAGE","message":"', mb, 40,
      '"}],"name":"T","status":"FAIL"}],"name":"S"}}')
msg = "y" * 10000
write("big.xml", '<robot><suite name="Big">',
      '<test name="t"><kw name="Log"><msg level="INFO">' + msg + '</msg><status status="PASS" elapsed="0.1"/></kw>'
      '<status status="FAIL" elapsed="0.2">' + msg + '</status></test>\n', 10000,
      '<status status="FAIL" elapsed="9"/></suite><statistics><total><stat pass="0" fail="10000" skip="0">All Tests</stat></total></statistics></robot>')
write("big.json", '{"suite":{"tests":[',
      ",".join(['{"body":[{"type":"MESSAGE","message":"' + msg + '"}],"name":"t","status":"FAIL","message":"' + msg + '","elapsed_time":0.2}'] * 1000) + ",", 10,
      '{"name":"last","status":"PASS"}],"name":"Big","status":"FAIL","elapsed_time":9}}')
write("deep.xml", "<robot>", "<kw>", 300000, "")
write("deep.json", '{"suite":', "[", 300000, "")
PY

python3 - "$bin" "$work" <<'PY'
import os, subprocess, sys, time
bin, d = sys.argv[1], sys.argv[2]
def measure(path):
    # parse-result reports its own VmHWM: a forking parent's rusage would count the
    # parent's memory too.
    t = time.monotonic()
    p = subprocess.run([bin, "parse-result", "--peak-rss", path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    secs = time.monotonic() - t
    kib = int(next(l for l in p.stderr.splitlines() if l.startswith("peak_rss_kib=")).split("=")[1])
    return p.returncode, kib, secs
_, idle, _ = measure(os.path.join(d, "tiny.xml"))
print(f"idle (tiny.xml): peak RSS {idle} KiB")
print(f"{'file':<14} {'size MB':>8} {'exit':>4} {'peak KiB':>9} {'above idle':>11} {'seconds':>8}")
for name in ["message.xml", "message.json", "big.xml", "big.json", "deep.xml", "deep.json"]:
    p = os.path.join(d, name)
    code, peak, secs = measure(p)
    print(f"{name:<14} {os.path.getsize(p) / 1e6:>8.1f} {code:>4} {peak:>9} {peak - idle:>8} KiB {secs:>8.2f}")
PY
