package transport

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/internal/decode"
)

// AppendEntries requests and responses are nearly all the traffic (every
// heartbeat, every replicated batch), and msgpack's reflection was the
// largest cost of an idle group after syscalls, so these two are encoded by
// hand; the rare RPCs stay msgpack. TestHandCodecCoversRaftStructs fails if a
// raft upgrade adds fields this codec would drop.

// appendPayload appends v's encoding to b.
func appendPayload(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case *raft.AppendEntriesRequest:
		return appendAppendRequest(b, v), nil
	case *raft.AppendEntriesResponse:
		return appendAppendResponse(b, v), nil
	}
	return appendMsgpack(b, v)
}

// decodePayload decodes b into v; byte slices in v may alias b.
func decodePayload(b []byte, v any) error {
	r := reader{decode.NewReader(b)}
	switch v := v.(type) {
	case *raft.AppendEntriesRequest:
		r.appendRequest(v)
	case *raft.AppendEntriesResponse:
		r.appendResponse(v)
	default:
		return decodeMsgpack(b, v)
	}
	return r.done()
}

// payloadSize guesses the encoded size of v to size a frame in one allocation.
func payloadSize(v any) int {
	n := 64
	if req, ok := v.(*raft.AppendEntriesRequest); ok {
		n += len(req.ID) + len(req.Addr) + len(req.Leader)
		for _, l := range req.Entries {
			n += 48 + len(l.Data) + len(l.Extensions)
		}
	}
	return n
}

// appendBytes writes len+1 then the bytes, 0 for nil: raft tells nil from
// empty (a heartbeat is recognised by a non-nil leader address).
func appendBytes(b, v []byte) []byte {
	return append(appendLen(b, len(v), v == nil), v...)
}

// appendLen writes n+1, or 0 when the slice is nil; reader.count reads it back.
func appendLen(b []byte, n int, isNil bool) []byte {
	if isNil {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, uint64(n)+1)
}

func appendHeader(b []byte, h *raft.RPCHeader) []byte {
	b = binary.AppendVarint(b, int64(h.ProtocolVersion))
	b = appendBytes(b, h.ID)
	return appendBytes(b, h.Addr)
}

func appendAppendRequest(b []byte, r *raft.AppendEntriesRequest) []byte {
	b = appendHeader(b, &r.RPCHeader)
	b = binary.AppendUvarint(b, r.Term)
	b = appendBytes(b, r.Leader) //nolint:staticcheck // still sent for older raft versions
	b = binary.AppendUvarint(b, r.PrevLogEntry)
	b = binary.AppendUvarint(b, r.PrevLogTerm)
	b = binary.AppendUvarint(b, r.LeaderCommitIndex)
	b = appendLen(b, len(r.Entries), r.Entries == nil)
	for _, l := range r.Entries {
		b = binary.AppendUvarint(b, l.Index)
		b = binary.AppendUvarint(b, l.Term)
		b = append(b, byte(l.Type))
		b = appendBytes(b, l.Data)
		b = appendBytes(b, l.Extensions)
		if l.AppendedAt.IsZero() {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = binary.AppendVarint(b, l.AppendedAt.UnixNano())
		}
	}
	return b
}

func appendAppendResponse(b []byte, r *raft.AppendEntriesResponse) []byte {
	b = appendHeader(b, &r.RPCHeader)
	b = binary.AppendUvarint(b, r.Term)
	b = binary.AppendUvarint(b, r.LastLog)
	var flags byte
	if r.Success {
		flags |= 1
	}
	if r.NoRetryBackoff {
		flags |= 2
	}
	return append(b, flags)
}

// reader is the shared byte reader plus what frames add: nil-or-length counts.
type reader struct{ decode.Reader }

func (r *reader) done() error {
	if err := r.Done(); err != nil {
		return fmt.Errorf("%w: %w", errBadFrame, err)
	}
	return nil
}

// count reads what appendLen wrote; ok is false for nil or a bad frame. Each element
// takes at least size bytes, which bounds what a lying count can allocate.
func (r *reader) count(what string, size uint64) (n int, ok bool) {
	v := r.Uvarint(what)
	if v == 0 {
		return 0, false
	}
	if v-1 > uint64(r.Len())/size {
		r.Fail(what)
		return 0, false
	}
	return int(v - 1), true
}

func (r *reader) bytes(what string) []byte {
	n, ok := r.count(what, 1)
	if !ok {
		return nil
	}
	return r.Take(what, n)
}

func (r *reader) header(h *raft.RPCHeader) {
	h.ProtocolVersion = raft.ProtocolVersion(r.Varint("protocol version"))
	h.ID = r.bytes("id")
	h.Addr = r.bytes("addr")
}

func (r *reader) appendRequest(req *raft.AppendEntriesRequest) {
	r.header(&req.RPCHeader)
	req.Term = r.Uvarint("term")
	req.Leader = r.bytes("leader") //nolint:staticcheck // still sent for older raft versions
	req.PrevLogEntry = r.Uvarint("prev log entry")
	req.PrevLogTerm = r.Uvarint("prev log term")
	req.LeaderCommitIndex = r.Uvarint("commit index")
	n, ok := r.count("entry count", 6) // an entry takes at least 6 bytes
	if !ok {
		return
	}
	req.Entries = make([]*raft.Log, n)
	logs := make([]raft.Log, n)
	for i := range logs {
		l := &logs[i]
		l.Index = r.Uvarint("entry index")
		l.Term = r.Uvarint("entry term")
		l.Type = raft.LogType(r.Byte("entry type"))
		l.Data = r.bytes("entry data")
		l.Extensions = r.bytes("entry extensions")
		if r.Byte("entry time") == 1 {
			l.AppendedAt = time.Unix(0, r.Varint("entry time"))
		}
		req.Entries[i] = l
	}
}

func (r *reader) appendResponse(resp *raft.AppendEntriesResponse) {
	r.header(&resp.RPCHeader)
	resp.Term = r.Uvarint("term")
	resp.LastLog = r.Uvarint("last log")
	flags := r.Byte("flags")
	resp.Success = flags&1 != 0
	resp.NoRetryBackoff = flags&2 != 0
}
