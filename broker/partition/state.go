package partition

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"github.com/quorumq/quorumq/internal/decode"
)

// Producer remembers a producer's last batch so that a retry of it is acknowledged
// again with the same offsets instead of being stored twice.
type Producer struct {
	Seq   uint64
	First uint64
	Count uint32
}

// State is everything the partition keeps besides the message bodies. It is small:
// it grows with the number of consumers and producers, never with bytes stored.
type State struct {
	Applied   uint64 // last Raft index applied
	Start     uint64 // first offset kept: retention deleted the messages before it
	Next      uint64 // offset the next message gets
	Bytes     uint64 // total size of messages [Start, Next)
	Consumers map[string]uint64
	Producers map[string]Producer
}

// NewState returns the state of an empty partition.
func NewState() State {
	return State{Consumers: map[string]uint64{}, Producers: map[string]Producer{}}
}

func (s State) clone() State {
	c := s
	c.Consumers = make(map[string]uint64, len(s.Consumers))
	for k, v := range s.Consumers {
		c.Consumers[k] = v
	}
	c.Producers = make(map[string]Producer, len(s.Producers))
	for k, v := range s.Producers {
		c.Producers[k] = v
	}
	return c
}

// stateVersion 2 added Start after Bytes; version 1 (Start 0) is still read.
const stateVersion byte = 2

// EncodeState writes the state with sorted keys so equal states encode equally.
func EncodeState(s State) []byte {
	buf := []byte{stateVersion}
	buf = binary.BigEndian.AppendUint64(buf, s.Applied)
	buf = binary.BigEndian.AppendUint64(buf, s.Next)
	buf = binary.BigEndian.AppendUint64(buf, s.Bytes)
	buf = binary.BigEndian.AppendUint64(buf, s.Start)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s.Consumers)))
	for _, k := range sortedKeys(s.Consumers) {
		buf = appendString(buf, k)
		buf = binary.BigEndian.AppendUint64(buf, s.Consumers[k])
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s.Producers)))
	for _, k := range sortedKeys(s.Producers) {
		p := s.Producers[k]
		buf = appendString(buf, k)
		buf = EncodeProducer(buf, p)
	}
	return buf
}

// DecodeState is the inverse of EncodeState.
func DecodeState(buf []byte) (State, error) {
	d := decode.NewReader(buf)
	v := d.Byte("byte")
	if d.Err() == nil && v != 1 && v != stateVersion {
		return State{}, fmt.Errorf("partition: unknown state version %d", v)
	}
	s := NewState()
	s.Applied, s.Next, s.Bytes = d.Uint64("integer"), d.Uint64("integer"), d.Uint64("integer")
	if v >= 2 {
		s.Start = d.Uint64("integer")
	}
	for n := d.Uint32("count"); n > 0 && d.Err() == nil; n-- {
		k := string(d.Bytes32("bytes"))
		s.Consumers[k] = d.Uint64("integer")
	}
	for n := d.Uint32("count"); n > 0 && d.Err() == nil; n-- {
		k := string(d.Bytes32("bytes"))
		s.Producers[k] = Producer{Seq: d.Uint64("integer"), First: d.Uint64("integer"), Count: d.Uint32("count")}
	}
	return s, d.Done()
}

// EncodeProducer appends a producer record (also the store's on-disk form).
func EncodeProducer(buf []byte, p Producer) []byte {
	buf = binary.BigEndian.AppendUint64(buf, p.Seq)
	buf = binary.BigEndian.AppendUint64(buf, p.First)
	return binary.BigEndian.AppendUint32(buf, p.Count)
}

// DecodeProducer is the inverse of EncodeProducer.
func DecodeProducer(buf []byte) (Producer, error) {
	d := decode.NewReader(buf)
	p := Producer{Seq: d.Uint64("integer"), First: d.Uint64("integer"), Count: d.Uint32("count")}
	return p, d.Done()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// A snapshot stream is: a version byte, the length of the encoded state, the state,
// then (only when a snapshot travels to another replica) every message [Start, Next) as
// length-prefixed records. The FSM writes just the prefix: the message bodies are
// already in the store and never change, so the snapshot store appends them only
// when it streams the snapshot to a follower (see broker/internal/store).
const snapshotVersion byte = 1

// WriteSnapshotPrefix writes the version and the state.
func WriteSnapshotPrefix(w io.Writer, s State) error {
	enc := EncodeState(s)
	hdr := binary.BigEndian.AppendUint32([]byte{snapshotVersion}, uint32(len(enc)))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(enc)
	return err
}

// ReadSnapshotPrefix reads what WriteSnapshotPrefix wrote and returns the encoded
// state too (the snapshot store keeps it as is).
func ReadSnapshotPrefix(r io.Reader) (State, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return State{}, nil, fmt.Errorf("partition: snapshot header: %w", err)
	}
	if hdr[0] != snapshotVersion {
		return State{}, nil, fmt.Errorf("partition: unknown snapshot version %d", hdr[0])
	}
	enc := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(r, enc); err != nil {
		return State{}, nil, fmt.Errorf("partition: snapshot state: %w", err)
	}
	s, err := DecodeState(enc)
	return s, enc, err
}

// SnapshotPrefixLen is the size of the prefix for an encoded state of n bytes.
func SnapshotPrefixLen(n int) int64 { return 5 + int64(n) }
