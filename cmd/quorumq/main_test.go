package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/clientlib"
)

// run executes the quorumq command line in-process and returns its stdout, stderr and
// error (main prints the error and exits 1 when it is not nil).
func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := newRoot()
	var stdout, stderr bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.ExecuteContext(ctx)
	return stdout.String(), stderr.String(), err
}

func TestUnknownSubcommandFails(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"topic", "lsit"}, `unknown command "lsit" for "quorumq topic" (did you mean list?)`},
		{[]string{"topic", "nope", "x"}, `unknown command "nope" for "quorumq topic"`},
		{[]string{"bench", "nope"}, `unknown command "nope" for "quorumq bench"`},
		{[]string{"nope"}, `unknown command "nope" for "quorumq"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := run(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// A bare group still shows its subcommands, successfully.
	out, _, err := run(t, "", "topic")
	if err != nil || !strings.Contains(out, "describe") {
		t.Fatalf("quorumq topic: %v\n%s", err, out)
	}
}

func TestHelpNamesEnvironment(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"produce", "--help"}, []string{"(env QUORUMQ_CONSUL)", "(env QUORUMQ_TOPIC)", "(env QUORUMQ_TIMEOUT)"}},
		{[]string{"topic", "create", "--help"}, []string{"(env QUORUMQ_CONSUL)", "(env QUORUMQ_PARTITIONS)"}},
		{[]string{"manager", "--help"}, []string{"(env QUORUMQ_POSTGRES)", "(env QUORUMQ_BOOTSTRAP_EXPECT)", "--pprof string", "(env QUORUMQ_PPROF)"}},
		{[]string{"broker", "--help"}, []string{"--pprof string", "(env QUORUMQ_PPROF)"}},
		{[]string{"dev", "--help"}, []string{"(env QUORUMQ_CONSUL_HTTP)", "--pprof-port int", "(env QUORUMQ_PPROF_PORT)"}},
		{[]string{"--help"}, []string{"QUORUMQ_<FLAG>"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, _, err := run(t, "", tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("help lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "QUORUMQ_HELP") || strings.Count(out, "(env QUORUMQ_CONSUL)") > 1 {
				t.Errorf("help names a variable wrongly:\n%s", out)
			}
		})
	}
}

// TestUnreachableConsulSaysWhere: with nothing at --consul, a command says on stderr
// what it is trying to reach while it retries, then fails naming it.
func TestUnreachableConsulSaysWhere(t *testing.T) {
	_, stderr, err := run(t, "x\n", "produce", "--topic", "t", "--consul", "127.0.0.1:1", "--timeout", "3s")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error %v, want a failure naming 127.0.0.1:1", err)
	}
	if !strings.Contains(stderr, "still trying to reach Consul at 127.0.0.1:1") {
		t.Fatalf("stderr while retrying: %q", stderr)
	}
}

// TestRetryNoticeSaysWhoAnswered: while a call keeps failing, the notice on stderr
// names what failed: a manager's answer when one came (the managers are there, Consul
// or --managers is not the problem), else the address nothing answered at.
func TestRetryNoticeSaysWhoAnswered(t *testing.T) {
	answering := fakeManager(t, map[string]func(*http.Request) (int, any){
		"GET /topics/t": func(*http.Request) (int, any) { return 503, failure("no write manager elected yet", "unavailable") },
	})
	for _, tc := range []struct {
		name, managers, want, notWant string
	}{
		{"a manager answered", answering, "quorumq: a manager answered HTTP 503 (no write manager elected yet); retrying for", "still trying to reach"},
		{"nothing answered", "127.0.0.1:1", "quorumq: still trying to reach the managers at 127.0.0.1:1:", "answered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := run(t, "", "topic", "describe", "t", "--managers", tc.managers, "--timeout", "3s")
			if err == nil {
				t.Fatal("describe succeeded without a manager that could serve it")
			}
			if !strings.Contains(stderr, tc.want) || strings.Contains(stderr, tc.notWant) {
				t.Fatalf("stderr while retrying: %q, want %q (and no %q)", stderr, tc.want, tc.notWant)
			}
		})
	}
}

// fakeManager answers the managers' REST calls from routes ("METHOD /path" → status and
// JSON body), for one partition of topic t.
func fakeManager(t *testing.T, routes map[string]func(r *http.Request) (int, any)) string {
	t.Helper()
	base := map[string]func(*http.Request) (int, any){
		"GET /topics/t": func(*http.Request) (int, any) {
			return 200, map[string]any{"status": "success", "topic": map[string]any{"name": "t",
				"partitions": []map[string]any{{"partition": 0, "leader": "", "replicas": []string{}}}}}
		},
		"GET /brokers":            func(*http.Request) (int, any) { return 200, map[string]any{"status": "success", "brokers": []any{}} },
		"POST /producer/register": func(*http.Request) (int, any) { return 200, map[string]any{"status": "success", "producer_id": 1} },
	}
	for k, v := range routes {
		base[k] = v
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h, ok := base[r.Method+" "+r.URL.Path]
		if !ok {
			w.WriteHeader(404)
			json.NewEncoder(w).Encode(map[string]string{"status": "failure", "message": "no such endpoint", "code": "not_found"})
			return
		}
		status, body := h(r)
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func failure(msg, code string) map[string]string {
	return map[string]string{"status": "failure", "message": msg, "code": code}
}

// TestResumedConsumerAnnouncedAfterRead: --consumer-id is offered for resuming only
// once the managers accepted it.
func TestResumedConsumerAnnouncedAfterRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		reply   any
		wantErr bool
	}{
		{"unknown", 404, failure("consumer 999 is not registered", "unknown_consumer"), true},
		{"known", 404, failure("no new message for consumer 999", "no_message"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeManager(t, map[string]func(*http.Request) (int, any){
				"GET /consumer/consume": func(*http.Request) (int, any) { return tc.status, tc.reply },
			})
			_, stderr, err := run(t, "", "consume", "--topic", "t", "--consumer-id", "999", "--managers", addr)
			announced := strings.Contains(stderr, "consumer 999 (resume with --consumer-id 999)")
			if (err != nil) != tc.wantErr || announced == tc.wantErr {
				t.Fatalf("error %v, stderr %q", err, stderr)
			}
		})
	}
}

// TestRefusedBatchesReportedOnce: when every batch meets the same refusal (a message
// over the size limit), it is printed once, with its HTTP status once.
func TestRefusedBatchesReportedOnce(t *testing.T) {
	addr := fakeManager(t, map[string]func(*http.Request) (int, any){
		"POST /producer/produce": func(*http.Request) (int, any) {
			return 413, failure("broker b1: message 0 is 2000 bytes; the limit is 1000", "invalid")
		},
	})
	_, _, err := run(t, "", "produce", "--topic", "t", "--count", "9", "--batch", "1", "--size", "2000", "--managers", addr)
	if err == nil {
		t.Fatal("produce of refused messages succeeded")
	}
	if msg := err.Error(); strings.Count(msg, "the limit is 1000") != 1 || strings.Count(msg, "(HTTP 413)") != 1 {
		t.Fatalf("error printed as:\n%s", msg)
	}
}

func TestReportErrorNamesOutcome(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"unknown", fmt.Errorf("create: %w", clientlib.ErrOutcomeUnknown), "outcome: unknown"},
		{"not applied", fmt.Errorf("create: %w", clientlib.ErrNotApplied), "outcome: not applied"},
		{"a read", errors.New("list: refused"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			reportError(&b, tc.err)
			lines := strings.Split(strings.TrimSpace(b.String()), "\n")
			if !strings.HasPrefix(lines[0], "error: ") || (tc.want == "") != (len(lines) == 1) ||
				(tc.want != "" && !strings.HasPrefix(lines[1], tc.want)) {
				t.Fatalf("printed %q, want an error line then %q", b.String(), tc.want)
			}
		})
	}
}

// TestBrokerRefusesBadCoreFlags: the broker's scheduler flags are checked before
// anything starts, with a message naming the flag.
func TestBrokerRefusesBadCoreFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--gomaxprocs", "-1"}, "--gomaxprocs -1"},
		{[]string{"--timer-slack", "-1ms"}, "--timer-slack -1ms"},
		{[]string{"--timer-slack", "2s"}, "--timer-slack 2s"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{"broker", "--id", "b1", "--data-dir", t.TempDir()}, tc.args...)
			_, _, err := run(t, "", args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}
