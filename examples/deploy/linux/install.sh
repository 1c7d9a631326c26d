#!/usr/bin/env bash
# Installs robotmk-daemon as a Checkmk agent plugin on this Linux host (as root).
#   examples/deploy/linux/install.sh /path/to/robotmk-daemon [config.toml]
# The binary goes to /usr/local/bin; the plugin is a link whose name ends in "ctrl", which the
# agent runs without arguments every minute. Nothing else is installed: no service, no unit.
set -euo pipefail
bin=${1:?usage: $0 /path/to/robotmk-daemon [config.toml]}
cfg=${2:-}
plugins=${MK_PLUGINSDIR:-/usr/lib/check_mk_agent/plugins}
confdir=${MK_CONFDIR:-/etc/check_mk}
install -m 755 "$bin" /usr/local/bin/robotmk-daemon
install -d "$plugins"
ln -sf /usr/local/bin/robotmk-daemon "$plugins/robotmk_daemon_ctrl"
if [ -n "$cfg" ]; then
  install -m 600 "$cfg" "$confdir/robotmk-daemon.toml"
elif [ ! -e "$confdir/robotmk-daemon.toml" ]; then
  echo "no config yet: copy examples/robotmk-daemon.toml to $confdir/robotmk-daemon.toml and edit it" >&2
fi
if [ -e "$confdir/robotmk-daemon.toml" ]; then
  /usr/local/bin/robotmk-daemon --config "$confdir/robotmk-daemon.toml" check-config
fi
echo "installed; the agent's next run starts the daemon (systemctl status robotmk-daemon-system)"
