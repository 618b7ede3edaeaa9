package httpjson

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestDecodeFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   Failure
	}{
		{"our shape", 404, `{"status":"failure","message":"no such topic","code":"unknown_topic"}`,
			Failure{Status: "failure", Message: "no such topic", Code: "unknown_topic"}},
		{"the ATMs' older reason", 409, `{"status":"failure","message":"m","reason":"insufficient_funds"}`,
			Failure{Status: "failure", Message: "m", Code: "insufficient_funds", Reason: "insufficient_funds"}},
		{"a proxy's text", 502, "bad gateway\n", Failure{Status: "failure", Message: "bad gateway"}},
		{"nothing", 503, "", Failure{Status: "failure", Message: http.StatusText(503)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Failure
			DecodeFailure(tc.status, []byte(tc.body), &f)
			if f != tc.want {
				t.Fatalf("got %+v, want %+v", f, tc.want)
			}
		})
	}
}

// A reply type that embeds Failure gets its own fields and the fallbacks.
func TestDecodeFailureEmbedded(t *testing.T) {
	var f struct {
		Failure
		Leader string `json:"leader"`
	}
	DecodeFailure(421, []byte(`{"status":"failure","message":"not the leader","leader":"b2"}`), &f)
	if f.Message != "not the leader" || f.Leader != "b2" {
		t.Fatalf("got %+v", f)
	}
}

// Do hands back the body of a 200 and decodes any other status into the failure.
func TestDo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   Failure
	}{
		{"success", 200, `{"status":"success"}`, Failure{}},
		{"our failure", 404, `{"status":"failure","message":"no such topic","code":"unknown_topic"}`,
			Failure{Status: "failure", Message: "no such topic", Code: "unknown_topic"}},
		{"another 2xx", 201, "", Failure{Status: "failure", Message: http.StatusText(201)}},
		{"a proxy's text", 502, "bad gateway", Failure{Status: "failure", Message: "bad gateway"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			var f Failure
			resp, body, err := Do(srv.Client(), req, &f)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || string(body) != tc.body || f != tc.want {
				t.Fatalf("got %d %q %+v, want %d %q %+v", resp.StatusCode, body, f, tc.status, tc.body, tc.want)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
	if _, _, err := Do(http.DefaultClient, req, &Failure{}); err == nil {
		t.Fatal("no error from a refused connection")
	}
}
