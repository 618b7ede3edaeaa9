#!/usr/bin/env bash
# Puts etcd 3.4 into bin/ for `make bench-atm`, which compares the ATM network with
# etcd's optimistic transactions on this machine: the Debian package etcd-server
# (installed with apt-get when missing, as root), or ETCD_BIN if set.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
want=3.4

# The version is captured, then matched: a reader that stops early would SIGPIPE etcd
# under pipefail (see consul/install.sh).
ok() {
  local out
  [[ -x "$1" ]] && out="$("$1" --version 2>/dev/null)" && [[ "$out" =~ (^|$'\n')"etcd Version: $want." ]]
}

bin="${ETCD_BIN:-/usr/bin/etcd}"
if ! ok "$bin"; then
  if [[ -n "${ETCD_BIN:-}" ]]; then
    echo "etcd: $ETCD_BIN is not etcd $want" >&2
    exit 1
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "etcd: etcd $want is not installed; run as root: apt-get install etcd-server" >&2
    exit 1
  fi
  echo "etcd: installing the Debian package etcd-server (etcd $want)" >&2
  # The package enables a systemd service; nothing starts it in a container, and the
  # bench runs its own members on free ports.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null; }
  ok "$bin" || { echo "etcd: $bin is not etcd $want after installing etcd-server" >&2; exit 1; }
fi
mkdir -p "$ROOT/bin"
ln -sf "$bin" "$ROOT/bin/etcd"
