#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, pg_ctl, postgres) are installed.
# quorumq never uses a system-wide server: tests and `quorumq dev` start a private one.
set -euo pipefail
for d in /usr/lib/postgresql/*/bin; do
  [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && exit 0
done
echo "postgres: installing the PostgreSQL server package" >&2
SUDO=""
[[ "$(id -u)" -eq 0 ]] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
# Debian's package starts a cluster of its own; quorumq does not need it.
$SUDO service postgresql stop >/dev/null 2>&1 || true
