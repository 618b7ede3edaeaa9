package wal

import (
	"os"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FsyncSeconds is the latency of the fdatasyncs every acknowledgement waits for, by file
// ("wal": the Raft log, "data": message bodies). The broker registers it.
var FsyncSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name: "quorumq_broker_fsync_seconds", Help: "Latency of the broker's fdatasyncs on the acknowledgement path, by file (wal, data).",
	Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16), // 50 µs .. 1.6 s
}, []string{"file"})

// Fdatasync syncs f's data and records how long it took under the label file.
func Fdatasync(f *os.File, file string) error {
	start := time.Now()
	err := syscall.Fdatasync(int(f.Fd()))
	FsyncSeconds.WithLabelValues(file).Observe(time.Since(start).Seconds())
	return err
}
