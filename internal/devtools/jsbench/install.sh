#!/usr/bin/env bash
# Builds the pinned NATS server and CLI from the Go module proxy (no release downloads are
# reachable here) into a cache outside the checkout, then links them into bin/. Used only
# by `make bench`, which compares quorumq with a JetStream cluster on the same machine.
set -euo pipefail

NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-v2.15.2}"
NATSCLI_VERSION="${NATSCLI_VERSION:-v0.5.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
CACHE="${QUORUMQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/quorumq}"
OUT="$CACHE/nats-server-$NATS_SERVER_VERSION-cli-$NATSCLI_VERSION/bin"

link() {
  mkdir -p "$ROOT/bin"
  ln -sf "$OUT/nats-server" "$ROOT/bin/nats-server"
  ln -sf "$OUT/nats" "$ROOT/bin/nats"
}

cached() { [[ -x "$OUT/nats-server" && -x "$OUT/nats" ]] && "$OUT/nats-server" --version >/dev/null 2>&1; }

if cached; then
  link
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/nats.lock"
flock 9
if ! cached; then
  echo "nats: building nats-server $NATS_SERVER_VERSION and natscli $NATSCLI_VERSION from the Go module proxy (one time: minutes, much longer on a busy machine)" >&2
  mkdir -p "$OUT"
  # Outside the checkout so quorumq's go.mod and GOFLAGS do not apply.
  cd "$CACHE"
  GOFLAGS= GOBIN="$OUT" go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
  GOFLAGS= GOBIN="$OUT" go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION"
fi
link
