#!/usr/bin/env bash
# Installs robotmk-daemon as a Checkmk agent plugin on this Linux host (as root).
#   examples/deploy/linux/install.sh [--cached SECONDS] /path/to/robotmk-daemon [config.toml]
# The binary goes to /usr/local/bin; the plugin is a link whose name ends in "ctrl", which the
# agent runs without arguments. Nothing else is installed: no service, no unit.
#   default           plugins/robotmk_daemon_ctrl: the synchronous mode, ctrl runs on every
#                     agent call (every minute) and its output is always fresh
#   --cached SECONDS  plugins/SECONDS/robotmk_daemon_ctrl: the cached mode, only the agent's
#                     async service runs ctrl, every SECONDS (plus up to a minute); the agent
#                     serves its output from a cache meanwhile. ctrl sees the folder and the
#                     daemon waits 2 x SECONDS + 60 s for it before it gives up (README, "Sync
#                     or cached mode").
# Installing one mode removes the other's link: ctrl in both folders would run in both modes.
set -euo pipefail
cached=
if [ "${1:-}" = --cached ]; then
  cached=${2:?usage: $0 --cached SECONDS /path/to/robotmk-daemon [config.toml]}
  case "$cached" in ''|0*|*[!0-9]*) echo "SECONDS must be a positive number: $cached" >&2; exit 2 ;; esac
  shift 2
fi
bin=${1:?usage: $0 [--cached SECONDS] /path/to/robotmk-daemon [config.toml]}
cfg=${2:-}
plugins=${MK_PLUGINSDIR:-/usr/lib/check_mk_agent/plugins}
confdir=${MK_CONFDIR:-/etc/check_mk}
install -m 755 "$bin" /usr/local/bin/robotmk-daemon
install -d "$plugins"
for old in "$plugins"/robotmk_daemon_ctrl "$plugins"/[1-9]*/robotmk_daemon_ctrl; do
  [ -L "$old" ] && rm -f "$old"
done
if [ -n "$cached" ]; then
  install -d "$plugins/$cached"
  ln -sf /usr/local/bin/robotmk-daemon "$plugins/$cached/robotmk_daemon_ctrl"
else
  ln -sf /usr/local/bin/robotmk-daemon "$plugins/robotmk_daemon_ctrl"
fi
if [ -n "$cfg" ]; then
  install -m 600 "$cfg" "$confdir/robotmk-daemon.toml"
elif [ ! -e "$confdir/robotmk-daemon.toml" ]; then
  echo "no config yet: copy examples/robotmk-daemon.toml to $confdir/robotmk-daemon.toml and edit it" >&2
fi
if [ -e "$confdir/robotmk-daemon.toml" ]; then
  /usr/local/bin/robotmk-daemon --config "$confdir/robotmk-daemon.toml" check-config
fi
if [ -n "$cached" ]; then
  echo "installed in cached mode (plugins/$cached/); the agent's async service starts the daemon"
else
  echo "installed; the agent's next run starts the daemon (systemctl status robotmk-daemon-system)"
fi
