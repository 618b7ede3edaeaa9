package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/quorumq/quorumq/broker/internal/wal"
	bolt "go.etcd.io/bbolt"
)

// Verify checks a stopped broker's files in dir without changing them: every WAL
// record (replayed as at open, with the watermark) and every message body against its
// checksum. It writes what it checked and every damaged range to out and returns how
// many damaged ranges it found.
func Verify(dir string, out io.Writer) (int, error) {
	bad := 0
	segs, groups, damaged, err := wal.Check(filepath.Join(dir, "wal"))
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(out, "wal: %d segments, %d groups checked\n", segs, groups)
	for _, g := range sortedKeys(damaged) {
		fmt.Fprintf(out, "DAMAGED wal: %s: %s\n", g, damaged[g])
		bad++
	}
	b, err := bolt.Open(filepath.Join(dir, "data.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return bad, fmt.Errorf("store: open %s (is the broker still running?): %w", filepath.Join(dir, "data.db"), err)
	}
	defer b.Close()
	dl := &dataLog{dir: filepath.Join(dir, "data"), files: map[uint32]*os.File{}}
	defer dl.close()
	if dl.sizes, err = segmentSizes(dl.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return bad, err
	}
	d := &DB{data: &file{bolt: b, dlog: dl}}
	var faults []Fault
	d.onFault = func(f Fault) { // merged into ranges: a truncated segment is found twice
		for i, o := range faults {
			if o.Group == f.Group && o.From <= f.From && f.From <= o.To {
				faults[i].To = max(o.To, f.To)
				return
			}
		}
		faults = append(faults, f)
	}
	short, _, err := d.scanIndex()
	if err != nil {
		return bad, err
	}
	for _, f := range short {
		d.report(f)
	}
	fmt.Fprintf(out, "data log: %d segments\n", len(dl.sizes))
	for _, name := range d.groupNames() {
		g := &Group{db: d, name: []byte(name)}
		var msgs, size uint64
		for off := g.firstStored(); ; {
			n, sz, err := g.scrubChunk(off)
			if err != nil && !IsDamage(err) {
				return bad, err
			}
			if n == 0 {
				break
			}
			off, msgs, size = off+n, msgs+n, size+sz
		}
		fmt.Fprintf(out, "%s: %d messages, %d bytes checked\n", name, msgs, size)
	}
	for _, f := range faults {
		fmt.Fprintf(out, "DAMAGED data: %s\n", f)
	}
	return bad + len(faults), nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
