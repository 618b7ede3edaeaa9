#!/usr/bin/env bash
# Builds the pinned Consul agent from the Go module proxy (no release downloads are
# reachable here) into a cache outside the checkout, then links it into bin/consul.
# A fresh clone pays the build once per machine; later runs reuse the cache. While it
# builds, a line on stderr every QUORUMQ_PROGRESS_INTERVAL seconds (15) says so.
#
# Never pipe a command's output into a reader that may stop early (one that keeps only
# the first line, or a quiet match): under pipefail the writer then dies of SIGPIPE and
# the pipeline fails with 141, or not, depending on timing. Capture the output, then
# look at it.
set -euo pipefail

CONSUL_VERSION="${CONSUL_VERSION:-v1.20.1}"
# Bump when the recipe below changes the binary it produces, so that caches filled by an
# older recipe are rebuilt rather than reused. r2: the UI shows the agent's version.
RECIPE=r2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${QUORUMQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/quorumq}"
OUT="$CACHE/consul-$CONSUL_VERSION-$RECIPE/consul"
PROGRESS_INTERVAL="${QUORUMQ_PROGRESS_INTERVAL:-15}"

link() {
  mkdir -p "$ROOT/bin"
  ln -sf "$OUT" "$ROOT/bin/consul"
}

# first_line CMD... prints the first line CMD writes to stdout; fails when CMD fails.
first_line() {
  local out
  out="$("$@" 2>/dev/null)" || return 1
  printf '%s\n' "${out%%$'\n'*}"
}

is_pinned() { [[ -x "$1" && "$(first_line "$1" version)" == "Consul $CONSUL_VERSION" ]]; }

if is_pinned "$OUT"; then
  link
  exit 0
fi

# Test packages running in parallel may all find the binary missing: build it once.
mkdir -p "$CACHE"
exec 9>"$CACHE/consul-$CONSUL_VERSION-$RECIPE.lock"
flock 9
if is_pinned "$OUT"; then
  link
  exit 0
fi

# A release binary of the same version on PATH serves as well as a build; a link into this
# cache (bin/ on PATH) may be an older recipe's build.
if system="$(command -v consul)" && [[ "$(realpath "$system")" != "$(realpath "$CACHE")"/* ]] && is_pinned "$system"; then
  mkdir -p "$(dirname "$OUT")"
  cp "$system" "$OUT.tmp"
  mv "$OUT.tmp" "$OUT"
  link
  exit 0
fi

command -v go >/dev/null || { echo "consul: go is not on PATH; install Go (see README.md, Quick start)" >&2; exit 1; }
echo "consul: building $CONSUL_VERSION from the Go module proxy (one time: minutes with Go's caches filled, an hour or more from nothing on a busy machine)" >&2
started=$SECONDS

elapsed() { printf '%dm%02ds' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)); }

# progress runs in the background until killed. It also stops once this script is gone
# (even SIGKILLed), so it can never outlive the build.
progress() {
  local parent=$$
  trap 'kill "$!" 2>/dev/null; exit 0' TERM
  while :; do
    sleep "$PROGRESS_INTERVAL" &
    wait "$!"
    kill -0 "$parent" 2>/dev/null || exit 0
    echo "consul: still building ($(elapsed) elapsed)" >&2
  done
}

work="$(mktemp -d)"
progress_pid=""
stop_progress() {
  [[ -n "$progress_pid" ]] || return 0
  kill "$progress_pid" 2>/dev/null || true
  wait "$progress_pid" 2>/dev/null || true
  progress_pid=""
}
cleanup() {
  stop_progress
  chmod -R u+w "$work" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# Ctrl-C, kill and a closed terminal go through the EXIT trap too.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
progress &
progress_pid=$!

cd "$work"
# The user's go.work or GOFLAGS must not change what is built.
export GOWORK=off GOFLAGS=-mod=mod
json="$(go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION")" || {
  echo "consul: module download failed: $json" >&2
  exit 1
}
field() { sed -n "s/^[[:space:]]*\"$1\": \"\([^\"]*\)\".*/\1/p" <<<"$json"; }
dir="$(field Dir)"
[[ -n "$dir" && -d "$dir" ]] || { echo "consul: module download gave no directory: $json" >&2; exit 1; }
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

# The UI's footer shows CONSUL_VERSION from this page's config tag. The prebuilt UI in the
# module was last compiled at 1.19.0-dev (HashiCorp rebuilds it only for release
# downloads), so without this the footer of a v1.20.1 agent says v1.19.0-dev.
ui=agent/uiserver/dist/index.html
want="%22CONSUL_VERSION%22%3A%22${CONSUL_VERSION#v}%22"
sed -i "s/%22CONSUL_VERSION%22%3A%22[^%]*\(%5Cn\)\{0,1\}%22/$want/" "$ui"
grep -qF "$want" "$ui" || { echo "consul: found no CONSUL_VERSION to set in $ui" >&2; exit 1; }

# `consul version` prints the release's commit (the proxy reports it) as its Revision.
ldflags="-s -w"
commit="$(field Hash)"
[[ -z "$commit" ]] || ldflags+=" -X github.com/hashicorp/consul/version.GitCommit=${commit:0:8}"
mkdir -p "$(dirname "$OUT")"
go build -trimpath -ldflags "$ldflags" -o "$OUT.tmp" .
is_pinned "$OUT.tmp" || { echo "consul: the build does not say Consul $CONSUL_VERSION" >&2; exit 1; }
mv "$OUT.tmp" "$OUT"
stop_progress
link
echo "consul: built $CONSUL_VERSION in $(elapsed): $OUT" >&2
