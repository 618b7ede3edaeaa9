# The first two commands on a fresh machine: `make dev` and `make test`.
# Both install what they need: the Consul binary (built once from the Go module proxy
# and cached outside the checkout) and the PostgreSQL server binaries (Debian package).

GO        ?= go
BIN       := bin
QUORUMQ   := $(BIN)/quorumq
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
export GOTOOLCHAIN := local
# Tests and `quorumq dev` find the binaries here.
export QUORUMQ_CONSUL_BIN := $(CURDIR)/$(BIN)/consul

# `go test -timeout` is per package binary; CI gives the whole run 90 minutes on 2 cores.
TEST_TIMEOUT ?= 30m
# Extra flags for `make dev`, e.g. DEV_FLAGS='--postgres-port 5433'.
DEV_FLAGS ?=

.PHONY: all build consul postgres deps dev test test-short atm clean bench bench-atm bench-idle nemesis

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(QUORUMQ) ./cmd/quorumq

consul:
	bash consul/install.sh

postgres:
	bash internal/devtools/pgserver/install.sh

deps: consul postgres

dev: deps build
	$(QUORUMQ) dev $(DEV_FLAGS)

test: deps
	$(GO) vet ./...
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

# Three ATM terminals side by side in tmux (static peers on 127.0.0.1:7301-7303).
atm: build
	bash atm/tmux.sh $(QUORUMQ)

# quorumq's produce benchmark next to a 3-node NATS JetStream cluster (R3 file stream) on
# this machine, in both JetStream durability modes; prints quorumq's ratio to each (~2-3 min).
# Every workload runs three times (interleaved) and the table shows medians, with the CPU
# seconds of all server processes per million messages beside each throughput.
# Extra flags via BENCH_FLAGS, e.g. BENCH_FLAGS='-duration 20s -batch 100 -runs 5'.
# PROFILE=1 writes the brokers' CPU profiles of the 4-producer run to $(PROFILE_DIR).
PROFILE_DIR ?= bench-profiles
bench: build
	bash internal/devtools/jsbench/install.sh
	$(GO) run ./internal/devtools/jsbench -quorumq $(QUORUMQ) -nats-bin $(BIN) $(if $(PROFILE),-profile $(PROFILE_DIR)) $(BENCH_FLAGS)

# The ATM network next to etcd 3.4 (Debian etcd-server, installed if missing): random
# transfers between 100 accounts at 1 and 64 clients, etcd's as optimistic transactions;
# medians of 3 interleaved runs with CPU per transfer (~3 min). E.g.
# ATM_BENCH_FLAGS='-clients 1,16,64 -duration 20s -insecure'.
ATM_BENCH_FLAGS ?=
bench-atm: build
	bash internal/devtools/atmbench/install.sh
	$(GO) run ./internal/devtools/atmbench -quorumq $(QUORUMQ) -etcd $(BIN)/etcd $(ATM_BENCH_FLAGS)

# 1,000 idle partitions (RF 3) on 3 brokers: each broker's CPU in % of a core over 60 s.
bench-idle: build
	$(QUORUMQ) bench idle --partitions 1000 --idle 60s

# The fault suite on real processes (README "The fault suite"), e.g.
# NEMESIS_FLAGS='--duration 10m --faults partition,kill,pause'. `make test` runs its
# short default.
NEMESIS_FLAGS ?=
nemesis: deps
	$(GO) test -count=1 -timeout 0 -run 'TestNemesis$$' -v ./cmd/quorumq/nemesis -args $(NEMESIS_FLAGS)

test-short:
	$(GO) test -short ./...

clean:
	rm -rf $(BIN) .quorumq
