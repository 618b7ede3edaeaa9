package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzFrame reads arbitrary bytes as one frame off the wire and decodes what a peer
// would: the raft command of a request, every kind of raft response. A malformed frame
// must be an error, never a panic or an allocation beyond the frame's size.
func FuzzFrame(f *testing.F) {
	seeds := [][]byte{}
	for _, rpc := range []struct {
		rpc byte
		v   any
	}{
		{rpcAppendEntries, &raft.AppendEntriesRequest{Term: 2, Entries: []*raft.Log{{Index: 1, Term: 2, Data: []byte("d")}}}},
		{rpcHeartbeat, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("a")}, Term: 2}},
		{rpcRequestVote, &raft.RequestVoteRequest{Term: 3, LastLogIndex: 4}},
		{rpcRequestPreVote, &raft.RequestPreVoteRequest{Term: 3}},
		{rpcTimeoutNow, &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ID: []byte("n1")}}},
		{rpcInstallSnapshot, &raft.InstallSnapshotRequest{Term: 3, Size: 10}},
	} {
		b, err := raftRequestFrame(rpc.rpc, "g", rpc.v)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	for _, v := range []any{&raft.AppendEntriesResponse{Term: 1, Success: true}, &raft.RequestVoteResponse{Granted: true}} {
		b, err := raftResponseFrame(7, v)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	custom, err := requestFrame(rpcCustom, "g", "apply", 100, []byte("cmd"))
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, custom, errorFrame(1, codeRemote, "boom"), cancelFrame(2))
	for _, s := range seeds {
		f.Add(s[4:]) // the body: the fuzz target adds the length
	}
	f.Add([]byte{kindRequest, 0, 0, 0, 0, 0, 0, 0, 1, rpcRequestVote, 1, 'g', 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		wire := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		fr, err := readFrame(bufio.NewReader(bytes.NewReader(append(wire, body...))))
		if err != nil {
			return
		}
		switch fr.kind {
		case kindRequest:
			if fr.rpc != rpcCustom {
				decodeCommand(fr)
			}
		case kindResponse:
			for _, v := range []any{&raft.AppendEntriesResponse{}, &raft.RequestVoteResponse{}, &raft.RequestPreVoteResponse{},
				&raft.TimeoutNowResponse{}, &raft.InstallSnapshotResponse{}} {
				decodePayload(fr.payload, v)
			}
		}
	})
}
