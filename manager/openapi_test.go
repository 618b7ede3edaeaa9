package manager

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/quorumq/quorumq/internal/apidoc"
	"github.com/quorumq/quorumq/manager/managerapi"
)

// TestOpenAPIDescribesEveryRoute fails when the managers serve a route that the OpenAPI
// document (managerapi.Routes) does not describe, or the document describes one they
// do not serve.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	app := (&Manager{}).newApp()
	var served []apidoc.Served
	for _, r := range app.GetRoutes(true) {
		served = append(served, apidoc.Served{Method: r.Method, Path: r.Path})
	}
	for _, p := range apidoc.RoutesMatch(managerapi.Routes, served) {
		t.Error(p)
	}

	resp, err := app.Test(httptest.NewRequest("GET", "/openapi.json", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /openapi.json: %d %v: %.200s", resp.StatusCode, err, body)
	}
	if doc.OpenAPI == "" || doc.Paths["/topics/{name}/partitions"]["post"] == nil || doc.Paths["/consumer/consume"]["get"] == nil {
		t.Fatalf("GET /openapi.json is not the managers' document: %.300s", body)
	}
}
