package decode

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestReader(t *testing.T) {
	good := binary.AppendUvarint(nil, 300)
	good = binary.AppendVarint(good, -7)
	good = append(good, 9)
	good = binary.BigEndian.AppendUint32(good, 1<<31)
	good = binary.BigEndian.AppendUint64(good, 1<<63)
	good = append(good, "abc"...)
	read := func(r *Reader) []any {
		return []any{r.Uvarint("u"), r.Varint("v"), r.Byte("b"), r.Uint32("u32"), r.Uint64("u64"), string(r.Take("s", 3))}
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		want    []any
		wantErr error // nil: Done is nil
	}{
		{"every field", good, []any{uint64(300), int64(-7), byte(9), uint32(1 << 31), uint64(1 << 63), "abc"}, nil},
		{"cut in the last field: the earlier ones read", good[:len(good)-1],
			[]any{uint64(300), int64(-7), byte(9), uint32(1 << 31), uint64(1 << 63), ""}, ErrTruncated},
		{"cut early: zero values after", good[:2], []any{uint64(300), int64(0), byte(0), uint32(0), uint64(0), ""}, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.in)
			got := read(&r)
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("field %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
			if err := r.Done(); !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("Done = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestTrailingBytesAndCappedTake(t *testing.T) {
	r := NewReader([]byte{1, 2, 3})
	b := r.Take("b", 1)
	if cap(b) != 1 {
		t.Fatalf("Take's slice has capacity %d: appending would overwrite the input", cap(b))
	}
	if r.Done() == nil || r.Len() != 2 {
		t.Fatal("two bytes left over, but Done did not say so")
	}
}
