package atm

import (
	"log/slog"
	"testing"

	"github.com/quorumq/quorumq/atm/atmapi"
	"github.com/quorumq/quorumq/internal/apidoc/apidoctest"
	"github.com/quorumq/quorumq/internal/secure"
)

// TestOpenAPIDescribesEveryRoute fails when an ATM serves a route that the OpenAPI
// document (atmapi.Routes) does not describe, or the document describes one it does not
// serve.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	s := newServer(slog.New(slog.DiscardHandler), (&secure.Config{}).Auth(false))
	apidoctest.Check(t, s.app, atmapi.Routes, "/balance/{name}", "/transfer")
}
