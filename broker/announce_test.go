package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/brokerclient"
)

// TestAnnounceKeepsHighestTerm: the broker records the write manager with the highest
// Raft term; a late announcement of an older term, or of another manager in the same
// term, is ignored; a bad announcement is refused with a JSON failure.
func TestAnnounceKeepsHighestTerm(t *testing.T) {
	b, cl := startBroker(t)
	ctx := context.Background()
	var f *brokerclient.Error
	if err := cl.Do(ctx, "GET", b.HTTPAddr(), "/manager", nil, nil); !errors.As(err, &f) || f.Code != 404 {
		t.Fatalf("GET /manager before any announcement: %v, want 404", err)
	}
	m2 := brokerapi.ManagerAnnouncement{ID: "m2", HTTPAddr: "127.0.0.1:2", Term: 5}
	steps := []struct {
		name     string
		in       brokerapi.ManagerAnnouncement
		accepted bool
		want     brokerapi.ManagerAnnouncement
	}{
		{"first", brokerapi.ManagerAnnouncement{ID: "m1", HTTPAddr: "127.0.0.1:1", Term: 3}, true,
			brokerapi.ManagerAnnouncement{ID: "m1", HTTPAddr: "127.0.0.1:1", Term: 3}},
		{"newer term", m2, true, m2},
		{"late deposed leader", brokerapi.ManagerAnnouncement{ID: "m1", HTTPAddr: "127.0.0.1:1", Term: 4}, false, m2},
		{"same term, other manager", brokerapi.ManagerAnnouncement{ID: "m3", HTTPAddr: "127.0.0.1:3", Term: 5}, false, m2},
		{"same term, same manager, new address", brokerapi.ManagerAnnouncement{ID: "m2", HTTPAddr: "127.0.0.1:22", Term: 5}, true,
			brokerapi.ManagerAnnouncement{ID: "m2", HTTPAddr: "127.0.0.1:22", Term: 5}},
		{"higher term, old manager", brokerapi.ManagerAnnouncement{ID: "m1", HTTPAddr: "127.0.0.1:1", Term: 6}, true,
			brokerapi.ManagerAnnouncement{ID: "m1", HTTPAddr: "127.0.0.1:1", Term: 6}},
	}
	for _, s := range steps {
		var r brokerapi.AnnounceReply
		if err := cl.Do(ctx, "PUT", b.HTTPAddr(), "/manager", s.in, &r); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var got brokerapi.ManagerAnnouncement
		if err := cl.Do(ctx, "GET", b.HTTPAddr(), "/manager", nil, &got); err != nil {
			t.Fatalf("%s: GET /manager: %v", s.name, err)
		}
		if r.Accepted != s.accepted || r.Manager != s.want || got != s.want {
			t.Fatalf("%s: reply %+v, GET %+v; want accepted=%v and %+v", s.name, r, got, s.accepted, s.want)
		}
	}

	for _, body := range []string{`{"id":`, `[1]`, `{"http_addr":"h","term":7}`, `{"id":"m9","term":7}`, `{"id":"m9","http_addr":"h"}`, `{"id":"m9","http_addr":"h","term":-1}`} {
		code, reply := rawRequest(t, "PUT", b.HTTPAddr(), "/manager", body)
		if code != 400 || !isFailure(reply) {
			t.Fatalf("PUT /manager %s: %d %s, want 400 and a JSON failure", body, code, reply)
		}
	}
	var got brokerapi.ManagerAnnouncement
	if err := cl.Do(ctx, "GET", b.HTTPAddr(), "/manager", nil, &got); err != nil || got.ID != "m1" || got.Term != 6 {
		t.Fatalf("after bad announcements: %+v %v", got, err)
	}
}

// rawRequest sends body as is (malformed on purpose) and returns the code and reply.
func rawRequest(t *testing.T, method, addr, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, reply
}

// isFailure reports whether reply is the JSON failure body.
func isFailure(reply []byte) bool {
	var f brokerapi.Failure
	return json.Unmarshal(reply, &f) == nil && f.Status == "failure" && f.Message != ""
}
