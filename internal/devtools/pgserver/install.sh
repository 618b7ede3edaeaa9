#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, postgres) are installed, installing
# the Debian package with apt only when none is found. quorumq never uses a system-wide
# server: tests and `quorumq dev` start a private one.
#   QUORUMQ_PG_BIN  a directory holding initdb and postgres: then nothing is installed
#   QUORUMQ_PG_LIB  where the versions are looked for (default /usr/lib/postgresql)
set -euo pipefail

LIB="${QUORUMQ_PG_LIB:-/usr/lib/postgresql}"

# Both binaries that internal/devtools/pgserver runs; pg_ctl alone (the client package) is no server.
has_server() { [[ -x "$1/initdb" && -x "$1/postgres" ]]; }

installed() {
  local d
  for d in "$LIB"/*/bin; do
    if has_server "$d"; then return 0; fi
  done
  return 1
}

fail() {
  echo "postgres: $*" >&2
  echo "postgres: install the PostgreSQL server package yourself, or set QUORUMQ_PG_BIN to a directory holding initdb and postgres" >&2
  exit 1
}

if [[ -n "${QUORUMQ_PG_BIN:-}" ]]; then
  has_server "$QUORUMQ_PG_BIN" || fail "QUORUMQ_PG_BIN=$QUORUMQ_PG_BIN holds no initdb and postgres"
  exit 0
fi
if installed; then
  exit 0
fi

command -v apt-get >/dev/null || fail "no server binaries in $LIB/*/bin, and no apt-get to install them with"
as_root=()
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || fail "installing the postgresql package needs root or sudo"
  as_root=(sudo)
fi
echo "postgres: installing the PostgreSQL server package with apt-get (about a minute)" >&2
"${as_root[@]}" apt-get update -qq
# Through env: sudo drops the caller's environment, and a debconf question would hang.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
# Debian's package starts a cluster of its own on 5432, the port `make dev` uses, and
# quorumq does not need it: stop it, and keep it from coming back at boot where systemd runs.
"${as_root[@]}" systemctl disable --now postgresql >/dev/null 2>&1 ||
  "${as_root[@]}" service postgresql stop >/dev/null 2>&1 || true
installed || fail "apt-get installed postgresql, but $LIB/*/bin has no initdb and postgres"
