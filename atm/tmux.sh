#!/usr/bin/env bash
# Opens three ATM terminals side by side in one tmux window (`make atm`). Each pane runs
# `quorumq atm` in the foreground: type help in any of them. Quit (or Ctrl-D) stops
# that ATM; run the same command again in the pane to restart it from its data dir.
#
# Usage: atm/tmux.sh [path/to/quorumq]
# Env:   QUORUMQ_ATM_DATA   data dir root (default .quorumq/atm)
#        QUORUMQ_ATM_CONSUL host:port of a Consul agent; without it a static peer list is used
#        QUORUMQ_ATM_SESSION tmux session name (default quorumq-atm)
#        QUORUMQ_ATM_INSECURE set: run the ATMs --insecure (no TLS, no tokens)
set -euo pipefail

bin=$(realpath "${1:-bin/quorumq}")
data=${QUORUMQ_ATM_DATA:-.quorumq/atm}
session=${QUORUMQ_ATM_SESSION:-quorumq-atm}
command -v tmux >/dev/null || { echo "tmux is not installed" >&2; exit 1; }
[ -x "$bin" ] || { echo "$bin not found: run make build first" >&2; exit 1; }
mkdir -p "$data"
data=$(realpath "$data")

peers=atm1=127.0.0.1:7301,atm2=127.0.0.1:7302,atm3=127.0.0.1:7303
if [ -n "${QUORUMQ_ATM_CONSUL:-}" ]; then
  find="--consul $QUORUMQ_ATM_CONSUL"
else
  find="--peers $peers"
fi

# Secured like `quorumq dev`: a CA, each ATM's certificate and an admin token under the
# data dir, made on the first run; cluster.json says where clients find the token and CA
# (quorumq bench atm --data-dir "$data"). QUORUMQ_ATM_INSECURE=1 runs without them.
if [ -n "${QUORUMQ_ATM_INSECURE:-}" ]; then
  sec() { echo "--insecure"; }
else
  [ -f "$data/ca.pem" ] || "$bin" cert create-ca --dir "$data" >/dev/null
  for i in 1 2 3; do
    [ -f "$data/certs/atm-atm$i/node.pem" ] ||
      "$bin" cert create-node --ca-dir "$data" --name "atm/atm$i" --out "$data/certs/atm-atm$i" >/dev/null
  done
  if [ ! -f "$data/admin-token" ]; then
    (umask 077; "$bin" token create --tokens "$data/tokens.json" --role admin --name admin >"$data/admin-token")
  fi
  printf '{\n  "admin_token": "%s",\n  "ca": "%s"\n}\n' "$(cat "$data/admin-token")" "$data/ca.pem" >"$data/cluster.json"
  sec() {
    echo "--ca $data/ca.pem --cert $data/certs/atm-atm$1/node.pem --key $data/certs/atm-atm$1/node-key.pem --tokens $data/tokens.json"
  }
fi

atm_cmd() {
  echo "$bin atm --id atm$1 --data-dir $data/atm$1 --raft 127.0.0.1:730$1 --http 127.0.0.1:830$1 $find --log-level warn $(sec "$1")"
}

if ! tmux has-session -t "$session" 2>/dev/null; then
  # A shell per pane, so the pane stays open after the ATM stops and can be restarted.
  p1=$(tmux new-session -d -P -F '#{pane_id}' -s "$session" -x 240 -y 50)
  p2=$(tmux split-window -h -P -F '#{pane_id}' -t "$p1")
  p3=$(tmux split-window -h -P -F '#{pane_id}' -t "$p2")
  tmux select-layout -t "$session" even-horizontal
  tmux send-keys -t "$p1" "$(atm_cmd 1)" Enter
  tmux send-keys -t "$p2" "$(atm_cmd 2)" Enter
  tmux send-keys -t "$p3" "$(atm_cmd 3)" Enter
  tmux select-pane -t "$p1"
fi

if [ -n "${TMUX:-}" ]; then
  tmux switch-client -t "$session"
else
  tmux attach -t "$session"
fi
