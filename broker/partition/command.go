package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
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
	switch cmd[0] {
	case CmdProduce, CmdRegister, CmdConsume:
		if cmd[1] == version1 {
			return nil
		}
		return fmt.Errorf("partition: command type %d has version %d, unknown to this binary", cmd[0], cmd[1])
	}
	return fmt.Errorf("partition: command type %d is unknown to this binary", cmd[0])
}

// EncodeProduce builds one produce command carrying several client batches: the
// broker's group commit puts every produce waiting for a partition into one entry.
func EncodeProduce(batches []Batch) []byte {
	n := 2 + 4
	for _, b := range batches {
		n += 4 + len(b.Producer) + 8 + 4
		for _, m := range b.Msgs {
			n += 4 + len(m)
		}
	}
	buf := make([]byte, 0, n+8) // room for StampProduce
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

// MergeProduce joins produce commands (from EncodeProduce) into one, their batches
// in order: the group commit encodes each request as it arrives and joins them only
// when several wait for the same entry.
func MergeProduce(cmds [][]byte) ([]byte, error) {
	if len(cmds) == 1 {
		return cmds[0], nil
	}
	n, count := 2+4, uint32(0)
	for _, c := range cmds {
		if len(c) < 6 || c[0] != CmdProduce || c[1] != version1 {
			return nil, errors.New("partition: not a produce command")
		}
		n += len(c) - 6
		count += binary.BigEndian.Uint32(c[2:6])
	}
	buf := binary.BigEndian.AppendUint32(append(make([]byte, 0, n), CmdProduce, version1), count)
	for _, c := range cmds {
		buf = append(buf, c[6:]...)
	}
	return buf, nil
}

// StampProduce makes a produce command of version 1 (EncodeProduce, MergeProduce) the
// version 2 entry that carries at, the proposer's clock. It reuses cmd.
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
	d := decoder{buf: buf}
	t := Truncate{Before: d.u64(), At: int64(d.u64())}
	return t, d.done()
}

func encodeTruncateResult(r TruncateResult) []byte {
	return binary.BigEndian.AppendUint64([]byte{byte(r.Status)}, r.Start)
}

// DecodeTruncateResult reads the result of a truncate command.
func DecodeTruncateResult(buf []byte) (TruncateResult, error) {
	d := decoder{buf: buf}
	r := TruncateResult{Status: Status(d.u8()), Start: d.u64()}
	return r, d.done()
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
	d := decoder{buf: buf}
	// A batch takes at least 16 bytes and a message 4, which bounds the counts before
	// allocating: garbage never costs more than a few times its own size.
	n := d.u32()
	if d.err == nil && int(n) > len(d.buf)/16 {
		return nil, errShort
	}
	batches := make([]Batch, 0, n)
	for i := uint32(0); i < n && d.err == nil; i++ {
		b := Batch{Producer: string(d.bytes()), Seq: d.u64()}
		cnt := d.u32()
		if d.err == nil && int(cnt) > len(d.buf)/4 {
			return nil, errShort
		}
		b.Msgs = make([][]byte, 0, cnt)
		for j := uint32(0); j < cnt && d.err == nil; j++ {
			b.Msgs = append(b.Msgs, d.bytes())
		}
		batches = append(batches, b)
	}
	return batches, d.done()
}

func decodeConsume(buf []byte) (ConsumeRequest, error) {
	d := decoder{buf: buf}
	r := ConsumeRequest{Consumer: string(d.bytes())}
	r.HasExpected = d.u8() == 1
	r.Expected = d.u64()
	r.Max = d.u32()
	r.MaxBytes = d.u32()
	return r, d.done()
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
	d := decoder{buf: buf}
	n := d.u32()
	if d.err == nil && int(n)*13 > len(d.buf) {
		return nil, errShort
	}
	rs := make([]ProduceResult, n)
	for i := range rs {
		rs[i] = ProduceResult{Status: Status(d.u8()), First: d.u64(), Count: d.u32()}
	}
	return rs, d.done()
}

func encodeConsumeResult(r ConsumeResult) []byte {
	buf := append(make([]byte, 0, 21), byte(r.Status))
	buf = binary.BigEndian.AppendUint64(buf, r.From)
	buf = binary.BigEndian.AppendUint32(buf, r.Count)
	return binary.BigEndian.AppendUint64(buf, r.Next)
}

func DecodeConsumeResult(buf []byte) (ConsumeResult, error) {
	d := decoder{buf: buf}
	r := ConsumeResult{Status: Status(d.u8()), From: d.u64(), Count: d.u32(), Next: d.u64()}
	return r, d.done()
}

func encodeRegisterResult(r RegisterResult) []byte {
	return binary.BigEndian.AppendUint64([]byte{byte(r.Status)}, r.Offset)
}

func DecodeRegisterResult(buf []byte) (RegisterResult, error) {
	d := decoder{buf: buf}
	r := RegisterResult{Status: Status(d.u8()), Offset: d.u64()}
	return r, d.done()
}

func appendString(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
	return append(buf, b...)
}

// decoder reads big-endian fields and remembers the first error, so decoding code
// reads straight through and checks once.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n < 0 || len(d.buf) < n {
		d.err = errShort
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) u8() byte {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) bytes() []byte {
	return d.take(int(d.u32()))
}

func (d *decoder) done() error {
	if d.err == nil && len(d.buf) != 0 {
		return fmt.Errorf("partition: %d trailing bytes in command", len(d.buf))
	}
	return d.err
}
