// Package decode is the one byte reader of the project's binary codecs (partition
// commands, bank entries, the Raft transport's frames): bounds-checked reads of
// varints, big-endian integers and length-prefixed bytes, where the first problem
// sticks and every later read returns zero values, so a decoder reads straight
// through and checks once at the end.
package decode

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrTruncated is the cause of every failed read: the input ended or was malformed
// before the field named in the error.
var ErrTruncated = errors.New("truncated or malformed")

// Reader reads fields from a byte slice.
type Reader struct {
	b   []byte
	err error
}

// NewReader reads b; slices it returns alias b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// Fail records that the field what is bad (the first failure sticks) and stops reading.
func (r *Reader) Fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrTruncated, what)
	}
	r.b = nil
}

// Err is the first failure, or nil.
func (r *Reader) Err() error { return r.err }

// Done is Err, or a failure when bytes are left over.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return r.err
}

// Len is the number of bytes left.
func (r *Reader) Len() int { return len(r.b) }

// Byte reads one byte.
func (r *Reader) Byte(what string) byte {
	if len(r.b) < 1 {
		r.Fail(what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint(what string) uint64 { return varint(r, what, binary.Uvarint) }

// Varint reads a signed varint.
func (r *Reader) Varint(what string) int64 { return varint(r, what, binary.Varint) }

func varint[T uint64 | int64](r *Reader, what string, read func([]byte) (T, int)) T {
	v, n := read(r.b)
	if n <= 0 {
		r.Fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Uint32 reads a big-endian uint32.
func (r *Reader) Uint32(what string) uint32 {
	if b := r.Take(what, 4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// Uint64 reads a big-endian uint64.
func (r *Reader) Uint64(what string) uint64 {
	if b := r.Take(what, 8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// Take reads the next n bytes (capped, so appending to them never overwrites what
// follows); nil once failed.
func (r *Reader) Take(what string, n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.Fail(what)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Bytes32 reads bytes after a big-endian uint32 length.
func (r *Reader) Bytes32(what string) []byte { return r.Take(what, int(r.Uint32(what))) }

// BytesUvarint reads bytes after a uvarint length.
func (r *Reader) BytesUvarint(what string) []byte {
	n := r.Uvarint(what)
	if n > uint64(r.Len()) {
		r.Fail(what)
		return nil
	}
	return r.Take(what, int(n))
}
