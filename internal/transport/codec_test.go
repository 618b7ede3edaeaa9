package transport

import (
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestHandCodecRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte("127.0.0.1:7000")}
	tests := []struct {
		name string
		v    any
	}{
		{"heartbeat", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3, Leader: []byte("127.0.0.1:7000")}},
		{"empty request", &raft.AppendEntriesRequest{}},
		{"empty but non-nil slices", &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte{}, Addr: []byte{}}, Leader: []byte{}, Entries: []*raft.Log{}}},
		{"entries", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 9, PrevLogEntry: 41, PrevLogTerm: 8, LeaderCommitIndex: 40, Entries: []*raft.Log{
			{Index: 42, Term: 9, Type: raft.LogCommand, Data: []byte("payload"), AppendedAt: at},
			{Index: 43, Term: 9, Type: raft.LogConfiguration, Data: []byte{}, Extensions: []byte("ext")},
			{Index: 44, Term: 9, Type: raft.LogNoop},
		}}},
		{"huge numbers", &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: -1}, Term: ^uint64(0), Entries: []*raft.Log{{Index: ^uint64(0), Type: 255, AppendedAt: time.Unix(0, -5)}}}},
		{"response", &raft.AppendEntriesResponse{RPCHeader: hdr, Term: 9, LastLog: 44, Success: true}},
		{"response no retry backoff", &raft.AppendEntriesResponse{Term: 2, NoRetryBackoff: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := appendPayload(nil, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			got := reflect.New(reflect.TypeOf(tc.v).Elem()).Interface()
			if err := decodePayload(b, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalizeTimes(got), normalizeTimes(tc.v)) {
				t.Fatalf("round trip changed the value:\n got %#v\nwant %#v", got, tc.v)
			}
			for cut := range b { // every truncation is an error, never a panic
				if err := decodePayload(b[:cut], reflect.New(reflect.TypeOf(tc.v).Elem()).Interface()); err == nil {
					t.Fatalf("decoding %d of %d bytes succeeded", cut, len(b))
				}
			}
		})
	}
}

// normalizeTimes drops what a time loses on the wire (monotonic reading,
// location) so DeepEqual compares instants.
func normalizeTimes(v any) any {
	if req, ok := v.(*raft.AppendEntriesRequest); ok {
		c := *req
		c.Entries = nil
		for _, l := range req.Entries {
			l2 := *l
			if !l2.AppendedAt.IsZero() {
				l2.AppendedAt = time.Unix(0, l2.AppendedAt.UnixNano()).UTC()
			}
			c.Entries = append(c.Entries, &l2)
		}
		if req.Entries != nil && c.Entries == nil {
			c.Entries = []*raft.Log{}
		}
		return &c
	}
	return v
}

// TestHandCodecCoversRaftStructs fails when raft's structs gain fields the
// hand codec does not carry, which would otherwise be dropped silently.
func TestHandCodecCoversRaftStructs(t *testing.T) {
	want := map[reflect.Type][]string{
		reflect.TypeOf(raft.AppendEntriesRequest{}):  {"RPCHeader", "Term", "Leader", "PrevLogEntry", "PrevLogTerm", "Entries", "LeaderCommitIndex"},
		reflect.TypeOf(raft.AppendEntriesResponse{}): {"RPCHeader", "Term", "LastLog", "Success", "NoRetryBackoff"},
		reflect.TypeOf(raft.RPCHeader{}):             {"ProtocolVersion", "ID", "Addr"},
		reflect.TypeOf(raft.Log{}):                   {"Index", "Term", "Type", "Data", "Extensions", "AppendedAt"},
	}
	for typ, fields := range want {
		var got []string
		for i := range typ.NumField() {
			got = append(got, typ.Field(i).Name)
		}
		if !reflect.DeepEqual(got, fields) {
			t.Errorf("%s has fields %v; the hand codec in codec.go carries %v: update it", typ, got, fields)
		}
	}
}

func FuzzDecodeAppendRequest(f *testing.F) {
	seed, _ := appendPayload(nil, &raft.AppendEntriesRequest{Term: 1, Leader: []byte("x"), Entries: []*raft.Log{{Index: 1, Data: []byte("d")}}})
	f.Add(seed)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req raft.AppendEntriesRequest
		decodePayload(b, &req) // must not panic or allocate wildly
		var resp raft.AppendEntriesResponse
		decodePayload(b, &resp)
	})
}
