#!/bin/bash
# sandbox-test.sh -- prove in a REAL systemd (PID 1 of a systemd-nspawn sandbox, Debian bookworm)
# that a robotmk-daemon started by the Checkmk agent's plugin (robotmk_daemon_ctrl) survives the end
# of the agent's per-connection unit (check-mk-agent@N.service, default KillMode=control-group),
# that the agent's client gets EOF promptly, and that a second connection finds the same daemon.
#
# Usage: tests/systemd/sandbox-test.sh [--fresh] [--keep] /path/to/robotmk-daemon
#        tests/systemd/sandbox-test.sh --stop
#   --fresh  delete and re-create the cached rootfs (default: reuse it when complete)
#   --keep   leave the sandbox running at the end (enter: nsenter -t <PID1> -a bash; stop: --stop)
#   --stop   only stop a sandbox left by an earlier run (--keep or a killed run), clean up, exit
# Env: ROBOTMK_SDROOT  rootfs cache       (default /var/tmp/robotmk-sdroot)
#      ROBOTMK_SDSTATE logs, pid files    (default /tmp/robotmk-sdtest)
# Exit: 0 all passed, 1 a check failed or the sandbox did not boot, 2 usage,
#       77 skipped (not root, host tools not installable, rootfs not buildable).
# Needs: root on a Debian 12 host (systemd need not run on the host), Debian's package mirror.
set -uo pipefail

ROOT=${ROBOTMK_SDROOT:-/var/tmp/robotmk-sdroot}
STATE=${ROBOTMK_SDSTATE:-/tmp/robotmk-sdtest}
MACHINE=robotmk-sdbox
CGNAME=robotmk-sdtest
SUITE=bookworm
MARKER=.robotmk-sdroot-complete
# paths inside the sandbox
PLUGIN=/usr/lib/check_mk_agent/plugins/robotmk_daemon_ctrl
# cached mode (phase i): the same plugin in a numeric folder, run by the async service
ASYNC_SECS=4           # plugins/<seconds>/ (the real agent: 60, 300, ...)
ASYNC_LOOP=3           # the async service's MK_LOOP_INTERVAL (the real unit: 60)
ASYNC_PLUGIN=/usr/lib/check_mk_agent/plugins/$ASYNC_SECS/robotmk_daemon_ctrl
ASYNC_OBSERVE=30       # s the cached mode is watched (several refreshes)
DAEMON_BIN=/usr/local/bin/robotmk-daemon
CONFIG=/etc/check_mk/robotmk-daemon.toml
INSTANCE=system
UNIT=robotmk-daemon-$INSTANCE.service
STATEDIR=/var/lib/check_mk_agent/robotmk-daemon/$INSTANCE
IN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CLIENT_LIMIT_MS=3000   # EOF must come well under 5 s
CLIENT_TIMEOUT=10     # s, the client gives up reading after this
UNIT_END_DEADLINE=10   # s, per-connection unit must have ended by then
RECORD_DEADLINE=15     # s, first job record (optional check)
STOP_DEADLINE=15       # s, daemon unit gone after `stop --now`

usage() { sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 2; }
FRESH=0 KEEP=0 STOPONLY=0 BIN_ARG=
for a in "$@"; do
  case "$a" in
    --fresh) FRESH=1 ;;
    --keep) KEEP=1 ;;
    --stop) STOPONLY=1 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $a" >&2; usage ;;
    *) [ -z "$BIN_ARG" ] || usage; BIN_ARG=$a ;;
  esac
done
[ "$STOPONLY" = 1 ] || [ -n "$BIN_ARG" ] || usage

skip() { echo "SKIP (exit 77): $*"; exit 77; }
T_START=$(date +%s.%N)
log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, systemd-nspawn, cgroups); run as root"
if [ -n "$BIN_ARG" ]; then
  [ -f "$BIN_ARG" ] && [ -x "$BIN_ARG" ] || { echo "not an executable file: $BIN_ARG" >&2; exit 2; }
fi

mkdir -p "$STATE"
exec 8>"$STATE/lock"
flock -w 900 8 || { echo "another sandbox-test.sh holds $STATE/lock" >&2; exit 1; }

# ---------------------------------------------------------------- cgroups
# The host may be hybrid (cgroup2 at /sys/fs/cgroup/unified + name=systemd v1), pure cgroup2 or
# legacy. The sandbox is started from a private subtree $CGNAME in every hierarchy nspawn uses.
CG_DIRS=()
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  CG_DIRS=(/sys/fs/cgroup/$CGNAME)
else
  [ -d /sys/fs/cgroup/unified ] && [ "$(stat -fc %T /sys/fs/cgroup/unified)" = cgroup2fs ] \
    && CG_DIRS+=(/sys/fs/cgroup/unified/$CGNAME)
  [ -d /sys/fs/cgroup/systemd ] && CG_DIRS+=(/sys/fs/cgroup/systemd/$CGNAME)
fi
cleanup_cgroups() {
  local d
  for d in "${CG_DIRS[@]}"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rmdir "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null
  return 0
}

# ---------------------------------------------------------------- stop (only our own nspawn)
nspawn_pid_ok() {  # is $1 the systemd-nspawn this script started (checked by its cmdline)?
  [ -n "${1:-}" ] && [ -r "/proc/$1/cmdline" ] \
    && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q "^systemd-nspawn .*-M $MACHINE "
}
stop_sandbox() {
  local np cp i
  np=$(cat "$STATE/nspawn.pid" 2>/dev/null)
  cp=$(cat "$STATE/container.pid" 2>/dev/null)
  if nspawn_pid_ok "$np"; then
    log "stopping sandbox (SIGTERM to systemd-nspawn pid $np -> clean poweroff)"
    kill -TERM "$np" 2>/dev/null
    for i in $(seq 1 60); do kill -0 "$np" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$np" 2>/dev/null; then
      log "nspawn still alive after 30 s; SIGKILL to container PID 1 ($cp) and nspawn ($np)"
      if [ -n "$cp" ] && [ "$(cat "/proc/$cp/comm" 2>/dev/null)" = systemd ] \
         && [ "$(awk '{print $4}' "/proc/$cp/stat" 2>/dev/null)" = "$np" ]; then
        kill -KILL "$cp" 2>/dev/null
      fi
      sleep 1; kill -KILL "$np" 2>/dev/null
      for i in $(seq 1 20); do kill -0 "$np" 2>/dev/null || break; sleep 0.25; done
    fi
  elif [ -n "$np" ]; then
    log "pid file names $np, which is not our systemd-nspawn any more; nothing to kill"
  fi
  rm -f "$STATE/nspawn.pid" "$STATE/container.pid"
  cleanup_cgroups
}

stop_sandbox   # leftovers of an earlier run
[ "$STOPONLY" = 1 ] && exit 0

# copy the binary under test: stable even if a build replaces it meanwhile, and a path without ':'
install -d "$STATE/bin"
install -m 755 "$BIN_ARG" "$STATE/bin/robotmk-daemon" || { echo "cannot copy $BIN_ARG" >&2; exit 2; }
BIN=$STATE/bin/robotmk-daemon
log "binary under test: $BIN_ARG ($(stat -c %s "$BIN") bytes, sha256 $(sha256sum "$BIN" | cut -c1-16)…)"

# ---------------------------------------------------------------- host packages
T0=$(date +%s.%N)
NEED=()
command -v debootstrap >/dev/null || NEED+=(debootstrap)
command -v systemd-nspawn >/dev/null || NEED+=(systemd-container)
command -v jq >/dev/null || NEED+=(jq)
command -v nsenter >/dev/null || NEED+=(util-linux)
if [ "${#NEED[@]}" -gt 0 ]; then
  log "installing host packages: ${NEED[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${NEED[@]}"; } \
    > "$STATE/apt.log" 2>&1 || { tail -5 "$STATE/apt.log"; skip "cannot install ${NEED[*]} (apt-get failed, see $STATE/apt.log)"; }
  for c in debootstrap systemd-nspawn jq nsenter; do
    command -v "$c" >/dev/null || skip "$c still missing after apt-get install"
  done
fi
T_PKG=$(since "$T0")

# ---------------------------------------------------------------- rootfs (cached)
MIRROR=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -z "$MIRROR" ] && MIRROR=$(awk '$1=="deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

safe_rm() {  # remove a rootfs dir, refusing when something is mounted below it
  [ -e "$1" ] || return 0
  if findmnt -rno TARGET | grep -q "^$1\(/\|$\)"; then echo "something is mounted under $1; refusing rm" >&2; exit 1; fi
  rm -rf --one-file-system "$1"
}
T0=$(date +%s.%N)
if [ "$FRESH" = 1 ] || [ ! -e "$ROOT/$MARKER" ]; then
  safe_rm "$ROOT"; safe_rm "$ROOT.partial"
  mkdir -p "$(dirname "$ROOT")"
  log "debootstrap $SUITE -> $ROOT from $MIRROR (once; ~60-90 s)"
  if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps \
       "$SUITE" "$ROOT.partial" "$MIRROR" > "$STATE/debootstrap.log" 2>&1; then
    tail -15 "$STATE/debootstrap.log"
    skip "debootstrap failed (no mirror reachable?), see $STATE/debootstrap.log"
  fi
  touch "$ROOT.partial/$MARKER"
  mv "$ROOT.partial" "$ROOT"
fi
T_ROOTFS=$(since "$T0")

# ---------------------------------------------------------------- sandbox content (idempotent)
echo "$MACHINE" > "$ROOT/etc/hostname"
ln -sf /dev/null "$ROOT/etc/systemd/system/console-getty.service"   # no login prompt on the console
install -d "$ROOT/etc/check_mk" "$ROOT/var/lib/check_mk_agent" "$ROOT/usr/local/bin" "$ROOT/usr/local/sbin" \
           "$ROOT/usr/lib/check_mk_agent/plugins" "$ROOT/usr/lib/check_mk_agent/local"
find "$ROOT/usr/lib/check_mk_agent/plugins" -mindepth 1 -delete   # only the bind-mounted ctrl runs
install -d "$ROOT${ASYNC_PLUGIN%/*}"
rm -rf "$ROOT/var/lib/check_mk_agent/robotmk-daemon"
cat > "$ROOT$CONFIG" <<'EOF'
[daemon]
instance = "system"
heartbeat_timeout = "1m"
[[job]]
name = "sleeper"
command = ["/bin/sleep", "1"]
every = "5s"
timeout = "4s"
EOF

# A model of /usr/bin/check_mk_agent (Checkmk 2.x, Linux), reduced to what matters for a plugin,
# modelled on the real agent's main/main_setup/run_plugins/run_cached: stdin is /dev/null, stderr
# goes to /dev/null while fd 9 keeps the original stderr (= the connection's socket) open and is
# inherited by plugins, cwd is the plugins dir and a plugin is run as ./NAME, in the foreground,
# no timeout, its stdout is a pipe into the agent's output filter (cat), which writes to the socket.
# Cached plugins (plugins/<seconds>/NAME) as the real run_cached: with MK_RUN_SYNC_PARTS the cache
# file is printed with ":cached(MTIME,<seconds>)" added to its section headers; with
# MK_RUN_ASYNC_PARTS the plugin is started in the background (nohup, run as <seconds>/NAME from the
# plugins dir, output to CACHE.new.PID, then renamed) when the cache is older than <seconds> (whole
# seconds, -gt) and no refresh runs; a refresh older than 2 x <seconds> is killed (kill -9, one PID).
# The per-connection unit sets MK_RUN_ASYNC_PARTS=false, the async unit MK_RUN_SYNC_PARTS=false and
# MK_LOOP_INTERVAL (it loops: one pass, then sleep).
cat > "$ROOT/usr/bin/check_mk_agent" <<'EOF'
#!/bin/bash
# Model of the Checkmk agent for robotmk-daemon's tests/systemd/sandbox-test.sh
[ "${MK_RUN_SYNC_PARTS}" = false ] || MK_RUN_SYNC_PARTS=true
[ "${MK_RUN_ASYNC_PARTS}" = false ] || MK_RUN_ASYNC_PARTS=true
exec </dev/null 9>&2 2>/dev/null
export MK_LIBDIR=/usr/lib/check_mk_agent MK_CONFDIR=/etc/check_mk MK_VARDIR=/var/lib/check_mk_agent
export MK_LOGDIR=/var/log/check_mk_agent MK_BIN=/usr/bin
case ":$PATH:" in *:/usr/local/bin:*) ;; *) PATH=$PATH:/usr/local/bin ;; esac
export LC_ALL=C.UTF-8 REMOTE=${REMOTE_ADDR:-}
LOG=/run/check_mk_agent-model.log
us() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; }
run_cached() {  # NAME MAXAGE REFRESH_INTERVAL COMMAND...
  local NAME=$1 MAXAGE=$2 REFRESH_INTERVAL=$3 TIMEOUT CACHEFILE NOW MTIME cfile inuse
  shift 3
  TIMEOUT=$((MAXAGE * 2))
  mkdir -p "$MK_VARDIR/cache"
  CACHEFILE=$MK_VARDIR/cache/$NAME.cache
  NOW=$(date +%s)
  MTIME=$(stat -c %Y "$CACHEFILE" 2>/dev/null) || MTIME=0
  if $MK_RUN_SYNC_PARTS && [ -s "$CACHEFILE" ]; then
    sed -e '/^<<<.*\(:cached(\).*>>>/{p;d;}' -e 's/^<<<\([^>]*\)>>>$/<<<\1:'"cached($MTIME,$MAXAGE)"'>>>/' "$CACHEFILE"
  fi
  $MK_RUN_ASYNC_PARTS || return 0
  for cfile in "$CACHEFILE.new."*; do
    [ -e "$cfile" ] || break
    if [ $((NOW - $(stat -c %X "$cfile"))) -ge "$TIMEOUT" ]; then
      kill -9 "${cfile##*.new.}"; rm -f "$cfile" "$CACHEFILE"
    fi
  done
  inuse=; for cfile in "$CACHEFILE.new."*; do [ -e "$cfile" ] && inuse=1; break; done
  if [ $((NOW - MTIME)) -gt "$REFRESH_INTERVAL" ] && [ -z "$inuse" ]; then
    echo "$(date +%T.%3N) agent pid=$$ refresh $NAME cache_age=$((NOW - MTIME))s" >> "$LOG"
    cat <<HERE | nohup bash >/dev/null 2>&1 &
exec > "$CACHEFILE.new.\$\$" || exit 1
$* && mv -f "$CACHEFILE.new.\$\$" "$CACHEFILE" || rm -f "$CACHEFILE" "$CACHEFILE.new.\$\$"
HERE
  fi
}
while :; do
  T0=$(us)
  echo "$(date +%T.%3N) agent pid=$$ start sync=$MK_RUN_SYNC_PARTS async=$MK_RUN_ASYNC_PARTS unit=$(sed -n 's/^0:://p' /proc/self/cgroup)" >> "$LOG"
  (
    if $MK_RUN_SYNC_PARTS; then
      echo '<<<check_mk>>>'
      echo 'Version: robotmk-sandbox-model'
      echo 'AgentOS: linux'
      echo "Hostname: $(uname -n)"
      echo "AgentDirectory: $MK_CONFDIR"
      echo "DataDirectory: $MK_VARDIR"
    fi
    cd "$MK_LIBDIR/plugins" || exit 0
    if $MK_RUN_SYNC_PARTS; then
      for script in ./*; do
        case "$script" in *.dpkg-new|*.dpkg-old|*.dpkg-temp) continue ;; esac
        [ -f "$script" ] && [ -x "$script" ] || continue
        t=$(us)
        "$script"
        rc=$?
        echo "$(date +%T.%3N) agent pid=$$ plugin=$script rc=$rc took_ms=$(( ($(us) - t) / 1000 ))" >> "$LOG"
      done
    fi
    for script in [1-9]*/*; do
      [ -f "$script" ] && [ -x "$script" ] || continue
      interval=${script%/*}
      run_cached "plugins_${script##*/}" "$interval" "$interval" "$script"
    done
  ) | cat
  echo "$(date +%T.%3N) agent pid=$$ done took_ms=$(( ($(us) - T0) / 1000 ))" >> "$LOG"
  [ "${MK_LOOP_INTERVAL:-0}" -gt 0 ] 2>/dev/null || exit 0
  sleep "$MK_LOOP_INTERVAL"
done
EOF
chmod 755 "$ROOT/usr/bin/check_mk_agent"

U=$ROOT/etc/systemd/system
cat > "$U/check-mk-agent.socket" <<'EOF'
[Unit]
Description=Checkmk agent socket (model; TCP like the legacy/fallback variant)
[Socket]
ListenStream=127.0.0.1:6556
Accept=true
[Install]
WantedBy=sockets.target
EOF
cat > "$U/check-mk-agent@.service" <<'EOF'
[Unit]
Description=Checkmk agent (model) %i
[Service]
# as the real unit: no KillMode, i.e. control-group: everything left in this unit dies with it
ExecStart=-/usr/bin/check_mk_agent
Environment='MK_RUN_ASYNC_PARTS=false'
Type=simple
User=root
StandardInput=socket
EOF
# as the real check-mk-agent-async.service (MK_LOOP_INTERVAL=60 there); started in phase i only
cat > "$U/check-mk-agent-async.service" <<EOF
[Unit]
Description=Checkmk agent - Asynchronous background tasks (model)
[Service]
ExecStart=/usr/bin/check_mk_agent
Environment='MK_RUN_SYNC_PARTS=false'
Environment='MK_LOOP_INTERVAL=$ASYNC_LOOP'
Type=simple
User=root
EOF
install -d "$U/sockets.target.wants"
ln -sf ../check-mk-agent.socket "$U/sockets.target.wants/check-mk-agent.socket"

# client: like cmk-agent-ctl / the Checkmk server, read until EOF; report rc and elapsed ms
cat > "$ROOT/usr/local/sbin/robotmk-sdtest-client" <<'EOF'
#!/bin/bash
export LC_ALL=C
us() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; }
t0=$(us)
exec 3<>/dev/tcp/127.0.0.1/6556 || { echo "#CLIENT rc=connect-failed elapsed_ms=0"; exit 0; }
timeout "${1:-20}" cat <&3
rc=$?
exec 3<&-
echo "#CLIENT rc=$rc elapsed_ms=$(( ($(us) - t0) / 1000 ))"
EOF
# robotmk processes: the binary itself (same inode, or an identical copy) or a script run as it
cat > "$ROOT/usr/local/sbin/robotmk-sdtest-procs" <<EOF
#!/bin/bash
# prints: PID PPID MATCH CGROUP ARGV...   for every process running robotmk-daemon
ref=\$(stat -L -c %d:%i $DAEMON_BIN); size=\$(stat -L -c %s $DAEMON_BIN)
for d in /proc/[0-9]*; do
  pid=\${d#/proc/}; [ "\$pid" = \$\$ ] && continue
  readlink "\$d/exe" >/dev/null 2>&1 || continue          # kernel thread or zombie
  argv=(); mapfile -d '' -t argv < "\$d/cmdline" 2>/dev/null
  hit=
  if [ "\$(stat -L -c %d:%i "\$d/exe" 2>/dev/null)" = "\$ref" ]; then hit=exe
  elif [ "\$(stat -L -c %s "\$d/exe" 2>/dev/null)" = "\$size" ] && cmp -s "\$d/exe" $DAEMON_BIN; then hit=copy
  else
    for a in "\${argv[@]:0:2}"; do
      case "\$a" in $DAEMON_BIN|$PLUGIN|./${PLUGIN##*/}|$ASYNC_SECS/${PLUGIN##*/}) hit=argv ;; esac
    done
  fi
  [ -n "\$hit" ] || continue
  echo "\$pid \$(sed 's/.*) //' "\$d/stat" | awk '{print \$2}') \$hit \$(sed -n 's/^0:://p' "\$d/cgroup") \${argv[*]}"
done
EOF
chmod 755 "$ROOT/usr/local/sbin/robotmk-sdtest-client" "$ROOT/usr/local/sbin/robotmk-sdtest-procs"

# ---------------------------------------------------------------- boot
for d in "${CG_DIRS[@]}"; do mkdir -p "$d"; done
cat > "$STATE/launch.sh" <<EOF
#!/bin/bash
for d in ${CG_DIRS[*]}; do echo \$\$ > \$d/cgroup.procs; done
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1   # pure cgroup2 inside, whatever the host has
exec systemd-nspawn -D "$ROOT" -M $MACHINE --boot --register=no --keep-unit \\
     --private-network --console=read-only --volatile=overlay \\
     --bind-ro="$BIN:$PLUGIN" --bind-ro="$BIN:$DAEMON_BIN" --bind-ro="$BIN:$ASYNC_PLUGIN"
EOF
chmod 755 "$STATE/launch.sh"

on_exit() {
  if [ "$KEEP" = 1 ] && [ -n "${CPID:-}" ]; then
    log "--keep: sandbox left running; enter: nsenter -t $CPID -a bash ; stop: $0 --stop"
  else
    stop_sandbox
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM HUP

log "booting sandbox"
T0=$(date +%s.%N)
setsid "$STATE/launch.sh" > "$STATE/console.log" 2>&1 < /dev/null 8>&- &
NPID=$!
echo "$NPID" > "$STATE/nspawn.pid"
CPID=
for i in $(seq 1 300); do
  CPID=$(pgrep -P "$NPID" -x systemd)
  [ -n "$CPID" ] && break
  kill -0 "$NPID" 2>/dev/null || { log "systemd-nspawn died"; tail -30 "$STATE/console.log"; exit 1; }
  sleep 0.1
done
[ -n "$CPID" ] || { log "no container PID 1"; tail -30 "$STATE/console.log"; exit 1; }
echo "$CPID" > "$STATE/container.pid"
inbox() { nsenter -t "$CPID" -a -- env -i PATH="$IN_PATH" LC_ALL=C "$@"; }
ST=
for i in $(seq 1 600); do
  ST=$(inbox timeout 30 systemctl is-system-running --wait 2>/dev/null)
  case "$ST" in running|degraded) break ;; esac
  sleep 0.1
done
T_BOOT=$(since "$T0")
log "sandbox '$ST' after ${T_BOOT}s ($(inbox systemctl --version | head -1); nspawn pid $NPID, PID 1 = host pid $CPID)"
case "$ST" in
  running) ;;
  degraded) inbox systemctl --failed --no-pager --no-legend | sed 's/^/    /' ;;
  *) log "sandbox did not boot"; tail -30 "$STATE/console.log"; exit 1 ;;
esac

# ---------------------------------------------------------------- helpers
PASS=0 FAIL=0 SKIPPED=0 N_OUT=0
rm -rf "$STATE/outputs"; mkdir -p "$STATE/outputs"
check() {  # check "description" command...
  local d=$1; shift
  if "$@"; then PASS=$((PASS+1)); echo "PASS: $d"; else FAIL=$((FAIL+1)); echo "FAIL: $d"; fi
}
skipped() { SKIPPED=$((SKIPPED+1)); echo "SKIP: $*"; }
prop() { inbox systemctl show -P "$2" "$1" 2>/dev/null; }
alive() { [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] && inbox kill -0 "$1" 2>/dev/null; }
indent() { sed "s/^/    ${1:-}/"; }
ms_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%d", (b-a)*1000}'; }

# connect "label": one agent connection; sets OUT (agent output), CRC, CMS (client ms), JSON and J_*
connect() {
  local raw
  raw=$(inbox robotmk-sdtest-client "$CLIENT_TIMEOUT")
  OUT=$(grep -v '^#CLIENT ' <<<"$raw")
  CRC=$(sed -n 's/^#CLIENT rc=\([^ ]*\) .*/\1/p' <<<"$raw")
  CMS=$(sed -n 's/^#CLIENT .* elapsed_ms=\([0-9]*\)$/\1/p' <<<"$raw")
  JSON=$(awk 'f {print; exit} /^<<<robotmk_daemon:sep\(0\)(:cached\([0-9]+,[0-9]+\))?>>>$/ {f=1}' <<<"$OUT")
  N_OUT=$((N_OUT + 1)); printf '%s\n' "$OUT" > "$STATE/outputs/$N_OUT.txt"   # parsed by tests/systemd_sandbox.rs
  J_OK=0 J_ACTION= J_PID= J_ROUTE= J_INSTANCE=
  if [ -n "$JSON" ] && jq -e 'type == "object"' >/dev/null 2>&1 <<<"$JSON"; then
    J_OK=1
    J_ACTION=$(jq -r '.ctrl.action // empty' <<<"$JSON")
    J_ROUTE=$(jq -r '.ctrl.route // empty' <<<"$JSON")
    J_PID=$(jq -r '.daemon.pid // empty' <<<"$JSON")
    J_INSTANCE=$(jq -r '.instance // empty' <<<"$JSON")
  fi
  echo "   client rc=$CRC, EOF after ${CMS:-?} ms; agent output:"
  cut -c1-300 <<<"$OUT" | indent '> '
  echo "   robotmk_daemon: instance=$J_INSTANCE ctrl.action=$J_ACTION ctrl.route=$J_ROUTE daemon.pid=$J_PID"
}
agent_units_gone() {  # no connection open on the socket, no check-mk-agent@ unit left running
  [ "$(prop check-mk-agent.socket NConnections)" = 0 ] && \
  [ -z "$(inbox systemctl list-units --no-legend --plain --state=active,activating,deactivating,reloading 'check-mk-agent@*.service')" ]
}
wait_for() {  # wait_for SECONDS cmd... ; sets WAITED (s); polls every 50 ms
  local limit=$1 t0; shift; t0=$(date +%s.%N)
  while :; do
    if "$@"; then WAITED=$(since "$t0"); return 0; fi
    WAITED=$(since "$t0")
    awk -v w="$WAITED" -v l="$limit" 'BEGIN{exit !(w >= l)}' && return 1
    sleep 0.05
  done
}
procs() { inbox robotmk-sdtest-procs; }
roots() {  # roots "$P_ALL": robotmk processes whose parent is not one (a daemon and its own helpers count once)
  awk 'NR==FNR {p[$1]=1; next} !($2 in p)' <(printf '%s\n' "$1") <(printf '%s\n' "$1") | grep .
}
unit_gone() {
  case "$(prop "$UNIT" ActiveState)/$(prop "$UNIT" LoadState)" in
    inactive/*|failed/*|*/not-found) return 0 ;;
  esac
  return 1
}
json_ok() { [ "$J_OK" = 1 ]; }
is_active() { [ "$(inbox systemctl is-active "$1" 2>/dev/null)" = active ]; }
mainpid_is() { local m; m=$(prop "$UNIT" MainPID); [ -n "$1" ] && [ "$m" = "$1" ] && alive "$m"; }
in_unit_cgroup() { [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] && inbox grep -qx "0::/system.slice/$UNIT" "/proc/$1/cgroup" 2>/dev/null; }
client_eof() { [ "$CRC" = 0 ]; }
fast_eof() { [[ "$CMS" =~ ^[0-9]+$ ]] && [ "$CMS" -lt "$CLIENT_LIMIT_MS" ]; }
none_in_agent_units() { local p; p=$(procs); ! grep -q 'check-mk-agent@' <<<"$p"; }

T0=$(date +%s.%N)
inbox rm -f /run/check_mk_agent-model.log
check "check-mk-agent.socket is listening" is_active check-mk-agent.socket

# ---------------------------------------------------------------- a) first connection
echo "== a) first agent connection: the plugin (ctrl) starts the daemon"
connect
CMS1=$CMS PID1=$J_PID OUT1=$OUT
check "a: client read the agent output until EOF (rc=$CRC)" client_eof
check "a: output has <<<check_mk>>> and <<<robotmk_daemon:sep(0)>>> with one line of JSON" \
  eval 'grep -qx "<<<check_mk>>>" <<<"$OUT" && json_ok'
check "a: ctrl.action is \"started\" (got '$J_ACTION')" [ "$J_ACTION" = started ]
check "a: ctrl.route is \"systemd-run\" (got '$J_ROUTE'), instance is \"$INSTANCE\" (got '$J_INSTANCE')" \
  eval '[ "$J_ROUTE" = systemd-run ] && [ "$J_INSTANCE" = "$INSTANCE" ]'

# ---------------------------------------------------------------- b) after the agent unit ended
echo "== b) after the connection's check-mk-agent@ unit has ended"
wait_for "$UNIT_END_DEADLINE" agent_units_gone
check "b: the per-connection check-mk-agent@ unit ended (within ${WAITED}s of EOF; NAccepted=$(prop check-mk-agent.socket NAccepted))" agent_units_gone
check "b: $UNIT is active" is_active "$UNIT"
MP=$(prop "$UNIT" MainPID)
echo "   $UNIT: MainPID=$MP ControlGroup=$(prop "$UNIT" ControlGroup) KillMode=$(prop "$UNIT" KillMode) Environment=$(prop "$UNIT" Environment)"
echo "   ExecStart=$(prop "$UNIT" ExecStart | sed -n 's/.*argv\[\]=\([^;]*\);.*/\1/p')"
check "b: MainPID ($MP) is alive and equals daemon.pid from the JSON ($PID1)" mainpid_is "$PID1"
check "b: the daemon process sits in the cgroup of $UNIT" in_unit_cgroup "$PID1"

# ---------------------------------------------------------------- c) EOF promptly
echo "== c) the daemon does not hold the agent's socket/pipe"
check "c: client got EOF after ${CMS1:-?} ms (< $CLIENT_LIMIT_MS ms)" fast_eof

# ---------------------------------------------------------------- d) second connection
echo "== d) second agent connection: ctrl finds the running daemon"
connect
CMS2=$CMS
check "d: client read until EOF (rc=$CRC) in ${CMS:-?} ms (< $CLIENT_LIMIT_MS ms)" eval 'client_eof && fast_eof'
check "d: ctrl.action is \"running\" (got '$J_ACTION')" [ "$J_ACTION" = running ]
check "d: same daemon pid ($J_PID = $PID1), still MainPID of $UNIT" eval '[ -n "$J_PID" ] && [ "$J_PID" = "$PID1" ] && mainpid_is "$PID1"'
wait_for "$UNIT_END_DEADLINE" agent_units_gone
P_ALL=$(procs); P_ROOTS=$(roots "$P_ALL")
echo "   robotmk processes in the sandbox (pid ppid match cgroup argv):"; indent <<<"${P_ALL:-(none)}"
N_ROOTS=$(grep -c . <<<"$P_ROOTS")
check "d: exactly one robotmk daemon process in the sandbox (found $N_ROOTS), and it is pid $PID1" \
  eval '[ "$N_ROOTS" = 1 ] && [ "$(awk "{print \$1}" <<<"$P_ROOTS")" = "$PID1" ]'
check "d: no robotmk process left in a check-mk-agent@ unit" none_in_agent_units

# ---------------------------------------------------------------- e) state dir
echo "== e) state dir"
SD_MODE=$(inbox stat -c '%a %U' "$STATEDIR" 2>/dev/null)
echo "   $STATEDIR: ${SD_MODE:-missing}"
inbox ls -la "$STATEDIR" 2>/dev/null | indent
check "e: $STATEDIR exists with mode 700 (got '${SD_MODE:-missing}')" [ "${SD_MODE%% *}" = 700 ]

# ---------------------------------------------------------------- f) a job record (optional)
echo "== f) job 'sleeper' (every 5s) leaves a record.json (optional: scheduler is a later milestone)"
has_record() { [ -n "$(inbox find "$STATEDIR" -name record.json -print -quit 2>/dev/null)" ]; }
if wait_for "$RECORD_DEADLINE" has_record; then
  REC=$(inbox find "$STATEDIR" -name record.json -print -quit)
  echo "   $REC (after ${WAITED}s):"; inbox cat "$REC" | cut -c1-400 | indent
  check "f: a run of job 'sleeper' left a record.json under $STATEDIR" true
else
  skipped "f: no record.json under $STATEDIR within ${RECORD_DEADLINE}s"
fi

# ---------------------------------------------------------------- g) stop --now
echo "== g) robotmk-daemon --config $CONFIG stop --now"
TS=$(date +%s.%N)
# run like an admin would from a root shell: no MK_* variables, only PATH and LC_ALL (see inbox)
STOP_OUT=$(inbox timeout 30 "$DAEMON_BIN" --config "$CONFIG" stop --now 2>&1); STOP_RC=$?
echo "   exit $STOP_RC after $(ms_since "$TS") ms; output:"; indent '> ' <<<"${STOP_OUT:-(none)}"
check "g: stop --now exits 0 (got $STOP_RC)" [ "$STOP_RC" = 0 ]
wait_for "$STOP_DEADLINE" unit_gone
check "g: $UNIT is inactive/unloaded (ActiveState=$(prop "$UNIT" ActiveState) LoadState=$(prop "$UNIT" LoadState), ${WAITED}s after stop)" unit_gone
gone() { ! alive "$PID1" && [ -z "$(procs)" ]; }
wait_for 5 gone
check "g: daemon pid $PID1 is gone and no robotmk process is left" gone
procs | indent
if ! unit_gone; then
  echo "   hint: stop ran like an admin's shell, without MK_* variables (env: PATH LC_ALL only);"
  echo "   the daemon's unit has Environment=$(prop "$UNIT" Environment)"
fi

# ---------------------------------------------------------------- h) restart after stop
echo "== h) next agent connection after the stop starts a fresh daemon (unit name reusable)"
connect
check "h: ctrl.action is \"started\" (got '$J_ACTION'), new pid $J_PID is MainPID of active $UNIT" \
  eval '[ "$J_ACTION" = started ] && [ "$J_PID" != "$PID1" ] && is_active "$UNIT" && mainpid_is "$J_PID"'
check "h: client read until EOF (rc=$CRC) in ${CMS:-?} ms (< $CLIENT_LIMIT_MS ms)" eval 'client_eof && fast_eof'

# ---------------------------------------------------------------- h2) a run's cgroup
echo "== h2) a run's cgroup holds a descendant that leaves the run the way Chromium's helpers do"
# The daemon's unit is started with Delegate=yes: each run gets a cgroup of its own, which no
# descendant can leave. This one leaves every other way (issue 19, finding 6): a double fork,
# its own session (setsid), an empty environment (env -i: no run tag) and a new argv (exec -a),
# like Chromium's crashpad handler and zygote. Only the cgroup still holds it, when the run
# times out (`escape`) and when its runner ends normally and leaves it behind (`escape_leave`).
inbox cp "$CONFIG" /run/robotmk-config.bak
inbox sh -c "cat >> '$CONFIG'" <<'EOF'
[[job]]
name = "escape"
command = ["/bin/bash", "-c", 'cat /proc/self/cgroup > $ROBOTMK_RUN_DIR/cgroup; ( setsid /usr/bin/env -i /bin/bash -c "echo \$\$ > $ROBOTMK_RUN_DIR/escapee.pid; exec -a chrome_crashpad_model /bin/sleep 3011" & ); exec /bin/sleep 600']
every = "1h"
timeout = "2s"

[[job]]
name = "escape_leave"
command = ["/bin/bash", "-c", '( setsid /usr/bin/env -i /bin/bash -c "echo \$\$ > $ROBOTMK_RUN_DIR/escapee.pid; exec -a chrome_crashpad_model /bin/sleep 3012" & ); for i in $(seq 100); do [ -s $ROBOTMK_RUN_DIR/escapee.pid ] && exit 0; sleep 0.1; done; exit 1']
every = "1h"
timeout = "30s"
EOF
no_escapee() { ! inbox pgrep -f "chrome_crashpad_model $1" >/dev/null; }
ESC_OUT=$(inbox timeout 60 "$DAEMON_BIN" --config "$CONFIG" run-once escape 2>&1); ESC_RC=$?
tail -3 <<<"$ESC_OUT" | indent '> '
check "h2: run-once escape, run by the daemon, ends as a timeout (exit $ESC_RC, want 3)" [ "$ESC_RC" = 3 ]
wait_for 15 no_escapee 3011
check "h2: the timed-out run's helper that left its session, environment and argv is gone (after ${WAITED}s)" no_escapee 3011
ESC_OUT=$(inbox timeout 60 "$DAEMON_BIN" --config "$CONFIG" run-once escape_leave 2>&1); ESC_RC=$?
tail -3 <<<"$ESC_OUT" | indent '> '
check "h2: run-once escape_leave, run by the daemon, succeeds (exit $ESC_RC, want 0)" [ "$ESC_RC" = 0 ]
wait_for 15 no_escapee 3012
check "h2: the helper a normally ended run left behind is gone (after ${WAITED}s)" no_escapee 3012
inbox pkill -9 -f 'chrome_crashpad_model 301[12]' 2>/dev/null
check "h2: the daemon put runs in cgroups of their own" inbox grep -q "runs get a cgroup each" "$STATEDIR/daemon.log"
ESC_CG=$(inbox sh -c "cat $STATEDIR/jobs/escape/runs/*/cgroup" 2>/dev/null | sed -n 's/^0:://p' | tail -1)
check "h2: the runner sat in a run cgroup of the unit (${ESC_CG:-none})" \
  eval '[[ "$ESC_CG" == "/system.slice/$UNIT/run-"* ]]'
inbox cp /run/robotmk-config.bak "$CONFIG"

# ---------------------------------------------------------------- i) cached (asynchronous) mode
echo "== i) cached mode: the plugin moves to plugins/$ASYNC_SECS/; only check-mk-agent-async.service runs it"
inbox timeout 30 "$DAEMON_BIN" --config "$CONFIG" stop --now >/dev/null 2>&1
wait_for "$STOP_DEADLINE" unit_gone
# As an admin moves the plugin: out of plugins/ (the bind mount undone, the file removed) ...
inbox umount "$PLUGIN" && inbox rm -f "$PLUGIN"
# ... with the agent and the dead man switch scaled down alike: refreshes every ~6 s (cache older
# than 4 s, checked every 3 s) against heartbeat_timeout = "5s", as plugins/300/ (every ~360 s)
# against the default 5m. The daemon must allow 2 x 4 s + 60 s by itself.
inbox sed -i 's/^heartbeat_timeout = .*/heartbeat_timeout = "5s"/' "$CONFIG"
inbox systemctl start check-mk-agent-async.service
check "i: check-mk-agent-async.service is active" is_active check-mk-agent-async.service
sj() { jq -r "$1" "/proc/$CPID/root$STATEDIR/status.json" 2>/dev/null; }
refreshes() { inbox grep -c "refresh plugins_${PLUGIN##*/}" /run/check_mk_agent-model.log 2>/dev/null; }
daemon_up() { local p; p=$(sj '.daemon.pid // empty'); [ -n "$p" ] && mainpid_is "$p"; }
R0=$(refreshes)
wait_for 20 daemon_up
check "i: the first refresh started the daemon in $UNIT (after ${WAITED}s)" daemon_up
PID_A=$(sj .daemon.pid)
echo "   daemon pid $PID_A; watching ${ASYNC_OBSERVE}s of refreshes"
PIDS_SEEN=" $PID_A " MAX_DAEMONS=0 T_OBS=$(date +%s.%N)
while awk -v a="$T_OBS" -v b="$(date +%s.%N)" -v l="$ASYNC_OBSERVE" 'BEGIN{exit !(b-a < l)}'; do
  p=$(sj '.daemon.pid // empty')
  [ -n "$p" ] && case "$PIDS_SEEN" in *" $p "*) ;; *) PIDS_SEEN="$PIDS_SEEN$p " ;; esac
  n=$(procs | grep -c "/system.slice/$UNIT ")
  [ "$n" -gt "$MAX_DAEMONS" ] && MAX_DAEMONS=$n
  sleep 0.5
done
N_REFRESH=$(( $(refreshes) - R0 ))
inbox grep "refresh plugins_" /run/check_mk_agent-model.log | tail -8 | indent
check "i: the async service refreshed the plugin $N_REFRESH times (>= 4)" [ "$N_REFRESH" -ge 4 ]
check "i: one daemon throughout (pids seen:$PIDS_SEEN), still MainPID of $UNIT" \
  eval '[ "$(wc -w <<<"$PIDS_SEEN")" = 1 ] && mainpid_is "$PID_A"'
check "i: never more than one process in $UNIT (max $MAX_DAEMONS)" [ "$MAX_DAEMONS" = 1 ]
MODE=$(sj .daemon.agent_mode) HB=$(sj .daemon.heartbeat_timeout_s)
check "i: the daemon saw mode '$MODE' and stretched its dead man to ${HB}s (2 x $ASYNC_SECS + 60)" \
  eval '[ "$MODE" = "cached ${ASYNC_SECS}s (plugins/$ASYNC_SECS/)" ] && [ "${HB%.*}" = $((2 * ASYNC_SECS + 60)) ]'
connect
check "i: a connection gets the cached sections (<<<robotmk_daemon:sep(0):cached(MTIME,$ASYNC_SECS)>>>)" \
  eval 'grep -Eq "^<<<robotmk_daemon:sep\(0\):cached\([0-9]+,$ASYNC_SECS\)>>>$" <<<"$OUT" && json_ok'
check "i: they name the same daemon ($J_PID = $PID_A), running, in cached mode" \
  eval '[ "$J_PID" = "$PID_A" ] && grep -q "^0 \"Robotmk $INSTANCE daemon\" - OK - running, .*mode: cached ${ASYNC_SECS}s" <<<"$OUT"'
check "i: client read until EOF (rc=$CRC) in ${CMS:-?} ms (< $CLIENT_LIMIT_MS ms)" eval 'client_eof && fast_eof'
inbox systemctl stop check-mk-agent-async.service
inbox timeout 30 "$DAEMON_BIN" --config "$CONFIG" stop --now >/dev/null 2>&1
wait_for "$STOP_DEADLINE" unit_gone
check "i: stop --now ends the daemon of the cached mode too" unit_gone
T_TESTS=$(since "$T0")

echo "== agent model log (/run/check_mk_agent-model.log)"
inbox cat /run/check_mk_agent-model.log 2>/dev/null | indent
if [ "$FAIL" -gt 0 ]; then
  echo "== diagnostics"
  echo "   journal of robotmk-daemon-*.service:"
  inbox journalctl --no-pager -o short-monotonic -u 'robotmk-daemon-*' 2>&1 | tail -40 | indent
  echo "   journal of check-mk-agent-async.service:"
  inbox journalctl --no-pager -o short-monotonic -u check-mk-agent-async.service 2>&1 | tail -20 | indent
  echo "   journal of check-mk-agent@*.service:"
  inbox journalctl --no-pager -o short-monotonic -u 'check-mk-agent@*' 2>&1 | tail -30 | indent
  echo "   units:"
  inbox systemctl list-units --all --no-legend --no-pager 'check-mk-agent*' 'robotmk*' | indent
fi

# ---------------------------------------------------------------- stop + summary
T_STOP=n/a
if [ "$KEEP" != 1 ]; then
  T0=$(date +%s.%N); trap - EXIT; stop_sandbox; T_STOP=$(since "$T0")
else
  trap - EXIT; on_exit
fi
echo "timings[s]: host-packages=$T_PKG rootfs=$T_ROOTFS boot=$T_BOOT tests=$T_TESTS stop=$T_STOP total=$(since "$T_START")"
echo "timings[ms]: client EOF first=${CMS1:-?} second=${CMS2:-?}"
echo "rootfs: $ROOT ($(du -sh --one-file-system "$ROOT" 2>/dev/null | cut -f1)); logs: $STATE"
[ "$SKIPPED" -gt 0 ] && echo "$SKIPPED skipped"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
