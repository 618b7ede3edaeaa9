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

.PHONY: all build consul postgres deps dev test test-short atm bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(QUORUMQ) ./cmd/quorumq

consul:
	bash consul/install.sh

postgres:
	bash manager/pgserver/install.sh

deps: consul postgres

dev: deps build
	$(QUORUMQ) dev

test: deps
	$(GO) vet ./...
	$(GO) test -race -timeout 40m ./...

test-short:
	$(GO) test -short ./...

clean:
	rm -rf $(BIN) .quorumq
