package manager

import (
	"testing"

	"github.com/quorumq/quorumq/internal/apidoc/apidoctest"
	"github.com/quorumq/quorumq/manager/managerapi"
)

// TestOpenAPIDescribesEveryRoute fails when the managers serve a route that the OpenAPI
// document (managerapi.Routes) does not describe, or the document describes one they
// do not serve.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	apidoctest.Check(t, (&Manager{}).newApp(), managerapi.Routes, "/topics/{name}/partitions", "/consumer/consume")
}
