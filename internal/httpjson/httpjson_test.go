package httpjson

import (
	"net/http"
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
