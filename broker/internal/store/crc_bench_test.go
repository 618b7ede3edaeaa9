package store

import "testing"

// BenchmarkEncodeRun is the checksums' share of a commit: a run of 100 bodies of 1 KiB
// indexed with their crc32c (what every replica does per message it stores).
func BenchmarkEncodeRun(b *testing.B) {
	ms := msgs(0, 100, 1024)
	b.SetBytes(100 * 1024)
	for b.Loop() {
		encodeRun(dataPos{}, ms)
	}
}
