package scenario

import (
	"bufio"
	"encoding/json"

	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
)

const dashboardPath = "../../../docs/grafana/quorumq.json"

// metricName matches the series a PromQL query names (ours and the Go and process
// collectors'); label names and functions never start with these prefixes.
var metricName = regexp.MustCompile(`\b(?:quorumq|go|process)_[a-z0-9_]+`)

// dashboardMetrics reads the Grafana dashboard and returns, per panel title, the
// series its queries name.
func dashboardMetrics(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			names := metricName.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no quorumq, go or process series", p.Title, q.Expr)
			}
			out[p.Title] = append(out[p.Title], names...)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no panels", dashboardPath)
	}
	return out
}

// TestDashboardParses runs without a cluster: the dashboard is JSON and every query
// names a series (TestSeedScenario checks that the processes export them).
func TestDashboardParses(t *testing.T) {
	dashboardMetrics(t)
}

// checkDashboard fails for every series the dashboard names that no process of c
// exports (read from their /metrics after the scenario's traffic and failovers).
func checkDashboard(t *testing.T, c *Cluster) {
	t.Helper()
	exported := map[string]bool{}
	client := proctest.HTTPClient(t)
	client.Timeout = 10 * time.Second
	for _, n := range append(append([]*Node{}, c.Brokers...), c.Managers...) {
		resp, err := client.Get(proctest.URL(n.HTTP, "/metrics"))
		if err != nil {
			t.Fatalf("metrics of %s: %v", n.ID, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == '#' {
				continue
			}
			if i := strings.IndexAny(line, "{ "); i > 0 {
				exported[line[:i]] = true
			}
		}
		resp.Body.Close()
	}
	for title, names := range dashboardMetrics(t) {
		for _, name := range names {
			if !exported[name] {
				t.Errorf("dashboard panel %q queries %s, which no broker or manager exports", title, name)
			}
		}
	}
}
