// Package apidoctest holds a service's route table and the routes its Fiber app serves
// together, in the service's tests (package apidoc itself links no Fiber: the SDK
// imports the route tables).
package apidoctest

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/internal/apidoc"
)

// Check fails t for every route app serves that routes does not describe and every
// described route app does not serve, and when app's GET /openapi.json is not a
// document describing the paths want (OpenAPI paths, e.g. /topics/{name}).
func Check(t *testing.T, app *fiber.App, routes []apidoc.Route, want ...string) {
	t.Helper()
	var served []apidoc.Served
	for _, r := range app.GetRoutes(true) {
		served = append(served, apidoc.Served{Method: r.Method, Path: r.Path})
	}
	for _, p := range apidoc.RoutesMatch(routes, served) {
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
	if err := json.Unmarshal(body, &doc); err != nil || resp.StatusCode != 200 || doc.OpenAPI == "" {
		t.Fatalf("GET /openapi.json: %d %v: %.200s", resp.StatusCode, err, body)
	}
	for _, p := range want {
		if doc.Paths[p] == nil {
			t.Errorf("GET /openapi.json does not describe %s: %.300s", p, body)
		}
	}
}
