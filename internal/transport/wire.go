package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Every connection starts with this preamble so a stray client (or a port
// scanner) is told apart from a peer before any frame is trusted.
const preamble = "QMQT\x02"

// A frame is [uint32 length][kind][uint64 id] followed by, per kind:
//
//	request:  [rpc][uvarint len][group] ([uvarint len][method][uvarint timeout ms] for rpcCustom) [payload]
//	response: [payload]
//	error:    [code][message]
//	cancel:   nothing (the caller of a Call gave up)
//
// The id pairs a response with its request, so many requests of many groups
// share one connection and their responses may come back in any order.
const (
	kindRequest  byte = 1
	kindResponse byte = 2
	kindError    byte = 3
	kindCancel   byte = 4
)

// RPC types. The raft ones mirror NetworkTransport's; rpcHeartbeat is an
// AppendEntries the sender already recognised as a heartbeat, so the receiver
// can take the fast path without decoding on the connection's reader.
const (
	rpcAppendEntries byte = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
	rpcHeartbeat
	rpcCustom
)

// Error codes of kindError frames.
const (
	codeUnknownGroup  byte = 1
	codeUnknownMethod byte = 2
	codeRemote        byte = 3 // a Handler's error
	codeRaft          byte = 4 // raft answered the RPC with an error
	codeShutdown      byte = 5 // the group closed before answering
)

const (
	// maxFrame bounds one message. Raft batches up to MaxAppendEntries (64
	// by default) entries per request: this holds 64 of a partition's
	// largest entries (4 MiB, broker's maxEntryBytes) with their framing; a
	// request over it would fail on every retry and stall the follower.
	// Snapshots stream outside frames.
	maxFrame = 260 << 20
	// firstChunk is all a frame costs before its bytes arrive: the buffer
	// starts there (or at what is already buffered) and doubles as the
	// frame's bytes come in, so a peer that announces a big frame and sends
	// nothing cannot make us allocate it (a 1 MiB length prefix used to cost
	// 1 MiB at once).
	firstChunk = 4 << 10
	maxName    = 1024
)

var errBadFrame = errors.New("malformed frame")

type frame struct {
	kind    byte
	id      uint64
	rpc     byte
	group   []byte // aliases the frame: map lookups by string(group) do not allocate
	method  []byte
	timeout uint64 // milliseconds, rpcCustom only; 0 = none
	code    byte
	payload []byte
}

// readFrame reads one frame; its payload aliases a fresh buffer the caller owns.
func readFrame(r *bufio.Reader) (frame, error) {
	n, err := readLength(r)
	if err != nil {
		return frame{}, err
	}
	body, err := readBody(r, n)
	if err != nil {
		return frame{}, err
	}
	return parseFrame(body)
}

// readLength reads a frame's length prefix and checks it before anything is
// allocated for the frame.
func readLength(r *bufio.Reader) (int, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxFrame {
		return 0, fmt.Errorf("%w: length %d (limit %d)", errBadFrame, n, maxFrame)
	}
	return int(n), nil
}

// readBody reads n bytes into a buffer that is never more than twice what
// has arrived (and at least firstChunk).
func readBody(r *bufio.Reader, n int) ([]byte, error) {
	b := make([]byte, 0, min(n, max(r.Buffered(), firstChunk)))
	for {
		got, err := io.ReadFull(r, b[len(b):cap(b)])
		b = b[:len(b)+got]
		if err != nil {
			return nil, noEOF(err)
		}
		if len(b) == n {
			return b, nil
		}
		grown := make([]byte, len(b), min(n, 2*cap(b)))
		copy(grown, b)
		b = grown
	}
}

// noEOF turns a clean EOF inside a frame into the error it is.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func parseFrame(b []byte) (frame, error) {
	var f frame
	f.kind = b[0]
	b = b[1:]
	if len(b) < 8 {
		return f, fmt.Errorf("%w: short header", errBadFrame)
	}
	f.id, b = binary.BigEndian.Uint64(b), b[8:]
	switch f.kind {
	case kindResponse:
		f.payload = b
	case kindCancel:
	case kindError:
		if len(b) < 1 {
			return f, fmt.Errorf("%w: empty error", errBadFrame)
		}
		f.code, f.payload = b[0], b[1:]
	case kindRequest:
		if len(b) < 1 {
			return f, fmt.Errorf("%w: no rpc type", errBadFrame)
		}
		f.rpc, b = b[0], b[1:]
		if f.rpc > rpcCustom {
			return f, fmt.Errorf("%w: unknown rpc type %d", errBadFrame, f.rpc)
		}
		var err error
		if f.group, b, err = readString(b); err != nil {
			return f, err
		}
		if f.rpc == rpcCustom {
			if f.method, b, err = readString(b); err != nil {
				return f, err
			}
			var n int
			if f.timeout, n = binary.Uvarint(b); n <= 0 {
				return f, fmt.Errorf("%w: bad timeout", errBadFrame)
			}
			b = b[n:]
		}
		f.payload = b
	default:
		return f, fmt.Errorf("%w: unknown kind %d", errBadFrame, f.kind)
	}
	return f, nil
}

func readString(b []byte) ([]byte, []byte, error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > maxName || uint64(len(b)-n) < l {
		return nil, nil, fmt.Errorf("%w: bad name", errBadFrame)
	}
	return b[n : n+int(l)], b[n+int(l):], nil
}

// startFrame appends a frame header with a length placeholder that
// finishFrame fills in.
func startFrame(b []byte, kind byte, id uint64) []byte {
	b = append(b, 0, 0, 0, 0, kind)
	return binary.BigEndian.AppendUint64(b, id)
}

// setID stamps a request frame built before its id was known.
func setID(b []byte, id uint64) { binary.BigEndian.PutUint64(b[5:], id) }

func finishFrame(b []byte) ([]byte, error) {
	n := len(b) - 4
	if n > maxFrame {
		return nil, fmt.Errorf("transport: message of %d bytes exceeds the %d byte frame limit", n, maxFrame)
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// requestFrame builds a request; conn.start stamps its id.
func requestFrame(rpc byte, group, method string, timeoutMs uint64, payload []byte) ([]byte, error) {
	b := startRequest(make([]byte, 0, 32+len(group)+len(method)+len(payload)), rpc, group)
	if rpc == rpcCustom {
		b = appendString(b, method)
		b = binary.AppendUvarint(b, timeoutMs)
	}
	return finishFrame(append(b, payload...))
}

// startRequest appends the header of a request to group, id left for conn.start.
func startRequest(b []byte, rpc byte, group string) []byte {
	b = startFrame(b, kindRequest, 0)
	return appendString(append(b, rpc), group)
}

// Buffers of big frames (AppendEntries carrying data) are reused: allocating and
// zeroing a fresh one per request was a tenth of a busy leader's CPU. A frame is built
// for one send, so its connection recycles it once written (conn.flush).
const (
	pooledFrame    = 64 << 10
	maxPooledFrame = 16 << 20 // bigger ones are rare: let them go
)

var framePool sync.Pool // of *[]byte

func frameBuf(n int) []byte {
	if n >= pooledFrame {
		if p, _ := framePool.Get().(*[]byte); p != nil && cap(*p) >= n {
			return (*p)[:0]
		}
	}
	return make([]byte, 0, n)
}

func recycleFrame(b []byte) {
	if cap(b) >= pooledFrame && cap(b) <= maxPooledFrame {
		framePool.Put(&b)
	}
}

// raftRequestFrame builds the request frame of a raft RPC; conn.start stamps its id.
func raftRequestFrame(rpc byte, group string, args any) ([]byte, error) {
	b := startRequest(frameBuf(32+len(group)+payloadSize(args)), rpc, group)
	b, err := appendPayload(b, args)
	if err != nil {
		return nil, err
	}
	return finishFrame(b)
}

func raftResponseFrame(id uint64, resp any) ([]byte, error) {
	b := make([]byte, 0, 16+payloadSize(resp))
	b = startFrame(b, kindResponse, id)
	b, err := appendPayload(b, resp)
	if err != nil {
		return nil, err
	}
	return finishFrame(b)
}

func cancelFrame(id uint64) []byte {
	b, _ := finishFrame(startFrame(make([]byte, 0, 13), kindCancel, id))
	return b
}

func responseFrame(id uint64, payload []byte) ([]byte, error) {
	b := make([]byte, 0, 16+len(payload))
	b = startFrame(b, kindResponse, id)
	return finishFrame(append(b, payload...))
}

// shutdownFrame answers a raft RPC of a group that is shutting down.
func shutdownFrame(id uint64) []byte {
	return errorFrame(id, codeShutdown, "raft group is shutting down")
}

func errorFrame(id uint64, code byte, msg string) []byte {
	if len(msg) > maxName*4 {
		msg = msg[:maxName*4]
	}
	b := make([]byte, 0, 16+len(msg))
	b = startFrame(b, kindError, id)
	b = append(b, code)
	b, _ = finishFrame(append(b, msg...)) // msg is bounded above
	return b
}

// Raft payloads use msgpack like raft's NetworkTransport, so the raft structs
// (and their future fields) encode without hand-written code.
var (
	msgpackHandle = &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}}
	encoders      = sync.Pool{New: func() any { return new(encoder) }}
	decoders      = sync.Pool{New: func() any { return codec.NewDecoderBytes(nil, msgpackHandle) }}
)

// encoder keeps its output buffer between uses.
type encoder struct {
	enc *codec.Encoder
	buf []byte
}

// appendMsgpack appends v's msgpack encoding to b.
func appendMsgpack(b []byte, v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer func() {
		if cap(e.buf) > 64<<10 {
			e.buf = nil // don't pin one big message's buffer
		}
		encoders.Put(e)
	}()
	if e.enc == nil {
		e.enc = codec.NewEncoderBytes(&e.buf, msgpackHandle)
	} else {
		e.enc.ResetBytes(&e.buf)
	}
	if err := e.enc.Encode(v); err != nil {
		return nil, fmt.Errorf("transport: encode %T: %w", v, err)
	}
	return append(b, e.buf...), nil
}

func decodeMsgpack(b []byte, v any) error {
	dec := decoders.Get().(*codec.Decoder)
	dec.ResetBytes(b)
	err := dec.Decode(v)
	dec.ResetBytes(nil)
	decoders.Put(dec)
	return err
}
