package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Storage faults in the data log: a body that no longer matches its crc (a flipped
// bit, a lost write) or that lies past the end of its segment file (a truncated file,
// which the next open re-extends with zeros). Such a message is never served; it is
// reported (OnFault) and its body is fetched again from another replica, which holds
// the same bytes at the same offset, checked against the crc and written back in place
// (Partition.Repair).

// Fault is damaged messages [From, To) of a group.
type Fault struct {
	Group    string
	From, To uint64
	Why      string
}

func (f Fault) String() string {
	return fmt.Sprintf("%s: messages %d to %d: %s", f.Group, f.From, f.To-1, f.Why)
}

// OnFault sets fn to be told of every damaged message found (at open, by a read, by
// Scrub); set it before the groups are used. fn must not block.
func (d *DB) OnFault(fn func(Fault)) {
	d.onFault = fn
	for _, f := range d.openFaults {
		fn(f)
	}
}

func (d *DB) report(f Fault) {
	if fn := d.onFault; fn != nil {
		fn(f)
	}
}

// corrupt names the group in a CorruptError and reports the message.
func (g *Group) corrupt(err error) error {
	var ce *CorruptError
	if errors.As(err, &ce) {
		ce.Group = string(g.name)
		g.db.report(Fault{Group: ce.Group, From: ce.Offset, To: ce.Offset + 1, Why: "checksum mismatch"})
	}
	return err
}

// shortSegments returns the messages whose bodies lie past the end of their segment
// file as it was found at open (a truncated segment), grouped in ranges.
func (d *DB) shortSegments() ([]Fault, error) {
	sizes := d.data.dlog.sizes
	var out []Fault
	err := d.data.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, root *bolt.Bucket) error {
			if root.Bucket(bIdx) == nil {
				return nil
			}
			return root.Bucket(bIdx).ForEach(func(k, v []byte) error {
				r, err := parseRun(k, v)
				if err != nil {
					return nil // reported when read
				}
				size := sizes[r.at.seg]
				for i := range r.count() {
					if r.at.off+r.end(i) <= uint64(size) {
						continue
					}
					off := r.first + uint64(i)
					if n := len(out); n > 0 && out[n-1].Group == string(name) && out[n-1].To == off {
						out[n-1].To++
					} else {
						out = append(out, Fault{Group: string(name), From: off, To: off + 1,
							Why: fmt.Sprintf("data log segment %d is %d bytes, shorter than the bodies it held", r.at.seg, size)})
					}
				}
				return nil
			})
		})
	})
	return out, err
}

// Repair writes back messages from offset from, fetched from another replica, where
// this replica's bodies are damaged. Each one must match its crc (a run without crcs
// cannot be repaired). It returns how many bodies it rewrote.
func (p *Partition) Repair(from uint64, msgs [][]byte) (int, error) {
	type fix struct {
		at   dataPos
		body []byte
	}
	var fixes []fix
	err := p.g.viewData(func(root *bolt.Bucket) error {
		i := 0
		end, err := walk(root, from, func(r run, j int) (int, bool, error) {
			k := 0
			for ; j+k < r.count() && i < len(msgs); k, i = k+1, i+1 {
				off := r.first + uint64(j+k)
				if r.crcs == nil {
					return k, false, fmt.Errorf("store: message %d has no checksum (written before checksums): it cannot be checked", off)
				}
				if uint64(len(msgs[i])) != r.size(j+k) || r.check(j+k, msgs[i]) != nil {
					return k, false, fmt.Errorf("store: the body fetched for message %d does not match its checksum", off)
				}
				fixes = append(fixes, fix{dataPos{r.at.seg, r.at.off + r.end(j+k-1)}, msgs[i]})
			}
			return k, i < len(msgs), nil
		})
		if err == nil && end < from+uint64(len(msgs)) {
			err = fmt.Errorf("store: message %d missing", end)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	// On the committer's goroutine: the data log's writer keeps the last partial block
	// it wrote and writes it again with the next commit, so it must read the repaired
	// block back instead.
	var n int
	err = p.g.db.data.update(func(*bolt.Tx) error {
		dl := p.g.db.data.dlog
		n = 0
		for _, f := range fixes {
			if cur, err := dl.read(f.at, uint64(len(f.body))); err == nil && bytes.Equal(cur, f.body) {
				continue
			}
			if err := dl.rewrite(f.at, f.body); err != nil {
				return err
			}
			dl.direct.tail = nil
			n++
		}
		return nil
	})
	return n, err
}

// Scrub reads every message of every group and every live WAL record back from disk
// at no more than rate bytes per second, checking each one (damage is reported through
// OnFault and the WAL's OnDamage), then starts over after pause, until ctx is done.
func (d *DB) Scrub(ctx context.Context, rate int, pause time.Duration) {
	p := &pacer{ctx: ctx, rate: rate}
	for {
		d.wal.Verify(p.wait)
		for _, group := range d.groupNames() {
			g := &Group{db: d, name: []byte(group)}
			for off := g.firstStored(); ; {
				n, size, err := g.scrubChunk(off)
				if err != nil && !errors.As(err, new(*CorruptError)) || n == 0 || !p.wait(int(size)) {
					break
				}
				off += n
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// pacer holds a reader to rate bytes per second, sleeping once per pacerBytes.
type pacer struct {
	ctx  context.Context
	rate int
	owed int
}

const pacerBytes = 256 << 10

// wait accounts for n bytes read and reports whether to go on.
func (p *pacer) wait(n int) bool {
	if p.owed += n; p.owed >= pacerBytes {
		t := time.NewTimer(time.Duration(float64(p.owed) / float64(p.rate) * float64(time.Second)))
		defer t.Stop()
		p.owed = 0
		select {
		case <-p.ctx.Done():
		case <-t.C:
		}
	}
	return p.ctx.Err() == nil
}

// scrubChunk checks up to a chunk of messages from off and returns how many it went
// past (a damaged one included) and their bytes.
func (g *Group) scrubChunk(off uint64) (n, size uint64, err error) {
	err = g.viewData(func(root *bolt.Bucket) error {
		_, err := walk(root, off, func(r run, i int) (int, bool, error) {
			k := 0
			for sz := uint64(0); i+k < r.count() && sz < chunkBytes; k++ {
				sz += r.size(i + k)
			}
			if _, err := r.read(g.db.data.dlog, i, k); err != nil {
				for j := i; j < i+k; j++ { // one at a time, to find every damaged one
					if _, err := r.read(g.db.data.dlog, j, 1); err != nil {
						g.corrupt(err)
					}
				}
			}
			n, size = n+uint64(k), size+r.end(i+k-1)-r.end(i-1)
			return k, size < chunkBytes, nil
		})
		return err
	})
	return n, size, err
}

// firstStored is the offset of the group's first stored message.
func (g *Group) firstStored() uint64 {
	var off uint64
	g.viewData(func(root *bolt.Bucket) error {
		if old := root.Bucket(bMsg); old != nil {
			if k, _ := old.Cursor().First(); k != nil {
				off = binary.BigEndian.Uint64(k)
				return nil
			}
		}
		if k, _ := root.Bucket(bIdx).Cursor().First(); k != nil {
			off = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return off
}

// groupNames lists the groups with messages in data.db.
func (d *DB) groupNames() []string {
	var out []string
	d.data.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, root *bolt.Bucket) error {
			if root.Bucket(bIdx) != nil {
				out = append(out, string(name))
			}
			return nil
		})
	})
	return out
}
