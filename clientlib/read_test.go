package clientlib

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// readServer serves the managers' read by offset over log, answering 503 to the first
// request (a replica that failed) and 404 unknown_topic for other topics.
func readServer(t *testing.T, log []string) *httptest.Server {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			failure(w, http.StatusServiceUnavailable, "the partition cannot be served right now, retry")
			return
		}
		if r.URL.Path != "/topics/orders/partitions/2/messages" {
			reply(w, http.StatusNotFound, map[string]any{"status": "failure", "message": "topic does not exist", "code": "unknown_topic"})
			return
		}
		off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		n, _ := strconv.Atoi(r.URL.Query().Get("max"))
		from := min(off, len(log))
		end := min(from+n, len(log))
		reply(w, http.StatusOK, map[string]any{"partition": 2, "offset": off, "next_offset": max(off, end), "messages": log[from:end]})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestReadAt(t *testing.T) {
	srv := readServer(t, []string{"a", "b", "c"})
	c, err := New(WithManagers(srv.URL), WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	msgs, next, err := c.ReadAt(ctx, "orders", 2, 1, 10) // retried after the first 503
	want := []Message{{"orders", 2, 1, "b"}, {"orders", 2, 2, "c"}}
	if err != nil || !slices.Equal(msgs, want) || next != 3 {
		t.Fatalf("ReadAt: %+v next %d %v; want %+v next 3", msgs, next, err, want)
	}
	if msgs, next, err := c.ReadAt(ctx, "orders", 2, 7, 1); err != nil || len(msgs) != 0 || next != 7 {
		t.Fatalf("past the end: %+v next %d %v", msgs, next, err)
	}
	if _, _, err := c.ReadAt(ctx, "nope", 0, 0, 1); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
	if _, _, err := c.ReadAt(ctx, "orders", 2, -1, 1); err == nil {
		t.Fatal("negative offset accepted")
	}
}
