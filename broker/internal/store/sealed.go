package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The partition's state in data.db (its applied index and next offset, consumer
// offsets, producers' last batches) is acknowledged data as much as the bodies, and
// bolt's pages carry no checksum: each of these values ends in the CRC-32C of its key
// and value, checked when the state is loaded. Values written before the seal have
// their old length (4 bytes shorter) and are read unchecked; each is sealed the next
// time it is written. A state that fails its check cannot be repaired in place (it is
// the sum of every entry applied): the broker rebuilds the replica from a healthy
// leader instead.

// ErrDamaged is a value of a partition's state that failed its checksum.
var ErrDamaged = errors.New("store: partition state damaged on disk (checksum mismatch)")

const sealSize = 4

func valueSum(key, v []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, crcTable), crcTable, v)
}

// sealValue appends the seal of key and v to v.
func sealValue(key, v []byte) []byte { return binary.BigEndian.AppendUint32(v, valueSum(key, v)) }

// openValue returns the size bytes that v, stored under key, holds.
func openValue(key, v []byte, size int) ([]byte, error) {
	switch len(v) {
	case size:
		return v, nil // written before the seal
	case size + sealSize:
		if binary.BigEndian.Uint32(v[size:]) == valueSum(key, v[:size]) {
			return v[:size], nil
		}
	}
	return nil, fmt.Errorf("%w: value %q of %d bytes", ErrDamaged, key, len(v))
}
