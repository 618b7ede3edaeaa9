package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quorumq/quorumq/broker/partition"
	bolt "go.etcd.io/bbolt"
)

// SnapshotStore is the group's raft.SnapshotStore. A snapshot on disk is only the
// partition's small state (offsets, producers, applied index): message bodies never
// change once written, so copying them at every snapshot would rewrite the whole
// partition each time. When raft opens a snapshot to send it to a follower, the
// stream is the state followed by every message [0, Next) read from the data log
// a chunk at a time; the follower's sink writes those messages straight into its own
// data log and keeps only the state. Neither side ever holds a partition in memory.
type SnapshotStore struct{ g *Group }

// SnapshotStore returns the group's snapshot store.
func (g *Group) SnapshotStore() *SnapshotStore { return &SnapshotStore{g} }

// retainSnapshots is how many snapshots are kept: raft needs one; the previous one
// lets a follower finish a transfer that started just before a newer snapshot.
const retainSnapshots = 2

// chunkBytes bounds the messages moved per transaction when snapshots stream.
const chunkBytes = 4 << 20

var snapSeq atomic.Uint64

// Create implements raft.SnapshotStore.
func (s *SnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, conf raft.Configuration,
	confIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	meta := raft.SnapshotMeta{
		Version: version, Index: index, Term: term,
		ID:            fmt.Sprintf("%d-%d-%d-%d", term, index, time.Now().UnixMilli(), snapSeq.Add(1)),
		Configuration: conf, ConfigurationIndex: confIndex,
	}
	pr, pw := io.Pipe()
	sk := &sink{store: s, meta: meta, pw: pw, done: make(chan error, 1)}
	go func() {
		err := sk.receive(pr)
		pr.CloseWithError(err) // unblocks a writer if receive stopped early
		sk.done <- err
	}()
	return sk, nil
}

type sink struct {
	store *SnapshotStore
	meta  raft.SnapshotMeta
	pw    *io.PipeWriter
	done  chan error
	state []byte

	finish sync.Once
	err    error
}

func (sk *sink) ID() string                  { return sk.meta.ID }
func (sk *sink) Write(p []byte) (int, error) { return sk.pw.Write(p) }

func (sk *sink) Cancel() error {
	sk.finish.Do(func() {
		sk.pw.CloseWithError(errors.New("store: snapshot cancelled"))
		<-sk.done
		sk.err = errors.New("store: snapshot cancelled")
	})
	return nil
}

// Close stores the snapshot. Raft calls it after Persist, which also calls it: only
// the first call (or Cancel) counts.
func (sk *sink) Close() error {
	sk.finish.Do(func() {
		sk.pw.Close()
		if sk.err = <-sk.done; sk.err != nil {
			return
		}
		sk.err = sk.store.g.update(bSnap, func(b *bolt.Bucket) error {
			if err := b.Put([]byte(sk.meta.ID), encodeSnapshot(sk.meta, sk.state)); err != nil {
				return err
			}
			return pruneSnapshots(b)
		})
	})
	return sk.err
}

// receive reads the state and, when the snapshot comes from another replica, the
// messages, which go straight to the data log.
func (sk *sink) receive(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	st, enc, err := partition.ReadSnapshotPrefix(br)
	if err != nil {
		return err
	}
	sk.state = enc
	g := sk.store.g
	if st.Start > 0 {
		// Retention deleted the messages before Start on the sender: the stream begins
		// there, and whatever this replica holds before it goes too.
		if err := g.updateData(func(root *bolt.Bucket) error { return truncate(g.db.data.dlog, root, st.Start) }); err != nil {
			return err
		}
	}
	var (
		off   = st.Start
		chunk [][]byte
		size  int
	)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		first, msgs := off-uint64(len(chunk)), chunk
		err := g.updateData(func(root *bolt.Bucket) error { return putMessages(g.db.data.dlog, root, first, msgs) })
		chunk, size = nil, 0
		return err
	}
	for {
		msg, err := readSnapshotMessage(br)
		if err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("store: snapshot message %d: %w", off, err)
		}
		chunk, size, off = append(chunk, msg), size+len(msg), off+1
		if size >= chunkBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if off != st.Start && off != st.Next {
		return fmt.Errorf("store: snapshot carried messages up to %d, state says %d", off, st.Next)
	}
	return nil
}

// withCRC marks a streamed message's length: a crc32c of the body follows it, which the
// receiver checks (streams from brokers before the checksums have none).
const withCRC = 1 << 31

// readSnapshotMessage reads one streamed message: length u32 (with withCRC, then
// crc32c u32), then the body.
func readSnapshotMessage(r io.Reader) ([]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n&withCRC != 0 {
		if _, err := io.ReadFull(r, hdr[4:]); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
	}
	msg := make([]byte, min(n&^withCRC, 1<<20)) // grown as read: a bad length must not allocate gigabytes
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	for rest := int(n&^withCRC) - len(msg); rest > 0; {
		more := make([]byte, min(rest, 1<<20))
		if _, err := io.ReadFull(r, more); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		msg, rest = append(msg, more...), rest-len(more)
	}
	if n&withCRC != 0 && crc32.Checksum(msg, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, errors.New("checksum mismatch: the body was damaged on the way or on the sender's disk")
	}
	return msg, nil
}

// A stored snapshot: index, term, configuration index, version, configuration
// length + configuration, then the encoded partition state.
func encodeSnapshot(m raft.SnapshotMeta, state []byte) []byte {
	conf := raft.EncodeConfiguration(m.Configuration)
	buf := binary.BigEndian.AppendUint64(nil, m.Index)
	buf = binary.BigEndian.AppendUint64(buf, m.Term)
	buf = binary.BigEndian.AppendUint64(buf, m.ConfigurationIndex)
	buf = append(buf, byte(m.Version)|snapSealed)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(conf)))
	buf = append(buf, conf...)
	return sealValue([]byte(m.ID), append(buf, state...))
}

// snapSealed marks, in the version byte, a stored snapshot that ends in the seal of its
// ID and value (sealed.go): it carries the partition state a follower is sent.
// Snapshots stored before the seal have a bare version (0 or 1) and are read unchecked.
const snapSealed = 0x80

func decodeSnapshot(id string, v []byte) (*raft.SnapshotMeta, partition.State, []byte, error) {
	if len(v) < 29 {
		return nil, partition.State{}, nil, fmt.Errorf("store: snapshot %s: %d bytes", id, len(v))
	}
	if v[24]&snapSealed != 0 {
		var err error
		if v, err = openValue([]byte(id), v, len(v)-sealSize); err != nil {
			return nil, partition.State{}, nil, fmt.Errorf("store: snapshot %s: %w", id, err)
		}
	}
	n := int(binary.BigEndian.Uint32(v[25:29]))
	if len(v) < 29+n {
		return nil, partition.State{}, nil, fmt.Errorf("store: snapshot %s: configuration cut short", id)
	}
	conf, err := decodeConfiguration(v[29 : 29+n])
	if err != nil {
		return nil, partition.State{}, nil, fmt.Errorf("store: snapshot %s: %w", id, err)
	}
	m := &raft.SnapshotMeta{
		ID: id, Index: binary.BigEndian.Uint64(v), Term: binary.BigEndian.Uint64(v[8:]),
		ConfigurationIndex: binary.BigEndian.Uint64(v[16:]), Version: raft.SnapshotVersion(v[24] &^ snapSealed),
		Configuration: conf,
	}
	enc := append([]byte(nil), v[29+n:]...)
	st, err := partition.DecodeState(enc)
	if err != nil {
		return nil, st, nil, err
	}
	// The size of the stream Open produces: raft sends exactly this many bytes.
	m.Size = partition.SnapshotPrefixLen(len(enc)) + 8*int64(st.Next-st.Start) + int64(st.Bytes)
	return m, st, enc, nil
}

// decodeConfiguration is raft.DecodeConfiguration, which panics on bytes it cannot
// decode: a damaged stored snapshot is an error, not a crash.
func decodeConfiguration(b []byte) (conf raft.Configuration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("configuration: %v", r)
		}
	}()
	return raft.DecodeConfiguration(append([]byte(nil), b...)), nil
}

func listSnapshots(b *bolt.Bucket) ([]*raft.SnapshotMeta, error) {
	var out []*raft.SnapshotMeta
	err := b.ForEach(func(k, v []byte) error {
		m, _, _, err := decodeSnapshot(string(k), v)
		if err == nil {
			out = append(out, m)
		}
		return err
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Index != out[j].Index {
			return out[i].Index > out[j].Index
		}
		return out[i].ID > out[j].ID
	})
	return out, err
}

func pruneSnapshots(b *bolt.Bucket) error {
	all, err := listSnapshots(b)
	if err != nil {
		return err
	}
	for _, m := range all[min(retainSnapshots, len(all)):] {
		if err := b.Delete([]byte(m.ID)); err != nil {
			return err
		}
	}
	return nil
}

// Check reads every stored snapshot of the group: ErrDamaged if one fails its checksum.
func (s *SnapshotStore) Check() error {
	_, err := s.List()
	return err
}

// List implements raft.SnapshotStore (newest first).
func (s *SnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	var out []*raft.SnapshotMeta
	err := s.g.view(bSnap, func(b *bolt.Bucket) error {
		var err error
		out, err = listSnapshots(b)
		return err
	})
	return out, err
}

// Open implements raft.SnapshotStore. The messages part is produced lazily, so a
// reader that stops after the state (a local restore) reads no messages at all.
func (s *SnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	var (
		meta *raft.SnapshotMeta
		st   partition.State
	)
	err := s.g.view(bSnap, func(b *bolt.Bucket) error {
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("store: snapshot %s not found", id)
		}
		var err error
		meta, st, _, err = decodeSnapshot(id, v)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	var prefix bytes.Buffer
	if err := partition.WriteSnapshotPrefix(&prefix, st); err != nil {
		return nil, nil, err
	}
	msgs := &messageReader{g: s.g, next: st.Start, end: st.Next}
	return meta, io.NopCloser(io.MultiReader(&prefix, msgs)), nil
}

// messageReader streams messages [next, end) as length-prefixed records, one bolt
// read transaction per chunk (a long read transaction would stall bolt's writers when
// the file grows).
type messageReader struct {
	g         *Group
	next, end uint64
	buf       bytes.Buffer
}

func (r *messageReader) Read(p []byte) (int, error) {
	if r.buf.Len() == 0 {
		if r.next >= r.end {
			return 0, io.EOF
		}
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	return r.buf.Read(p)
}

func (r *messageReader) fill() error {
	r.buf.Reset()
	return r.g.viewData(func(root *bolt.Bucket) error {
		next, err := walk(root, r.next, func(rn run, i int) (int, bool, error) {
			k := 0
			for size := uint64(0); i+k < rn.count() && r.next+uint64(k) < r.end && size < chunkBytes; k++ {
				size += rn.size(i + k)
			}
			msgs, err := rn.read(r.g.db.data.dlog, i, k)
			for _, m := range msgs {
				var hdr [8]byte
				binary.BigEndian.PutUint32(hdr[:], uint32(len(m))|withCRC)
				binary.BigEndian.PutUint32(hdr[4:], crc32.Checksum(m, crcTable))
				r.buf.Write(hdr[:])
				r.buf.Write(m)
			}
			r.next += uint64(k)
			return k, r.next < r.end && r.buf.Len() < chunkBytes, err
		})
		if err == nil && r.buf.Len() == 0 {
			err = fmt.Errorf("store: message %d missing", next)
		}
		return r.g.corrupt(err)
	})
}
