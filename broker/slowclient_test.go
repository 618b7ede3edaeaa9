package broker_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker"
)

// TestSlowClientsAreCut: connections that send a request too slowly (or
// nothing) are closed after HTTPReadTimeout, 500 at once included, and the
// API answers meanwhile. (Without a read timeout a broker held 500 of them.)
func TestSlowClientsAreCut(t *testing.T) {
	b, _ := runBroker(t, broker.Config{ID: "b1", HTTPReadTimeout: 300 * time.Millisecond})
	tests := []struct {
		name  string
		conns int
		data  string
	}{
		{"nothing", 1, ""},
		{"half a header", 1, "GET /healthz HTTP/1.1\r\nHost: b\r\n"},
		{"half a body", 1, "POST /produce HTTP/1.1\r\nHost: b\r\nContent-Length: 100\r\n\r\n{\"topic\""},
		{"500 slow headers", 500, "GET /healthz HTTP/1.1\r\nX-Slow: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conns := make([]net.Conn, tc.conns)
			for i := range conns {
				nc, err := net.Dial("tcp", b.HTTPAddr())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				if _, err := io.WriteString(nc, tc.data); err != nil {
					t.Fatal(err)
				}
				conns[i] = nc
			}
			resp, err := http.Get("http://" + b.HTTPAddr() + "/healthz")
			if err != nil {
				t.Fatalf("healthz while slow clients wait: %v", err)
			}
			resp.Body.Close()
			for i, nc := range conns {
				nc.SetReadDeadline(time.Now().Add(30 * time.Second))
				// The server may answer 408 before it closes; what counts is the close.
				if _, err := io.Copy(io.Discard, nc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("connection %d not closed: %v", i, err)
				}
			}
		})
	}
}
