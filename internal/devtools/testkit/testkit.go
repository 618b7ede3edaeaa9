// Package testkit holds the small checks that tests in several packages share.
package testkit

import (
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// DiskUse is the space the files under dir take on disk: allocated blocks, not sizes,
// so holes punched into a file count as given back.
func DiskUse(t testing.TB, dir string) int64 {
	t.Helper()
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			total += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	return total
}

// Request is one call of RepliesEndWithNewline: method, path and body.
type Request [3]string

// RepliesEndWithNewline sends each request to base ("http://host:port") and fails t
// unless every reply, success or failure, ends with "}\n": replies printed one after
// another (curl in a shell) must stay apart.
func RepliesEndWithNewline(t testing.TB, base string, reqs []Request) {
	t.Helper()
	for _, r := range reqs {
		method, path, body := r[0], r[1], r[2]
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasSuffix(string(raw), "}\n") {
			t.Errorf("%s %s: %q does not end with a newline", method, path, raw)
		}
	}
}
