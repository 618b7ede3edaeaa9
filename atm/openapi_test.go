package atm

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/quorumq/quorumq/atm/atmapi"
	"github.com/quorumq/quorumq/internal/apidoc"
	"github.com/quorumq/quorumq/internal/secure"
)

// TestOpenAPIDescribesEveryRoute fails when an ATM serves a route that the OpenAPI
// document (atmapi.Routes) does not describe, or the document describes one it does not
// serve.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	s := newServer(slog.New(slog.DiscardHandler), (&secure.Config{}).Auth(false))
	var served []apidoc.Served
	for _, r := range s.app.GetRoutes(true) {
		served = append(served, apidoc.Served{Method: r.Method, Path: r.Path})
	}
	for _, p := range apidoc.RoutesMatch(atmapi.Routes, served) {
		t.Error(p)
	}

	resp, err := s.app.Test(httptest.NewRequest("GET", "/openapi.json", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /openapi.json: %d %v: %.200s", resp.StatusCode, err, body)
	}
	if doc.Paths["/balance/{name}"]["get"] == nil || doc.Paths["/transfer"]["post"] == nil {
		t.Fatalf("GET /openapi.json is not the ATMs' document: %.300s", body)
	}
}
