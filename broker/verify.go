package broker

import (
	"io"

	"github.com/quorumq/quorumq/broker/internal/store"
)

// Verify checks a stopped broker's data directory without changing it (`quorumq broker
// verify`): every write-ahead log record and every message body against its checksum.
// It writes what it checked and every damaged range to out and returns how many damaged
// ranges it found. The storage packages stay internal to the broker; this is their one
// entry point for the CLI.
func Verify(dataDir string, out io.Writer) (int, error) { return store.Verify(dataDir, out) }
