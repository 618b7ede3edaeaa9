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

// Fault is damaged messages [From, To) of a group: their bodies, or with Index their
// index entry in data.db.
type Fault struct {
	Group    string
	From, To uint64
	Why      string
	Index    bool
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

// corrupt names the group in a CorruptError or IndexError and reports the damage.
func (g *Group) corrupt(err error) error {
	var ce *CorruptError
	var ie *IndexError
	switch {
	case errors.As(err, &ce):
		ce.Group = string(g.name)
		g.db.report(Fault{Group: ce.Group, From: ce.Offset, To: ce.Offset + 1, Why: "checksum mismatch"})
	case errors.As(err, &ie):
		ie.Group = string(g.name)
		g.db.report(indexFault(ie.Group, ie.From, ie.To))
	}
	return err
}

func indexFault(group string, from, to uint64) Fault {
	return Fault{Group: group, From: from, To: to, Index: true, Why: "index entry damaged (checksum mismatch in data.db)"}
}

// IsDamage reports whether err is damage found on disk (a body or an index entry that
// fails its checksum).
func IsDamage(err error) bool {
	return errors.As(err, new(*CorruptError)) || errors.As(err, new(*IndexError))
}

// scanIndex reads every index entry once, at open: it returns the damaged entries'
// ranges and the messages whose bodies lie past the end of their segment file as it
// was found (a truncated segment), grouped in ranges, and the entries written before
// the seal (by group).
func (d *DB) scanIndex() (out []Fault, unsealed map[string][][]byte, err error) {
	sizes := d.data.dlog.sizes
	unsealed = map[string][][]byte{}
	err = d.data.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, root *bolt.Bucket) error {
			if root.Bucket(bIdx) == nil {
				return nil
			}
			return root.Bucket(bIdx).ForEach(func(k, v []byte) error {
				r, err := parseRun(k, v)
				if err != nil {
					if from, to := damagedRange(root, k); from < to && !(len(out) > 0 && out[len(out)-1].Index && out[len(out)-1].Group == string(name) && out[len(out)-1].To == to) {
						out = append(out, indexFault(string(name), from, to))
					}
					return nil
				}
				if binary.BigEndian.Uint32(v[12:])&sealedRun == 0 {
					unsealed[string(name)] = append(unsealed[string(name)], append([]byte(nil), k...))
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
	return out, unsealed, err
}

// sealOld seals the index entries written before the seal (migrating the store once).
func (d *DB) sealOld(unsealed map[string][][]byte) error {
	for group, keys := range unsealed {
		for len(keys) > 0 {
			batch := keys[:min(len(keys), 10000)]
			keys = keys[len(batch):]
			if err := d.data.update(func(tx *bolt.Tx) error {
				idx := tx.Bucket([]byte(group)).Bucket(bIdx)
				for _, k := range batch {
					if v := idx.Get(k); len(v) >= 16 {
						if err := idx.Put(k, sealRun(k, v)); err != nil {
							return err
						}
					}
				}
				return nil
			}); err != nil {
				return fmt.Errorf("store: seal the index of %s: %w", group, err)
			}
		}
	}
	return nil
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
				if err != nil && !IsDamage(err) || n == 0 || !p.wait(int(size)) {
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
		var ie *IndexError
		if errors.As(g.corrupt(err), &ie) {
			n = ie.To - off // go on after the damaged range
		}
		return err
	})
	return n, size, err
}

// firstStored is the offset of the group's first stored message.
func (g *Group) firstStored() uint64 {
	var off uint64
	g.viewData(func(root *bolt.Bucket) error {
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

// damagedAt returns the range of the damaged index entry that holds offset off, if the
// entry holding it is damaged.
func damagedAt(root *bolt.Bucket, off uint64) (from, to uint64, ok bool) {
	c := root.Bucket(bIdx).Cursor()
	k, v := c.Seek(u64key(off))
	if k != nil && binary.BigEndian.Uint64(k) == off {
		if _, err := parseRun(k, v); err == nil {
			return 0, 0, false
		}
		from, to = damagedRange(root, k)
		return from, to, from <= off && off < to
	}
	// Between the entries before and after off: a damaged one (whose key may be damaged
	// too) holds off if off is in its range.
	for _, k := range [][]byte{k, prevKey(c, k)} {
		if k == nil {
			continue
		}
		if _, err := parseRun(k, root.Bucket(bIdx).Get(k)); err != nil {
			if from, to = damagedRange(root, k); from <= off && off < to {
				return from, to, true
			}
		}
	}
	return 0, 0, false
}

// prevKey returns the key before k (the last key if k is nil).
func prevKey(c *bolt.Cursor, k []byte) []byte {
	if k == nil {
		k, _ = c.Last()
		return k
	}
	c.Seek(k)
	k, _ = c.Prev()
	return k
}

// RepairIndex stores msgs, the messages from offset from fetched from another replica,
// again where the index entry holding from is damaged (a Fault with Index): appended
// to the data log and indexed by a sound entry, as their old place is unknown. It takes
// only those inside the damaged range, which must begin at from, and returns how many;
// the rest of the range stays damaged (damagedMark) until the next call. It takes none
// if from is not damaged (any more).
func (p *Partition) RepairIndex(from uint64, msgs [][]byte) (int, error) {
	var n int
	err := p.g.db.data.update(func(tx *bolt.Tx) error {
		root, err := p.g.root(tx)
		if err != nil {
			return err
		}
		f, to, ok := damagedAt(root, from)
		switch {
		case !ok:
			n = 0 // repaired meanwhile
			return nil
		case f != from:
			return fmt.Errorf("store: the damaged index range of %s begins at message %d, not %d", p.g.name, f, from)
		}
		n = int(min(uint64(len(msgs)), to-from))
		end := from + uint64(n)
		idx := root.Bucket(bIdx)
		// The damaged entries from the sound one before from (a damaged key may sort
		// anywhere after it) to end.
		var drop [][]byte
		c := idx.Cursor()
		c.Seek(u64key(from))
		for k, v := c.Prev(); k != nil; k, v = c.Prev() {
			if _, err := parseRun(k, v); err == nil {
				break
			}
			drop = append(drop, append([]byte(nil), k...))
		}
		for k, v := c.Seek(u64key(from)); k != nil && binary.BigEndian.Uint64(k) < end; k, v = c.Next() {
			if _, err := parseRun(k, v); err == nil {
				return fmt.Errorf("store: message %d of %s has a sound index entry inside the damaged range", binary.BigEndian.Uint64(k), p.g.name)
			}
			drop = append(drop, append([]byte(nil), k...))
		}
		for _, k := range drop {
			if err := idx.Delete(k); err != nil {
				return err
			}
		}
		if end < to && idx.Get(u64key(end)) == nil {
			if err := idx.Put(u64key(end), damagedMark); err != nil {
				return err
			}
		}
		return putRuns(p.g.db.data.dlog, idx, from, msgs[:n])
	})
	return n, err
}
