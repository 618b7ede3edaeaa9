package store

import (
	"bytes"
	"hash/crc32"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkEncodeRun is the checksums' share of a commit: a run of 100 bodies of 1 KiB
// indexed with their crc32c (what every replica does per message it stores).
func BenchmarkEncodeRun(b *testing.B) {
	ms := msgs(0, 100, 1024)
	b.SetBytes(100 * 1024)
	for b.Loop() {
		encodeRun(0, dataPos{}, ms)
	}
}

// The checksums' cost is stated as CPU per message (the process's user and system time,
// every goroutine included, so the WAL's syncer and bolt's committer count, and other
// processes on a busy machine do not), for a batch of 100 messages of 1 KiB:
//
//   - BenchmarkMessagePath: what a replica does with them: one WAL append of the Raft
//     entry (fsync included), the data log and index commit, and one read of them back
//     as a consume does, each body checked;
//   - BenchmarkMessagePathChecksums: the checksum work of that path alone: the WAL
//     record's crc32c over the entry, each body's crc32c when indexed and again when
//     read.
//
// Their ratio is the checksums' share of the CPU per message.
const pathMsgs = 100

func BenchmarkMessagePath(b *testing.B) {
	db := openDB(b, b.TempDir())
	defer db.Close()
	g := group(b, db, "p/t/0")
	batch := msgs(0, pathMsgs, 1024)
	entry := bytes.Join(batch, nil)
	p := g.Partition()
	cpu := cpuTime()
	var next uint64
	for b.Loop() {
		if err := g.LogStore().StoreLogs([]*raft.Log{{Index: next/pathMsgs + 1, Term: 1, Type: raft.LogCommand, Data: entry}}); err != nil {
			b.Fatal(err)
		}
		first := next
		if err := db.data.run([]*writeReq{{fn: func(tx *bolt.Tx) error {
			return putMessages(db.data.dlog, tx.Bucket(g.name), first, batch)
		}}}); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Messages(first, pathMsgs); err != nil {
			b.Fatal(err)
		}
		next += pathMsgs
	}
	reportCPU(b, cpu)
}

func BenchmarkMessagePathChecksums(b *testing.B) {
	batch := msgs(0, pathMsgs, 1024)
	entry := bytes.Join(batch, nil)
	cpu := cpuTime()
	var sink uint32
	for b.Loop() {
		sink += crc32.Update(1, crcTable, entry)
		for range 2 { // indexed, then read
			for _, m := range batch {
				sink += crc32.Checksum(m, crcTable)
			}
		}
	}
	reportCPU(b, cpu)
	_ = sink
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(cpuTime()-since)/float64(b.N*pathMsgs), "cpu-ns/msg")
}
