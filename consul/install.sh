#!/usr/bin/env bash
# Builds the pinned Consul agent from the Go module proxy (no release downloads are
# reachable here) into a cache outside the checkout, then links it into bin/consul.
# A fresh clone pays the ~4 minute build once per machine; later runs reuse the cache.
set -euo pipefail

CONSUL_VERSION="${CONSUL_VERSION:-v1.20.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${QUORUMQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/quorumq}"
OUT="$CACHE/consul-$CONSUL_VERSION/consul"

link() {
  mkdir -p "$ROOT/bin"
  ln -sf "$OUT" "$ROOT/bin/consul"
}

cached() { [[ -x "$OUT" ]] && "$OUT" version >/dev/null 2>&1; }

if cached; then
  link
  exit 0
fi

# Test packages running in parallel may all find the binary missing: build it once.
mkdir -p "$CACHE"
exec 9>"$CACHE/consul-$CONSUL_VERSION.lock"
flock 9
if cached; then
  link
  exit 0
fi

if command -v consul >/dev/null 2>&1 && consul version | grep -q "Consul ${CONSUL_VERSION}"; then
  mkdir -p "$(dirname "$OUT")"
  cp "$(command -v consul)" "$OUT"
  link
  exit 0
fi

echo "consul: building $CONSUL_VERSION from the Go module proxy (one time, ~4 minutes)" >&2
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
dir="$(GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "$dir" ]] || { echo "consul: module download failed" >&2; exit 1; }
cp -r "$dir" src
chmod -R u+w src
cd src
# The release go.mod points the sub-modules at local folders that the module zip lacks.
for m in api envoyextensions proto-public sdk troubleshoot; do
  go mod edit -dropreplace "github.com/hashicorp/consul/$m"
done
go get github.com/hashicorp/consul/api@v1.29.4 \
  github.com/hashicorp/consul/envoyextensions@v0.7.3 \
  github.com/hashicorp/consul/proto-public@v0.6.2 \
  github.com/hashicorp/consul/sdk@v0.16.1 \
  github.com/hashicorp/consul/troubleshoot@v0.7.1
mkdir -p "$(dirname "$OUT")"
GOFLAGS= go build -mod=mod -trimpath -ldflags '-s -w' -o "$OUT.tmp" .
mv "$OUT.tmp" "$OUT"
link
"$OUT" version | head -1
