package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestDirectWriter: appends at any offset, in any pieces, leave the file holding
// exactly what was written before them plus their bytes, whether the partial block
// they start in comes from the previous write or is read back from the file.
func TestDirectWriter(t *testing.T) {
	old := stageBytes
	stageBytes = 2 * directAlign // bodies span several stagings
	defer func() { stageBytes = old }()
	tests := []struct {
		name   string
		writes [][]int // body sizes of each write, appended one after the other
		reopen bool    // a new writer before each write: the partial block is read back
	}{
		{"aligned", [][]int{{directAlign}, {directAlign, directAlign}}, false},
		{"small appends share blocks", [][]int{{1}, {10, 20}, {4000}, {95}, {1}}, false},
		{"bodies larger than the stage", [][]int{{3*directAlign + 7}, {5, 2*directAlign + 1, 9}}, false},
		{"many tiny bodies", [][]int{{1, 1, 1, 1, 1, 1, 1, 1}, {300, 300, 300}}, false},
		{"read back after reopening", [][]int{{100}, {5000}, {3}, {8191}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, segName(0))
			buffered, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer buffered.Close()
			if err := buffered.Truncate(1 << 20); err != nil {
				t.Fatal(err)
			}
			var want []byte
			w := &directWriter{}
			defer func() { w.close() }()
			for i, sizes := range tc.writes {
				if tc.reopen {
					w.close()
					w = &directWriter{}
				}
				var bodies [][]byte
				for j, n := range sizes {
					b := bytes.Repeat([]byte{byte('a' + (i*7+j)%26)}, n)
					bodies = append(bodies, b)
					want = append(want, b...)
				}
				at := uint64(len(want))
				for _, b := range bodies {
					at -= uint64(len(b))
				}
				if err := w.write(dir, 0, buffered, bodies, at); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(want))
				if _, err := buffered.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("after write %d: file differs from what was written (first difference at %s)", i, firstDiff(got, want))
				}
			}
			if w.refused {
				t.Fatal("this file system refused O_DIRECT: the test did not test it")
			}
		})
	}
}

func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprint(i)
		}
	}
	return "the end"
}
