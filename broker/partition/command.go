package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/quorumq/quorumq/internal/decode"
)

// Command types. Every command starts with a type byte and a version byte so that a
// newer broker can still apply the entries an older one wrote; a pair this binary does
// not know halts the replica (CheckCommand) instead of being guessed at.
const (
	CmdProduce  byte = 1
	CmdRegister byte = 2
	CmdConsume  byte = 3
	CmdTruncate byte = 4

	version1 byte = 1
	// version2 of CmdProduce is version 1's payload followed by the proposer's clock
	// (Unix ms, i64) when it made the entry: what time-based retention goes by, the
	// same on every replica (see StampProduce).
	version2 byte = 2
)

// Status is the outcome of one command (or of one batch inside a produce command).
type Status byte

const (
	StatusOK              Status = 0
	StatusDuplicate       Status = 1 // a retried produce: already stored, same offsets
	StatusStaleSequence   Status = 2 // sequence older than the producer's last one
	StatusUnknownConsumer Status = 3
	StatusOffsetAhead     Status = 4 // the consumer expected an offset it never reached
	StatusBadCommand      Status = 5
)

// Truncate deletes the messages before offset Before (retention): every replica
// deletes the same prefix because the offset is in the command. The partition's leader
// computes it from its own store and clock; At is that clock (Unix ms), for the record.
// Consumers whose offset falls below the new start move to it.
type Truncate struct {
	Before uint64
	At     int64
}

// TruncateResult is the partition's first offset after a Truncate.
type TruncateResult struct {
	Status Status
	Start  uint64
}

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusDuplicate:
		return "duplicate"
	case StatusStaleSequence:
		return "stale sequence number"
	case StatusUnknownConsumer:
		return "unknown consumer"
	case StatusOffsetAhead:
		return "expected offset is ahead of the consumer"
	case StatusBadCommand:
		return "bad command"
	}
	return fmt.Sprintf("status %d", byte(s))
}

// Batch is one client's produce request: its messages are stored contiguously.
// An empty Producer disables de-duplication.
type Batch struct {
	Producer string
	Seq      uint64
	Msgs     [][]byte
}

// ProduceResult says where a batch was stored.
type ProduceResult struct {
	Status Status
	First  uint64 // offset of the batch's first message
	Count  uint32
}

// ConsumeRequest asks for up to Max messages (and about MaxBytes, at least one message)
// from a consumer's position. With HasExpected, the request names the offset the
// consumer believes it is at, which makes a retry after a lost reply return the same
// messages rather than the next ones.
type ConsumeRequest struct {
	Consumer    string
	HasExpected bool
	Expected    uint64
	Max         uint32
	MaxBytes    uint32
}

// ConsumeResult is the range [From, From+Count) handed to the consumer; Next is the
// partition's next offset at that time (so Next-(From+Count) messages are left).
type ConsumeResult struct {
	Status Status
	From   uint64
	Count  uint32
	Next   uint64
}

// RegisterResult gives the consumer's offset after registering (idempotent).
type RegisterResult struct {
	Status Status
	Offset uint64
}

var errShort = errors.New("partition: truncated command")

// CheckCommand says whether this binary knows cmd's type and version. A command too
// short to have them is malformed rather than newer, and answered StatusBadCommand.
func CheckCommand(cmd []byte) error {
	if len(cmd) < 2 {
		return nil
	}
	if known(cmd[0], cmd[1]) {
		return nil
	}
	if known(cmd[0], version1) {
		return fmt.Errorf("partition: command type %d has version %d, unknown to this binary", cmd[0], cmd[1])
	}
	return fmt.Errorf("partition: command type %d is unknown to this binary", cmd[0])
}

// known says whether this binary applies commands of type t and version v.
func known(t, v byte) bool {
	switch t {
	case CmdProduce:
		return v == version1 || v == version2
	case CmdRegister, CmdConsume, CmdTruncate:
		return v == version1
	}
	return false
}

// EncodeProduce builds one produce command carrying several client batches: the
// broker's group commit puts every produce waiting for a partition into one entry,
// encoded here straight from the requests (the messages' one copy on the way in).
// The buffer has room for StampProduce.
func EncodeProduce(batches []Batch) []byte {
	n := ProduceOverhead
	for _, b := range batches {
		n += ProduceSize(b)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, CmdProduce, version1)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(batches)))
	for _, b := range batches {
		buf = appendString(buf, b.Producer)
		buf = binary.BigEndian.AppendUint64(buf, b.Seq)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(b.Msgs)))
		for _, m := range b.Msgs {
			buf = appendBytes(buf, m)
		}
	}
	return buf
}

// ProduceOverhead is a stamped produce command's size beside its batches': type,
// version, batch count and StampProduce's clock.
const ProduceOverhead = 2 + 4 + 8

// ProduceSize is what b adds to a produce command: the group commit bounds an
// entry's size before it encodes it.
func ProduceSize(b Batch) int {
	n := 4 + len(b.Producer) + 8 + 4
	for _, m := range b.Msgs {
		n += 4 + len(m)
	}
	return n
}

// StampProduce makes a produce command of version 1 (EncodeProduce) the version 2
// entry that carries at, the proposer's clock. It reuses cmd.
func StampProduce(cmd []byte, at time.Time) []byte {
	cmd[1] = version2
	return binary.BigEndian.AppendUint64(cmd, uint64(at.UnixMilli()))
}

// EncodeTruncate builds a truncate command.
func EncodeTruncate(t Truncate) []byte {
	buf := binary.BigEndian.AppendUint64([]byte{CmdTruncate, version1}, t.Before)
	return binary.BigEndian.AppendUint64(buf, uint64(t.At))
}

func decodeTruncate(buf []byte) (Truncate, error) {
	d := decode.NewReader(buf)
	t := Truncate{Before: d.Uint64("integer"), At: int64(d.Uint64("integer"))}
	return t, d.Done()
}

func encodeTruncateResult(r TruncateResult) []byte {
	return binary.BigEndian.AppendUint64([]byte{byte(r.Status)}, r.Start)
}

// DecodeTruncateResult reads the result of a truncate command.
func DecodeTruncateResult(buf []byte) (TruncateResult, error) {
	d := decode.NewReader(buf)
	r := TruncateResult{Status: Status(d.Byte("byte")), Start: d.Uint64("integer")}
	return r, d.Done()
}

// EncodeRegister builds a register-consumer command.
func EncodeRegister(consumer string) []byte {
	return appendString([]byte{CmdRegister, version1}, consumer)
}

// EncodeConsume builds a consume command.
func EncodeConsume(r ConsumeRequest) []byte {
	buf := appendString([]byte{CmdConsume, version1}, r.Consumer)
	has := byte(0)
	if r.HasExpected {
		has = 1
	}
	buf = append(buf, has)
	buf = binary.BigEndian.AppendUint64(buf, r.Expected)
	buf = binary.BigEndian.AppendUint32(buf, r.Max)
	return binary.BigEndian.AppendUint32(buf, r.MaxBytes)
}

// decodeProduce decodes the payload after the type/version bytes. Message slices
// alias buf (the Raft log entry), which lives until the entry is applied.
func decodeProduce(buf []byte) ([]Batch, error) {
	d := decode.NewReader(buf)
	// A batch takes at least 16 bytes and a message 4, which bounds the counts before
	// allocating: garbage never costs more than a few times its own size.
	n := d.Uint32("count")
	if d.Err() == nil && int(n) > d.Len()/16 {
		return nil, errShort
	}
	batches := make([]Batch, 0, n)
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		b := Batch{Producer: string(d.Bytes32("bytes")), Seq: d.Uint64("integer")}
		cnt := d.Uint32("count")
		if d.Err() == nil && int(cnt) > d.Len()/4 {
			return nil, errShort
		}
		b.Msgs = make([][]byte, 0, cnt)
		for j := uint32(0); j < cnt && d.Err() == nil; j++ {
			b.Msgs = append(b.Msgs, d.Bytes32("bytes"))
		}
		batches = append(batches, b)
	}
	return batches, d.Done()
}

func decodeConsume(buf []byte) (ConsumeRequest, error) {
	d := decode.NewReader(buf)
	r := ConsumeRequest{Consumer: string(d.Bytes32("bytes"))}
	r.HasExpected = d.Byte("byte") == 1
	r.Expected = d.Uint64("integer")
	r.Max = d.Uint32("count")
	r.MaxBytes = d.Uint32("count")
	return r, d.Done()
}

// EncodeProduceResults / DecodeProduceResults carry one result per batch.
func EncodeProduceResults(rs []ProduceResult) []byte {
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+13*len(rs)), uint32(len(rs)))
	for _, r := range rs {
		buf = append(buf, byte(r.Status))
		buf = binary.BigEndian.AppendUint64(buf, r.First)
		buf = binary.BigEndian.AppendUint32(buf, r.Count)
	}
	return buf
}

func DecodeProduceResults(buf []byte) ([]ProduceResult, error) {
	d := decode.NewReader(buf)
	n := d.Uint32("count")
	if d.Err() == nil && int(n)*13 > d.Len() {
		return nil, errShort
	}
	rs := make([]ProduceResult, n)
	for i := range rs {
		rs[i] = ProduceResult{Status: Status(d.Byte("byte")), First: d.Uint64("integer"), Count: d.Uint32("count")}
	}
	return rs, d.Done()
}

func encodeConsumeResult(r ConsumeResult) []byte {
	buf := append(make([]byte, 0, 21), byte(r.Status))
	buf = binary.BigEndian.AppendUint64(buf, r.From)
	buf = binary.BigEndian.AppendUint32(buf, r.Count)
	return binary.BigEndian.AppendUint64(buf, r.Next)
}

func DecodeConsumeResult(buf []byte) (ConsumeResult, error) {
	d := decode.NewReader(buf)
	r := ConsumeResult{Status: Status(d.Byte("byte")), From: d.Uint64("integer"), Count: d.Uint32("count"), Next: d.Uint64("integer")}
	return r, d.Done()
}

func encodeRegisterResult(r RegisterResult) []byte {
	return binary.BigEndian.AppendUint64([]byte{byte(r.Status)}, r.Offset)
}

func DecodeRegisterResult(buf []byte) (RegisterResult, error) {
	d := decode.NewReader(buf)
	r := RegisterResult{Status: Status(d.Byte("byte")), Offset: d.Uint64("integer")}
	return r, d.Done()
}

func appendString(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
	return append(buf, b...)
}
