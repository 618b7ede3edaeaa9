package brokerbench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestDirectTransport: requests on the calling goroutine reuse one kept-alive
// connection, survive the server closing it while idle (the request is sent again on a
// new one), and give up when their context ends while the server stalls.
func TestDirectTransport(t *testing.T) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/stall" {
			<-release
		}
		w.Write(append([]byte("echo:"), body...))
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns[c] = true
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	defer close(release)
	cl := newDirectClient(nil)
	post := func(ctx context.Context, path, body string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, bytes.NewReader([]byte(body)))
		if err != nil {
			return "", err
		}
		resp, err := cl.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	opened := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}

	for i, body := range []string{"a", "bb", "ccc"} {
		got, err := post(context.Background(), "/", body)
		if err != nil || got != "echo:"+body {
			t.Fatalf("request %d: %q, %v", i, got, err)
		}
	}
	if n := opened(); n != 1 {
		t.Fatalf("3 sequential requests opened %d connections, want 1", n)
	}

	srv.CloseClientConnections() // the server drops the idle conn
	if got, err := post(context.Background(), "/", "again"); err != nil || got != "echo:again" {
		t.Fatalf("after the server closed the idle conn: %q, %v", got, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := post(ctx, "/stall", "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled request: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stalled request returned after %v", d)
	}
}
