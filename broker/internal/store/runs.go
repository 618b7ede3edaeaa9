package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"
)

// A partition's messages are indexed in runs: each run is consecutive messages whose
// bodies lie back to back in a data log segment (see datalog.go). The idx bucket maps
// the offset of a run's first message to: segment u32, position u64, count u32, then
// count u32 end positions relative to the run's start (message i is bytes
// [end(i-1), end(i)) of it), then count u32 crc32c of the bodies (runs written before
// the checksums have none). Sizes come from the index alone, so counting what fits a
// consume reads no message. Every body read from the data log is checked against its
// crc before it is used: served, put in a snapshot or sent to a follower.
//
// The entry is sealed too (bolt's pages carry no checksum): the top bit of count says
// that the value ends in the CRC-32C of the key and the rest of the value, checked each
// time the entry is read. An entry that fails it (IndexError) no longer says where its
// messages are, how long they are or what their crcs are, so none of them is served;
// its range runs from the end of the sound entry before it to the first of the sound
// entry after it, and Partition.Repair stores those messages again, fetched from
// another replica. Entries written before the seal are sealed when the store opens
// (sealOld).
//
// A partition written by a broker before the data log has its first messages in the
// msg bucket, a bolt value each; they precede every run, and are read from there.

var bIdx = []byte("idx")

// runMsgs bounds a run, so that reading one message of it never decodes a huge entry.
const runMsgs = 4096

// sealedRun marks a sealed entry in its count.
const sealedRun = 1 << 31

var (
	errBadRun = errors.New("malformed index entry")
	crcTable  = crc32.MakeTable(crc32.Castagnoli)
)

type run struct {
	first uint64
	at    dataPos
	ends  []byte // count u32 end positions
	crcs  []byte // count u32 crc32c, or nil
}

func parseRun(k, v []byte) (run, error) {
	if len(k) != 8 || len(v) < 16 {
		return run{}, errBadRun
	}
	r := run{first: binary.BigEndian.Uint64(k)}
	r.at = dataPos{binary.BigEndian.Uint32(v), binary.BigEndian.Uint64(v[4:])}
	n := int(binary.BigEndian.Uint32(v[12:]))
	if n&sealedRun != 0 {
		if len(v) < 20 || binary.BigEndian.Uint32(v[len(v)-sealSize:]) != valueSum(k, v[:len(v)-sealSize]) {
			return r, errBadRun
		}
		v, n = v[:len(v)-sealSize], n&^sealedRun
	}
	switch {
	case n == 0 || n > runMsgs:
		return r, errBadRun
	case len(v) == 16+8*n:
		r.ends, r.crcs = v[16:16+4*n], v[16+4*n:]
	case len(v) == 16+4*n:
		r.ends = v[16:]
	default:
		return r, errBadRun
	}
	for i := 1; i < n; i++ {
		if r.end(i) < r.end(i-1) {
			return r, errBadRun
		}
	}
	return r, nil
}

func (r run) count() int { return len(r.ends) / 4 }

func (r run) end(i int) uint64 {
	if i < 0 {
		return 0
	}
	return uint64(binary.BigEndian.Uint32(r.ends[4*i:]))
}

func (r run) size(i int) uint64 { return r.end(i) - r.end(i-1) }

// check returns nil if body is message i of the run (or the run has no crcs).
func (r run) check(i int, body []byte) error {
	if r.crcs == nil || crc32.Checksum(body, crcTable) == binary.BigEndian.Uint32(r.crcs[4*i:]) {
		return nil
	}
	return &CorruptError{Offset: r.first + uint64(i), Seg: r.at.seg, Pos: r.at.off + r.end(i-1)}
}

// CorruptError is a message body that does not match its checksum: it is never served.
type CorruptError struct {
	Group  string
	Offset uint64 // the message's
	Seg    uint32 // where its body is in the data log
	Pos    uint64
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store: message %d of %s is damaged on disk (checksum mismatch in data log segment %d at byte %d); it is repaired from another replica",
		e.Offset, e.Group, e.Seg, e.Pos)
}

// read returns messages [i, i+n) of the run, one read for all of them, each checked.
func (r run) read(dl *dataLog, i, n int) ([][]byte, error) {
	start, end := r.end(i-1), r.end(i+n-1)
	buf, err := dl.read(dataPos{r.at.seg, r.at.off + start}, end-start)
	if err != nil {
		return nil, &CorruptError{Offset: r.first + uint64(i), Seg: r.at.seg, Pos: r.at.off + start}
	}
	out := make([][]byte, n)
	for j := range out {
		out[j] = buf[r.end(i+j-1)-start : r.end(i+j)-start : r.end(i+j)-start]
		if err := r.check(i+j, out[j]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// encodeRun returns the sealed entry of msgs, the messages from offset first, at at.
func encodeRun(first uint64, at dataPos, msgs [][]byte) []byte {
	v := binary.BigEndian.AppendUint32(make([]byte, 0, 16+8*len(msgs)+sealSize), at.seg)
	v = binary.BigEndian.AppendUint64(v, at.off)
	v = binary.BigEndian.AppendUint32(v, uint32(len(msgs))|sealedRun)
	var end uint32
	for _, m := range msgs {
		end += uint32(len(m))
		v = binary.BigEndian.AppendUint32(v, end)
	}
	for _, m := range msgs {
		v = binary.BigEndian.AppendUint32(v, crc32.Checksum(m, crcTable))
	}
	return sealValue(u64key(first), v)
}

// sealRun seals v, an entry stored under key k (sealed or not: the seal is replaced).
func sealRun(k, v []byte) []byte {
	n := binary.BigEndian.Uint32(v[12:])
	if n&sealedRun != 0 {
		v = v[:len(v)-sealSize]
	}
	out := append(make([]byte, 0, len(v)+sealSize), v...)
	binary.BigEndian.PutUint32(out[12:], n|sealedRun)
	return sealValue(k, out)
}

// IndexError is an index entry that fails its seal (or cannot be parsed): messages
// [From, To) are not served until they are repaired.
type IndexError struct {
	Group    string
	From, To uint64
}

func (e *IndexError) Error() string {
	return fmt.Sprintf("store: the index of messages %d to %d of %s is damaged on disk (checksum mismatch in data.db); they are not served until repaired from another replica",
		e.From, e.To-1, e.Group)
}

// damagedMark is the entry that stands for a range still damaged after a repair of
// its first part (Partition.Repair): it fails to parse, as the entry it replaces did.
var damagedMark = []byte("damaged: awaiting repair")

// damagedRange returns the messages the damaged entry under key k covers: from the end
// of the sound entry before it (or the partition's start) to the first of the sound
// entry after it (or the partition's next offset).
func damagedRange(root *bolt.Bucket, k []byte) (from, to uint64) {
	from = storedStart(root)
	c := root.Bucket(bIdx).Cursor()
	c.Seek(k)
	for pk, pv := c.Prev(); pk != nil; pk, pv = c.Prev() {
		if r, err := parseRun(pk, pv); err == nil {
			from = r.first + uint64(r.count())
			break
		}
	}
	to = storedNext(root)
	c.Seek(k)
	for nk, nv := c.Next(); nk != nil; nk, nv = c.Next() {
		if r, err := parseRun(nk, nv); err == nil {
			to = r.first
			break
		}
	}
	return from, max(from, to)
}

// storedNext is the next offset recorded with the group's state.
func storedNext(root *bolt.Bucket) uint64 {
	if v, err := stateValue(root.Bucket(bMeta).Get(keyState)); err == nil {
		return binary.BigEndian.Uint64(v[8:])
	}
	return 0
}

// storedEnd is the offset after the group's last stored message.
func storedEnd(root *bolt.Bucket) (uint64, error) {
	if k, v := root.Bucket(bIdx).Cursor().Last(); k != nil {
		r, err := parseRun(k, v)
		if err != nil {
			_, to := damagedRange(root, k)
			return to, nil
		}
		return r.first + uint64(r.count()), nil
	}
	return storedStart(root), nil // retention may have deleted every message
}

// putMessages stores msgs, the messages from offset first, through the data log's
// current transaction. Offsets already stored are skipped: messages never change once
// committed, and a snapshot sent again (or after a partial one) repeats them.
func putMessages(dl *dataLog, root *bolt.Bucket, first uint64, msgs [][]byte) error {
	if len(msgs) == 0 {
		return nil
	}
	end, err := storedEnd(root)
	if err != nil {
		return err
	}
	if first > end {
		return fmt.Errorf("store: messages from offset %d, but only %d stored", first, end)
	}
	if end-first >= uint64(len(msgs)) {
		return nil
	}
	b := root.Bucket(bIdx)
	b.FillPercent = 1 // keys only grow: pack pages full
	return putRuns(dl, b, end, msgs[end-first:])
}

// putRuns indexes msgs, the messages from offset first, in runs of at most runMsgs.
func putRuns(dl *dataLog, idx *bolt.Bucket, first uint64, msgs [][]byte) error {
	for len(msgs) > 0 {
		n := min(len(msgs), runMsgs)
		if err := idx.Put(u64key(first), encodeRun(first, dl.add(msgs[:n]), msgs[:n])); err != nil {
			return err
		}
		first, msgs = first+uint64(n), msgs[n:]
	}
	return nil
}

// walk calls fn for each run holding messages from offset from on, in order, with the
// index in the run of the first message wanted; fn returns how many messages it took
// from there and whether it wants more. walk stops at the end of the messages (or at a
// gap) and returns the offset after the last message taken.
func walk(root *bolt.Bucket, from uint64, fn func(r run, i int) (took int, more bool, err error)) (uint64, error) {
	off := from
	step := func(r run) (bool, error) {
		i := int(off - r.first)
		if i >= r.count() {
			return true, nil
		}
		took, more, err := fn(r, i)
		off += uint64(took)
		return more && took == r.count()-i, err
	}
	c := root.Bucket(bIdx).Cursor()
	k, v := c.Seek(u64key(off))
	switch {
	case k == nil:
		k, v = c.Last()
	case binary.BigEndian.Uint64(k) > off:
		k, v = c.Prev()
	}
	for ; k != nil; k, v = c.Next() {
		r, err := parseRun(k, v)
		if err != nil {
			if from, to := damagedRange(root, k); off < to {
				return off, &IndexError{From: from, To: to}
			}
			continue
		}
		if r.first > off {
			break // a gap: the caller sees fewer messages than it asked for
		}
		if more, err := step(r); !more || err != nil {
			return off, err
		}
	}
	return off, nil
}

// runsBySegment counts a group's sound runs per data log segment. (Where a damaged
// run points is unknown: its segment keeps a count it will not give back, and stays.)
func runsBySegment(root *bolt.Bucket) map[uint32]int64 {
	out := map[uint32]int64{}
	root.Bucket(bIdx).ForEach(func(k, v []byte) error {
		if r, err := parseRun(k, v); err == nil {
			out[r.at.seg]++
		}
		return nil
	})
	return out
}
