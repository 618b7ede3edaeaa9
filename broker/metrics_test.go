package broker_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestMetrics(t *testing.T) {
	b, cl := startBroker(t)
	if _, err := cl.Produce(context.Background(), "t", 0, "", 0, []string{"m"}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + b.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"quorumq_broker_raft_groups 1",
		`quorumq_broker_is_leader{group="p/t/0"} 1`,
		`quorumq_broker_raft_commit_index{group="p/t/0"} `,
		`quorumq_broker_http_request_duration_seconds_count{method="POST",route="/produce"} 1`,
		`quorumq_broker_http_requests_total{code="200",method="POST",route="/produce"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
