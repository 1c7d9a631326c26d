#!/bin/bash
# deb-test.sh -- install, upgrade and remove the robotmk-daemon .deb in a REAL systemd (PID 1 of a
# systemd-nspawn sandbox, Debian bookworm), with a model of the Checkmk agent, and check what the
# package promises: the binary, the agent plugin link, a starter config (mode 0600, never
# overwritten), completions and man page, no service; the agent's query through the installed
# plugin prints the sections and starts the daemon; `dpkg -r` stops it cleanly; `dpkg -P` purges.
# Also (issue 20): the folders the package needs keep an admin's mode (/etc/check_mk 0700 stays
# 0700), and with `passwd: files systemd` (libnss-systemd, as on a default Debian 12) a job runs
# as a user only systemd's NSS module knows (a DynamicUser of a unit started here), and a user
# that is not there is a CRIT config error in the agent's output, never a crash.
#
# Usage: tests/systemd/deb-test.sh [--keep] /path/to/robotmk-daemon_VERSION_amd64.deb
#        tests/systemd/deb-test.sh --stop
#   --keep   leave the sandbox running at the end (enter: nsenter -t <PID1> -a bash; stop: --stop)
#   --stop   only stop a sandbox left by an earlier run, clean up, exit
# Env: ROBOTMK_SDROOT   rootfs cache, shared with sandbox-test.sh (default /var/tmp/robotmk-sdroot)
#      ROBOTMK_SDSTATE  its lock is shared too, so the two never boot at once (default /tmp/robotmk-sdtest)
#      ROBOTMK_DEBSTATE logs, pid files, the packages under test (default /tmp/robotmk-debtest)
#      ROBOTMK_TEST_STATIC_BIN  the static tarball build (scripts/build-release.sh --static):
#                       also checked against the systemd-only user (getent, no NSS in-process)
# Exit: 0 all passed, 1 a check failed or the sandbox did not boot, 2 usage,
#       77 skipped (not root, host tools not installable, rootfs not buildable).
#
# The rootfs cache is only read: the sandbox runs with --volatile=overlay, and everything this
# test installs (agent model, units, the package) goes into the overlay, gone at the end. The
# cache is the one sandbox-test.sh builds (debootstrap, ~70 s once); this script builds it the
# same way when it is missing. Kept apart from sandbox-test.sh (own machine name, cgroup, state)
# so the two scripts can change independently.
set -uo pipefail

ROOT=${ROBOTMK_SDROOT:-/var/tmp/robotmk-sdroot}
SDSTATE=${ROBOTMK_SDSTATE:-/tmp/robotmk-sdtest}
STATE=${ROBOTMK_DEBSTATE:-/tmp/robotmk-debtest}
MACHINE=robotmk-debbox
CGNAME=robotmk-debtest
SUITE=bookworm
MARKER=.robotmk-sdroot-complete
PLUGIN=/usr/lib/check_mk_agent/plugins/robotmk_daemon_ctrl
BIN=/usr/bin/robotmk-daemon
CONFIG=/etc/check_mk/robotmk-daemon.toml
UNIT=robotmk-daemon-system.service
STATEDIR=/var/lib/check_mk_agent/robotmk-daemon
IN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

usage() { sed -n '2,22s/^# \{0,1\}//p' "$0"; exit 2; }
KEEP=0 STOPONLY=0 DEB_ARG=
for a in "$@"; do
  case "$a" in
    --keep) KEEP=1 ;;
    --stop) STOPONLY=1 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $a" >&2; usage ;;
    *) [ -z "$DEB_ARG" ] || usage; DEB_ARG=$a ;;
  esac
done
[ "$STOPONLY" = 1 ] || [ -n "$DEB_ARG" ] || usage

skip() { echo "SKIP (exit 77): $*"; exit 77; }
log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
T_START=$(date +%s.%N)

[ "$(id -u)" = 0 ] || skip "needs root (dpkg in a systemd-nspawn sandbox); run as root"
if [ -n "$DEB_ARG" ]; then
  [ -f "$DEB_ARG" ] || { echo "no such package: $DEB_ARG" >&2; exit 2; }
fi

mkdir -p "$STATE" "$SDSTATE"
exec 8>"$SDSTATE/lock"
flock -w 900 8 || { echo "another systemd sandbox test holds $SDSTATE/lock" >&2; exit 1; }

# ---------------------------------------------------------------- cgroups (as sandbox-test.sh)
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
      if [ -n "$cp" ] && [ "$(cat "/proc/$cp/comm" 2>/dev/null)" = systemd ] \
         && [ "$(awk '{print $4}' "/proc/$cp/stat" 2>/dev/null)" = "$np" ]; then
        kill -KILL "$cp" 2>/dev/null
      fi
      sleep 1; kill -KILL "$np" 2>/dev/null
      for i in $(seq 1 20); do kill -0 "$np" 2>/dev/null || break; sleep 0.25; done
    fi
  fi
  rm -f "$STATE/nspawn.pid" "$STATE/container.pid"
  cleanup_cgroups
}
stop_sandbox
[ "$STOPONLY" = 1 ] && exit 0

# ---------------------------------------------------------------- host tools, rootfs
NEED=()
command -v debootstrap >/dev/null || NEED+=(debootstrap)
command -v systemd-nspawn >/dev/null || NEED+=(systemd-container)
command -v jq >/dev/null || NEED+=(jq)
command -v file >/dev/null || NEED+=(file)
if [ "${#NEED[@]}" -gt 0 ]; then
  log "installing host packages: ${NEED[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${NEED[@]}"; } \
    > "$STATE/apt.log" 2>&1 || skip "cannot install ${NEED[*]} (see $STATE/apt.log)"
fi
if [ ! -e "$ROOT/$MARKER" ]; then
  MIRROR=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  [ -z "$MIRROR" ] && MIRROR=$(awk '$1=="deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  if [ -e "$ROOT.partial" ]; then
    findmnt -rno TARGET | grep -q "^$ROOT.partial\(/\|$\)" && { echo "something is mounted under $ROOT.partial" >&2; exit 1; }
    rm -rf --one-file-system "$ROOT.partial"
  fi
  mkdir -p "$(dirname "$ROOT")"
  log "debootstrap $SUITE -> $ROOT from $MIRROR (once; ~60-90 s)"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps \
    "$SUITE" "$ROOT.partial" "$MIRROR" > "$STATE/debootstrap.log" 2>&1 \
    || skip "debootstrap failed, see $STATE/debootstrap.log"
  touch "$ROOT.partial/$MARKER"
  mv "$ROOT.partial" "$ROOT"
fi

# ---------------------------------------------------------------- the packages under test
# v1 is the package as built; v2 the same package with a higher version (an upgrade as dpkg
# sees it: prerm upgrade, unpack, postinst configure with the old version) and another build
# of the binary (one byte of its GNU build-id note changed, as a rebuild changes it): the
# running daemon is retired by the agent's next ctrl, which starts v2's build under systemd.
rm -rf "$STATE/debs" "$STATE/repack"
mkdir -p "$STATE/debs"
cp "$DEB_ARG" "$STATE/debs/v1.deb"
V1=$(dpkg-deb -f "$STATE/debs/v1.deb" Version)
V2="$V1+upgrade"
dpkg-deb -R "$STATE/debs/v1.deb" "$STATE/repack"
sed -i "s/^Version: .*/Version: $V2/" "$STATE/repack/DEBIAN/control"
python3 - "$STATE/repack/usr/bin/robotmk-daemon" <<'PY' || { echo "cannot make v2 another build" >&2; exit 1; }
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
head = b"\x04\0\0\0\x14\0\0\0\x03\0\0\0GNU\0"
at = b.find(head)
assert at >= 0 and b.find(head, at + 1) < 0, "one GNU build-id note"
b[at + len(head)] ^= 0xFF
open(p, "wb").write(b)
PY
dpkg-deb -b --root-owner-group "$STATE/repack" "$STATE/debs/v2.deb" >/dev/null \
  || { echo "cannot repack the .deb as $V2" >&2; exit 1; }
log "package under test: $DEB_ARG (version $V1; upgrade to $V2)"
# libnss-systemd of the sandbox's own systemd version (bookworm's minbase has none): the NSS
# module that crashed the static build. Fetched on the host with apt (the sandbox has no
# network); without it the NSS checks fail rather than pass unseen.
SD_VERSION=$(awk '/^Package: systemd$/{f=1} f&&/^Version:/{print $2; exit}' "$ROOT/var/lib/dpkg/status")
NSS_DEB=
if [ -n "$SD_VERSION" ]; then
  if (cd "$STATE/debs" && apt-get download -q "libnss-systemd=$SD_VERSION") > "$STATE/apt-nss.log" 2>&1; then
    NSS_DEB=$(cd "$STATE/debs" && ls libnss-systemd_*.deb 2>/dev/null | head -1)
  fi
fi
log "libnss-systemd for systemd $SD_VERSION: ${NSS_DEB:-not available (see $STATE/apt-nss.log)}"
STATIC=${ROBOTMK_TEST_STATIC_BIN:-}
if [ -n "$STATIC" ] && [ -f "$STATIC" ]; then
  cp "$STATIC" "$STATE/debs/robotmk-daemon-static"
else
  STATIC=
fi

# ---------------------------------------------------------------- boot
for d in "${CG_DIRS[@]}"; do mkdir -p "$d"; done
cat > "$STATE/launch.sh" <<EOF
#!/bin/bash
for d in ${CG_DIRS[*]}; do echo \$\$ > \$d/cgroup.procs; done
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
exec systemd-nspawn -D "$ROOT" -M $MACHINE --boot --register=no --keep-unit \\
     --private-network --console=read-only --volatile=overlay \\
     --bind-ro="$STATE/debs:/debs"
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
log "sandbox '$ST' after $(since "$T0")s"
case "$ST" in running|degraded) ;; *) log "sandbox did not boot"; tail -30 "$STATE/console.log"; exit 1 ;; esac

# ---------------------------------------------------------------- agent model (in the overlay)
# What the cache may hold from sandbox-test.sh (its config, plugin mount points) goes first:
# this test starts from a host without robotmk-daemon.
inbox rm -rf /etc/check_mk/robotmk-daemon.toml /usr/lib/check_mk_agent/plugins "$STATEDIR" \
  /usr/local/bin/robotmk-daemon 2>/dev/null
inbox mkdir -p /etc/check_mk /var/lib/check_mk_agent /usr/local/sbin
# An admin's modes, which the package must keep (issue 20.4): /etc/check_mk private, the
# plugins folder readable by root's group only.
inbox chmod 700 /etc/check_mk
inbox install -d -m 750 /usr/lib/check_mk_agent/plugins
# The same model as sandbox-test.sh: stdin /dev/null, stderr to /dev/null with fd 9 = the
# socket inherited by plugins, plugins run as ./NAME from the plugins dir, stdout a pipe.
inbox sh -c 'cat > /usr/bin/check_mk_agent && chmod 755 /usr/bin/check_mk_agent' <<'EOF'
#!/bin/bash
exec </dev/null 9>&2 2>/dev/null
export MK_LIBDIR=/usr/lib/check_mk_agent MK_CONFDIR=/etc/check_mk MK_VARDIR=/var/lib/check_mk_agent
export MK_LOGDIR=/var/log/check_mk_agent MK_BIN=/usr/bin LC_ALL=C.UTF-8
(
  echo '<<<check_mk>>>'
  echo 'Version: robotmk-deb-test-model'
  cd "$MK_LIBDIR/plugins" 2>/dev/null || exit 0
  for script in ./*; do
    case "$script" in *.dpkg-new|*.dpkg-old|*.dpkg-temp) continue ;; esac
    [ -f "$script" ] && [ -x "$script" ] || continue
    "$script"
  done
) | cat
EOF
inbox sh -c 'cat > /etc/systemd/system/check-mk-agent.socket' <<'EOF'
[Unit]
Description=Checkmk agent socket (model)
[Socket]
ListenStream=127.0.0.1:6556
Accept=true
EOF
inbox sh -c 'cat > /etc/systemd/system/check-mk-agent@.service' <<'EOF'
[Unit]
Description=Checkmk agent (model) %i
[Service]
ExecStart=-/usr/bin/check_mk_agent
Type=simple
User=root
StandardInput=socket
EOF
inbox sh -c 'cat > /usr/local/sbin/robotmk-debtest-client && chmod 755 /usr/local/sbin/robotmk-debtest-client' <<'EOF'
#!/bin/bash
exec 3<>/dev/tcp/127.0.0.1/6556 || exit 1
timeout "${1:-10}" cat <&3
EOF
inbox systemctl daemon-reload
inbox systemctl restart check-mk-agent.socket

# ---------------------------------------------------------------- helpers
PASS=0 FAIL=0
check() {  # check "description" command...
  local d=$1; shift
  if "$@"; then PASS=$((PASS+1)); echo "PASS: $d"; else FAIL=$((FAIL+1)); echo "FAIL: $d"; fi
}
indent() { sed "s/^/    ${1:-}/"; }
wait_for() {  # wait_for SECONDS cmd... ; polls every 100 ms
  local limit=$1 t0; shift; t0=$(date +%s.%N)
  while :; do
    "$@" && return 0
    awk -v w="$(since "$t0")" -v l="$limit" 'BEGIN{exit !(w >= l)}' && return 1
    sleep 0.1
  done
}
dpkg_in() {  # dpkg_in ARGS... ; output indented, sets RC
  local out
  out=$(inbox dpkg "$@" 2>&1); RC=$?
  indent '> ' <<<"$out"
}
connect() {  # one agent connection; sets OUT, JSON, J_ACTION, J_PID
  OUT=$(inbox robotmk-debtest-client 10)
  JSON=$(awk 'f {print; exit} $0 == "<<<robotmk_daemon:sep(0)>>>" {f=1}' <<<"$OUT")
  J_ACTION=$(jq -r '.ctrl.action // empty' <<<"$JSON" 2>/dev/null)
  J_PID=$(jq -r '.daemon.pid // empty' <<<"$JSON" 2>/dev/null)
  cut -c1-200 <<<"$OUT" | indent '< '
}
mode_of() { inbox stat -c '%a %U %G' "$1" 2>/dev/null; }
link_ok() { [ "$(inbox readlink "$PLUGIN" 2>/dev/null)" = "$BIN" ]; }
unit_active() { [ "$(inbox systemctl is-active "$UNIT" 2>/dev/null)" = active ]; }
unit_gone() { ! unit_active; }
# robotmk-daemon processes in the sandbox: by the executable's path (deleted after dpkg -r)
daemon_procs() { inbox sh -c 'for d in /proc/[0-9]*; do case "$(readlink $d/exe 2>/dev/null)" in /usr/bin/robotmk-daemon*) echo ${d#/proc/};; esac; done'; }
no_daemon() { [ -z "$(daemon_procs)" ]; }
has_section() { grep -qx '<<<robotmk_daemon:sep(0)>>>' <<<"$OUT"; }

T0=$(date +%s.%N)
# ---------------------------------------------------------------- a) install
echo "== a) dpkg -i $V1 on a host without robotmk-daemon"
dpkg_in -i /debs/v1.deb
check "a: dpkg -i exits 0 (got $RC)" [ "$RC" = 0 ]
check "a: $BIN runs (--version: $(inbox $BIN --version 2>&1))" inbox "$BIN" --version
check "a: the plugin $PLUGIN links to $BIN" link_ok
M=$(mode_of "$CONFIG")
check "a: $CONFIG was installed with mode 600, root:root (got '${M:-missing}')" [ "$M" = "600 root root" ]
check "a: check-config accepts the starter config" inbox "$BIN" --config "$CONFIG" check-config
BUILDER_UID=$(inbox id -u robotmk 2>/dev/null || true)
check "a: postinst created the system user robotmk that builds environments (uid '${BUILDER_UID:-none}', no login)" \
  eval '[ -n "$BUILDER_UID" ] && [ "$BUILDER_UID" -lt 1000 ] && [ "$(inbox getent passwd robotmk | cut -d: -f7)" = /usr/sbin/nologin ]'
check "a: /etc/check_mk keeps the admin's mode 700 (got '$(mode_of /etc/check_mk)')" \
  eval '[ "$(mode_of /etc/check_mk)" = "700 root root" ]'
check "a: the plugins folder keeps the admin's mode 750 (got '$(mode_of /usr/lib/check_mk_agent/plugins)')" \
  eval '[ "$(mode_of /usr/lib/check_mk_agent/plugins)" = "750 root root" ]'
check "a: the .deb's binary is dynamically linked, so it uses the host's NSS ($(file -b "/proc/$CPID/root$BIN" | cut -d, -f1-5))" \
  eval 'file -b "/proc/$CPID/root$BIN" | grep -q "dynamically linked"' 
LOADED=$(inbox env LD_TRACE_LOADED_OBJECTS=1 "$BIN" --version 2>&1)
check "a: it loads glibc and no libgcc_s (libgcc's unwinder is linked in, build.rs): $(awk '{print $1}' <<<"$LOADED" | tr '\n' ' ')" \
  eval 'grep -q "libc.so.6" <<<"$LOADED" && ! grep -q "libgcc_s" <<<"$LOADED"'
FILES=$(inbox dpkg -L robotmk-daemon)
check "a: bash, zsh, fish completions and the man pages are installed" eval \
  'for f in /usr/share/bash-completion/completions/robotmk-daemon /usr/share/zsh/vendor-completions/_robotmk-daemon /usr/share/fish/vendor_completions.d/robotmk-daemon.fish /usr/share/man/man1/robotmk-daemon.1.gz /usr/share/man/man1/robotmk-daemon-history.1.gz; do grep -qx "$f" <<<"$FILES" && inbox test -s "$f" || exit 1; done'
check "a: the package installs no systemd unit and none is loaded" eval \
  '! grep -q "systemd\|\.service$\|\.timer$" <<<"$FILES" && [ -z "$(inbox systemctl list-unit-files --no-legend "robotmk*")" ]'

# ---------------------------------------------------------------- b) the agent runs the plugin
echo "== b) an agent connection runs the installed plugin"
connect
check "b: the agent output has the robotmk_daemon section; ctrl.action is started (got '$J_ACTION')" \
  eval 'has_section && [ "$J_ACTION" = started ]'
PID1=$J_PID
M=$(inbox stat -c %a "$STATEDIR" 2>/dev/null || true)
check "b: the state dirs' parent $STATEDIR lets builds and jobs' users pass, not list (mode '${M:-missing}')" [ "$M" = 711 ]
check "b: $UNIT is active with the daemon (pid $PID1) after the agent's unit ended" \
  wait_for 10 eval 'unit_active && [ "$(inbox systemctl show -P MainPID $UNIT)" = "$PID1" ]'

# ---------------------------------------------------------------- c) reinstall, upgrade
echo "== c) the admin edits the config; reinstall and upgrade keep it"
inbox sh -c "echo '# edited by the admin' >> $CONFIG"
SUM=$(inbox sha256sum "$CONFIG")
dpkg_in -i /debs/v1.deb
check "c: reinstalling $V1 exits 0 (got $RC)" [ "$RC" = 0 ]
check "c: the config is unchanged after the reinstall" eval '[ "$(inbox sha256sum "$CONFIG")" = "$SUM" ]'
dpkg_in -i /debs/v2.deb
check "c: upgrading to $V2 exits 0 (got $RC)" [ "$RC" = 0 ]
check "c: dpkg reports version $V2" eval '[ "$(inbox dpkg-query -W -f "\${Version}" robotmk-daemon)" = "$V2" ]'
check "c: the config is unchanged after the upgrade, still 600 root root" \
  eval '[ "$(inbox sha256sum "$CONFIG")" = "$SUM" ] && [ "$(mode_of "$CONFIG")" = "600 root root" ]'
check "c: the plugin link is still there" link_ok
check "c: the upgrade kept the user robotmk (uid $BUILDER_UID)" eval '[ "$(inbox id -u robotmk)" = "$BUILDER_UID" ]'
check "c: /etc/check_mk still has mode 700 after the upgrade (got '$(mode_of /etc/check_mk)')" \
  eval '[ "$(mode_of /etc/check_mk)" = "700 root root" ]' 
connect
check "c: after the upgrade the agent output still has the section (ctrl.action '$J_ACTION')" \
  eval 'has_section && [ -n "$J_ACTION" ]'
# The old daemon is idle: it exits as soon as the agent's ctrl asks, and that ctrl starts the
# new build in the unit the old one left, so that no agent output says "daemon not running".
check "c: the agent's ctrl retired the old build's daemon (pid $PID1) and started the new one (action '$J_ACTION', pid '$J_PID')" \
  eval '[ "$J_ACTION" = started ] && [ -n "$J_PID" ] && [ "$J_PID" != "$PID1" ]'
check "c: that agent output's daemon line is OK" \
  eval 'grep -q "^0 \"Robotmk [^\"]* daemon\" - OK - running" <<<"$OUT"'
check "c: $UNIT is active with the new daemon (pid $J_PID)" \
  wait_for 10 eval 'unit_active && [ "$(inbox systemctl show -P MainPID $UNIT)" = "$J_PID" ]'

# ---------------------------------------------------------------- f) users only systemd knows
echo "== f) passwd: files systemd; a job runs as a DynamicUser only systemd's NSS module knows"
DYN=rmkdyn20
if [ -n "$NSS_DEB" ]; then
  dpkg_in -i "/debs/$NSS_DEB"
  check "f: libnss-systemd installs (got $RC)" [ "$RC" = 0 ]
else
  check "f: libnss-systemd is available for systemd $SD_VERSION (see $STATE/apt-nss.log)" false
fi
inbox sed -i -e 's/^passwd:.*/passwd:         files systemd/' -e 's/^group:.*/group:          files systemd/' /etc/nsswitch.conf
inbox grep '^passwd\|^group' /etc/nsswitch.conf | indent
inbox systemctl stop rmk-dyn20.service 2>/dev/null
inbox systemd-run --unit=rmk-dyn20 --quiet -p DynamicUser=yes -p User=$DYN sleep infinity
check "f: $DYN is known through NSS (getent) and not in /etc/passwd" \
  wait_for 10 eval 'inbox getent passwd $DYN >/dev/null && ! inbox grep -q "^$DYN:" /etc/passwd'
inbox getent passwd $DYN | indent
# A job's user reaches its folder in <state>.users beside the state dir: the daemon created
# the state dir's parent ($STATEDIR) passable (0711, checked in b), so nothing is opened here.
cp_conf() { inbox sh -c "cat > $CONFIG.tmp && chmod 600 $CONFIG.tmp && mv $CONFIG.tmp $CONFIG"; }
ORIG_CONF=$(inbox cat "$CONFIG")
{ printf '%s\n' "$ORIG_CONF"
  printf '[[job]]\nname = "dyn"\ncommand = ["sh", "-c", "id -un; id -u"]\nevery = "3s"\ntimeout = "30s"\nuser = "%s"\n' "$DYN"
} | cp_conf
CC=$(inbox "$BIN" --config "$CONFIG" check-config 2>&1)
check "f: check-config resolves $DYN ($(grep -o "user: .*" <<<"$CC"))" eval 'grep -q "^  user:  *$DYN (uid [0-9]" <<<"$CC"' 
dyn_ok() {
  connect >/dev/null
  grep -q '^0 "Robotmk system dyn" .*success' <<<"$OUT"
}
check "f: the agent's output shows the job run as $DYN: OK, success" wait_for 30 dyn_ok
grep '"Robotmk system' <<<"$OUT" | cut -c1-200 | indent '< '
RUN_OUT=$(inbox sh -c "cat $STATEDIR/system/jobs/dyn/runs/*/stdout.log 2>/dev/null | head -2")
check "f: the run's output is $DYN's (got '$(tr '\n' ' ' <<<"$RUN_OUT")')" eval 'grep -qx "$DYN" <<<"$RUN_OUT"'
if [ -n "$STATIC" ]; then
  SCC=$(inbox /debs/robotmk-daemon-static --config "$CONFIG" check-config 2>&1)
  check "f: the static build resolves $DYN too, to the same ids (getent in a process of its own; no NSS in-process)" \
    eval '[ -n "$(grep "^  user: " <<<"$SCC")" ] && [ "$(grep "^  user: " <<<"$SCC")" = "$(grep "^  user: " <<<"$CC")" ]' 
else
  echo "   (no ROBOTMK_TEST_STATIC_BIN: the static build is not checked here)"
fi
# A user that is not there: a CRIT config error naming it, from the installed plugin.
MISSING=rmk-missing-20
{ printf '%s\n' "$ORIG_CONF"
  printf '[[job]]\nname = "ghost"\ncommand = ["true"]\nevery = "1h"\nuser = "%s"\n' "$MISSING"
} | cp_conf
CC=$(inbox "$BIN" --config "$CONFIG" check-config 2>&1); CC_RC=$?
check "f: check-config says the user $MISSING is not there (exit $CC_RC)" \
  eval '[ "$CC_RC" = 2 ] && grep -q "$MISSING" <<<"$CC"'
ghost_crit() {
  connect >/dev/null
  grep -q "^[12] \"Robotmk system daemon\" - .*$MISSING" <<<"$OUT"
}
check "f: the agent's output names $MISSING on the daemon line (the running daemon rejects the edit)" wait_for 15 ghost_crit
grep '"Robotmk system daemon"' <<<"$OUT" | cut -c1-240 | indent '< '
# With no daemon running, the one ctrl launches refuses the config: a CRIT config error.
inbox "$BIN" --config "$CONFIG" stop --now >/dev/null 2>&1
check "f: the daemon stopped" wait_for 15 unit_gone
connect
check "f: then the agent's output is a CRIT config error naming $MISSING" \
  eval 'has_section && grep -q "^2 \"Robotmk system daemon\" - CRIT - config error: .*$MISSING" <<<"$OUT"'
if [ -n "$STATIC" ]; then
  SOUT=$(inbox /debs/robotmk-daemon-static --config "$CONFIG" ctrl 2>&1); SRC=$?
  check "f: the static build's ctrl prints the CRIT config error too, no crash (exit $SRC)" \
    eval '[ "$SRC" = 0 ] && grep -q "^2 \"Robotmk system daemon\" - CRIT - config error: .*$MISSING" <<<"$SOUT"'
fi
printf '%s\n' "$ORIG_CONF" | cp_conf
inbox systemctl stop rmk-dyn20.service 2>/dev/null
connect >/dev/null
check "f: with the starter config back, a daemon runs again" wait_for 10 unit_active

# ---------------------------------------------------------------- d) remove
echo "== d) dpkg -r stops the daemon cleanly"
TS=$(date +%s.%N)
dpkg_in -r robotmk-daemon
echo "   dpkg -r took $(since "$TS")s"
check "d: dpkg -r exits 0 (got $RC)" [ "$RC" = 0 ]
check "d: $UNIT is gone and no robotmk-daemon process is left" wait_for 5 eval 'unit_gone && no_daemon'
daemon_procs | indent
check "d: the plugin link and the binary are gone" eval '! inbox test -e "$PLUGIN" && ! inbox test -L "$PLUGIN" && ! inbox test -e "$BIN"'
check "d: the config is kept on remove" inbox test -e "$CONFIG"
connect
check "d: the agent's next run starts no daemon (no section, no process)" eval '! has_section && no_daemon'

# ---------------------------------------------------------------- e) purge
echo "== e) dpkg -P purges the config and the default state dir"
dpkg_in -P robotmk-daemon
check "e: dpkg -P exits 0 (got $RC)" [ "$RC" = 0 ]
check "e: $CONFIG and $STATEDIR are gone" eval '! inbox test -e "$CONFIG" && ! inbox test -e "$STATEDIR"'
T_TESTS=$(since "$T0")

if [ "$FAIL" -gt 0 ]; then
  echo "== diagnostics"
  inbox journalctl --no-pager -o short-monotonic -u 'robotmk-daemon-*' 2>&1 | tail -30 | indent
fi
if [ "$KEEP" != 1 ]; then trap - EXIT; stop_sandbox; else trap - EXIT; on_exit; fi
echo "timings[s]: tests=$T_TESTS total=$(since "$T_START")"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
